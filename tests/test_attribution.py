"""Attribution methods: hand-computed reference values and property tests.

Reference values are worked out on paper in the comments and written as literals; they
are never produced by calling the implementation under test.
"""

import pytest
import torch
from torch import nn

from saliencylab.attribution import METHODS, TRANSFORMER_METHODS, make_method
from saliencylab.core.errors import UserError
from saliencylab.models.registry import build_model

# --------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------


class Square(nn.Module):
    """Logit 0 = sum of x^2, logit 1 = sum of x."""

    def forward(self, x):
        return torch.stack([(x**2).sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3))], dim=1)


class QuadraticCAM(nn.Module):
    """cam_layer: 1x1 conv 1->2 with weights (1, 2), so A^1 = x, A^2 = 2x.
    Logit 0 = sum_ij A1^2 - 0.25 sum_ij A2^2  =>  dY0/dA1 = 2 A1, dY0/dA2 = -0.5 A2.
    Logit 1 = sum of A."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        self.cam_layer = self.conv

    def forward(self, x):
        a = self.conv(x)
        y0 = (a[:, 0] ** 2).sum(dim=(1, 2)) - 0.25 * (a[:, 1] ** 2).sum(dim=(1, 2))
        return torch.stack([y0, a.sum(dim=(1, 2, 3))], dim=1)


class LinearReadoutCAM(nn.Module):
    """1x4x4 input -> conv 1->2, kernel 2, stride 2 (cam_layer, 2x2 output) -> linear 8->2.
    Channel 1 sums each 2x2 patch, channel 2 is half of that."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2, stride=2, bias=False)
        with torch.no_grad():
            self.conv.weight[0].fill_(1.0)
            self.conv.weight[1].fill_(0.5)
        self.fc = nn.Linear(8, 2)
        with torch.no_grad():
            # flatten order (k, i, j): channel 1 weights then channel 2 weights
            self.fc.weight.copy_(torch.tensor([
                [1.0, 2.0, 3.0, -2.0, -1.0, -1.0, -1.0, -1.0],
                [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
            ]))
            self.fc.bias.zero_()
        self.cam_layer = self.conv

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def smooth_convnet(channels: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 3, 3, padding=1), nn.Softplus(),
        nn.Conv2d(3, 4, 3, stride=2), nn.Tanh(),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 3),
    )


def all_hooks(model: nn.Module) -> list:
    out = []
    for m in model.modules():
        out += [*m._forward_hooks.values(), *m._forward_pre_hooks.values(),
                *m._backward_hooks.values()]
        out += list(getattr(m, "_backward_pre_hooks", {}).values())
    return out


FAST = dict(ig_steps=4, smoothgrad_samples=2, baseline="zeros", shap_baselines=2)

# --------------------------------------------------------------------------------------
# Hand-computed reference values
# --------------------------------------------------------------------------------------


def test_gradient_of_linear_model_is_weight_row(linear_model):
    x = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    a = make_method("gradient").attribute(linear_model(), x, torch.tensor([0, 1]))
    assert a.shape == (2, 1, 2, 2) and a.dtype == torch.float32
    assert torch.equal(a[0, 0], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert torch.equal(a[1, 0], torch.tensor([[-1.0, 0.5], [0.0, 2.0]]))
    a_abs = make_method("gradient", absolute=True).attribute(
        linear_model(), x, torch.tensor([0, 1]))
    assert torch.equal(a_abs[1, 0], torch.tensor([[1.0, 0.5], [0.0, 2.0]]))


def test_multichannel_attribution_is_summed_over_channels(linear_model):
    # x is 2x1x2, flatten order (c, h, w): channel 0 <- W[:, 0:2], channel 1 <- W[:, 2:4]
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    a = make_method("gradient").attribute(linear_model(), x, torch.tensor([0]))
    assert a.shape == (1, 1, 1, 2)
    assert torch.equal(a[0, 0, 0], torch.tensor([1.0 + 3.0, 2.0 + 4.0]))
    # absolute gradient of target 1: |-1| + |0| , |0.5| + |2|  (abs before the channel sum)
    a = make_method("gradient", absolute=True).attribute(
        linear_model(), x, torch.tensor([1]))
    assert torch.equal(a[0, 0, 0], torch.tensor([1.0, 2.5]))


def test_integrated_gradients_linear_is_difference_times_weight(linear_model):
    x = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]]])
    b = torch.full((1, 2, 2), 0.5)
    a = make_method("integrated_gradients", baseline_image=b, ig_steps=7).attribute(
        linear_model(), x, torch.tensor([0]))
    # (x - b) * W[0] = [[0.5, -1.5], [1.5, 0]] * [[1, 2], [3, 4]]
    torch.testing.assert_close(a[0, 0], torch.tensor([[0.5, -3.0], [4.5, 0.0]]))
    # zero baseline by default: x * W[1] = [[1,-1],[2,.5]] * [[-1,.5],[0,2]]
    a = make_method("integrated_gradients", baseline="zeros", ig_steps=7).attribute(
        linear_model(), x, torch.tensor([1]))
    torch.testing.assert_close(a[0, 0], torch.tensor([[-1.0, -0.5], [0.0, 1.0]]))


