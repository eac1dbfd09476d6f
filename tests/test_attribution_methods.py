"""The methods added for issues 8 and 9 (SmoothGrad², VarGrad, DeepLift, DeepLiftShap,
GradientShap, input x gradient, occlusion), the explained score, the CAM layer, bounded
memory, seeding and the registry: hand-computed values and planted answers."""


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from saliencylab import attribution
from saliencylab.attribution import (
    METHODS,
    TRANSFORMER_METHODS,
    MethodOptions,
    make_method,
    method_names,
    register,
)
from saliencylab.core.errors import UserError
from saliencylab.models.registry import build_model


def relu_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 16, 8), nn.ReLU(), nn.Linear(8, 3))


X = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]]])


def test_smoothgrad_sq_with_one_noiseless_sample_is_the_squared_gradient():
    model, x = relu_net(), torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2])
    x_ = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x_).gather(1, t[:, None]).sum(), x_)
    sq = make_method("smoothgrad_sq", smoothgrad_samples=1, smoothgrad_stdev=0.0).attribute(model, x, t)
    torch.testing.assert_close(sq, g.pow(2))


def test_vargrad_without_noise_is_exactly_zero():
    model, x = relu_net(), torch.randn(2, 1, 4, 4)
    a = make_method("vargrad", smoothgrad_samples=4, smoothgrad_stdev=0.0).attribute(
        model, x, torch.tensor([0, 2]))
    assert torch.equal(a, torch.zeros_like(a))


def test_log_softmax_output_differentiates_log_p_of_the_target():
    model, x = relu_net(), torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([2, 0])
    x_ = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.log_softmax(model(x_), 1).gather(1, t[:, None]).sum(), x_)
    a = make_method("gradient", output="log_softmax").attribute(model, x, t)
    torch.testing.assert_close(a, g)
    assert not torch.allclose(a, make_method("gradient").attribute(model, x, t))


