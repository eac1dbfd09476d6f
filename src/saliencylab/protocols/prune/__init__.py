"""Pruning vs explanation quality (Lukkien): iterative magnitude pruning with rewinding, and the
soft IoU of each level's heatmaps with the input."""

from ...runs import runner
from ...runs.jobs import ExecOptions
from .config import PruneConfig
from .protocol import PRUNING, background_noise, heatmaps

__all__ = ["PRUNING", "PruneConfig", "background_noise", "heatmaps", "run"]


def run(config: PruneConfig, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()):
    """Run (or resume) the pruning protocol with `config` and write its report; returns the run
    directory."""
    return runner.run(PRUNING, config, out, name, data_dir, options)
