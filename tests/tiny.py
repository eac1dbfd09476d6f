"""Runs small enough for a test (a few hundred images, one or two epochs), shared by the test
files: each protocol's `--set` values, the config they give, and a run's results.csv."""

import csv
from pathlib import Path

from saliencylab.protocols import evaluate, roar, sgt
from saliencylab.runs import config as cfg

ROAR = ["n_train=240", "n_test=120", "train.epochs=1", "train.lr=0.05", "seeds=0,1",
        "thresholds=0,50", "methods=random,gradient"]
SGT = ["n_train=160", "n_test=60", "train.epochs=1", "seeds=0", "eval.grid_images=2",
       "eval.percents=0,50,100", "eval.methods=gradient,random", "eval.fills=corner,uniform"]
EVALUATE = ["n_train=300", "n_test=40", "train.epochs=2", "seeds=0", "methods=gradient,random",
            "settings.mprt_images=20", "attribution.smoothgrad_samples=2"]


def roar_config(*extra):
    return cfg.apply_sets(cfg.load_preset("roar", "roar-quick", roar.RoarConfig()),
                          ROAR + list(extra))


def sgt_config(*extra):
    return cfg.apply_sets(cfg.load_preset("sgt", "smoot-quick", sgt.SaliencyTrainingConfig()),
                          SGT + list(extra))


def evaluate_config(*extra):
    return cfg.apply_sets(cfg.load_preset("evaluate", "evaluate-quick", evaluate.EvaluateConfig()),
                          EVALUATE + list(extra))


def as_flags(sets: list[str]) -> list[str]:
    """--set values as command-line arguments."""
    return [a for s in sets for a in ("--set", s)]


def read_results(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


# a ROAR command small enough for a test of the command line
QUICK_ROAR = ["roar", "--preset", "roar-quick", "--set", "n_train=100", "--set", "n_test=50",
              "--set", "train.epochs=1", "--set", "seeds=0", "--set", "thresholds=0,50",
              "--set", "methods=random", "--workers", "1"]
