"""Checks of configuration values (each failure a one-line UserError naming the key), and the
fields of a config that were renamed."""

import dataclasses

from .errors import UserError


def check(ok: bool, message: str) -> None:
    """Raise a one-line UserError for an invalid config value unless `ok`."""
    if not ok:
        raise UserError(f"invalid config: {message}")


def check_choice(value, choices, what: str) -> None:
    """Raise a one-line UserError unless `value` is one of `choices`, listing them."""
    check(value in choices, f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


def check_unique(values, what: str) -> None:
    """Reject repeated entries, which would compute the same job twice."""
    repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
    check(not repeated, f"{what} lists {', '.join(map(str, repeated))} more than once")


def check_count(n: int | None, what: str) -> None:
    """`n` images: None (all of them) or at least one."""
    check(n is None or n >= 1, f"{what} must be at least 1, or none for all images; got {n}")


def check_percents(percents, what: str, closed: bool) -> None:
    """At least two percentages, strictly increasing, in [0, 100] (`closed`) or (0, 100)."""
    inside = lambda p: 0 <= p <= 100 if closed else 0 < p < 100  # noqa: E731
    check(isinstance(percents, (tuple, list)) and len(percents) >= 2
          and all(isinstance(p, (int, float)) and not isinstance(p, bool) and inside(p)
                  for p in percents)
          and all(a < b for a, b in zip(percents, percents[1:])),
          f"{what} must be at least two percentages in {'[0, 100]' if closed else '(0, 100)'}, "
          f"strictly increasing (no repeats), got {percents!r}")


@dataclasses.dataclass(frozen=True)
class Renamed:
    """How a config field was spelled before: its key, and its values (old -> new; empty when
    only the key changed)."""

    old_key: str
    old_values: dict


def renamed(default, old_key: str, old_values: dict | None = None):
    """A dataclass field once called `old_key`, its values then spelled as the keys of
    `old_values`: the old spelling is still read (--set, presets, saved configs), and the run
    hash is computed from the old spelling, so that runs made before the rename resume."""
    return dataclasses.field(default=default,
                             metadata={"renamed": Renamed(old_key, dict(old_values or {}))})


def added(default):
    """A dataclass field added after runs were made: the run hash leaves it out while it holds
    `default` (what those runs did), so that they resume."""
    return dataclasses.field(default=default, metadata={"added": default})
