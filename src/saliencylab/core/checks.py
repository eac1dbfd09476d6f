"""Checks of configuration values: each failure is a one-line UserError naming the key."""

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
