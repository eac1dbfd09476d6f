"""Loading a saved model file, with a one-line error for every file that is not one.

Files are loaded with `weights_only=True` (a crafted pickle cannot run code). Our own artifacts
are recognised by their keys, so pointing at the wrong one says what it is.
"""

import pickle
import re
from pathlib import Path

import torch

from ..core.errors import UserError

KINDS = {  # keys that identify our own artifacts -> what the file is
    frozenset({"train", "test"}): "a ROAR ranking artifact",
    frozenset({"state", "mask", "metrics", "examples", "inputs"}): "a pruning level file",
    frozenset({"state", "accuracy"}): "a ROAR base model",
}
SGT_MODEL_KEYS = {"model", "objective", "history", "config", "objective_name", "seed"}


# torch.save writes a zip archive; before PyTorch 1.6 (and with
# _use_new_zipfile_serialization=False) it wrote a pickle that starts with this magic number
# (torch/serialization.py, MAGIC_NUMBER = 0x1950a86a20f9469cfc6c, pickled at protocol 2).
ZIP_HEAD = b"PK\x03\x04"
LEGACY_HEAD = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _looks_like(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head[:1] == b"\x80":
        return "a Python pickle, not a torch.save file; nothing in it was run"
    if head[:1] in (b"{", b"[") or all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "a text file"
    return "an unknown binary file"


def _refused_global(error: Exception) -> str | None:
    """The class a weights-only load refused ("Unsupported global: GLOBAL pkg.Net ...")."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else None


def load_file(path: str | Path, want: str):
    """The object saved in `path`, or a one-line UserError that names what the file is not
    and what it should be (`want`, e.g. "a model file such as RUN/artifacts/...")."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: give {want}")
    if path.is_dir():
        raise UserError(f"{path} is a directory: give {want}")
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}; check the file") from None
    if not head:
        raise UserError(f"{path} is empty: give {want}")
    if not (head.startswith(ZIP_HEAD) or head.startswith(LEGACY_HEAD)):
        raise UserError(f"{path} is not a PyTorch file (it looks like {_looks_like(head)}): "
                        f"give {want}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        refused = _refused_global(e)
        if refused is None:
            raise UserError(f"{path} cannot be loaded as weights only ({_first_line(e)}): "
                            f"give {want}") from None
        raise UserError(f"{path} holds a pickled {refused}, which a weights-only load refuses "
                        f"to run (nothing was run; torch.save(model) writes such files, "
                        f"torch.save(model.state_dict(), PATH) does not): give {want}") from None
    except Exception as e:  # a truncated archive, a zip that is not a torch archive, ...
        raise UserError(f"{path} is truncated or damaged, not a readable PyTorch file "
                        f"({type(e).__name__}: {_first_line(e).split('. ')[0]}): save it again, "
                        f"or give {want}") from None


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split())[:160]


def load_sgt_model(path: str | Path) -> dict:
    """A model saved by `saliencylab train` or `saliencylab sgt` (with its config and K)."""
    want = "a model saved by `saliencylab train` or `saliencylab sgt` (RUN/artifacts/model-OBJECTIVE-sSEED.pt)"
    state = load_file(path, want)
    keys = set(state) if isinstance(state, dict) else set()
    if SGT_MODEL_KEYS <= keys:
        return state
    for kind_keys, kind in KINDS.items():
        if kind_keys <= keys:
            raise UserError(f"{path} is {kind}, not a trained model: give {want}")
    raise UserError(f"{path} is not a saliencylab model file (keys: "
                    f"{', '.join(sorted(map(str, keys))[:6]) or 'none'}): give {want}")


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a plain state_dict (or the weights in our own files: an SGT model's 'model', a
    ROAR base model's or a pruning level's 'state') into `model`; a mismatch (a missing or
    extra key, a shape, an integer tensor where the model's is floating) lists the first
    differences in one line, and NaN or infinite weights are refused."""
    want = "a state_dict saved with torch.save(model.state_dict(), PATH)"
    state = load_file(path, want)
    if isinstance(state, dict) and {"train", "test"} <= set(state):
        raise UserError(f"{path} is a ROAR ranking artifact, not weights: give {want}")
    if isinstance(state, dict) and not all(torch.is_tensor(v) for v in state.values()):
        state = state.get("model", state.get("state", state))
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{path} holds no state_dict of tensors: save one with "
                        f"torch.save(model.state_dict(), PATH)")
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k} has shape {tuple(state[k].shape)}, the model {tuple(v.shape)}"
                 for k, v in own.items() if k in state and state[k].shape != v.shape]
    problems += [f"{k} is {state[k].dtype}, the model's {v.dtype}" for k, v in own.items()
                 if k in state and v.is_floating_point() and not state[k].is_floating_point()]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{path} does not fit the model: {'; '.join(problems[:3])}{more}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise UserError(f"{path} holds NaN or infinite weights in {', '.join(broken[:3])}"
                        f"{f' (and {len(broken) - 3} more)' if len(broken) > 3 else ''}: the "
                        f"model they come from diverged; give weights of a finished training")
    model.load_state_dict(state)
    return model
