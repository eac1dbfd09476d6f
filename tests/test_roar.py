"""End-to-end ROAR on scikit-learn digits (ships with scikit-learn): tiny and fast."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tiny
import torch
from tiny import read_results, roar_config

from saliencylab import attribution, data
from saliencylab.protocols import roar
from saliencylab.protocols.roar import protocol as roar_protocol
from saliencylab.removal import RemovedImages, masks
from saliencylab.runs import runner
from saliencylab.runs.jobs import ExecOptions
from saliencylab.runs.runner import data_of


def test_roar_run_writes_results_report_and_plot(tmp_path):
    run_dir = roar.run(roar_config(), str(tmp_path), "tiny")
    rows = read_results(run_dir)
    assert [(r["method"], float(r["threshold"]), int(r["seed"])) for r in rows] == [
        ("reference", 0, 0), ("reference", 0, 1),
        ("gradient", 50, 0), ("gradient", 50, 1), ("random", 50, 0), ("random", 50, 1)]
    assert list(rows[0]) == ["method", "threshold", "seed", "accuracy"] + [
        f"precision_{c}" for c in range(10)]
    assert all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    report = (run_dir / "report.md").read_text()
    assert "Per-class precision (%): gradient" in report and "Per-class precision (%): random" in report
    assert (run_dir / "accuracy.png").stat().st_size > 1000
    assert sorted(p.name for p in (run_dir / "artifacts").iterdir()) == [
        "base_model.pt", "base_model.pt.sha256", "ranking-gradient.pt", "ranking-gradient.pt.sha256",
        "ranking-random.pt", "ranking-random.pt.sha256"]


def test_rankings_explain_the_base_models_prediction_and_mask_the_mean(tmp_path):
    config = roar_config()
    run_dir = roar.run(config, str(tmp_path), "tiny")
    ds = data_of(config, None)
    ranking = torch.load(run_dir / "artifacts" / "ranking-gradient.pt")
    assert ranking["train"].shape == (240, 64) and ranking["test"].shape == (120, 64)
    x = roar.remove_pixels(ds.x_test, ranking["test"], 50, config, ds.spec)[:]
    removed = (x != ds.x_test).flatten(1)
    top = ranking["test"][:, :32].long()
    # every changed pixel is among the top 50% and now holds the mean pixel value
    assert torch.all(removed.gather(1, top) | (ds.x_test.flatten(1).gather(1, top) ==
                                              ds.spec.mean_pixel().item()))
    assert removed.sum(1).le(32).all()
    assert torch.all(x.flatten(1).gather(1, top) == ds.spec.mean_pixel().item())


def test_interrupted_run_resumes_to_the_same_results(tmp_path, monkeypatch):
    config = roar_config()
    calls = []
    real_job = roar.ROAR.run_job

    def interrupted_after_two(*args, **kwargs):  # (config, ds, method, threshold, seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[2:5])
        return real_job(*args, **kwargs)

    monkeypatch.setattr(roar.ROAR, "run_job", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        roar.run(config, str(tmp_path / "a"), "tiny")
    run_dir = next((tmp_path / "a").iterdir())
    assert len(list((run_dir / "jobs").glob("*.json"))) == 2
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "results.csv").exists()

    calls.clear()
    monkeypatch.setattr(roar.ROAR, "run_job", lambda *a, **k: calls.append(a[2:5]) or real_job(*a, **k))
    roar.run(config, str(tmp_path / "a"), "tiny")
    assert len(calls) == 4  # only the unfinished jobs ran
    fresh = roar.run(config, str(tmp_path / "b"), "tiny")
    assert read_results(run_dir) == read_results(fresh)


def test_kill_9_loses_no_finished_job(tmp_path):
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "saliencylab.cli", "roar", "--preset", "roar-quick",
               "--out", str(out), "--workers", "1"] + [a for s in tiny.ROAR for a in ("--set", s)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("*/jobs/*.json")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.name: p.read_text() for p in out.glob("*/jobs/*.json")}
    assert finished, "no job finished before the kill"
    for text in finished.values():
        json.loads(text)  # whole files only
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"resuming: {len(finished)} of 6 jobs already finished" in result.stderr
    run_dir = next(out.iterdir())
    for name, text in finished.items():
        assert (run_dir / "jobs" / name).read_text() == text
    assert len(read_results(run_dir)) == 6


def test_parallel_workers_give_the_same_results_as_in_process(tmp_path):
    config = roar_config("seeds=0", "methods=random")
    serial = roar.run(config, str(tmp_path / "serial"), "tiny", options=ExecOptions(workers=1))
    parallel = roar.run(config, str(tmp_path / "parallel"), "tiny", options=ExecOptions(workers=2))
    assert read_results(serial) == read_results(parallel)


def test_kar_removes_the_least_important_pixels(tmp_path):
    config = roar_config("kar=true", "seeds=0", "methods=gradient")
    run_dir = roar.run(config, str(tmp_path), "tiny")
    assert "KAR (keep and retrain)" in (run_dir / "report.md").read_text()
    ds = data_of(config, None)
    ranking = torch.load(run_dir / "artifacts" / "ranking-gradient.pt")
    x = roar.remove_pixels(ds.x_test, ranking["test"], 50, config, ds.spec)[:]
    most_important = ranking["test"][:, :32].long()
    assert torch.equal(x.flatten(1).gather(1, most_important),
                       ds.x_test.flatten(1).gather(1, most_important))


def planted_block_data(n_train: int = 600, n_test: int = 200) -> data.Dataset:
    """8x8 noise images whose class is carried only by the 2x2 block at the top left: 255 for
    class 1, 0 for class 0. Every other pixel is uniform noise, the same for both classes."""
    g = torch.Generator().manual_seed(0)
    n = n_train + n_test
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    x[:, :, :2, :2] = (y * 255).to(torch.uint8).view(-1, 1, 1, 1)
    spec = data.DataSpec("planted-block", (1, 8, 8), ("dark", "bright"), (0.5,), (0.3,))
    return data.Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], spec)


class BlockFirst:
    """A ranking that knows the planted truth: the block's four pixels first."""

    def __init__(self, options):
        pass

    def attribute(self, model, x, target):
        maps = torch.zeros(x.shape[0], 1, *x.shape[2:])
        maps[:, :, :2, :2] = 1
        return maps


