"""Strict `--set` values and command-line numbers (issue 14 K5, K8, U4, U6, U10, D14)."""

import os

import numpy as np
import pytest
import torch
from tiny import QUICK_ROAR

from saliencylab import cli
from saliencylab.core.errors import UserError
from saliencylab.protocols.roar import RoarConfig
from saliencylab.runs import config as cfg


def test_an_unknown_key_suggests_the_closest_keys_in_one_short_line():
    with pytest.raises(UserError) as error:
        cfg.apply_sets(RoarConfig(), ["train.epoch=3"])
    assert str(error.value) == ("unknown config key 'train.epoch': did you mean train.epochs? "
                                "(`--show-config` lists every key)")
    with pytest.raises(UserError, match=r"'epochs': did you mean train.epochs\?"):
        cfg.apply_sets(RoarConfig(), ["epochs=3"])  # the last part alone
    with pytest.raises(UserError) as error:
        cfg.apply_sets(RoarConfig(), ["colour=blue"])
    assert str(error.value) == "unknown config key 'colour' (`--show-config` lists every key)"


@pytest.mark.parametrize("assignment", ["train.epochs=٣", "train.lr=٠.٥", "thresholds=0,٥٠",
                                        "train.epochs=３"])
def test_numbers_in_other_scripts_digits_are_rejected(assignment):
    key, _, value = assignment.partition("=")
    with pytest.raises(UserError, match=f"invalid value '{value}' for {key}: expected"):
        cfg.apply_sets(RoarConfig(), [assignment])


@pytest.mark.parametrize("argv", [["roar", "--workers", "٢"], ["train", "--epochs", "٣"],
                                  ["sgt-analysis", "--model-file", "m.pt", "--tolerance", "٠"]])
def test_command_line_numbers_in_other_scripts_digits_are_rejected(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and "invalid " in capsys.readouterr().err


@pytest.mark.parametrize("assignment, shown", [
    ("seeds=99999999999999999999999", "seeds must lie in [0, 4294967295]"),
    ("seeds=0,-1", "seeds must lie in [0, 4294967295] (seeds that torch and numpy both accept), "
                   "got -1"),
    ("base_seed=4294967296", "base_seed must lie in [0, 4294967295]"),
    ("attribution.seed=-3", "attribution.seed must lie in [0, 4294967295]"),
])
def test_seeds_out_of_range_are_one_line_before_any_run_directory(fails, tmp_path, assignment,
                                                                  shown):
    fails(QUICK_ROAR + ["--out", str(tmp_path), "--set", assignment], shown)
    assert not any(tmp_path.iterdir())


def test_every_seed_in_the_range_works_where_the_protocols_use_it():
    for seed in cfg.SEED_RANGE:
        torch.manual_seed(seed)
        torch.Generator().manual_seed(seed * 100003 + 99)  # saliency_training's epoch seeds
        np.random.default_rng(seed)
        np.random.RandomState(seed)


def test_a_typo_sized_epoch_count_is_rejected():
    config = cfg.apply_sets(RoarConfig(), ["train.epochs=1000000000"])
    with pytest.raises(UserError, match=r"train.epochs must lie in \[0, 10000\] \(the longest "
                                        r"preset trains 100\), got 1000000000"):
        config.validate()
    cfg.apply_sets(RoarConfig(), ["train.epochs=10000"]).validate()


def test_more_threads_per_job_than_cores_is_a_warning_and_the_run_goes_on(capsys, tmp_path):
    threads = (os.cpu_count() or 1) + 1
    argv = QUICK_ROAR + ["--out", str(tmp_path), "--set", f"threads_per_job={threads}"]
    assert cli.main(argv) == 0
    assert (f"saliencylab: warning: threads_per_job={threads} is more than this machine's "
            f"{threads - 1} cores: each job runs slower") in capsys.readouterr().err


@pytest.mark.parametrize("tolerance", ["-1", "nan", "inf", "1"])
def test_sgt_analysis_rejects_a_tolerance_outside_0_1(fails, tolerance):
    fails(["sgt-analysis", "--model-file", "missing.pt", "--tolerance", tolerance],
          "--tolerance must be a confidence difference in [0, 1)")
