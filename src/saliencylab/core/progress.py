"""Progress and messages: every line saliencylab writes while it works goes through here.

- `Progress` is a tqdm bar where someone watches (stderr is a terminal, or a Jupyter notebook),
  and elsewhere (a file, a pipe, CI) no bar at all, only the stage lines that `stage()` logs
  (one per epoch, per attribution pass, per job): no carriage returns, no escape codes.
- Messages go to the `saliencylab` logger (`logging`): job results and stage lines at INFO,
  warnings and failures at WARNING and ERROR. The command line sends it to stderr
  (`log_to_stderr`) through `tqdm.write`, so a message never lands on a bar's fragment; a
  program using saliencylab can silence or redirect that logger as any other.
"""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger("saliencylab")


def bars_shown() -> bool:
    """Whether progress bars are drawn: on a terminal, or in a notebook (tqdm.autonotebook's test)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel.zmqshell" in sys.modules


class _Handler(logging.Handler):
    """Each record as one line on the current stderr, written between the bars' redraws."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"saliencylab: {text}" if record.levelno >= logging.WARNING else text


def log_to_stderr() -> None:
    """Send the `saliencylab` logger's INFO and above to stderr, once (the command line, workers)."""
    if not any(isinstance(h, _Handler) for h in logger.handlers):
        handler = _Handler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # printed once, whatever the root logger does


def info(message: str) -> None:
    logger.info(message)


def warn(message: str) -> None:
    """One warning line: `saliencylab: warning: ...`."""
    logger.warning(f"warning: {message}")


def error(message: str) -> None:
    """One line about a failed job or an interruption: `saliencylab: ...`."""
    logger.error(message)


class Progress:
    """Counts the steps of one piece of work named `desc`; `stage(text)` marks a milestone
    (the bar's postfix where bars are shown, else one logged line `desc: text [N s]`).
    Disabled (`enabled=False`, as in worker processes), it shows and logs nothing."""

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "step",
                 enabled: bool = True, initial: int = 0, leave: bool = False,
                 unit_scale: bool = False):
        self.desc, self.enabled = desc, enabled
        self.started = time.perf_counter()
        self.bar = None
        if enabled and bars_shown():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                            unit_scale=unit_scale, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def stage(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.enabled:
            info(f"{self.desc}: {text} [{time.perf_counter() - self.started:.0f} s]")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def steps(items, desc: str, *, unit: str = "step", enabled: bool = True, each: bool = True):
    """Yield `items` one by one, counted on a `Progress`: each one done is a stage, or
    (`each=False`, for many small steps) only the whole."""
    items = list(items)
    with Progress(desc, len(items), unit=unit, enabled=enabled) as bar:
        for done, item in enumerate(items, 1):
            yield item
            bar.update()
            if each:
                bar.stage(f"{item} done ({done}/{len(items)})")
        if not each:
            plural = unit + ("es" if unit.endswith(("s", "ch", "sh")) else "s")
            bar.stage(f"{len(items)} {unit if len(items) == 1 else plural} done")
