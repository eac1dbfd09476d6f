"""Model-parameter randomisation (Adebayo et al. 2018), SSIM, Spearman, Kendall tau, bootstrap."""

import numpy as np
import pytest
import torch

from saliencylab.attribution import make_method
from saliencylab.evaluation.randomization import layers_top_down, mprt, similarities, spearman, ssim
from saliencylab.evaluation.statistics import bootstrap_ci, kendall_tau
from saliencylab.models.registry import build_model


def trained_lenet():
    from saliencylab import data
    from saliencylab.training.config import TrainConfig
    from saliencylab.training.loop import train

    ds = data.load_dataset("digits").subset(400, 40)
    torch.manual_seed(0)
    model = build_model("lenet", ds.spec.shape, 10)
    train(model, ds.x_train, ds.y_train, ds.spec, TrainConfig(epochs=3, batch_size=32, lr=0.05),
          seed=0, progress=False)
    return model.eval(), ds.spec.normalize(ds.x_test), ds.y_test


def test_layers_are_listed_from_the_logits_down():
    model = build_model("lenet", (1, 8, 8), 10)
    assert layers_top_down(model, torch.zeros(1, 1, 8, 8)) == [
        "classifier.5", "classifier.3", "classifier.1", "features.3", "features.0"]


def test_randomising_every_layer_destroys_gradient_maps_but_not_a_map_of_the_input():
    model, x, y = trained_lenet()
    gradient = make_method("gradient").attribute
    rows = mprt(model, x, y, gradient, "cascading")
    assert rows[-1]["layer"] == "features.0"  # every layer randomised
    assert abs(np.mean(rows[-1]["spearman_abs"])) < 0.3
    assert np.mean(rows[0]["spearman_abs"]) > np.mean(rows[-1]["spearman_abs"])
    image = lambda model, x, target: x.sum(1, keepdim=True)  # noqa: E731  ignores the model
    for row in mprt(model, x, y, image, "cascading") + mprt(model, x, y, image, "independent"):
        assert np.allclose(row["spearman"], 1) and np.allclose(row["ssim"], 1)
    before = [p.clone() for p in model.parameters()]
    mprt(model, x, y, gradient, "independent")
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # a copy is randomised


def test_spearman_by_hand_with_ties():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert spearman(a, a)[0] == pytest.approx(1)
    assert spearman(a, -a)[0] == pytest.approx(-1)
    # ranks (1, 2, 3.5, 3.5) vs (1, 2, 3, 4): centred (-1.5, -.5, 1, 1) and (-1.5, -.5, .5, 1.5)
    # -> (2.25 + .25 + .5 + 1.5) / sqrt(4.5 * 5) = 4.5 / sqrt(22.5)
    assert spearman(torch.tensor([[1.0, 2.0, 5.0, 5.0]]), a)[0] == pytest.approx(4.5 / 22.5 ** 0.5)
    assert spearman(torch.zeros(1, 4), a)[0] == 0.0


def test_ssim_identical_maps_is_one_and_a_hand_computed_pair():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 9, 9, generator=g)
    assert np.allclose(ssim(a, a), 1)
    # a 3x3 map with a 3x3 window (one window): a = constant 0.5 and b = a checkerboard of 0/1.
    # means .5 and 5/9; var(a) = 0; cov = 0 -> SSIM = (2 .5 5/9 + c1)(c2) / ((.25 + 25/81 + c1)(var_b + c2))
    a = torch.full((1, 1, 3, 3), 0.5)
    b = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]]).view(1, 1, 3, 3)
    c1, c2, mb = 0.01 ** 2, 0.03 ** 2, 5 / 9
    var_b = (5 - 9 * mb ** 2) / 8  # sample variance of five 1s and four 0s
    expected = (2 * 0.5 * mb + c1) * c2 / ((0.25 + mb ** 2 + c1) * (var_b + c2))
    assert ssim(a, b, window=3)[0] == pytest.approx(expected)


def test_kendall_tau_hand_computed_on_three_methods():
    # metric A ranks methods (g, ig, random) as 1, 2, 3; metric B as 1, 3, 2:
    # pairs (g, ig) concordant, (g, random) concordant, (ig, random) discordant -> (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_images():
    values = np.random.default_rng(0).normal(5, 1, 400)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
    narrow = bootstrap_ci(np.tile(values, 4))
    assert narrow[1] - narrow[0] < high - low
    assert bootstrap_ci(values, seed=1) != (low, high) and bootstrap_ci(values) == (low, high)


class BareParameter(torch.nn.Module):
    """A linear model on a bare nn.Parameter: no module with reset_parameters (issue 14, C10)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(3 + 2 * torch.randn(64, 10))

    def forward(self, x):
        return x.flatten(1) @ self.weight


def test_a_bare_parameter_is_redrawn_from_a_normal_of_its_own_spread():
    from saliencylab.evaluation.randomization import randomize_layer

    torch.manual_seed(1)
    model, twin = BareParameter(), BareParameter()
    twin.load_state_dict(model.state_dict())
    assert layers_top_down(model, torch.zeros(1, 1, 8, 8)) == [""]  # the root holds it
    spread = model.weight.std().item()
    randomize_layer(model, "", 5)
    randomize_layer(twin, "", 5)
    assert torch.equal(model.weight, twin.weight)  # seeded
    assert abs(model.weight.mean().item()) < 0.5 and model.weight.std().item() == pytest.approx(
        spread, rel=0.15)  # N(0, s^2): centred at 0 where the original was at 3


def test_a_model_without_parameters_has_nothing_to_randomise():
    from saliencylab.core.errors import UserError

    with pytest.raises(UserError, match="the model has no parameters, so no layer to randomise"):
        mprt(torch.nn.Flatten(), torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long),
             lambda model, x, target: x)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_layer_is_not_redrawn_with_the_seed_that_built_it(seed):
    """A linear model's gradient map is its weight row: built under torch.manual_seed(seed) and
    randomised with the same seed, its first layer must not get its initial weights back."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8)
    rows = mprt(model, x, y, make_method("gradient").attribute, "cascading", seed)
    assert abs(np.mean(rows[-1]["spearman_abs"])) < 0.5


