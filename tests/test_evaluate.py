"""`saliencylab evaluate` and `saliencylab.evaluate(...)`: one report of every metric for every
method, bring-your-own models and methods, ROAR read from an existing run."""

import csv
import json
import textwrap
from pathlib import Path

import pytest
import tiny
import torch
from damage import DROP, copy_run, edit_record, into_a_directory
from tiny import evaluate_config, roar_config

import saliencylab
from saliencylab import attribution, cli, data, models
from saliencylab.core.errors import UserError
from saliencylab.evaluation import registry
from saliencylab.evaluation.metric import GroupResult, Metric, MetricGroup
from saliencylab.protocols import evaluate as ev
from saliencylab.protocols import roar
from saliencylab.protocols.evaluate.report import agreement
from saliencylab.runs import config as cfg
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train


def test_the_report_has_the_table_the_agreement_the_curves_and_a_tidy_csv(tmp_path):
    run_dir = ev.run(evaluate_config(), str(tmp_path), "tiny")
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

    return roar.run(roar_config("seeds=0"), str(tmp_path_factory.mktemp("roar")), "tiny")


def test_roar_is_read_from_an_existing_run_of_the_same_data_and_model(tmp_path, roar_dir):
    config = evaluate_config("metrics=road,roar", f"roar_run={roar_dir}")
    run_dir = ev.run(config, str(tmp_path / "ev"), "tiny")
    rows = [r for r in csv.DictReader(open(run_dir / "results.csv")) if r["metric"] == "roar"]
    ours = {r["method"]: float(r["value"]) for r in rows}
    theirs = list(csv.DictReader(open(roar_dir / "results.csv")))
    acc = {(r["method"], float(r["threshold"])): 100 * float(r["accuracy"]) for r in theirs}
    # thresholds 0 and 50%: one trapezoid over x in [0, 0.5]
    assert ours["gradient"] == pytest.approx(0.5 * (acc["reference", 0] + acc["gradient", 50]) / 2)
    other = evaluate_config("metrics=roar", f"roar_run={roar_dir}", "model=tiny_cnn")
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
            "--set", "metrics=road"] + [a for s in tiny.EVALUATE for a in ("--set", s)]
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
    evaluate_config("methods=gradient,edges").validate()  # every protocol accepts it
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


# issue 14: the evaluate command checks the model, its weights and the settings before any work

def evaluate_argv(out, *extra):
    return (["evaluate", "--preset", "evaluate-quick", "--out", str(out), "--workers", "1"]
            + [a for s in tiny.EVALUATE for a in ("--set", s)] + list(extra))


