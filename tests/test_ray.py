"""--executor ray on a local Ray with 2 CPUs (issue 7): the same results as the local executor,
a killed worker retried, an interrupted driver resumed, a failing job reported, the extra named."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install 'saliencylab[ray]'")

import executor_jobs  # noqa: E402
import tiny  # noqa: E402
from tiny import as_flags, read_results, roar_config  # noqa: E402

from saliencylab.protocols import roar  # noqa: E402
from saliencylab.runs.executor import run_jobs
from saliencylab.runs.jobs import ExecOptions, Job
from saliencylab.runs.store import RunStore

HERE = Path(__file__).parent
RAY = ExecOptions(executor="ray", max_retries=3)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    python_path = os.pathsep.join([str(HERE)] + sys.path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": python_path}})
    yield
    ray.shutdown()


def test_ray_gives_the_same_results_csv_as_the_local_executor(tmp_path):
    config = roar_config()
    local = roar.run(config, str(tmp_path / "local"), "tiny", options=ExecOptions(workers=2))
    on_ray = roar.run(config, str(tmp_path / "ray"), "tiny", options=RAY)
    assert read_results(on_ray) == read_results(local)


def test_a_ray_worker_killed_mid_job_is_retried_and_every_job_is_stored_once(tmp_path):
    import executor_jobs

    store = RunStore(tmp_path, "kill", roar.RoarConfig(device="cpu"))
    jobs = [Job(f"k{i}", executor_jobs.dies_once, (str(tmp_path), i)) for i in range(3)]
    outcome = run_jobs(store, jobs, options=RAY, describe=str)
    assert not outcome.failed and (tmp_path / "died-1").exists()
    assert sorted(p.name for p in (store.dir / "jobs").iterdir()) == ["k0.json", "k1.json", "k2.json"]
    store.close()


def test_a_failing_job_on_ray_is_one_line_and_the_others_are_kept(tmp_path):
    store = RunStore(tmp_path, "fail", roar.RoarConfig(device="cpu"))
    outcome = run_jobs(store, [Job(f"job-{x}", executor_jobs.maybe_diverge, (x,)) for x in range(4)],
                       options=RAY, describe=str)
    assert list(outcome.failed) == ["job-2"]
    assert outcome.failed["job-2"].reason.startswith("job-2: training diverged")
    assert sorted(r["x"] for r in store.records()) == [0, 1, 3]
    store.close()


def test_an_interrupted_ray_driver_resumes_and_skips_the_finished_jobs(tmp_path):
    command = [sys.executable, "-m", "saliencylab.cli", "roar", "--preset", "roar-quick",
               "--executor", "ray", "--device", "cpu", "--out", str(tmp_path)]
    command += as_flags(tiny.ROAR)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300  # a new driver starts its own Ray workers: slow on a busy machine
    while not list(tmp_path.glob("*/jobs/*.json")) and time.time() < deadline:
        time.sleep(0.1)
    driver.kill()
    driver.wait()
    finished = len(list(tmp_path.glob("*/jobs/*.json")))
    assert 1 <= finished
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert f"resuming: {finished} of 6 jobs already finished" in result.stderr
    assert len(list(tmp_path.glob("*/jobs/*.json"))) == 6


def test_asking_for_ray_without_it_names_the_extra(monkeypatch):
    from saliencylab.core.errors import UserError
    from saliencylab.runs import ray_cluster

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError, match=r"needs Ray: pip install 'saliencylab\[ray\]'"):
        ray_cluster.connect(None)


def test_an_unreachable_cluster_is_one_line_in_seconds_and_leaves_no_run_directory(tmp_path):
    command = [sys.executable, "-m", "saliencylab.cli", "evaluate", "--preset", "evaluate-quick",
               "--executor", "ray", "--ray-address", "127.0.0.1:1", "--out", str(tmp_path / "runs")]
    started = time.time()
    result = subprocess.run(command + as_flags(tiny.EVALUATE), capture_output=True,
                            text=True, timeout=60)  # it once retried for many minutes
    assert result.returncode == 2 and time.time() - started < 30
    assert result.stderr.strip().splitlines() == [
        "saliencylab: error: cannot reach the Ray cluster at 127.0.0.1:1 (Connection refused); "
        "start it with `ray start --head`, or fix --ray-address"]
    assert not (tmp_path / "runs").exists()


def test_a_ray_address_that_is_not_host_port_is_one_line():
    from saliencylab.core.errors import UserError
    from saliencylab.runs import ray_cluster

    with pytest.raises(UserError, match=r"--ray-address 'head-node' is not host:port"):
        ray_cluster.probe("head-node")


def test_rays_own_lines_carry_no_colour_codes_in_a_log(monkeypatch):
    from saliencylab.runs import ray_cluster

    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    ray_cluster.connect(None)  # stderr is not a terminal here
    assert os.environ["RAY_COLOR_PREFIX"] == "0"  # ray/_private/worker.py prints "(raylet)" plain


DRIVER = """
import time
from saliencylab.runs.ray_cluster import connect
connect(None)
print("ready", flush=True)
time.sleep(600)
"""


def test_the_local_ray_of_a_killed_driver_dies_with_it():
    from saliencylab.runs.ray_cluster import _ray_descendants

    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    assert driver.stdout.readline().strip() == "ready"
    ray_processes = _ray_descendants(driver.pid)
    assert len(ray_processes) >= 3  # gcs_server, raylet, its agents, ...
    driver.kill()
    driver.wait()

    def alive(target: str) -> bool:
        pid, start = target.split(":")
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return fields[19] == start and fields[0] != "Z"

    deadline = time.time() + 15  # Ray's agents alone took 66-120 s
    while any(map(alive, ray_processes)) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, ray_processes)), "Ray processes outlived their driver"
