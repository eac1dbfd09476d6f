"""`saliencylab evaluate` and `saliencylab.evaluate(...)`: one report of every metric for every
method, bring-your-own models and methods, ROAR read from an existing run."""

import csv
import textwrap

import pytest
import torch

import saliencylab
from saliencylab import attribution, cli, data, models
from saliencylab import config as cfg
from saliencylab.config import TrainConfig
from saliencylab.protocols import evaluate as ev
from saliencylab.protocols import roar
from saliencylab.training import train

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


def test_roar_is_read_from_an_existing_run_of_the_same_data_and_model(tmp_path):
    from test_roar import tiny_config as roar_config

    roar_dir = roar.run(roar_config("seeds=0"), str(tmp_path / "roar"), "tiny")
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