def test_integrated_gradients_of_square():
    # IG_i of sum x^2 from b: (x_i - b_i) * int_0^1 2 (b_i + t (x_i - b_i)) dt = x_i^2 - b_i^2
    x = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]]])
    a = make_method("integrated_gradients", baseline="zeros", ig_steps=5).attribute(Square(), x, torch.tensor([0]))
    torch.testing.assert_close(a[0, 0], torch.tensor([[1.0, 4.0], [9.0, 0.25]]))
    b = torch.tensor([[[1.0, 1.0], [-1.0, 2.0]]])
    a = make_method("integrated_gradients", baseline_image=b[None], ig_steps=5).attribute(
        Square(), x, torch.tensor([0]))
    torch.testing.assert_close(a[0, 0], torch.tensor([[0.0, 3.0], [8.0, -3.75]]))


def test_guided_backprop_zeroes_negative_gradients_at_relus():
    # x -> identity linear -> ReLU -> [1, -1] readout. At x = (1, 2) both units are active.
    # gradient = (1, -1); guided backprop clamps the gradient at the ReLU: (1, 0).
    l1, l2 = nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        l1.weight.copy_(torch.eye(2))
        l2.weight.copy_(torch.tensor([[1.0, -1.0]]))
    model = nn.Sequential(nn.Flatten(), l1, nn.ReLU(), l2)
    x = torch.tensor([[[[1.0, 2.0]]]])
    t = torch.tensor([0])
    assert torch.equal(make_method("gradient").attribute(model, x, t)[0, 0, 0],
                       torch.tensor([1.0, -1.0]))
    assert torch.equal(make_method("guided_backprop").attribute(model, x, t)[0, 0, 0],
                       torch.tensor([1.0, 0.0]))
    assert all_hooks(model) == []


def test_gradcam_linear_readout_hand_computed():
    # x: top-left patch 1s (sum 4), top-right 0.5s (sum 2), bottom-left 0, bottom-right
    # -0.25s (sum -1).  A1 = [[4, 2], [0, -1]], A2 = A1 / 2 = [[2, 1], [0, -0.5]].
    x = torch.tensor([[[[1.0, 1.0, 0.5, 0.5],
                        [1.0, 1.0, 0.5, 0.5],
                        [0.0, 0.0, -0.25, -0.25],
                        [0.0, 0.0, -0.25, -0.25]]]])
    # target 0: dY/dA1 = [1, 2, 3, -2] -> alpha1 = 1; dY/dA2 = [-1]*4 -> alpha2 = -1.
    # map = ReLU(A1 - A2) = ReLU(A1 / 2) = [[2, 1], [0, 0]].
    # Bilinear 2 -> 4 (align_corners=False) along a line [p, q]: p, .75p+.25q, .25p+.75q, q.
    # Row 0 [2, 1] -> [2, 1.75, 1.25, 1]; row 1 -> 0s; then the same rule down the columns.
    expected = torch.tensor([[2.0, 1.75, 1.25, 1.0],
                             [1.5, 1.3125, 0.9375, 0.75],
                             [0.5, 0.4375, 0.3125, 0.25],
                             [0.0, 0.0, 0.0, 0.0]])
    a = make_method("gradcam").attribute(LinearReadoutCAM(), x, torch.tensor([0]))
    assert a.shape == (1, 1, 4, 4)
    torch.testing.assert_close(a[0, 0], expected)
    # target 1: alpha1 = 0, alpha2 = 1 -> ReLU(A2) = [[2, 1], [0, 0]]: the same map.
    a = make_method("gradcam").attribute(LinearReadoutCAM(), x, torch.tensor([1]))
    torch.testing.assert_close(a[0, 0], expected)


