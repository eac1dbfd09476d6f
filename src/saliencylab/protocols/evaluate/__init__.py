"""`saliencylab evaluate`: every metric of every method on one model, in one report."""

from ...runs import runner
from ...runs.jobs import ExecOptions
from .config import DEFAULT_METHODS, EvaluateConfig
from .protocol import EVALUATE

__all__ = ["DEFAULT_METHODS", "EVALUATE", "EvaluateConfig", "run"]


def run(config: EvaluateConfig, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()):
    """Run (or resume) the evaluation with `config` and write its report; returns the run
    directory."""
    return runner.run(EVALUATE, config, out, name, data_dir, options)
