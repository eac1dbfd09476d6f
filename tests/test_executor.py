"""The executor (issue 10 §2-§4, §6; issue 7 faults): failed jobs, results that do not depend on
--workers, workers that die with their parent, Ctrl-C that keeps what finishes, a killed
worker retried, a diverged training stopping only its own job."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import executor_jobs
import pytest
import tiny
import torch
from executor_jobs import maybe_diverge, square
from tiny import as_flags, read_results, roar_config

from saliencylab import cli
from saliencylab.core.contents import FRACTION
from saliencylab.protocols import roar
from saliencylab.runs.executor import run_jobs
from saliencylab.runs.jobs import ExecOptions, Job, JobOutput
from saliencylab.runs.store import Layout, RunStore, read_failures

HERE = Path(__file__).parent


def with_artifact(x: int, *, progress: bool, offset) -> JobOutput:
    return JobOutput({"x": x, "y": x + offset}, {f"a{x}.pt": torch.full((2,), x)})


def store_for(tmp_path, name="t"):
    return RunStore(tmp_path, name, roar.RoarConfig(device="cpu"))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_is_reported_in_one_line_and_the_others_are_kept(tmp_path, capsys, workers):
    store = store_for(tmp_path)
    jobs = [Job(f"job-{x}", maybe_diverge, (x,)) for x in range(4)]
    outcome = run_jobs(store, jobs, options=ExecOptions(workers=workers), describe=str)
    assert list(outcome.failed) == ["job-2"] and "lower train.lr" in outcome.failed["job-2"].reason
    assert sorted(r["x"] for r in store.records()) == [0, 1, 3]
    err = capsys.readouterr().err
    assert "saliencylab: job job-2 failed: job-2: training diverged" in err
    assert "failed.json" in os.listdir(store.dir)
    # the next invocation reruns only the failed job; once it succeeds the list is cleared
    jobs[2] = Job("job-2", square, (2,))
    outcome = run_jobs(store, jobs, options=ExecOptions(workers=workers), describe=str)
    assert outcome.finished == 1 and not outcome.failed
    assert not (store.dir / "failed.json").exists()
    store.close()


def test_shared_inputs_and_artifacts_reach_the_job_and_the_store(tmp_path):
    store = store_for(tmp_path)
    from functools import partial
    jobs = [Job(f"a-{x}", with_artifact, (x,), {"offset": "ten"}) for x in range(3)]
    run_jobs(store, jobs, shared={"ten": partial(int, "10")}, options=ExecOptions(workers=2),
             describe=str)
    assert [r["y"] for r in store.records()] == [10, 11, 12]
    assert torch.equal(store.load_tensor("a2.pt"), torch.full((2,), 2))
    store.close()


def test_every_job_runs_with_threads_per_job_threads_whatever_the_workers(tmp_path):
    for workers in (1, 2):
        store = store_for(tmp_path, f"w{workers}")
        run_jobs(store, [Job(f"j{x}", square, (x,)) for x in range(2)],
                 options=ExecOptions(workers=workers, threads_per_job=1), describe=str)
        assert {r["threads"] for r in store.records()} == {1}
        store.close()


def test_roar_results_do_not_depend_on_the_number_of_workers(tmp_path):
    config = roar_config()  # 2 methods x 2 thresholds x 2 seeds: 6 jobs
    serial = roar.run(config, str(tmp_path / "one"), "tiny", options=ExecOptions(workers=1))
    parallel = roar.run(config, str(tmp_path / "two"), "tiny", options=ExecOptions(workers=2))
    assert read_results(serial) == read_results(parallel)


def test_a_diverged_training_exits_3_and_the_report_lists_the_failed_jobs(tmp_path, capsys):
    argv = ["sgt", "--preset", "smoot-quick", "--out", str(tmp_path), "--workers", "1",
            "--device", "cpu"] + as_flags(tiny.SGT + ["train.lr=1e9", "train.optimizer=sgd",
                                                       "objectives=sgt,traditional"])
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "saliencylab: job sgt-s0 failed: sgt-s0 epoch 1/1: training diverged (the loss is not " \
           "finite at epoch 1" in err
    assert "lower train.lr (now 1e+09)" in err and "2 job(s) failed" in err
    report = (next(tmp_path.iterdir()) / "report.md").read_text()
    assert "## Failed jobs (2)" in report and "`traditional-s0`" in report


def test_a_diverged_roar_base_model_stops_the_run_in_one_line(tmp_path, capsys):
    argv = ["roar", "--preset", "roar-quick", "--out", str(tmp_path), "--workers", "1",
            "--device", "cpu"] + as_flags(tiny.ROAR + ["train.lr=1e9"])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("saliencylab: error:") == 1
    assert "base model: training diverged" in err and "lower train.lr" in err


# processes ---------------------------------------------------------------------------------------
POOL = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {here!r})
    from saliencylab.runs.executor import run_jobs
    from saliencylab.runs.jobs import ExecOptions, Job
    from saliencylab.protocols.roar import RoarConfig
    from saliencylab.runs.store import RunStore
    import executor_jobs
    store = RunStore(sys.argv[1], "pool", RoarConfig(device="cpu"))
    jobs = [Job(f"sleep-{{i}}", executor_jobs.sleeper, (sys.argv[1], i, float(sys.argv[2])))
            for i in range(int(sys.argv[3]))]
    try:
        run_jobs(store, jobs, options=ExecOptions(workers=2), describe=lambda r: "done")
    except KeyboardInterrupt:
        sys.exit(130)
""").format(here=str(HERE))