def test_gradcam_plus_plus_hand_computed():
    # x = [[1, 2], [0, -1]]: A1 = x, A2 = 2x = [[2, 4], [0, -2]].
    # Target 0: g1 = 2 A1 = [[2, 4], [0, -2]],  g2 = -0.5 A2 = [[-1, -2], [0, 1]].
    # sum_ab A1 = 2, sum_ab A2 = 4.  alpha = g^2 / (2 g^2 + S g^3) = 1 / (2 + S g), 0 if g=0.
    #   channel 1 (S=2): g=2 -> 1/6, g=4 -> 1/10, g=0 -> 0, g=-2 -> 1/(2-4) = -1/2
    #   w1 = 1/6 * 2 + 1/10 * 4 + 0 + (-1/2) * ReLU(-2) = 1/3 + 2/5 = 11/15
    #   channel 2 (S=4): g=-1 -> -1/2, g=-2 -> -1/6, g=0 -> 0, g=1 -> 1/6
    #   w2 = 0 + 0 + 0 + 1/6 * 1 = 1/6
    # map = ReLU(w1 A1 + w2 A2) = ReLU((11/15 + 2/6) A1) = ReLU(16/15 A1)
    #     = [[16/15, 32/15], [0, 0]]  (layer output is already 2x2: no resize)
    x = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]]])
    a = make_method("gradcam++").attribute(QuadraticCAM(), x, torch.tensor([0]))
    torch.testing.assert_close(a[0, 0], torch.tensor([[16 / 15, 32 / 15], [0.0, 0.0]]))
    # Grad-CAM on the same case: alpha1 = mean(g1) = 1, alpha2 = mean(g2) = -0.5
    # map = ReLU(A1 - 0.5 * 2 A1) = 0 everywhere; Grad-CAM++ differs.
    a = make_method("gradcam").attribute(QuadraticCAM(), x, torch.tensor([0]))
    assert torch.equal(a, torch.zeros(1, 1, 2, 2))


def test_gradcam_plus_plus_linear_readout_hand_computed():
    # Same data as the Grad-CAM test. Target 0, channel 1: g = [[1, 2], [3, -2]], S = 5,
    # alpha = 1/(2 + 5g): 1/7, 1/12, 1/17, 1/(2-10) = -1/8;
    # w1 = 1/7 + 2/12 + 3/17 + 0.  Channel 2: g = -1 everywhere -> ReLU(g) = 0 -> w2 = 0.
    # map = ReLU(w1 A1) = w1 * [[4, 2], [0, 0]] (w1 > 0), then the 2 -> 4 upsampling above
    # with row 0 [4w1, 2w1] = 2 w1 * [2, 1].
    w1 = 1 / 7 + 2 / 12 + 3 / 17
    upsampled = torch.tensor([[2.0, 1.75, 1.25, 1.0],
                              [1.5, 1.3125, 0.9375, 0.75],
                              [0.5, 0.4375, 0.3125, 0.25],
                              [0.0, 0.0, 0.0, 0.0]])
    x = torch.tensor([[[[1.0, 1.0, 0.5, 0.5],
                        [1.0, 1.0, 0.5, 0.5],
                        [0.0, 0.0, -0.25, -0.25],
                        [0.0, 0.0, -0.25, -0.25]]]])
    a = make_method("gradcam++").attribute(LinearReadoutCAM(), x, torch.tensor([0]))
    torch.testing.assert_close(a[0, 0], 2 * w1 * upsampled)


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("nonzero_baseline", [False, True])
def test_integrated_gradients_completeness(nonzero_baseline):
    model = smooth_convnet()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 5, 5, generator=g)
    b = torch.randn(2, 5, 5, generator=g) if nonzero_baseline else torch.zeros(2, 5, 5)
    t = torch.tensor([0, 2, 1])
    a = make_method("integrated_gradients", baseline="zeros",
                    baseline_image=b if nonzero_baseline else None, ig_steps=32).attribute(model, x, t)
    with torch.no_grad():
        fx = model(x).gather(1, t[:, None])[:, 0]
        fb = model(b.expand_as(x)).gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(a.sum(dim=(1, 2, 3)), fx - fb, rtol=1e-2, atol=1e-3)


def test_integrated_gradients_memory_bound():
    model = smooth_convnet()
    x = torch.randn(5, 2, 5, 5, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 1, 2, 0, 1])
    reference = make_method("integrated_gradients", baseline="zeros", ig_steps=10).attribute(model, x, t)
    sizes: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    try:
        for rows in (8, 2):  # 8: 5 images, 1 step each; 2: fewer rows than images
            sizes.clear()
            bounded = make_method("integrated_gradients", baseline="zeros", ig_steps=10,
                                  max_batch_rows=rows).attribute(model, x, t)
            assert sizes and max(sizes) <= rows
            assert sum(sizes) == 5 * 10
            torch.testing.assert_close(bounded, reference)
    finally:
        handle.remove()


