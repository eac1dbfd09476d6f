"""Every file name of a run directory, in one place (as open_lth's `foundations/paths.py`).

    <out>/<name>-<config hash>/
        config.json                 the full config that the hash names
        jobs/<job key>.json         one record per finished job
        artifacts/<artifact>        what the driver stored for the jobs, each with <artifact>.sha256
        checkpoints/<job key>/      a running job's own progress (an SGT epoch, a pruning level),
                                    removed by the driver once the job's result is stored
        failed.json                 the jobs that failed in the last invocation, with tracebacks
        corrupt/                    files that failed verification, moved aside
        .lock                       held by the one process working on the run
        report.md, results.csv, *.png   the report

Job keys name the job files, so they are here too.
"""

from __future__ import annotations

from pathlib import Path


def run_dir(out: str | Path, name: str, config_hash: str) -> Path:
    return Path(out) / f"{name}-{config_hash}"


def config_file(run: Path) -> Path:
    return run / "config.json"


def jobs_dir(run: Path) -> Path:
    return run / "jobs"


def job_file(run: Path, key: str) -> Path:
    return jobs_dir(run) / f"{key}.json"


def artifacts_dir(run: Path) -> Path:
    return run / "artifacts"


def artifact(run: Path, name: str) -> Path:
    return artifacts_dir(run) / name


def checkpoints_dir(run: Path, key: str) -> Path:
    return run / "checkpoints" / key


def failures_file(run: Path) -> Path:
    return run / "failed.json"


def corrupt_dir(run: Path) -> Path:
    return run / "corrupt"


def lock_file(run: Path) -> Path:
    return run / ".lock"


def report_file(run: Path) -> Path:
    return run / "report.md"


def results_file(run: Path) -> Path:
    return run / "results.csv"


def figure(run: Path, name: str) -> Path:
    return run / f"{name}.png"


# job keys ------------------------------------------------------------------------------------
def seed_key(seed: int) -> str:
    """evaluate's and pruning's jobs: one per seed."""
    return f"seed{seed}"


def roar_key(method: str, threshold: float, seed: int) -> str:
    return f"{method}-t{threshold:g}-s{seed}"


def sgt_key(objective: str, seed: int) -> str:
    return f"{objective}-s{seed}"


# artifact names --------------------------------------------------------------------------------
BASE_MODEL = "base_model.pt"  # ROAR: the model the attributions explain


def ranking(method: str) -> str:
    """ROAR: every train and test image's pixel order under `method`."""
    return f"ranking-{method}.pt"


def sgt_model(objective: str, seed: int) -> str:
    """SGT/SMOOT: a trained model with its K (what `sgt-analysis --model-file` reads)."""
    return f"model-{sgt_key(objective, seed)}.pt"


def sgt_maps(objective: str, seed: int) -> str:
    """SGT/SMOOT: the saliency maps of the first test images, for the report's grid."""
    return f"maps-{sgt_key(objective, seed)}.pt"


def level(seed: int, level_number: int) -> str:
    """Pruning: one level of one seed's chain (model state, mask, metrics, example heatmaps)."""
    return f"seed{seed}/level{level_number:02d}.pt"


def rewind(seed: int) -> str:
    """Pruning: the weights one seed's chain rewinds to."""
    return f"seed{seed}/rewind.pt"


TRAINING_STATE = "training.pt"  # SGT/SMOOT checkpoint: the state after the last epoch
TRAINED_MODEL = "trained.pt"  # SGT/SMOOT checkpoint: the selected model, before its evaluation
