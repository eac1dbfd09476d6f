"""Output to a file or a pipe (issue 14, 3/K1/K2): no progress-bar frames, one line per stage,
each message on a line of its own, and each failed job named once."""

import subprocess
import sys

import tiny
from tiny import as_flags

from saliencylab import cli
from saliencylab.core import progress

ROAR = ["roar", "--preset", "roar-quick", "--workers", "1", "--device", "cpu"]


def test_a_run_logged_to_a_pipe_has_stage_lines_and_no_bar_frames(tmp_path):
    settings = [s for s in tiny.ROAR if not s.startswith("train.epochs")] + ["train.epochs=2"]
    command = [sys.executable, "-m", "saliencylab.cli", *ROAR, "--out", str(tmp_path)]
    result = subprocess.run(command + [a for s in settings for a in ("--set", s)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream and "\x1b" not in stream  # no tqdm frames, no cursor codes
    lines = result.stderr.splitlines()
    assert "base model: epoch 1/2, loss " in lines[0] and "base model: epoch 2/2, loss " in lines[1]
    assert any(line.startswith("gradient (train): ") for line in lines)  # an attribution stage
    assert sum(line.startswith("reference-t0-s0: epoch ") for line in lines) == 2
    assert any(line.startswith("reference-t0-s0: accuracy ") for line in lines)  # a job's result
    assert result.stdout.startswith("# ROAR")  # stdout holds the report alone


def test_a_failed_job_is_named_once_on_a_line_of_its_own(tmp_path, capsys):
    argv = ["sgt", "--preset", "smoot-quick", "--out", str(tmp_path), "--workers", "1",
            "--device", "cpu"] + as_flags(tiny.SGT + ["train.lr=1e9", "train.optimizer=sgd",
                                                       "objectives=sgt"])
    assert cli.main(argv) == 3
    lines = capsys.readouterr().err.splitlines()
    failed = [line for line in lines if "job sgt-s0 failed" in line]
    assert len(failed) == 1 and failed[0].startswith("saliencylab: job sgt-s0 failed: sgt-s0 ")
    assert lines[-1].startswith("saliencylab: 1 job(s) failed and stored no result (sgt-s0;")


def test_messages_are_plain_lines_without_a_terminal(capsys):
    with progress.Progress("stage", 3, unit="batch") as bar:
        bar.update(3)
        progress.warn("careful")
        bar.stage("3 batches")
    assert capsys.readouterr().err.splitlines() == ["saliencylab: warning: careful",
                                                    "stage: 3 batches [0 s]"]
    assert list(progress.steps("ab", "letters")) == ["a", "b"]
    assert [line.split(" [")[0] for line in capsys.readouterr().err.splitlines()] == [
        "letters: a done (1/2)", "letters: b done (2/2)"]
