"""`saliencylab evaluate` and `saliencylab.evaluate(...)`: one report of every metric for every
method, bring-your-own models and methods, ROAR read from an existing run."""

import csv
import json
import textwrap
from pathlib import Path

import pytest
import torch

import saliencylab
from saliencylab import attribution, cli, data, models
from saliencylab import config as cfg
from saliencylab.config import TrainConfig
from saliencylab.protocols import evaluate as ev
from saliencylab.protocols import roar
from saliencylab.training import train

from damage import DROP, copy_run, edit_record, into_a_directory

TINY = ["n_train=300", "n_test=40", "train.epochs=2", "seeds=0", "methods=gradient,random",
        "settings.mprt_images=20", "attribution.smoothgrad_samples=2"]


def tiny_config(*extra):
    return cfg.apply_sets(cfg.load_preset("evaluate", "evaluate-quick", ev.EvaluateConfig()),
                          TINY + list(extra))


def test_the_report_has_the_table_the_agreement_the_curves_and_a_tidy_csv(tmp_path):
    run_dir = ev.run(tiny_config(), str(tmp_path), "tiny")
    rows = list(csv.DictReader(open(run_dir / "results.csv")))
    assert list(rows[0]) == ["method", "metric", "seed", "value"]
    metrics = ["road_morf", "road_lerf", "road_gap", "deletion", "insertion", "mprt", "accuracy_drop"]
    assert {(r["method"], r["metric"]) for r in rows} == {(m, x) for m in ("gradient", "random")
                                                          for x in metrics}
    value = {(r["method"], r["metric"]): float(r["value"]) for r in rows}
    assert value["random", "mprt"] == pytest.approx(1.0)  # a map that ignores the model
    assert value["gradient", "mprt"] < 0.9
    assert value["gradient", "road_gap"] == pytest.approx(
        value["gradient", "road_lerf"] - value["gradient", "road_morf"])
    report = (run_dir / "report.md").read_text()
    assert "| method | ROAD MoRF AUC ↓ | ROAD LeRF AUC ↑ |" in report
    assert "## Do the metrics agree?" in report and "| road_morf | road_lerf |" in report
    for png in ("road", "deletion", "insertion", "accuracy_drop", "mprt"):
        assert (run_dir / f"{png}.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def roar_dir(tmp_path_factory):
    """A finished ROAR run of digits/lenet, one seed."""
    from test_roar import tiny_config as roar_config

    return roar.run(roar_config("seeds=0"), str(tmp_path_factory.mktemp("roar")), "tiny")


def test_roar_is_read_from_an_existing_run_of_the_same_data_and_model(tmp_path, roar_dir):
    config = tiny_config("metrics=road,roar", f"roar_run={roar_dir}")
    run_dir = ev.run(config, str(tmp_path / "ev"), "tiny")
    rows = [r for r in csv.DictReader(open(run_dir / "results.csv")) if r["metric"] == "roar"]
    ours = {r["method"]: float(r["value"]) for r in rows}
    theirs = list(csv.DictReader(open(roar_dir / "results.csv")))
    acc = {(r["method"], float(r["threshold"])): 100 * float(r["accuracy"]) for r in theirs}
    # thresholds 0 and 50%: one trapezoid over x in [0, 0.5]
    assert ours["gradient"] == pytest.approx(0.5 * (acc["reference", 0] + acc["gradient", 50]) / 2)
    other = tiny_config("metrics=roar", f"roar_run={roar_dir}", "model=tiny_cnn")
    with pytest.raises(Exception, match="ROAR is read only for the same data and model"):
        ev.run(other, str(tmp_path / "ev2"), "tiny")


USER_MODEL = textwrap.dedent("""
    import torch
    from torch import nn

    def build(shape, classes):
        c, h, w = shape
        return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * h * w, classes))
""")


def test_bring_your_own_model_from_a_file_with_its_weights(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(USER_MODEL)
    spec_name = f"{tmp_path / 'mine.py'}:build"
    ds = data.load_dataset("digits").subset(300, 40)
    model = models.build_model(spec_name, ds.spec.shape, 10)
    train(model, ds.x_train, ds.y_train, ds.spec, TrainConfig(epochs=3, batch_size=32, lr=0.05),
          seed=0, progress=False)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    argv = ["evaluate", "--preset", "evaluate-quick", "--out", str(tmp_path / "runs"), "--workers",
            "1", "--model", spec_name, "--model-file", str(tmp_path / "weights.pt"),
            "--set", "metrics=road"] + [a for s in TINY for a in ("--set", s)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "with the weights in" in out and "| gradient |" in out


@pytest.mark.parametrize("spec, message", [
    ("nosuchmodule:build", "cannot import nosuchmodule"),
    ("saliencylab.models:nothing_here", "has no function 'nothing_here'"),
    ("just_a_name_with_colon:", "is not module:function"),
    ("missing/file.py:build", "is not a file"),
])
def test_a_bad_model_spec_is_one_line(capsys, tmp_path, spec, message):
    assert cli.main(["evaluate", "--model", spec, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not list(tmp_path.iterdir())


def test_the_python_api_returns_a_table_and_a_registered_method_works_everywhere(monkeypatch):
    monkeypatch.setattr(attribution, "_REGISTERED", {})

    class Edges:  # a toy plugin: |horizontal differences| of the input, ignoring the model
        name = "edges"

        def __init__(self, options):
            pass

        def attribute(self, model, x, target):
            d = torch.zeros_like(x[:, :1])
            d[..., 1:] = (x[..., 1:] - x[..., :-1]).abs().sum(1, keepdim=True)
            return d

    attribution.register("edges", Edges)
    tiny_config("methods=gradient,edges").validate()  # every protocol accepts it
    cfg.apply_sets(roar.RoarConfig(), ["methods=edges"]).validate()
    ds = data.load_dataset("digits").subset(300, 60)
    model = models.build_model("lenet", ds.spec.shape, 10)
    train(model, ds.x_train, ds.y_train, ds.spec, TrainConfig(epochs=3, batch_size=32, lr=0.05),
          seed=0, progress=False)
    x = ds.spec.normalize(ds.x_test)
    table = saliencylab.evaluate(model, x, ds.y_test, methods=["gradient", "edges"],
                                 metrics=["mprt", "deletion"])
    assert {(r["method"], r["metric"]) for r in table.rows} == {
        (m, x) for m in ("gradient", "edges") for x in ("mprt", "deletion")}
    assert table.value("edges", "mprt") == pytest.approx(1.0)  # it ignores the model
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in table.rows)
    assert "| edges | mprt |" in str(table) and 0 <= table.accuracy <= 1


# issue 14: records are trusted only with the values their job implies; ROAR from its records ----
EVQ = ["seeds=0,1", "metrics=road,deletion", "train.lr=0.05"]


@pytest.fixture(scope="module")
def clean_evaluation(tmp_path_factory):
    return ev.run(tiny_config(*EVQ), str(tmp_path_factory.mktemp("clean")), "tiny")


@pytest.mark.parametrize("damage", [
    edit_record(seed=1),  # another seed's record, in seed 0's file
    edit_record(per_image={}),
    edit_record(**{"per_image.road_morf.gradient": DROP}),  # a method dropped
    edit_record(**{"per_image.deletion.gradient": [float("nan")] * 40}),
    edit_record(accuracy=float("nan")),
    edit_record(accuracy=1.07),
    edit_record(**{"per_image.road_morf.gradient": "abc"}),
    edit_record(**{"per_image.road_morf.gradient": [1.0, 2.0, 3.0]}),
    edit_record(**{"curves.road.random.morf": ["x"] * 9}),
    into_a_directory,
], ids=["seed-1", "per-image-empty", "a-method-dropped", "nan-values", "nan-accuracy",
        "accuracy-107%", "text-values", "3-values", "text-curve", "a-directory"])
def test_an_edited_evaluate_record_is_quarantined_and_recomputed(clean_evaluation, tmp_path, capsys,
                                                                damage):
    run_dir = copy_run(clean_evaluation, tmp_path)
    victim = run_dir / "jobs" / "seed0.json"
    damage(victim)
    assert ev.run(tiny_config(*EVQ), str(tmp_path / "runs"), "tiny") == run_dir
    err = capsys.readouterr().err
    assert f"{victim} " in err and "computed again" in err
    assert (run_dir / "corrupt" / "jobs" / "seed0.json").exists()
    assert (run_dir / "results.csv").read_text() == (clean_evaluation / "results.csv").read_text()
    assert "nan ± nan" not in (run_dir / "report.md").read_text()


def evaluate_cli(tmp_path, *sets) -> list[str]:
    return ["evaluate", "--preset", "evaluate-quick", "--out", str(tmp_path / "out"), "--workers",
            "1"] + [a for s in TINY + list(sets) for a in ("--set", s)]


def test_the_roar_metric_without_roar_run_is_one_line_before_any_work(tmp_path, capsys):
    assert cli.main(evaluate_cli(tmp_path, "metrics=road,roar")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the roar metric needs roar_run" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "jobs" / "gradient-t50-s0.json").unlink(),
     "is not a finished ROAR run: 1 of 3 jobs are missing or invalid (gradient-t50-s0: missing)"),
    (lambda run: edit_record(accuracy=2.0)(run / "jobs" / "random-t50-s0.json"),
     "(random-t50-s0: holds an invalid record (record.accuracy is 2.0, not a finite number in [0, 1]))"),
    (lambda run: (run / "config.json").write_text("[1, 2]"), "its config.json is not a ROAR config"),
    (lambda run: (run / "config.json").unlink(),
     "its config.json cannot be read (No such file or directory)"),
], ids=["unfinished", "edited-record", "config-a-list", "no-config"])
def test_a_roar_run_that_is_not_a_finished_roar_run_is_one_line_before_any_work(
        roar_dir, tmp_path, capsys, damage, message):
    run = copy_run(roar_dir, tmp_path)
    damage(run)
    assert cli.main(evaluate_cli(tmp_path, "metrics=roar", f"roar_run={run}")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_roar_run_pointing_at_an_evaluate_run_is_refused(clean_evaluation, tmp_path, capsys):
    assert cli.main(evaluate_cli(tmp_path, "metrics=roar", f"roar_run={clean_evaluation}")) == 2
    assert "is not a ROAR run: its config.json is not a ROAR config" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_roar_is_read_from_the_verified_records_not_the_report_file(roar_dir, tmp_path):
    run = copy_run(roar_dir, tmp_path)
    (run / "results.csv").write_text("method,threshold,seed,accuracy\n")  # truncated
    run_dir = ev.run(tiny_config("metrics=roar", f"roar_run={run}"), str(tmp_path / "ev"), "tiny")
    rows = list(csv.DictReader(open(run_dir / "results.csv")))
    records = {p.stem: json.loads(p.read_text())["record"] for p in (run / "jobs").glob("*.json")}
    for method in ("gradient", "random"):  # one trapezoid over x in [0, 0.5]
        expected = 0.25 * 100 * (records["reference-t0-s0"]["accuracy"]
                                 + records[f"{method}-t50-s0"]["accuracy"])
        assert [(r["metric"], r["seed"], float(r["value"])) for r in rows if r["method"] == method] \
            == [("roar", "0", pytest.approx(expected))]


def test_a_report_without_any_finished_seed_says_so_not_nan(tmp_path, monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("planted")

    monkeypatch.setattr(ev, "evaluate_job", fails)
    run_dir = ev.run(tiny_config("metrics=road"), str(tmp_path), "tiny")
    report = (run_dir / "report.md").read_text()
    assert "no seed finished" in report and "nan" not in report
