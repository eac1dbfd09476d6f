"""Frozen config dataclasses: `--set key=value` overrides, presets, and the hash that names a run.

Habit from open_lth: one frozen dataclass per concern, and a hash of the whole config names
the run directory, so the same config always resumes the same run.
"""

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from importlib import resources

from .errors import UserError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How one model is trained. The learning rate is multiplied by `lr_decay` at each milestone epoch."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adadelta
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_decay: float = 0.1
    precision: str = "fp32"  # fp32 | bf16 (CPU autocast)

    def validate(self) -> None:
        check(self.epochs >= 0, "train.epochs must be >= 0")
        check(self.batch_size >= 1, "train.batch_size must be >= 1")
        check(self.optimizer in ("sgd", "adadelta"), "train.optimizer must be sgd or adadelta")
        check(self.lr > 0, "train.lr must be > 0")
        check(self.precision in ("fp32", "bf16"), "train.precision must be fp32 or bf16")
        check(all(0 < m <= self.epochs for m in self.lr_milestones),
               "train.lr_milestones must be epochs within 1..train.epochs")


def check(ok: bool, message: str) -> None:
    """Raise a one-line UserError for an invalid config value unless `ok`."""
    if not ok:
        raise UserError(f"invalid config: {message}")


def check_choice(value, choices, what: str) -> None:
    """Raise a one-line UserError unless `value` is one of `choices`, listing them."""
    check(value in choices, f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_hash(config) -> str:
    """A short, stable hash of every config field (nested ones included)."""
    text = json.dumps(to_dict(config), sort_keys=True)
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
    return kind(text)


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
    return value


def override(config, key: str, value):
    """Return a copy of `config` with dotted `key` set to `value` (a string or a TOML value)."""
    paths = field_paths(config)
    if key not in paths:
        raise UserError(f"unknown config key {key!r}: valid keys are {', '.join(sorted(paths))}")
    try:
        parsed = _coerce(value, paths[key], key)
    except (ValueError, TypeError):
        raise UserError(f"invalid value {value!r} for {key}: expected {_type_name(paths[key])}") from None
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
