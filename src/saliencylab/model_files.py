"""Loading a saved model file, with a one-line error for every file that is not one.

Files are loaded with `weights_only=True` (a crafted pickle cannot run code). Our own artifacts
are recognised by their keys, so pointing at the wrong one says what it is.
"""

from pathlib import Path

import torch

from .errors import UserError

KINDS = {  # keys that identify our own artifacts -> what the file is
    frozenset({"train", "test"}): "a ROAR ranking artifact",
    frozenset({"state", "mask", "metrics", "examples", "inputs"}): "a pruning level file",
    frozenset({"state", "accuracy"}): "a ROAR base model",
}
SGT_MODEL_KEYS = {"model", "objective", "history", "config", "objective_name", "seed"}


def _looks_like(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head[:1] in (b"{", b"[") or all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "a text file"
    return "an unknown binary file"


def load_file(path: str | Path, want: str):
    """The object saved in `path` (a dict), or a one-line UserError that names what the file
    is not and what it should be (`want`, e.g. "a model file such as RUN/artifacts/...")."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: give {want}")
    if path.is_dir():
        raise UserError(f"{path} is a directory: give {want}")
    head = path.open("rb").read(64)
    if not head:
        raise UserError(f"{path} is empty: give {want}")
    if not head.startswith(b"PK"):  # torch.save writes a zip archive
        raise UserError(f"{path} is not a PyTorch file (it looks like {_looks_like(head)}): "
                        f"give {want}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        first = " ".join(str(e).split())[:160]
        raise UserError(f"{path} cannot be loaded as weights only ({type(e).__name__}: {first}): "
                        f"give {want}") from None


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
    """Load a plain state_dict (or our {'state': ...} / {'model': ...} files) into `model`; a
    mismatch lists the first differences in one line."""
    state = load_file(path, "a state_dict saved with torch.save(model.state_dict(), PATH)")
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
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{path} does not fit the model: {'; '.join(problems[:3])}{more}")
    model.load_state_dict(state)
    return model