def refused(capsys, out, extra, message):
    """Exit 2, one line naming the problem, and no run directory."""
    assert cli.main(evaluate_argv(out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("saliencylab: error: "), err
    assert message in err, err
    assert not out.exists()


@pytest.mark.parametrize("value, key", [("90,10", "road_percents"), ("10,10,20", "road_percents"),
                                        ("0,0", "drop_percents"), ("50", "road_percents")])
def test_percentages_must_increase_strictly(capsys, tmp_path, value, key):  # D9, U8
    refused(capsys, tmp_path / "runs", ["--set", f"settings.{key}={value}"],
            f"settings.{key} must be at least two percentages")


BAD_MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def not_a_module(shape, classes):
        return {"weights": torch.zeros(3)}

    def wrong_size(shape, classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(shape[1] * shape[2], 3))

    def raises(shape, classes):
        raise ValueError("no such layer")

    def wrong_signature(a, b, c):
        return nn.Identity()

    def bare(shape, classes):  # a linear model on a bare nn.Parameter
        class Bare(nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(shape[1] * shape[2], classes) / 8)

            def forward(self, x):
                return x.flatten(1) @ self.weight
        return Bare()
""")


@pytest.mark.parametrize("function, message", [
    ("not_a_module", "returned a dict, not a torch.nn.Module"),
    ("wrong_size", "gives (2, 3) for 2 images, expected logits (2, 10)"),
    ("raises", "raised ValueError: no such layer"),
    ("wrong_signature", "must take (shape, classes) or no arguments"),
])
def test_a_bad_model_function_is_refused_before_any_work(capsys, tmp_path, function, message):  # U1
    (tmp_path / "bad_models.py").write_text(BAD_MODELS)
    refused(capsys, tmp_path / "runs", ["--model", f"{tmp_path / 'bad_models.py'}:{function}"],
            message)


def lenet_weights():
    return models.build_model("lenet", (1, 8, 8), 10).state_dict()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("epochs: 10\n"), "is not a PyTorch file (it looks like a text file)"),
    (lambda p: torch.save({**lenet_weights(), "extra.weight": torch.zeros(1)}, p),
     "does not fit the model: unexpected extra.weight"),
    (lambda p: torch.save({k: v for k, v in lenet_weights().items() if k != "features.0.bias"}, p),
     "does not fit the model: missing features.0.bias"),
    (lambda p: torch.save(models.build_model("tiny_cnn", (1, 8, 8), 10).state_dict(), p),
     "does not fit the model: missing"),  # another architecture
    (lambda p: torch.save({k: torch.full_like(v, float("nan")) for k, v in lenet_weights().items()},
                          p), "holds NaN or infinite weights in features.0.weight"),  # D13
    (lambda p: torch.save({k: v.long() for k, v in lenet_weights().items()}, p),
     "features.0.weight is torch.int64, the model's torch.float32"),  # D13
    (lambda p: (torch.save(lenet_weights(), p), p.write_bytes(p.read_bytes()[:4474])),
     "is truncated or damaged, not a readable PyTorch file"),  # U9: the OSError cut
    (lambda p: (torch.save(lenet_weights(), p), p.write_bytes(p.read_bytes()[:-100])),
     "is truncated or damaged, not a readable PyTorch file"),  # U9
])
def test_a_bad_model_file_is_refused_before_any_work(capsys, tmp_path, make, message):  # U1, D13, U9
    make(tmp_path / "weights.pt")
    refused(capsys, tmp_path / "runs", ["--model-file", str(tmp_path / "weights.pt")], message)


def test_mprt_randomises_a_bare_parameter_and_one_method_says_why_tau_is_missing(tmp_path):  # C10, K7
    (tmp_path / "bad_models.py").write_text(BAD_MODELS)
    argv = evaluate_argv(tmp_path / "runs", "--model", f"{tmp_path / 'bad_models.py'}:bare",
                         "--set", "methods=gradient", "--set", "metrics=road,mprt")
    assert cli.main(argv) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(open(run_dir / "results.csv"))}
    assert set(rows) == {"road_morf", "road_lerf", "road_gap", "mprt"} and rows["mprt"] < 0.5
    assert ("Not computed: a ranking needs at least two methods whose scores differ, and this "
            "run has 1." in (run_dir / "report.md").read_text())


def test_kendall_tau_says_why_it_cannot_be_computed():  # K7
    table = {"road_morf": {"a": {0: 10.0}, "b": {0: 20.0}, "c": {0: 30.0}},
             "deletion": {"a": {0: 0.1}, "b": {0: 0.3}, "c": {0: 0.2}},
             "insertion": {"a": {0: 0.5}, "b": {0: 0.5}, "c": {0: 0.5}}}
    text = agreement(table, ["road_morf", "deletion", "insertion"], ["a", "b", "c"])
    # both lower-is-better: scores (-10, -20, -30) and (-.1, -.3, -.2): pairs (a,b) and (a,c)
    # concordant, (b,c) discordant -> tau = (2 - 1) / 3
    assert "| road_morf | deletion | 0.33 |" in text
    assert "| road_morf | insertion | n/a: insertion gives every method the same score |" in text
    assert "nan" not in text
    assert agreement(table, ["road_morf", "deletion"], ["a"]).startswith(
        "Not computed: a ranking needs at least two methods")


def test_the_agreement_table_holds_kendall_tau_of_every_pair_of_metrics():
    """Four methods a < b < c < d by insertion (higher is better); deletion (lower is better)
    ranks them the same way, and road_morf (lower is better) swaps c and d: of its 6 pairs with
    insertion 5 are concordant and 1 discordant, tau = (5 - 1) / 6."""
    methods = ["a", "b", "c", "d"]
    table = {"insertion": dict(zip(methods, ({0: 0.1}, {0: 0.2}, {0: 0.3}, {0: 0.4}))),
             "deletion": dict(zip(methods, ({0: 0.4}, {0: 0.3}, {0: 0.2}, {0: 0.1}))),
             "road_morf": dict(zip(methods, ({0: 40.0}, {0: 30.0}, {0: 10.0}, {0: 20.0})))}
    text = agreement(table, ["insertion", "deletion", "road_morf"], methods)
    assert "| insertion | deletion | 1.00 |" in text
    assert "| insertion | road_morf | 0.67 |" in text
    assert "| deletion | road_morf | 0.67 |" in text
    # a method's score is its mean over seeds: b's seeds average to below a's, so b and a swap
    table["insertion"]["b"] = {0: 0.0, 1: 0.1}
    assert "| insertion | deletion | 0.67 |" in agreement(table, ["insertion", "deletion"], methods)


def test_a_metric_registered_outside_the_package_is_measured_and_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", {})

    def map_mass_on_the_top_half(ctx, maps):  # a toy metric: a share of |map| per image
        a = maps.abs().flatten(2).sum(1)
        top = maps[..., :maps.shape[-2] // 2, :].abs().flatten(1).sum(1)
        return (top / a.sum(1).clamp_min(1e-12)).cpu().numpy()

    registry.register_metric("top_half_mass", map_mass_on_the_top_half, higher_is_better=True,
                             category="localisation", paper="a test", title="Top-half mass")
    run_dir = ev.run(evaluate_config("metrics=deletion,top_half_mass"), str(tmp_path), "plugin")
    rows = [r for r in tiny.read_results(run_dir) if r["metric"] == "top_half_mass"]
    assert {r["method"] for r in rows} == {"gradient", "random"}
    assert all(0 <= float(r["value"]) <= 1 for r in rows)
    report = (run_dir / "report.md").read_text()
    assert "Top-half mass ↑" in report and "`top_half_mass` (a test, localisation)" in report


def test_an_installed_metric_plugin_is_found_and_a_wrong_one_is_one_line(monkeypatch,
                                                                         installed_plugins):
    monkeypatch.setattr(registry, "_REGISTERED", {})
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    plugged = MetricGroup("plugged", (Metric("plugged", "Plugged", True, "complexity", "a test"),),
                          lambda ctx, maps: GroupResult({"plugged": maps.flatten(1).sum(1)}))
    installed_plugins(registry.ENTRY_POINT_GROUP, {"plugged": plugged})
    assert registry.group("plugged") is plugged and registry.metric("plugged").category == "complexity"
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    monkeypatch.setattr(registry, "_REGISTERED", {})
    installed_plugins(registry.ENTRY_POINT_GROUP, {"wrong": print})
    with pytest.raises(UserError, match="the metric plugin 'wrong' gives a builtin_function_or_"
                                        "method, not a saliencylab.evaluation.metric.MetricGroup"):
        registry.groups()


README = Path(__file__).parents[1] / "README.md"


def test_the_readme_example_works_as_written(tmp_path, monkeypatch, capsys):  # C12
    """README: `my_models.py` (no `cam_layer`) with its weights and the evaluate-quick preset:
    gradcam++ cannot apply, so it is skipped and reported, and every other method is kept."""
    readme = README.read_text()
    block = readme.split("```python\n# my_models.py\n")[1].split("```")[0]
    command = next(line for line in readme.splitlines() if "--model my_models.py:build" in line)
    assert command == ("saliencylab evaluate --preset evaluate-quick --model my_models.py:build "
                       "--model-file weights.pt")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_models.py").write_text(block)
    model = models.build_model("my_models.py:build", (1, 8, 8), 10)
    torch.save(model.state_dict(), "weights.pt")  # as the README says
    assert cli.main(command.split()[1:]) == 0
    err = capsys.readouterr().err
    assert err.count("gradcam++ is skipped: Sequential has no `cam_layer`") == 1
    run_dir = next((tmp_path / "runs").iterdir())
    report = (run_dir / "report.md").read_text()
    assert "## Skipped (1)" in report and "- `gradcam++`: Sequential has no `cam_layer`" in report
    methods = {r["method"] for r in csv.DictReader(open(run_dir / "results.csv"))}
    assert methods == set(ev.DEFAULT_METHODS) - {"gradcam++"}



def test_a_wrong_cam_layer_is_an_error_not_a_skipped_method(tmp_path, capsys):
    """Only a method that cannot apply to the model is skipped; a layer path that names no
    layer is the user's typo: exit 2 before any work, no run directory."""
    argv = ["evaluate", "--preset", "evaluate-quick", "--out", str(tmp_path / "runs"),
            "--workers", "1"] + [f"--set={s}" for s in tiny.EVALUATE] + [
        "--set=methods=gradient,gradcam++", "--set=attribution.cam_layer=features.99"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no layer 'features.99'" in err, err
    assert not (tmp_path / "runs").exists()

# issue 14: records are trusted only with the values their job implies; ROAR from its records ----
EVQ = ["seeds=0,1", "metrics=road,deletion", "train.lr=0.05"]


@pytest.fixture(scope="module")
def clean_evaluation(tmp_path_factory):
    return ev.run(evaluate_config(*EVQ), str(tmp_path_factory.mktemp("clean")), "tiny")


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
    assert ev.run(evaluate_config(*EVQ), str(tmp_path / "runs"), "tiny") == run_dir
    err = capsys.readouterr().err
    assert f"{victim} " in err and "computed again" in err
    assert (run_dir / "corrupt" / "jobs" / "seed0.json").exists()
    assert (run_dir / "results.csv").read_text() == (clean_evaluation / "results.csv").read_text()
    assert "nan ± nan" not in (run_dir / "report.md").read_text()


def evaluate_cli(tmp_path, *sets) -> list[str]:
    return ["evaluate", "--preset", "evaluate-quick", "--out", str(tmp_path / "out"), "--workers",
            "1"] + [a for s in tiny.EVALUATE + list(sets) for a in ("--set", s)]


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
    run_dir = ev.run(evaluate_config("metrics=roar", f"roar_run={run}"), str(tmp_path / "ev"), "tiny")
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

    monkeypatch.setattr(ev.EVALUATE, "run_job", fails)
    run_dir = ev.run(evaluate_config("metrics=road"), str(tmp_path), "tiny")
    report = (run_dir / "report.md").read_text()
    assert "no seed finished" in report and "nan" not in report