def test_constant_maps_unchanged_by_randomisation_have_similarity_one():
    zeros = torch.zeros(3, 1, 4, 4)
    same = similarities(zeros, zeros + 5)  # both constant: the same (all-tied) map
    assert all(np.allclose(same[k], 1) for k in ("spearman_abs", "spearman", "ssim"))
    assert np.allclose(spearman(zeros, torch.rand(3, 1, 4, 4)), 0)  # it changed: no similarity
    model, x, y = trained_lenet()
    rows = mprt(model, x, y, lambda model, x, target: torch.zeros_like(x[:, :1]), "cascading")
    assert all(np.allclose(row["spearman_abs"], 1) for row in rows)  # the worst score, not 0


def maps_with_ties(seed, shape=(12, 1, 9, 11)):
    """Random maps of few distinct values (many ties), one all-zero map, one with -0.0 and 0.0."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-3, 4, shape, generator=g).float() / 2
    a[0] = 0.0
    a[1, 0, 0, :3] = torch.tensor([-0.0, 0.0, -0.0])
    return a


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_ranks_and_spearman_equal_scipy_on_maps_with_ties(seed):
    from scipy.stats import rankdata, spearmanr

    from saliencylab.evaluation.randomization import average_ranks

    a, b = maps_with_ties(seed), maps_with_ties(seed + 10)
    b[0], b[2] = torch.randn(1, 9, 11), torch.randn(1, 9, 11)  # no ties
    assert np.array_equal(average_ranks(a.flatten(1)).numpy(), rankdata(a.flatten(1).numpy(), axis=1))
    ours = spearman(a, b)
    for i in range(1, len(a)):  # image 0 is constant: scipy's rho is undefined there
        assert ours[i] == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten())[0], abs=1e-12)
    assert ours[0] == 0.0 and spearman(a[:1], 2 * a[:1])[0] == 1.0  # one constant map / both


def reference_ssim(a, b, window):
    """SSIM window by window (numpy): sample (co)variances, K1 .01, K2 .03, data range 1."""
    c1, c2, out = 0.01 ** 2, 0.03 ** 2, []
    for x, y in zip(a[:, 0].double().numpy(), b[:, 0].double().numpy()):
        values = []
        for r in range(x.shape[0] - window + 1):
            for c in range(x.shape[1] - window + 1):
                p, q = x[r:r + window, c:c + window].ravel(), y[r:r + window, c:c + window].ravel()
                cov = np.cov(p, q)  # ddof 1
                values.append((2 * p.mean() * q.mean() + c1) * (2 * cov[0, 1] + c2)
                              / ((p.mean() ** 2 + q.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)))
        out.append(np.mean(values))
    return np.array(out)


def test_batched_ssim_equals_a_window_by_window_reference():
    from saliencylab.attribution.maps import normalize_maps

    a, b = normalize_maps(maps_with_ties(3)), normalize_maps(torch.rand(12, 1, 9, 11))
    assert np.allclose(ssim(a, b), reference_ssim(a, b, 7), atol=1e-12)
    assert np.allclose(ssim(a, b, window=3), reference_ssim(a, b, 3), atol=1e-12)
    assert np.allclose(ssim(a[:, :, :6], b[:, :, :6]), reference_ssim(a[:, :, :6], b[:, :, :6], 5),
                       atol=1e-12)  # window 7 shrinks to the odd number below the smaller side


def test_independent_mode_equals_a_fresh_copy_per_layer_and_cascade_one_copy():
    """Independent: each layer alone on a fresh copy of the trained model; cascading: each layer
    on top of the ones above. By hand, against mprt's rows."""
    import copy

    from saliencylab.evaluation.randomization import layer_seed, randomize_layer

    torch.manual_seed(0)
    model = build_model("lenet", (1, 8, 8), 10).eval()
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6)
    gradient = make_method("gradient").attribute
    original = gradient(model, x, y)
    cascade = copy.deepcopy(model)
    for mode in ("independent", "cascading"):
        for i, row in enumerate(mprt(model, x, y, gradient, mode, seed=3)):
            randomised = copy.deepcopy(model) if mode == "independent" else cascade
            randomize_layer(randomised, row["layer"], layer_seed(3, i))
            expected = similarities(original, gradient(randomised, x, y))
            assert all(np.array_equal(row[k], expected[k]) for k in expected)
    given = mprt(model, x, y, gradient, "cascading", 3, original)  # the caller's maps
    assert np.array_equal(given[-1]["ssim"], mprt(model, x, y, gradient, "cascading", 3)[-1]["ssim"])
