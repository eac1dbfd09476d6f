"""What a stored job record or artifact must hold, and `problem`, the one check of a value
against that description, which every writer and reader of a run directory calls (store.py).

A spec describes a value:
- a dict {key: spec}: a dict with exactly these keys, each value matching its spec (a record's
  complete set of fields, seeds or methods);
- a list or tuple of specs: a list or tuple of that length, item by item;
- a str, int, float, bool or None: that very value (a key field: a ROAR record's method, an
  evaluate record's seed);
- a type (str, dict, object, ...): any instance of it;
- Number(lo, hi): a finite number in [lo, hi], not a bool (`integer`: an int; `nan`: NaN too,
  as Traditional's K);
- Items(spec, length): a list or tuple of `length` items (any number if None), each one spec;
- Tensor(shape, dtypes, lo, hi): a dense torch tensor of that shape (None: any size along that
  dimension) and one of `dtypes`, its values finite and within [lo, hi];
- Either(*specs): a value matching one of them.
A verified sha256 proves only that the bytes were not changed by accident; these specs say
whether the content is what its job makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import a_type

TOLERANCE = 1e-6  # of a bound's magnitude (at least 1): rounding in a trapezoid stays in range


def problem(value, spec, where: str = "") -> str | None:
    """Where and how `value` differs from `spec`, in a few words, or None if it matches."""
    name = where or "the content"
    if isinstance(spec, (Number, Items, Tensor, Either)):
        return spec.problem(value, name)
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{name} is {brief(value)}, not a dict"
        for key, item in spec.items():
            if key not in value:
                return f"{_child(where, key)} is missing"
            found = problem(value[key], item, _child(where, key))
            if found:
                return found
        extra = [key for key in value if key not in spec]
        return f"{name} has an unexpected entry {brief(extra[0])}" if extra else None
    if isinstance(spec, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(spec):
            return f"{name} is {brief(value)}, not a list of {len(spec)} items"
        return _first(problem(v, s, f"{name}[{i}]") for i, (v, s) in enumerate(zip(value, spec)))
    if isinstance(spec, type):
        ok = isinstance(value, spec) and not (spec is int and isinstance(value, bool))
        return None if ok else f"{name} is {brief(value)}, not a {spec.__name__}"
    if _same(value, spec):
        return None
    return f"{name} is {brief(value)}, not {brief(spec)}"


@dataclass(frozen=True)
class Number:
    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    nan: bool = False

    def problem(self, value, name: str) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return f"{name} is {brief(value)}, not {self._text()}"
        if self.nan and math.isnan(value):
            return None
        if not math.isfinite(value) or not self._within(value):
            return f"{name} is {brief(value)}, not {self._text()}"
        return None

    def _within(self, value) -> bool:
        low = self.lo is None or value >= self.lo - TOLERANCE * max(1, abs(self.lo))
        return low and (self.hi is None or value <= self.hi + TOLERANCE * max(1, abs(self.hi)))

    def _text(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        if self.lo is not None and self.hi is not None:
            return f"{kind} in [{self.lo:g}, {self.hi:g}]"
        if self.lo is not None:
            return f"{kind} >= {self.lo:g}"
        return kind


FRACTION = Number(0, 1)  # an accuracy, a precision, a density


@dataclass(frozen=True)
class Items:
    item: object
    length: int | None = None

    def problem(self, value, name: str) -> str | None:
        if not isinstance(value, (list, tuple)):
            return f"{name} is {brief(value)}, not a list"
        if self.length is not None and len(value) != self.length:
            return f"{name} has {len(value)} items, not {self.length}"
        return _first(problem(v, self.item, f"{name}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True)
class Tensor:
    shape: tuple
    dtypes: tuple = ()  # empty: any dtype
    lo: float | None = None
    hi: float | None = None

    def problem(self, value, name: str) -> str | None:
        if not torch.is_tensor(value) or value.layout != torch.strided:
            return f"{name} is {brief(value)}, not a tensor"
        shape = tuple(value.shape)
        if len(shape) != len(self.shape) or any(s is not None and s != v
                                                for s, v in zip(self.shape, shape)):
            wanted = "(" + ", ".join("N" if s is None else str(s) for s in self.shape) + ")"
            return f"{name} has shape {shape}, not {wanted}"
        if self.dtypes and value.dtype not in self.dtypes:
            return f"{name} is a {value.dtype} tensor, not {' or '.join(map(str, self.dtypes))}"
        if value.is_floating_point() and not all(torch.isfinite(rows).all() for rows in
                                                 row_chunks(value)):
            return f"{name} holds values that are not finite"
        if value.numel() and value.dtype != torch.bool and (
                (self.lo is not None and value.min() < self.lo)
                or (self.hi is not None and value.max() > self.hi)):
            return f"{name} holds values outside [{self.lo:g}, {self.hi:g}]"
        return None


CHUNK = 1 << 22  # elements per slice of a checked tensor: the check's temporaries stay small


def row_chunks(value: torch.Tensor):
    """`value` in slices along its first dimension of about CHUNK elements each (a tensor
    memory-mapped from disk is then read piece by piece, with no temporary of its size)."""
    if value.dim() == 0:
        yield value
        return
    rows = max(1, CHUNK // max(1, value[0].numel()))
    for i in range(0, len(value), rows):
        yield value[i:i + rows]


@dataclass(frozen=True)
class Either:
    options: tuple

    def __init__(self, *options):
        object.__setattr__(self, "options", options)

    def problem(self, value, name: str) -> str | None:
        found = [problem(value, option, name) for option in self.options]
        return None if None in found else found[-1]


def tensors_like(tensors: dict) -> dict:
    """The spec of a dict of tensors with these keys, shapes and dtypes: a state dict that loads
    into the model that `tensors` came from."""
    return {key: Tensor(tuple(t.shape), (t.dtype,)) for key, t in tensors.items()}


def model_state_spec(build) -> dict:
    """`tensors_like` the state dict of the model that `build()` makes, built without
    touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        return tensors_like(build().state_dict())


def _same(value, literal) -> bool:
    if isinstance(literal, bool) or literal is None or isinstance(literal, str):
        return type(value) is type(literal) and value == literal
    if isinstance(literal, (int, float)):
        return not isinstance(value, bool) and isinstance(value, (int, float)) and value == literal
    return value == literal


def _child(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def _first(problems):
    return next((p for p in problems if p), None)


def brief(value) -> str:
    """A short description of a value: never more than a few characters of a file's content."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 24 else repr(value[:21] + "...")
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"{a_type(value)} of {len(value)} items"
    return a_type(value)
