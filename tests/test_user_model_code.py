"""Your `--model` file is code that runs (issue 14 U7, C11): the README says so; one that calls
sys.exit is one line and exit 2, never a silent exit with its status; and a job raising
SystemExit fails as a job, the others kept."""

from pathlib import Path

import pytest
import tiny
from tiny import as_flags

from saliencylab import cli
from saliencylab.protocols import roar
from saliencylab.runs.executor import run_jobs
from saliencylab.runs.jobs import ExecOptions, Job
from saliencylab.runs.store import RunStore

EVALUATE = ["evaluate", "--preset", "evaluate-quick", "--workers", "1", "--device", "cpu"]


def evaluate_argv(tmp_path, model: str) -> list[str]:
    return (EVALUATE + ["--out", str(tmp_path / "runs"), "--model", model]
            + as_flags(tiny.EVALUATE))


@pytest.mark.parametrize("source, function, message", [
    (None, "sys:exit", "--model 'sys:exit' called sys.exit(None) instead of returning a "
                       "torch.nn.Module"),
    ("def build(shape, classes):\n    raise SystemExit(7)\n", "build",
     "called sys.exit(7) instead of returning a torch.nn.Module"),
    ("import sys\nsys.exit(5)\n", "build", "called sys.exit(5): a model file must define the "
                                           "function, not exit"),
    ("import torch\nclass Quits(torch.nn.Module):\n    def forward(self, x):\n"
     "        raise SystemExit(4)\n\ndef build():\n    return Quits()\n", "build",
     "fails on a batch of shape [2, 1, 8, 8] (SystemExit: 4)"),
])
def test_a_model_that_exits_is_one_line_and_exit_2(fails, tmp_path, source, function, message):
    model = function
    if source is not None:
        (tmp_path / "mine.py").write_text(source)
        model = f"{tmp_path / 'mine.py'}:{function}"
    fails(evaluate_argv(tmp_path, model), message)
    assert not (tmp_path / "runs").exists()


def test_a_model_file_exiting_on_import_is_caught_by_show_config_too(fails, tmp_path):
    (tmp_path / "mine.py").write_text("import sys\nsys.exit(5)\n")
    fails(evaluate_argv(tmp_path, f"{tmp_path / 'mine.py'}:build") + ["--show-config"],
          "called sys.exit(5)")


def test_the_readme_says_that_model_executes_the_file_and_it_does(capsys, tmp_path):
    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text().split())
    assert ("`--model` **executes that file**: it is imported, its top-level code run, when the "
            "config is validated (`--show-config` too), and again in every worker process") in readme
    marker = tmp_path / "ran"
    (tmp_path / "mine.py").write_text(f"open({str(marker)!r}, 'a').write('x')\n"
                                      "def build():\n    raise NotImplementedError\n")
    assert cli.main(evaluate_argv(tmp_path, f"{tmp_path / 'mine.py'}:build")
                    + ["--show-config"]) == 0
    assert marker.read_text() == "x"  # run once, at validation


def exits(x: int, *, progress: bool) -> dict:
    if x == 1:
        raise SystemExit(7)
    return {"x": x}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_raising_system_exit_fails_alone(tmp_path, workers):
    store = RunStore(tmp_path, "exit", roar.RoarConfig(device="cpu"))
    outcome = run_jobs(store, [Job(f"job-{x}", exits, (x,)) for x in range(3)],
                       options=ExecOptions(workers=workers), describe=str)
    assert {k: f.reason for k, f in outcome.failed.items()} == {"job-1": "SystemExit: 7"}
    assert sorted(r["x"] for r in store.records()) == [0, 2]
    store.close()
