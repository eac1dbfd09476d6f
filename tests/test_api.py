"""`saliencylab.evaluate(...)` checks every argument before any work (issue 14: D5-D8, D10-D12,
C9, C10, U5): each failure is one UserError line that names the argument."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import saliencylab
from saliencylab import attribution, data, models
from saliencylab.core.errors import UserError
from saliencylab.evaluation import registry as metric_registry
from saliencylab.evaluation.settings import Settings
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train

FAST = dict(methods=["gradient"], metrics=["road"])


@pytest.fixture(scope="module")
def digits():
    ds = data.load_dataset("digits").subset(300, 20)
    torch.manual_seed(0)
    model = models.build_model("lenet", ds.spec.shape, 10)
    train(model, ds.x_train, ds.y_train, ds.spec, TrainConfig(epochs=2, batch_size=32, lr=0.05),
          seed=0, progress=False)
    return model.eval(), ds.spec.normalize(ds.x_test).float(), ds.y_test, ds


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(attribution, "_REGISTERED", {})


def register(name, attribute):
    """Register a method whose maps are `attribute(x)`."""
    method = type(name, (), {"name": name, "__init__": lambda self, options: None,
                             "attribute": lambda self, model, x, target: attribute(x)})
    attribution.register(name, method)


class Biggest:
    """Counts the images of the largest batch the model has seen: the checks forward at most 2."""

    def __init__(self, model):
        self.images = 0
        self.hook = model.register_forward_hook(self.seen)

    def seen(self, module, inputs, output):
        self.images = max(self.images, len(inputs[0]))


def rejected(model, x, y, match, **kwargs):
    """The call fails with one UserError line matching `match`, before any work on x."""
    kwargs = {**FAST, **kwargs}
    biggest = Biggest(model) if isinstance(model, nn.Module) else None
    try:
        with pytest.raises(UserError, match=match) as error:
            saliencylab.evaluate(model, x, y, **kwargs)
    finally:
        if biggest:
            biggest.hook.remove()
    assert "\n" not in str(error.value)
    assert biggest is None or biggest.images <= 2  # only the two-image checks ran


def logits_model(classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, classes))


@pytest.mark.parametrize("label", [10, 50, -1])
def test_labels_out_of_the_models_range_are_rejected(digits, label):  # D5
    model, x, y, _ = digits
    rejected(model, x, torch.full_like(y, label), r"y holds labels .*the model gives 10 logits: "
                                                  r"labels must lie in 0\.\.9")


def test_a_model_with_fewer_logits_than_the_labels_need_is_rejected(digits):  # D5
    _, x, y, _ = digits
    rejected(logits_model(3), x, y, r"the model gives 3 logits: labels must lie in 0\.\.2")
    rejected(logits_model(1), x, y, r"model gives \(2, 1\) for 2 images, expected logits \(2, "
                                    r"classes\) with at least 2 classes")
    rejected(digits[0], x, y, r"classes is 3, but the model gives 10 logits", classes=3)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_pixels_are_rejected(digits, value):  # D6
    model, x, y, _ = digits
    bad = x.clone()
    bad[3, 0, 4, 4] = value
    rejected(model, bad, y, r"x holds 1 NaN or infinite value\(s\) of 1280")
    rejected(model, torch.full_like(x, float("nan")), y, r"x holds 1280 NaN or infinite")


def test_raw_pixels_without_spec_and_normalised_ones_with_spec_are_rejected(digits):  # D7
    model, x, y, ds = digits
    rejected(model, ds.x_test, y, r"x is torch\.uint8: without spec, x must be the float input "
                                  r"the model takes .*pass their DataSpec as spec=")
    rejected(model, x, y, r"x holds values in \[-?[\d.]+, [\d.]+\] that are not raw pixels: with "
                          r"spec, x must be raw pixels \(uint8", spec=ds.spec)
    rejected(model, ds.x_test[:, :, :4], y, r"x has images of shape \(1, 4, 8\), the spec "
                                            r"'digits' \(1, 8, 8\)", spec=ds.spec)
    # the two right forms give the same numbers: raw with its spec, normalised without
    raw = saliencylab.evaluate(model, ds.x_test, y, spec=ds.spec, **FAST)
    as_float = saliencylab.evaluate(model, ds.x_test.float(), y, spec=ds.spec, **FAST)
    assert raw.rows == as_float.rows


@pytest.mark.parametrize("change, key", [
    (dict(mprt_images=0), "mprt_images"), (dict(mprt_images=-5), "mprt_images"),
    (dict(batch_size=-1), "batch_size"), (dict(batch_size=0), "batch_size"),
    (dict(road_percents=(50,)), "road_percents"), (dict(road_percents=(10, 150)), "road_percents"),
    (dict(road_percents=(-10, 50)), "road_percents"), (dict(road_percents=(90, 10)), "road_percents"),
    (dict(road_percents=()), "road_percents"), (dict(road_percents=(10, 10, 20)), "road_percents"),
    (dict(drop_percents=(0, 200)), "drop_percents"), (dict(drop_percents=(0, 0)), "drop_percents"),
    (dict(deletion_step=-3), "deletion_step"), (dict(deletion_step=0), "deletion_step"),
    (dict(insertion_canvas="bogus"), "insertion_canvas"), (dict(drop_fill="bogus"), "drop_fill"),
    (dict(deletion_substrate="gray"), "deletion_substrate"),
    (dict(deletion_step_percent=0.0), "deletion_step_percent"),
    (dict(deletion_step_percent=120.0), "deletion_step_percent"),
    (dict(deletion_step=4, deletion_step_percent=5.0), "deletion_step_percent"),
])
def test_settings_are_validated(digits, change, key):  # D8, C9
    model, x, y, _ = digits
    rejected(model, x, y, rf"settings\.{key}", settings=Settings(**change))


def test_target_seed_settings_and_options_are_validated(digits):  # D8, C9
    model, x, y, _ = digits
    rejected(model, x, y, r"unknown target 'bogus': choose one of predicted, label", target="bogus")
    for seed in (-1, 2**70, 1.5, True):
        rejected(model, x, y, r"seed must be a whole number in 0\.\.2\*\*32 - 1", seed=seed)
    rejected(model, x, y, r"settings must be a saliencylab\.evaluation\.Settings .*got a dict",
             settings={})
    rejected(model, x, y, r"options must be a MethodOptions, got a dict", options={"a": 1})


@pytest.mark.parametrize("methods, metrics, match", [
    ("gradient", ["road"], r"methods must be a list of names, such as \['gradient'\], not the "
                           r"string 'gradient'"),
    (["gradient"], "road", r"metrics must be a list of names, such as \['road'\]"),
    ([], ["road"], r"methods must name at least one attribution method"),
    (["gradient"], [], r"metrics must name at least one metric"),
    (["gradient", "gradient"], ["road"], r"methods lists gradient more than once"),
    (["gradient"], ["road", "road"], r"metrics lists road more than once"),
    (["gradient"], ["foo"], r"unknown metric 'foo': choose one of road, deletion"),
    (["gradient"], ["roar"], r"unknown metric 'roar'"),  # ROAR retrains: the CLI reads a run
    (["nope"], ["road"], r"unknown attribution method 'nope'"),
])
def test_methods_and_metrics_are_lists_of_known_names_without_repeats(digits, methods, metrics,
                                                                     match):  # U5, C9
    model, x, y, _ = digits
    rejected(model, x, y, match, methods=methods, metrics=metrics)


def test_shapes_of_x_and_y_are_checked(digits):  # C9
    model, x, y, _ = digits
    rejected(model, x[:, 0], y, r"x must be images \[N, C, H, W\], got shape \(20, 8, 8\): add "
                                r"the channel axis")
    rejected(model, x[None], y, r"x must be images \[N, C, H, W\], got shape \(1, 20, 1, 8, 8\)")
    rejected(model, x[:0], y[:0], r"x holds no images")
    rejected(model, x.expand(-1, 3, -1, -1), y, r"model fails on a batch of shape \[2, 3, 8, 8\] "
                                                r"\(RuntimeError: .*\): it must take images")
    rejected(model, x, y[:5], r"y must hold one class index per image: 20 for x's 20 images, "
                              r"got shape \(5,\)")
    rejected(model, x, torch.cat([y, y]), r"y must hold one class index per image")
    rejected(model, x, nn.functional.one_hot(y, 10), r"y has shape \(20, 10\): give class "
                                                     r"indices \[N\], not one-hot")
    rejected(model, x, y.float(), r"y must hold integer class indices, got dtype torch\.float32")


def test_numpy_images_and_list_labels_are_accepted(digits):  # C9: accepted, as documented
    model, x, y, _ = digits
    ours = saliencylab.evaluate(model, x, y, **FAST)
    assert saliencylab.evaluate(model, x.numpy(), y.tolist(), **FAST).rows == ours.rows


class ReturnsTuple(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        self.net, self.wrap = logits_model(10), wrap

    def forward(self, x):
        return self.wrap(self.net(x))


@pytest.mark.parametrize("wrap, match", [
    (lambda z: (), r"the model \(ReturnsTuple\) returned a tuple and it is empty: expected a "
                   r"logits tensor, a tuple"),
    (lambda z: [None, z], r"model \(ReturnsTuple\) returned a list and its first element is "
                          r"a NoneType"),
    (lambda z: {"scores": z}, r"model \(ReturnsTuple\) returned a dict with keys scores: expected"),
    (lambda z: z.tolist(), r"model \(ReturnsTuple\) returned a list and its first element is "
                           r"a list"),
    (lambda z: z[:, 0], r"model gives \(2,\) for 2 images, expected logits \(2, classes\)"),
])
def test_a_model_that_does_not_return_logits_is_rejected(digits, wrap, match):  # C9
    _, x, y, _ = digits
    rejected(ReturnsTuple(wrap), x, y, match)


def test_a_plain_function_is_not_a_model(digits):  # C9
    model, x, y, _ = digits
    rejected(lambda images: model(images), x, y, r"model must be a torch\.nn\.Module, got a "
                                                 r"function")


@pytest.mark.parametrize("maps, match", [
    (lambda x: torch.zeros(1, 1, 8, 8), r"'bad' returned maps of shape \(1, 1, 8, 8\): it must "
                                        r"return \[B, 1, H, W\] = \[2, 1, 8, 8\] for 2 images"),
    (lambda x: torch.zeros(len(x), 8, 8), r"'bad' returned maps of shape \(2, 8, 8\)"),
    (lambda x: torch.zeros(len(x), 1, 4, 4), r"'bad' returned maps of shape \(2, 1, 4, 4\)"),
    (lambda x: [torch.zeros(1, 8, 8)] * len(x), r"'bad' returned a list, not a tensor \[B, 1, H, "
                                                r"W\] = \[2, 1, 8, 8\]"),
    (lambda x: torch.full_like(x, float("nan")), r"'bad' returned 128 NaN or infinite value\(s\) "
                                                 r"of 128: every map value must be finite"),
])
def test_a_custom_methods_malformed_maps_are_rejected_naming_it(digits, registry, maps,
                                                                match):  # D11, D12, C9
    model, x, y, _ = digits
    register("bad", maps)
    for metrics in (["road"], ["mprt"]):
        rejected(model, x, y, match, methods=["gradient", "bad"], metrics=metrics)


def test_maps_checked_on_every_batch_not_only_the_first_two_images(digits, registry):  # D12
    model, x, y, _ = digits
    register("short", lambda x: torch.zeros(min(len(x), 2), 1, 8, 8))  # right for 2 images only
    with pytest.raises(UserError, match=r"'short' returned maps of shape \(2, 1, 8, 8\): it must "
                                        r"return \[B, 1, H, W\] = \[20, 1, 8, 8\]"):
        saliencylab.evaluate(model, x, y, methods=["short"], metrics=["road"])


def test_a_constant_map_that_ignores_the_model_keeps_similarity_one(digits, registry):  # D11
    model, x, y, _ = digits
    register("zeros", torch.zeros_like)
    table = saliencylab.evaluate(model, x, y, methods=["zeros", "gradient"], metrics=["mprt"])
    assert table.value("zeros", "mprt") == 1.0  # the worst MPRT score, not the best (0)
    assert table.value("gradient", "mprt") < 0.9


def test_table_value_of_a_missing_pair_is_one_line(digits):  # C9
    model, x, y, _ = digits
    table = saliencylab.evaluate(model, x, y, **FAST)
    with pytest.raises(UserError, match=r"no value for method 'gradient' and metric 'mprt': it "
                                        r"has gradient/road_gap, gradient/road_lerf"):
        table.value("gradient", "mprt")


class Dropout(nn.Module):
    """A model with dropout and BatchNorm."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Dropout(0.5), nn.Flatten(), nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("build", [lambda: models.build_model("sgt_cnn", (1, 8, 8), 10), Dropout])