def test_smoothgrad_one_sample_no_noise_equals_gradient(linear_model):
    model = smooth_convnet()
    x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([1, 2])
    grad = make_method("gradient").attribute(model, x, t)
    sg = make_method("smoothgrad", smoothgrad_samples=1, smoothgrad_sigma=0.0).attribute(
        model, x, t)
    torch.testing.assert_close(sg, grad)
    # a linear model has a constant gradient, so any noise leaves SmoothGrad unchanged
    xl = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]]])
    sg = make_method("smoothgrad", smoothgrad_samples=3, smoothgrad_sigma=0.5).attribute(
        linear_model(), xl, torch.tensor([0]))
    torch.testing.assert_close(sg[0, 0], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_smoothgrad_deterministic_and_bounded():
    model = smooth_convnet()
    x = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0, 1, 2])
    kw = dict(smoothgrad_samples=5, smoothgrad_sigma=0.2, max_batch_rows=6)
    state = torch.get_rng_state()
    sizes: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    try:
        a1 = make_method("smoothgrad", seed=0, **kw).attribute(model, x, t)
    finally:
        handle.remove()
    assert max(sizes) <= 6 and sum(sizes) == 3 * 5
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    a2 = make_method("smoothgrad", seed=0, **kw).attribute(model, x, t)
    a3 = make_method("smoothgrad", seed=1, **kw).attribute(model, x, t)
    assert torch.equal(a1, a2)
    assert not torch.allclose(a1, a3)
    assert not torch.allclose(a1, make_method("gradient").attribute(model, x, t))


def test_random_is_seeded():
    x = torch.zeros(2, 3, 4, 4)
    t = torch.tensor([0, 0])
    m1, m2, m3 = (make_method("random", seed=s) for s in (7, 7, 8))
    first, second = m1.attribute(None, x, t), m1.attribute(None, x, t)
    assert first.shape == (2, 1, 4, 4) and first.dtype == torch.float32
    assert torch.equal(first, m2.attribute(None, x, t))
    assert torch.equal(second, m2.attribute(None, x, t))
    assert not torch.equal(first, second)
    assert not torch.equal(first, m3.attribute(None, x, t))
    assert first.min() >= 0 and first.max() < 1


MODEL_CASES = [("lenet", (3, 16, 16), 5), ("tiny_cnn", (1, 28, 28), 10),
               ("sgt_cnn", (1, 12, 12), 4), ("tiny_cnn", (3, 8, 8), 3)]


@pytest.mark.parametrize("name", [m for m in METHODS if m not in TRANSFORMER_METHODS])
@pytest.mark.parametrize("model_name,shape,classes", MODEL_CASES)
def test_shapes_and_model_left_untouched(name, model_name, shape, classes):
    torch.manual_seed(0)
    model = build_model(model_name, shape, classes)
    model.train()
    model.classifier[0].eval()  # a mixed mode must come back as it was
    modes = [m.training for m in model.modules()]
    x = torch.randn(2, *shape)
    x_before = x.clone()
    t = torch.tensor([0, classes - 1])
    with torch.no_grad():  # the caller's no_grad must not break attribution
        a = make_method(name, **FAST).attribute(model, x, t)
    assert a.shape == (2, 1, *shape[1:])
    assert a.dtype == torch.float32 and a.device == x.device
    assert torch.isfinite(a).all()
    assert [m.training for m in model.modules()] == modes
    assert all_hooks(model) == []
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad and torch.equal(x, x_before)
    if name in ("gradcam", "gradcam++"):
        assert (a >= 0).all()


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "guided_backprop", "gradient"])
def test_hooks_and_mode_restored_after_exception(name):
    model = build_model("tiny_cnn", (1, 8, 8), 3)
    model.train()
    mine = model.cam_layer.register_forward_hook(lambda m, i, o: None)
    with pytest.raises((RuntimeError, IndexError)):
        make_method(name).attribute(model, torch.randn(1, 1, 8, 8), torch.tensor([99]))
    assert model.training and all(m.training for m in model.modules())
    assert list(model.cam_layer._forward_hooks) == [mine.id]  # only the caller's hook
    mine.remove()
    assert all_hooks(model) == []


def test_gradcam_layer_override():
    torch.manual_seed(0)
    model = build_model("tiny_cnn", (1, 8, 8), 3)
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([0, 1])
    default = make_method("gradcam").attribute(model, x, t)
    same = make_method("gradcam", cam_layer="features.4").attribute(model, x, t)
    other = make_method("gradcam", cam_layer="features.0").attribute(model, x, t)
    assert torch.equal(default, same)
    assert other.shape == default.shape and not torch.equal(default, other)
    with pytest.raises(UserError):
        make_method("gradcam", cam_layer="nope").attribute(model, x, t)


def test_errors(linear_model):
    with pytest.raises(UserError, match="unknown attribution method 'lime'"):
        make_method("lime")
    with pytest.raises(UserError):
        make_method("integrated_gradients", baseline_image=torch.zeros(2, 2))
    with pytest.raises(UserError):  # no cam_layer on a plain Sequential
        make_method("gradcam").attribute(linear_model(), torch.zeros(1, 1, 2, 2),
                                         torch.tensor([0]))