class ConvThenRelu(nn.Module):
    """1x2x2 input -> 1x1 conv with weight (1, -1) to 2 channels (A1 = x, A2 = -x) -> ReLU ->
    sum of everything as logit 0, and 0 as logit 1."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))

    @property
    def cam_layer(self):
        return self.features[1]

    def forward(self, x):
        s = self.features(x).sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_cam_layer_conv_hooks_the_pre_relu_conv_output():
    # x = [[1, -1], [2, 0.5]].  conv: A1 = x, A2 = -x.
    # activation layer (after ReLU): R1 = [[1, 0], [2, .5]], R2 = [[0, 1], [0, 0]];
    #   dY/dR = 1 everywhere -> Grad-CAM weights 1, 1 -> map = R1 + R2 = [[1, 1], [2, .5]].
    # conv layer (before ReLU): dY/dA_k = 1 where A_k > 0, else 0:
    #   g1 = [[1, 0], [1, 1]] -> w1 = 3/4;  g2 = [[0, 1], [0, 0]] -> w2 = 1/4;
    #   map = ReLU(3/4 x - 1/4 x) = ReLU(x / 2) = [[.5, 0], [1, .25]].
    model, t = ConvThenRelu(), torch.tensor([0])
    activation = make_method("gradcam").attribute(model, X, t)
    conv = make_method("gradcam", cam_layer="conv").attribute(model, X, t)
    torch.testing.assert_close(activation[0, 0], torch.tensor([[1.0, 1.0], [2.0, 0.5]]))
    torch.testing.assert_close(conv[0, 0], torch.tensor([[0.5, 0.0], [1.0, 0.25]]))


def test_cam_layer_conv_is_the_conv_feeding_each_models_cam_layer():
    from saliencylab.attribution.cam import resolve_layer

    for name, index in (("lenet", 3), ("sgt_cnn", 2), ("tiny_cnn", 3)):
        model = build_model(name, (1, 28, 28), 10)
        assert resolve_layer(model, "conv") is model.features[index]
        assert resolve_layer(model, "activation") is model.features[index + 1]


def test_input_x_gradient_is_input_times_gradient(linear_model):
    a = make_method("input_x_gradient").attribute(linear_model(), X, torch.tensor([0]))
    torch.testing.assert_close(a[0, 0], X[0, 0] * torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_deeplift_on_a_linear_model_is_difference_times_weight(linear_model):
    b = torch.full((1, 2, 2), 0.5)
    a = make_method("deeplift", baseline_image=b).attribute(linear_model(), X, torch.tensor([0]))
    torch.testing.assert_close(a[0, 0], (X[0, 0] - 0.5) * torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_gradient_shap_with_the_input_as_baseline_is_zero():
    x = torch.randn(2, 1, 4, 4)
    a = make_method("gradient_shap", baseline_image=x[:1], gradient_shap_stdev=0.0).attribute(
        relu_net(), x[:1], torch.tensor([1]))
    assert torch.equal(a, torch.zeros_like(a))


def test_deeplift_shap_with_one_repeated_baseline_equals_deeplift():
    x, t, b = torch.randn(3, 1, 4, 4), torch.tensor([0, 1, 2]), torch.zeros(1, 4, 4)
    dl = make_method("deeplift", baseline_image=b).attribute(relu_net(), x, t)
    dls = make_method("deeplift_shap", baseline_image=b, shap_baselines=3).attribute(relu_net(), x, t)
    torch.testing.assert_close(dls, dl)


class BlockModel(nn.Module):
    """Logit 0 = sum of the top-left 2x2 block of a 1x6x6 image; logit 1 = 0."""

    def forward(self, x):
        s = x[:, 0, :2, :2].sum(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_occlusion_marks_only_the_pixels_the_output_depends_on():
    x = torch.ones(1, 1, 6, 6)
    a = make_method("occlusion", baseline="zeros", occlusion_window=2).attribute(
        BlockModel(), x, torch.tensor([0]))[0, 0]
    assert (a[:2, :2] > 0).all()
    assert torch.equal(a[3:, :], torch.zeros(3, 6)) and torch.equal(a[:, 3:], torch.zeros(6, 3))


@pytest.mark.parametrize("name", [m for m in METHODS if m not in ("random", *TRANSFORMER_METHODS)])
def test_no_forward_pass_exceeds_max_batch_rows(name):
    torch.manual_seed(0)
    model = build_model("tiny_cnn", (1, 8, 8), 3)
    x, t = torch.randn(7, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    sizes: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    try:
        make_method(name, baseline="uniform", max_batch_rows=8, ig_steps=5, smoothgrad_samples=5,
                    shap_baselines=5, gradient_shap_samples=3).attribute(model, x, t)
    finally:
        handle.remove()
    assert sizes and max(sizes) <= 8, sizes


@pytest.mark.parametrize("name", ["integrated_gradients", "smoothgrad", "smoothgrad_sq",
                                  "vargrad", "deeplift", "deeplift_shap", "gradient_shap"])
def test_random_draws_follow_the_seed_and_leave_the_callers_generators_alone(name):
    import numpy as np

    model, x, t = relu_net(), torch.randn(3, 1, 4, 4), torch.tensor([0, 1, 2])
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    kw = dict(baseline="uniform", smoothgrad_samples=3, shap_baselines=3, ig_steps=4)
    a = make_method(name, seed=0, **kw).attribute(model, x, t)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(a, make_method(name, seed=0, **kw).attribute(model, x, t))
    assert not torch.equal(a, make_method(name, seed=1, **kw).attribute(model, x, t))


def test_baseline_black_needs_the_black_image(linear_model):
    with pytest.raises(UserError, match="baseline 'black' needs the data set's black image"):
        make_method("integrated_gradients").attribute(linear_model(), X, torch.tensor([0]))
    black = torch.full((1, 2, 2), -1.0)
    a = make_method("integrated_gradients", black=black, ig_steps=4).attribute(
        linear_model(), X, torch.tensor([0]))
    torch.testing.assert_close(a[0, 0], (X[0, 0] + 1) * torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


class Constant:
    """A toy plugin method: every pixel gets its input value."""

    name = "constant"

    def __init__(self, options):
        self.options = options

    def attribute(self, model, x, target):
        return x.sum(1, keepdim=True)


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(attribution, "_REGISTERED", {})
    monkeypatch.setattr(attribution, "_PLUGINS_LOADED", False)


def test_registered_methods_are_made_by_name_and_listed(clean_registry):
    register("constant", Constant)
    assert "constant" in method_names()
    method = make_method("constant", MethodOptions(seed=3))
    assert method.options.seed == 3 and torch.equal(method.attribute(None, X, None), X)
    with pytest.raises(UserError, match="'constant' already exists"):
        register("constant", Constant)
    with pytest.raises(UserError, match="'gradient' already exists"):
        register("gradient", Constant)
    register("constant", Constant, replace=True)
    with pytest.raises(UserError, match="unknown attribution method 'nope': choose one of .*constant"):
        make_method("nope")


def test_entry_point_plugins_load_once_and_a_broken_one_is_one_line(clean_registry, monkeypatch,
                                                                    installed_plugins):
    installed_plugins(attribution.ENTRY_POINT_GROUP, {"plugged": Constant})
    assert "plugged" in method_names()
    assert isinstance(make_method("plugged"), Constant)
    monkeypatch.setattr(attribution, "_PLUGINS_LOADED", False)
    installed_plugins(attribution.ENTRY_POINT_GROUP, {"broken": ImportError("no module x")})
    with pytest.raises(UserError, match="plugin 'broken' .* failed to load: ImportError: no module x"):
        method_names()