def test_each_modules_train_mode_is_restored(digits, build):  # D10
    _, x, y, _ = digits
    model = build().train()
    model.get_submodule(next(n for n, m in model.named_modules() if isinstance(m, nn.Dropout))).eval()
    modes = {name: m.training for name, m in model.named_modules()}
    saliencylab.evaluate(model, x, y, methods=["gradient"], metrics=["road", "mprt"])
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert sorted(set(modes.values())) == [False, True]  # a mixed state, kept as it was


class BareParameter(nn.Module):
    """A linear model on a bare nn.Parameter (no module with reset_parameters)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(64, 10) / 8)

    def forward(self, x):
        return x.flatten(1) @ self.weight


class NoParameters(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10] * 2.0


def test_mprt_randomises_a_bare_parameter(digits):  # C10
    _, x, y, _ = digits
    torch.manual_seed(1)  # not the randomisation's own seed (0 for the first layer)
    model = BareParameter()
    before = model.weight.detach().clone()
    table = saliencylab.evaluate(model, x, y, methods=["gradient"], metrics=["mprt", "road"])
    # the gradient of a linear model is its weight column: a re-drawn weight gives other maps
    assert table.value("gradient", "mprt") < 0.5
    assert torch.equal(model.weight, before)  # a copy was randomised


def test_mprt_on_a_model_without_parameters_is_skipped_and_the_rest_kept(digits):  # C10
    _, x, y, _ = digits
    with pytest.warns(UserWarning, match=r"mprt skipped: the model has no parameters, so no layer "
                                         r"to randomise"):
        table = saliencylab.evaluate(NoParameters(), x, y, methods=["gradient"],
                                     metrics=["mprt", "road"])
    assert {r["metric"] for r in table.rows} == {"road_morf", "road_lerf", "road_gap"}
    assert "mprt" in table.skipped


def test_a_method_that_cannot_apply_is_skipped_with_a_warning(digits):  # C12 (API side)
    _, x, y, _ = digits
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(256, 10))
    with pytest.warns(UserWarning, match=r"gradcam\+\+ skipped: Sequential has no `cam_layer`"):
        table = saliencylab.evaluate(model, x, y, methods=["gradient", "gradcam++"],
                                     metrics=["road"])
    assert {r["method"] for r in table.rows} == {"gradient"}
    with pytest.raises(UserError, match=r"no method applies to this model: Sequential has no"):
        saliencylab.evaluate(model, x, y, methods=["gradcam++"], metrics=["road"])


def test_the_settings_are_the_clis(digits):  # one Settings.validate for both
    from saliencylab.protocols.evaluate import EvaluateConfig
    from saliencylab.runs import config as cfg

    bad = dataclasses.replace(EvaluateConfig(), settings=Settings(road_percents=(90, 10)))
    with pytest.raises(UserError) as cli_error:
        bad.validate()
    model, x, y, _ = digits
    with pytest.raises(UserError) as api_error:
        saliencylab.evaluate(model, x, y, settings=bad.settings, **FAST)
    assert str(cli_error.value) == str(api_error.value)
    assert cfg.apply_sets(EvaluateConfig(), ["settings.road_percents=10,90"]).settings.road_percents \
        == (10.0, 90.0)
    assert np.isfinite(saliencylab.evaluate(model, x, y, **FAST).value("gradient", "road_gap"))


def test_the_readme_library_snippets_run_as_written(monkeypatch):
    """README "Library": training a model, two methods, and registering a metric."""
    monkeypatch.setattr(metric_registry, "_REGISTERED", {})
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Library\n")[1].split("\n## ")[0]
    blocks = [b.split("```")[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), scope)
    assert scope["a"].shape == (8, 1, 8, 8)
    assert metric_registry.metric("top_half_mass").higher_is_better
