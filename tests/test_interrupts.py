"""Ctrl-C with worker processes (issue 14 C8, K3), sent to the process group as a terminal does:
while the workers still import their modules, and twice while they run."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import executor_jobs

HERE = Path(__file__).parent

# A driver of 4 jobs on 2 workers. A spawned worker first runs this file as __mp_main__: there
# it sleeps `delay` seconds, standing for the seconds a real worker spends importing torch.
DRIVER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {here!r})
    folder, seconds, delay = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    if __name__ == "__mp_main__":
        open(os.path.join(folder, f"importing-{{os.getpid()}}"), "w").close()
        time.sleep(delay)
    if __name__ == "__main__":
        from saliencylab.core import progress
        from saliencylab.runs.executor import run_jobs
        from saliencylab.runs.jobs import ExecOptions, Job
        from saliencylab.protocols.roar import RoarConfig
        from saliencylab.runs.store import RunStore
        import executor_jobs

        progress.log_to_stderr()
        store = RunStore(folder, "pool", RoarConfig(device="cpu"))
        jobs = [Job(f"sleep-{{i}}", executor_jobs.sleeper, (folder, i, seconds)) for i in range(4)]
        try:
            run_jobs(store, jobs, options=ExecOptions(workers=2), describe=lambda r: "done")
        except KeyboardInterrupt:
            sys.exit(130)
""").format(here=str(HERE))


def start(tmp_path, seconds: float, delay: float, marker: str) -> subprocess.Popen:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(seconds), str(delay)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True,
                               preexec_fn=executor_jobs.ctrl_c_as_in_a_shell)
    deadline = time.time() + 60
    while len(list(tmp_path.glob(marker))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.glob(marker))) == 2, "the workers did not start"
    return process


def ctrl_c(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)


def test_ctrl_c_while_the_workers_import_fails_no_job_and_prints_no_traceback(tmp_path):
    process = start(tmp_path, seconds=0.2, delay=3, marker="importing-*")
    ctrl_c(process)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "saving 2 running job(s)" in err
    run = next(tmp_path.glob("pool-*"))
    assert not (run / "failed.json").exists()
    assert sorted(p.stem for p in (run / "jobs").glob("*.json")) == ["sleep-0", "sleep-1"]


def test_a_second_ctrl_c_stops_at_once_counting_only_the_running_jobs(tmp_path):
    process = start(tmp_path, seconds=60, delay=0, marker="pid-*")
    ctrl_c(process)
    time.sleep(1)
    ctrl_c(process)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "saving 2 running job(s)" in err  # 2 workers: not the job the pool queued ahead
    assert "Traceback" not in err and "leaked" not in err, err