def test_roar_finds_the_planted_block_that_random_removal_leaves(tmp_path, monkeypatch):
    """Removing the 10% of pixels a ranking puts first (the block and two more) leaves nothing
    to learn from, so the retrained model is at chance; random 10% removal takes each of the
    block's pixels with probability 0.1 and leaves the class readable."""
    monkeypatch.setattr(attribution, "_REGISTERED", {})
    attribution.register("block_first", BlockFirst)
    planted = planted_block_data()
    monkeypatch.setattr(runner, "load_data", lambda *args: planted)
    config = roar_config("methods=block_first,random", "thresholds=0,10", "seeds=0",
                         "train.epochs=3", "n_train=600", "n_test=200")
    rows = read_results(roar.run(config, str(tmp_path), "planted"))
    accuracy = {r["method"]: float(r["accuracy"]) for r in rows}
    assert accuracy["reference"] > 0.95  # the block alone is learnable
    assert accuracy["random"] > 0.9
    assert accuracy["block_first"] < 0.65  # chance is 0.5
    assert accuracy["random"] - accuracy["block_first"] > 0.3


def test_batched_retraining_stores_each_job_as_its_unbatched_run_would(tmp_path):
    """issue 19: batch_models=on trains the six retrainings as one batched model; each job keeps
    its own record, the same as its unbatched run's (to fp32 tolerance), names how it ran, and
    a lost record is retrained alone on resume."""
    alone = read_results(roar.run(roar_config(), str(tmp_path), "alone"))
    batched_dir = roar.run(roar_config("batch_models=on"), str(tmp_path), "batched")
    batched = read_results(batched_dir)
    assert [r["method"] for r in batched] == [r["method"] for r in alone]
    for a, b in zip(alone, batched):
        assert abs(float(a["accuracy"]) - float(b["accuracy"])) <= 1 / 120 + 1e-9
    records = [json.loads(p.read_text()) for p in sorted((batched_dir / "jobs").glob("*.json"))]
    assert len(records) == 6
    assert {r["ran_on"] for r in records} == {"cpu, 6 models trained as one batched model"}
    assert "6 models trained as one batched model" in (batched_dir / "report.md").read_text()
    lost = sorted((batched_dir / "jobs").glob("*.json"))[0]
    lost.unlink()
    again = roar.run(roar_config("batch_models=on"), str(tmp_path), "batched")
    rerun = json.loads(lost.read_text())
    assert rerun["ran_on"] == "cpu"  # a batch of one trains alone, as its unbatched job did
    key = lambda r: (r["method"], float(r["threshold"]), int(r["seed"]))  # noqa: E731
    lost_key = key(rerun["record"])
    expected = [next(a for a in alone if key(a) == lost_key) if key(r) == lost_key else r
                for r in batched]
    assert read_results(again) == expected


@pytest.mark.parametrize("batched", ["off", "on"])
def test_a_roar_run_on_a_memory_mapped_folder_never_builds_a_modified_copy(
        digit_folder, tmp_path, monkeypatch, batched):
    """issue 16: a job's modified train and test sets are views over the memory-mapped clean
    images, made one batch at a time; no mask (hence no filled copy) of a whole split is built,
    for one (method, threshold) alone or for the several of a batched retraining."""
    config = roar_config(f"dataset=folder:{digit_folder}", "n_train=200", "n_test=60",
                         "train.batch_size=32", "thresholds=0,30,70", f"batch_models={batched}")
    masked_rows, views = [], []
    real_mask, real_data = masks.mask_first, roar_protocol.modified_data
    monkeypatch.setattr(masks, "mask_first",
                        lambda order, *a, **k: masked_rows.append(len(order)) or real_mask(order, *a, **k))
    monkeypatch.setattr(roar_protocol, "modified_data",
                        lambda *a, **k: views.append(real_data(*a, **k)) or views[-1])
    rows = read_results(roar.run(config, str(tmp_path), "folder"))
    assert len(rows) == 2 + 2 * 2 * 2 and all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    ds = data_of(config, None)
    modified = [x for pair in views for x in pair if x is not ds.x_train and x is not ds.x_test]
    # train and test of each job (2 methods x 2 thresholds x 2 seeds), or of each (method, t)
    assert len(modified) == (16 if batched == "off" else 8)
    assert all(isinstance(x, RemovedImages) for x in modified)
    assert {x.images.data_ptr() for x in modified} == {ds.x_train.data_ptr(), ds.x_test.data_ptr()}
    # a training batch (32) or one test set pass (60 images, `predict`'s batch is 1000), never
    # all 200 train images at once
    assert masked_rows and max(masked_rows) <= 60
