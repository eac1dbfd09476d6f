"""Saliency-guided training: Traditional vs SGT vs SMOOT, with the accuracy-drop test."""

from ...runs import runner
from ...runs.jobs import ExecOptions
from .config import DropTestConfig, SaliencyTrainingConfig
from .protocol import SALIENCY_TRAINING
from .training import load_model

__all__ = ["DropTestConfig", "SALIENCY_TRAINING", "SaliencyTrainingConfig", "load_model", "run"]


def run(config: SaliencyTrainingConfig, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()):
    """Run (or resume) saliency-guided training with `config` and write its report; returns the
    run directory."""
    return runner.run(SALIENCY_TRAINING, config, out, name, data_dir, options)