def start_pool(tmp_path, seconds: float, jobs: int):
    process = subprocess.Popen([sys.executable, "-c", POOL, str(tmp_path), str(seconds), str(jobs)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=executor_jobs.ctrl_c_as_in_a_shell)
    deadline = time.time() + 60
    while len(list(tmp_path.glob("pid-*"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in tmp_path.glob("pid-*")]
    assert len(pids) == 2, "the workers did not start"
    return process, pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split()[2] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_their_parent_dies(tmp_path, sig):
    process, pids = start_pool(tmp_path, seconds=60, jobs=2)
    os.kill(process.pid, sig)
    process.wait()
    deadline = time.time() + 10
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids), "orphaned workers are still running"


def test_ctrl_c_with_workers_saves_the_jobs_that_finish(tmp_path):
    process, _ = start_pool(tmp_path, seconds=3, jobs=4)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    # one job per worker is running (none queued ahead, issue 14 K3); those finish and are saved
    running = int(err.split("saving ")[1].split(" running job(s) as they finish")[0])
    finished = sorted(p.stem for p in (next(tmp_path.glob("pool-*")) / "jobs").glob("*.json"))
    assert running == 2 and finished == ["sleep-0", "sleep-1"]


def test_a_worker_killed_mid_job_is_retried_and_every_job_is_stored_once(tmp_path, capsys):
    import executor_jobs

    store = RunStore(tmp_path, "kill", roar.RoarConfig(device="cpu"))
    jobs = [Job(f"k{i}", executor_jobs.dies_once, (str(tmp_path), i)) for i in range(3)]
    outcome = run_jobs(store, jobs, options=ExecOptions(workers=2), describe=str)
    assert not outcome.failed and sorted(r["i"] for r in store.records()) == [0, 1, 2]
    assert "a worker process died; retrying" in capsys.readouterr().err
    assert (tmp_path / "died-1").exists()
    store.close()


def nan_record(x: int, *, progress: bool) -> dict:
    return {"x": x, "accuracy": float("nan") if x == 1 else 0.5}


def test_a_record_the_store_refuses_fails_its_job_alone(tmp_path, capsys):
    """A job whose result the store would refuse to read back (here a NaN accuracy, as a model
    giving NaN logits makes) fails in one line; the other jobs are stored (issue 14)."""
    specs = {f"job-{x}": {"x": x, "accuracy": FRACTION} for x in range(3)}
    store = RunStore(tmp_path, "t", roar.RoarConfig(device="cpu"), Layout(specs))
    jobs = [Job(f"job-{x}", nan_record, (x,)) for x in range(3)]
    outcome = run_jobs(store, jobs, describe=str)
    assert list(outcome.failed) == ["job-1"] and "accuracy" in outcome.failed["job-1"].reason
    assert sorted(r["x"] for r in store.records()) == [0, 2]
    assert "Traceback" not in capsys.readouterr().err
    store.close()


def buggy(x: int, *, progress: bool) -> dict:
    return {"x": [1, 2][x]}  # an IndexError for x = 5: a bug of ours, not bad input


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_json_keeps_the_whole_traceback_of_a_failing_job(tmp_path, workers):
    """The terminal gets one line; failed.json keeps the traceback, down to the failing line,
    from a worker process too (issue 15)."""
    store = store_for(tmp_path)
    run_jobs(store, [Job("job-0", buggy, (0,)), Job("job-5", buggy, (5,))],
             options=ExecOptions(workers=workers), describe=str)
    failed = json.loads((store.dir / "failed.json").read_text())
    assert list(failed) == ["job-5"] and failed["job-5"]["reason"] == "IndexError: list index out of range"
    trace = failed["job-5"]["traceback"]
    assert "Traceback" in trace and "in buggy" in trace and 'return {"x": [1, 2][x]}' in trace
    assert read_failures(store.dir) == {"job-5": "IndexError: list index out of range"}
    store.close()


def test_debug_runs_here_and_raises_the_first_failure(tmp_path):
    store = store_for(tmp_path)
    jobs = [Job("job-0", buggy, (0,)), Job("job-5", buggy, (5,)), Job("job-1", buggy, (1,))]
    with pytest.raises(IndexError):
        run_jobs(store, jobs, options=ExecOptions(workers=2, debug=True), describe=str)
    assert [r["x"] for r in store.records()] == [1]  # job-0 stored, job-1 never started
    assert "job-5" in json.loads((store.dir / "failed.json").read_text())
    store.close()


MODEL_WITH_A_BUG = """
import torch


class Buggy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        if self.training:
            raise RuntimeError("a planted bug")
        return self.fc(x.flatten(1))


def build():
    return Buggy()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_debug_on_the_command_line_shows_the_traceback(tmp_path, debug):
    """A bug inside a job: one line and exit 3, its traceback in failed.json; with `--debug`
    the job runs in the driver and its traceback reaches the terminal."""
    (tmp_path / "buggy.py").write_text(MODEL_WITH_A_BUG)
    command = [sys.executable, "-m", "saliencylab.cli", "evaluate", "--preset", "evaluate-quick",
               "--model", f"{tmp_path / 'buggy.py'}:build", "--out", str(tmp_path / "runs"),
               "--workers", "2", "--set", "seeds=0,1", "--set", "n_test=20",
               "--set", "methods=gradient", "--set", "metrics=road"] + (["--debug"] if debug else [])
    result = subprocess.run(command, capture_output=True, text=True)
    failed = json.loads(next((tmp_path / "runs").iterdir()).joinpath("failed.json").read_text())
    assert "a planted bug" in failed["seed0"]["traceback"] and "in forward" in failed["seed0"]["traceback"]
    if debug:
        assert result.returncode == 1 and list(failed) == ["seed0"]
        assert "Traceback" in result.stderr and "RuntimeError: a planted bug" in result.stderr
    else:
        assert result.returncode == 3 and sorted(failed) == ["seed0", "seed1"]
        assert "Traceback" not in result.stderr
        assert "job seed0 failed: RuntimeError: a planted bug" in result.stderr
