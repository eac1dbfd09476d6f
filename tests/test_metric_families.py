"""The robustness, localisation, complexity and random-logit metrics (issue 18): planted answers,
and values written out by hand from Quantus 0.6.0's formulas on the same inputs."""

import math

import numpy as np
import pytest
import torch

from saliencylab.data import DataSpec
from saliencylab.evaluation import Settings, registry
from saliencylab.evaluation.complexity import entropy, gini
from saliencylab.evaluation.localisation import (
    attribution_localisation,
    pointing_game,
    relevance_mass,
    relevance_rank,
)
from saliencylab.evaluation.measure import applicable, measure
from saliencylab.evaluation.randomization import other_classes
from saliencylab.evaluation.references import NO_MASKS
from saliencylab.evaluation.robustness import lipschitz_ratios, sensitivities

# research note B.10: a = [[0.1, 0.4], [0.3, -0.2]], s = [[0, 1], [1, 0]]; Quantus 0.6.0 gives
# Sparseness 0.25, Complexity 1.279854, PointingGame 1, RRA 1, AttributionLocalisation 0.7
A = torch.tensor([[0.1, 0.4], [0.3, -0.2]]).view(1, 1, 2, 2)
S = torch.tensor([[0, 1], [1, 0]], dtype=torch.bool).view(1, 1, 2, 2)
SPEC = DataSpec("t", (1, 2, 2), ("0", "1"), (0.5,), (0.25,))


def test_the_worked_example_matches_quantus_by_hand():
    # after normalise_by_max: c = [0.25, 1, 0.75, 0.5] (abs) + 1e-7, sorted [0.25, 0.5, 0.75, 1]
    c = np.sort(np.array([0.25, 1, 0.75, 0.5]) + 1e-7)
    k = np.arange(1, 5)
    assert gini(A).item() == pytest.approx(((2 * k - 4 - 1) * c).sum() / (4 * c.sum()))
    assert gini(A).item() == pytest.approx(0.25, abs=1e-6)
    p = np.array([0.1, 0.4, 0.3, 0.2]) / 1.0
    assert entropy(A).item() == pytest.approx(-(p * np.log(p + 1e-12)).sum())
    assert entropy(A).item() == pytest.approx(1.279854, abs=1e-6)
    assert pointing_game(A, S).item() == 1.0
    assert relevance_rank(A, S).item() == 1.0  # top-2 are 0.4 and 0.3, both inside
    assert attribution_localisation(A, S).item() == pytest.approx(0.7)  # 0.7 / 1.0
    # relevance mass keeps positive relevance (the paper): (0.4 + 0.3) / (0.1 + 0.4 + 0.3);
    # Quantus's default abs=False gives 0.7 / 0.6 = 1.1667 here (a documented difference)
    assert relevance_mass(A, S).item() == pytest.approx(0.7 / 0.8)


def test_localisation_planted_answers():
    mask = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    mask[:, :, 1:3, 1:3] = True
    oracle, inverted = mask.float(), 1 - mask.float()
    for f in (pointing_game, relevance_mass, relevance_rank, attribution_localisation):
        assert f(oracle, mask).tolist() == [1.0] * 3, f.__name__
        assert f(inverted, mask).tolist() == [0.0] * 3, f.__name__
    constant = torch.ones(1, 1, 4, 4)
    assert pointing_game(constant, mask[:1]).item() == 1.0  # ties count as hits (Quantus)
    assert relevance_mass(constant, mask[:1]).item() == pytest.approx(4 / 16)
    # ties are broken by position: the top 4 of a constant map are pixels 0..3, none in the mask
    assert relevance_rank(constant, mask[:1]).item() == 0.0
    half = torch.zeros(1, 1, 4, 4)
    half[..., 1, 1] = half[..., 0, 0] = 1.0  # top 4: pixels 0 and 5, then 1 and 2; 5 is inside
    assert relevance_rank(half, mask[:1]).item() == pytest.approx(0.25)
    assert relevance_mass(-oracle[:1], mask[:1]).item() == 0.0  # no positive relevance


def test_complexity_planted_answers():
    n = 16
    assert gini(torch.full((1, 1, 4, 4), 3.0)).item() == pytest.approx(0.0, abs=1e-12)
    one_hot = torch.zeros(1, 1, 4, 4)
    one_hot[..., 2, 3] = -5.0
    # c = [1 + ε, ε, ..., ε]: G = ((n − 1)(1 + ε) − Σ_{k<n} (n + 1 − 2k) ε) / (n (1 + nε))
    eps = 1e-7
    exact = ((n - 1) * (1 + eps) + sum(2 * k - n - 1 for k in range(1, n)) * eps) / (n * (1 + n * eps))
    assert gini(one_hot).item() == pytest.approx(exact, rel=1e-9)
    assert gini(one_hot).item() == pytest.approx(1 - 1 / n, abs=1e-5)
    assert entropy(torch.full((1, 1, 4, 4), 2.0)).item() == pytest.approx(math.log(n))
    assert entropy(one_hot).item() == pytest.approx(0.0, abs=1e-10)


W = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]])


def grad_x_input(model, x, target):
    """gradient x input of f(x) = W x + b: w_target ⊙ x."""
    return W[target].view(-1, 1, 2, 2) * x


def test_sensitivity_and_lipschitz_by_hand_on_a_linear_model():
    x = torch.tensor([[1.0, -1.0, 0.5, 2.0]]).view(1, 1, 2, 2)
    target = torch.tensor([0])
    deltas = [torch.tensor([0.1, -0.2, 0.0, 0.1]).view(1, 1, 2, 2),
              torch.tensor([0.2, 0.2, -0.1, 0.0]).view(1, 1, 2, 2)]
    noise = lambda x, j: deltas[j]  # noqa: E731
    w = W[0].numpy()
    phi = w * x.flatten().numpy()
    # Quantus MaxSensitivity: max_j ‖Φ(x) − Φ(x+δ_j)‖₂ / ‖Φ(x)‖₂ = ‖w⊙δ_j‖ / ‖w⊙x‖
    by_hand = [np.linalg.norm(w * d.flatten().numpy()) / np.linalg.norm(phi) for d in deltas]
    got = sensitivities(grad_x_input, None, x, target, grad_x_input(None, x, target), noise, 2)
    assert got[0].tolist() == pytest.approx(by_hand)
    # Local Lipschitz (maps divided by their own largest |value|, as Quantus with one sample)
    ratios = []
    for d in deltas:
        moved = w * (x.flatten().numpy() + d.flatten().numpy())
        diff = phi / np.abs(phi).max() - moved / np.abs(moved).max()
        ratios.append(np.linalg.norm(diff) / (np.linalg.norm(d.flatten().numpy()) + 1e-10))
    got = lipschitz_ratios(grad_x_input, None, x, target, grad_x_input(None, x, target), noise, 2)
    assert got[0].tolist() == pytest.approx(ratios)


def test_a_linear_models_gradient_has_sensitivity_zero_and_every_group_runs(linear_model):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    masks = torch.zeros(6, 1, 2, 2, dtype=torch.bool)
    masks[..., 0, :] = True
    settings = Settings(robustness_images=4, robustness_samples=5, mprt_images=6)
    groups = ["sensitivity", "local_lipschitz", "localisation", "complexity", "random_logit"]
    out = measure(linear_model(), x, y, SPEC, ["gradient", "input_x_gradient", "random", "oracle",
                                                "inverted_oracle"],
                  groups, settings=settings, masks=masks)
    per = out["per_image"]
    for metric in ("max_sensitivity", "avg_sensitivity", "local_lipschitz"):
        assert per[metric]["gradient"] == pytest.approx(np.zeros(4), abs=1e-6)  # ∇ is constant
        assert per[metric]["input_x_gradient"].min() > 0.01  # w ⊙ x moves with x
        for fixed in ("oracle", "random"):  # masks, and seeded noise, ignore the input
            assert per[metric][fixed] == pytest.approx(np.zeros(4)), fixed
    assert per["relevance_rank"]["oracle"].tolist() == [1.0] * 6
    assert per["relevance_rank"]["inverted_oracle"].tolist() == [0.0] * 6
    assert per["random_logit"]["oracle"] == pytest.approx(np.ones(6))  # ignores the class
    assert per["random_logit"]["gradient"].mean() < 0.99  # W's two rows differ
    assert set(out["seconds"]) == set(groups)
    for g in groups:
        for m in registry.group(g).metrics:
            low, high = m.value_range
            for values in per[m.name].values():
                assert np.all((values >= low) & (values <= high)), m.name


def test_without_masks_the_localisation_metrics_and_oracles_are_left_out_with_a_reason(linear_model):
    x = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    methods, groups, skipped = applicable(linear_model(), x, torch.tensor([0, 1]), SPEC,
                                          ["gradient", "oracle"], ["localisation", "complexity"])
    assert methods == ["gradient"] and groups == ["complexity"]
    assert skipped == {"oracle": NO_MASKS, "localisation": NO_MASKS}


def test_the_random_other_class_is_never_the_target():
    target = torch.arange(10).repeat(50)
    other = other_classes(target, 10, seed=3)
    assert (other != target).all() and set(other.tolist()) == set(range(10))
    assert torch.equal(other, other_classes(target, 10, seed=3))
