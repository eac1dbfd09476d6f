"""Frozen config dataclasses: `--set key=value` overrides, presets, and the hash that names a run.

Habit from open_lth: one frozen dataclass per concern, and a hash of the whole config names
the run directory, so the same config always resumes the same run.

Values are parsed strictly: numbers in ASCII digits (`int("٣")` would be 3), finite, and every
seed (a key named `seed`, `seeds` or `*_seed`) in SEED_RANGE, which torch.manual_seed, numpy's
generators and the derived seeds of the protocols (seed x 100003 + epoch) all accept.
"""

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from importlib import resources

import tomllib

from ..core.checks import check
from ..core.device import device_kind
from ..core.errors import UserError

SEED_RANGE = (0, 2**32 - 1)

BATCH_MODELS = ("auto", "on", "off")
# What `batch_models=auto` does on each kind of device. The CPU: off, since
# benchmarks/bench_batched_training.py measures a batched model slower there than separate
# ones (docs/results/bench_batched_training_cpu.txt). CUDA: on, for the launch overhead that
# one batched step saves; not yet measured on a GPU (issue 19).
AUTO_BATCHING = {"cpu": False, "cuda": True}


def batching(choice: str, device: str) -> bool:
    """Whether jobs that can train as one batched model do, for `batch_models=choice` on
    `device` (a config's device name)."""
    return choice == "on" or (choice == "auto" and AUTO_BATCHING[device_kind(device)])


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Where and how a protocol's jobs run; every protocol config inherits these keys.

    `device`, `deterministic` and `threads_per_job` can change the numbers, so they are part of
    the run hash (the device by its kind, cpu or cuda, so that `auto` on a GPU machine and
    `cuda:1` name the same run). The Ray resources and retries only schedule, so they are not.
    `batch_models` trains jobs that share a model, an optimiser and a batch schedule (ROAR's) as
    one batched model (training/batched.py), which gives each the same result to fp32
    tolerance, not bit for bit: the hash sees it only where it batches, so runs that do not
    keep the hash they had before the key existed.
    """

    device: str = "auto"  # auto (the first GPU if present, else the CPU) | cpu | cuda | cuda:N
    deterministic: bool = False  # PyTorch's deterministic algorithms (CUDA kernels bitwise stable)
    threads_per_job: int = 1  # torch threads inside each job, whatever --workers is
    cpus_per_job: float = 1.0  # Ray resources of one job
    gpus_per_job: float = 0.0  # Ray: a fraction lets several jobs share one GPU
    max_retries: int = 3  # Ray retries of a job whose worker died
    batch_models: str = "auto"  # auto (AUTO_BATCHING by device) | on | off

    def validate_run_options(self) -> None:
        check(self.batch_models in BATCH_MODELS,
              f"batch_models must be one of {', '.join(BATCH_MODELS)}, got {self.batch_models!r}")
        check(self.threads_per_job >= 1, "threads_per_job must be >= 1")
        check(self.cpus_per_job > 0, "cpus_per_job must be > 0")
        check(self.gpus_per_job >= 0, "gpus_per_job must be >= 0")
        check(self.max_retries >= 0, "max_retries must be >= 0")


SCHEDULING_KEYS = ("cpus_per_job", "gpus_per_job", "max_retries")  # not in the run hash


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def legacy_dict(config, values: dict | None = None) -> dict:
    """`to_dict(config)` with every renamed field (core.checks.renamed) under its old key and in
    its old spelling, and every field marked `added` left out while at its default: what the
    config was before the renames and additions."""
    values = to_dict(config) if values is None else values
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            legacy_dict(value, values[f.name])
        if f.metadata.get("added") and value == _default(f):
            values.pop(f.name)  # a field added later, at its default: the hash of older runs
            continue
        was = f.metadata.get("renamed")
        if was is not None:
            new = values.pop(f.name)
            values[was.old_key] = {v: k for k, v in was.old_values.items()}.get(new, new)
    return values


def _default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def hashed_dict(config) -> dict:
    """The config as the run hash sees it: scheduling keys dropped, the device by its kind,
    renamed fields as they were spelled before and added fields at their defaults left out
    (so that older runs resume), batch_models only where it batches."""
    values = legacy_dict(config)
    for key in SCHEDULING_KEYS:
        values.pop(key, None)
    if "batch_models" in values:
        batched = batching(values.pop("batch_models"), values.get("device", "auto"))
        values.update({"batch_models": "on"} if batched else {})
    if "device" in values:
        values["device"] = device_kind(values["device"])
    return values


def config_hash(config) -> str:
    """A short, stable hash of every config field that can change a result (nested ones included)."""
    text = json.dumps(hashed_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def field_paths(config, prefix: str = "") -> dict[str, type]:
    """Every settable key, dotted for nested configs, with its type annotation."""
    paths = {}
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            paths.update(field_paths(value, f"{prefix}{f.name}."))
        else:
            paths[prefix + f.name] = hints[f.name]
    return paths


def _parse(text: str, kind, key: str):
    """Turn the string `text` into a value of annotation `kind`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # Optional[T]
        if text.lower() in ("none", "null", ""):
            return None
        return _parse(text, next(a for a in args if a is not type(None)), key)
    if origin is tuple:
        items = [t.strip() for t in text.strip("()[]").split(",") if t.strip()]
        return tuple(_parse(t, args[0], key) for t in items)
    if kind is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError
    if kind in (int, float) and not text.isascii():
        raise ValueError  # int() and float() take other scripts' digits: '٣' is 3
    return _finite(kind(text))


NOT_FINITE = "a finite number (not inf or nan)"


def _finite(value):
    """Numbers must be finite: `inf` or `nan` would train to NaN and store chance accuracy."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(NOT_FINITE)
    return value


def _type_name(kind) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _coerce(value, kind, key: str):
    """Check/convert a TOML value against the field's annotation."""
    if isinstance(value, str):
        return _parse(value, kind, key)
    if isinstance(value, (list, tuple)):
        return _parse(",".join(str(v) for v in value), kind, key)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError
    return _finite(value)


def _is_seed(key: str) -> bool:
    name = key.rpartition(".")[2]
    return name in ("seed", "seeds") or name.endswith("_seed")


def _check_seeds(key: str, parsed) -> None:
    low, high = SEED_RANGE
    for seed in parsed if isinstance(parsed, tuple) else (parsed,):
        check(low <= seed <= high, f"{key} must lie in [{low}, {high}] (seeds that torch and "
              f"numpy both accept), got {seed}")


def _unknown_key(key: str, paths) -> UserError:
    """The closest valid keys, by spelling and by last part (`epochs` -> `train.epochs`)."""
    last = key.rpartition(".")[2]
    close = difflib.get_close_matches(key, paths, n=3, cutoff=0.8)
    close += [p for p in sorted(paths) if p.rpartition(".")[2] == last and p not in close]
    hint = f": did you mean {' or '.join(close[:3])}?" if close else ""
    return UserError(f"unknown config key {key!r}{hint} (`--show-config` lists every key)")


def _old_spelling(config, key: str, value):
    """(key, value) in today's spelling, for a key or value of a renamed field (None if `key`
    names none): `kar=true` is `removal=lerf`."""
    head, _, last = key.rpartition(".")
    for part in head.split(".") if head else ():
        config = getattr(config, part, None)
        if not dataclasses.is_dataclass(config):
            return None
    for f in dataclasses.fields(config):
        was = f.metadata.get("renamed")
        if was is None or was.old_key != last:
            continue
        old = value
        if isinstance(value, str) and any(isinstance(k, bool) for k in was.old_values):
            old = _parse(value, bool, key)
        new = was.old_values.get(old, value) if not isinstance(old, list) else value
        return (f"{head}.{f.name}" if head else f.name), new
    return None


def override(config, key: str, value):
    """Return a copy of `config` with dotted `key` set to `value` (a string or a TOML value);
    a renamed field's old key or values are read as today's."""
    paths = field_paths(config)
    try:
        translated = _old_spelling(config, key, value)
    except ValueError:
        raise UserError(f"invalid value {value!r} for {key}: expected bool") from None
    if translated is not None:
        key, value = translated
    if key not in paths:
        raise _unknown_key(key, paths)
    try:
        parsed = _coerce(value, paths[key], key)
    except (ValueError, TypeError) as e:
        expected = NOT_FINITE if str(e) == NOT_FINITE else _type_name(paths[key])
        raise UserError(f"invalid value {value!r} for {key}: expected {expected}") from None
    if _is_seed(key) and parsed is not None:
        _check_seeds(key, parsed)
    head, _, rest = key.partition(".")
    if rest:  # the nested call parses the raw value again (a parsed tuple is not a string)
        return dataclasses.replace(config, **{head: override(getattr(config, head), rest, value)})
    return dataclasses.replace(config, **{head: parsed})


def apply_sets(config, assignments: list[str]):
    """Apply `--set key=value` strings in order."""
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r} is not key=value: write it like --set train.epochs=2")
        config = override(config, key.strip(), value.strip())
    return config


def _flatten(table: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def preset_names(protocol: str) -> list[str]:
    names = []
    for entry in resources.files("saliencylab.presets").iterdir():
        if entry.name.endswith(".toml"):
            if tomllib.loads(entry.read_text()).get("protocol") == protocol:
                names.append(entry.name[:-5])
    return sorted(names)


def load_preset(protocol: str, name: str, default):
    """The `default` config with preset `name` (presets/NAME.toml) applied on top."""
    names = preset_names(protocol)
    if name not in names:
        raise UserError(f"unknown preset {name!r} for {protocol}: choose one of {', '.join(names)}")
    table = tomllib.loads(resources.files("saliencylab.presets").joinpath(f"{name}.toml").read_text())
    table.pop("protocol")
    return from_dict(default, table)


def from_dict(default, table: dict):
    """`default` with every (nested) value of `table` applied: a preset, or a saved config."""
    config = default
    for key, value in _flatten(table).items():
        config = override(config, key, value)
    return config
