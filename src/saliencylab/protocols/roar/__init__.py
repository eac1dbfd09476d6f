"""ROAR, remove and retrain (Hooker et al. 2019), and its mirror KAR (docs/protocols.md §1)."""

from ...runs import runner
from ...runs.jobs import ExecOptions
from .config import REFERENCE, RoarConfig
from .protocol import ROAR, read_finished_run, read_run_config, remove_pixels

__all__ = ["REFERENCE", "ROAR", "RoarConfig", "read_finished_run", "read_run_config",
           "remove_pixels", "run"]


def run(config: RoarConfig, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()):
    """Run (or resume) ROAR with `config` and write its report; returns the run directory."""
    return runner.run(ROAR, config, out, name, data_dir, options)
