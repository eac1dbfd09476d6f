"""Traditional, SGT and SMOOT objectives: masking, the K update, λ = 0, planted AUC."""

import math

import pytest
import torch
from torch import nn

from saliencylab.config import TrainConfig
from saliencylab.data import DataSpec
from saliencylab.models import build_model
from saliencylab.objectives import (SGT, SMOOT, ObjectiveConfig, Traditional, lowest_mask,
                                    make_objective, smoot_delta, smoot_update)
from saliencylab.protocols import saliency_training as st
from saliencylab.training import train

torch.set_num_threads(1)
SPEC = DataSpec("toy", (1, 8, 8), tuple(map(str, range(10))), (0.5,), (0.25,))


def toy_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


# masking -------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, 10, 50, 70, 100])
def test_mask_keeps_exactly_the_top_share_and_fills_within_the_kept_range(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(5, 1, 10, 10, generator=g)
    s = torch.randn(5, 1, 10, 10, generator=g)
    mask = lowest_mask(s, k)
    removed = math.floor(k * 100 / 100)
    assert mask.flatten(1).sum(1).tolist() == [removed] * 5
    for i in range(5):  # every kept pixel is at least as salient as every removed one
        kept, gone = s[i][~mask[i]], s[i][mask[i]]
        if len(kept) and len(gone):
            assert kept.min() >= gone.max()
    objective = SGT(ObjectiveConfig(k=k), seed=1)
    x_masked = objective.masked_input(x, s, k)
    assert torch.equal(x_masked[~mask], x[~mask])
    if 0 < k < 100:
        for i in range(5):
            kept = x[i][~mask[i]]
            filled = x_masked[i][mask[i]]
            assert filled.min() >= kept.min() and filled.max() <= kept.max()
            assert not torch.equal(filled, x[i][mask[i]])


def test_per_image_percentages_and_signed_vs_absolute_saliency():
    s = torch.tensor([[-5.0, -1.0, 0.5, 2.0, 3.0]]).view(1, 1, 1, 5).repeat(2, 1, 1, 1)
    mask = lowest_mask(s, torch.tensor([20, 60]))
    assert mask.flatten(1).tolist() == [[True, False, False, False, False],
                                        [True, True, True, False, False]]
    # absolute saliency: -5 is the most salient, so 0.5 and -1 go first
    assert lowest_mask(s.abs(), 40).flatten(1)[0].tolist() == [False, True, True, False, False]


# SMOOT K update ------------------------------------------------------------------------------
def test_k_update_matches_a_hand_computed_case():
    p = torch.tensor([[0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125]])
    p_masked = torch.tensor([[0.25, 0.375, 0.125, 0.125, 0.0625, 0.0625]])
    # c1..c5 = classes 0..4 (ranked by the unmasked p); δ1 = 0.25 − 0.5 = −0.25;
    # δ2 = (0.125 + 0 + 0.0625 + 0.03125) / 4 = 0.0546875;
    # δ = 0.95·(−0.25) + 0.05·0.0546875 = −0.234765625; ⌊10·δ⌋ = ⌊−2.3477⌋ = −3
    delta = smoot_delta(p, p_masked, alpha=0.95, n=5)
    assert delta.item() == pytest.approx(-0.234765625, abs=1e-12)
    assert smoot_update(torch.tensor([50], dtype=torch.int16), delta, 10, 20, 80).item() == 47
    # roles swapped: c1..c5 ranked by the (new) unmasked output = classes 1, 0, 2, 3, 4 (the
    # tie 2/3 stays in class order); δ1 = 0.25 − 0.375 = −0.125;
    # δ2 = ((0.5 − 0.25) + 0 + (0.0625 − 0.125) + (0.03125 − 0.0625)) / 4 = 0.0390625;
    # δ = 0.95·(−0.125) + 0.05·0.0390625 = −0.116796875; ⌊−1.168⌋ = −2
    delta = smoot_delta(p_masked, p, alpha=0.95, n=5)
    assert delta.item() == pytest.approx(-0.116796875, abs=1e-12)
    assert smoot_update(torch.tensor([50]), delta, 10, 20, 80).item() == 48
    # a positive δ: ⌊10·0.2347⌋ = 2
    assert smoot_update(torch.tensor([50]), torch.tensor([0.2347]), 10, 20, 80).item() == 52
    # clipping at both ends
    k = smoot_update(torch.tensor([21, 79]), torch.tensor([-0.234765625, 0.2347]), 10, 20, 80)
    assert k.tolist() == [20, 80]


def test_smoot_step_masks_with_the_current_k_then_updates_it():
    objective = SMOOT(ObjectiveConfig(k_init=50), n_train=4, classes=6)
    seen = []
    real = objective.masked_input
    objective.masked_input = lambda x, s, percent: seen.append(percent.clone()) or real(x, s, percent)
    p = torch.tensor([[0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125]])
    p_masked = torch.tensor([[0.25, 0.375, 0.125, 0.125, 0.0625, 0.0625]])

    class Fixed(nn.Module):  # f(x) = log p for the clean image, log p̃ once it is masked
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            out = (p if self.calls % 2 else p_masked).log().expand(len(x), -1)
            return out + self.w * x.flatten(1)[:, :1]

    model = Fixed()
    x = torch.randn(2, 1, 4, 4)
    objective(model, x, torch.tensor([0, 1]), torch.tensor([1, 3]))
    assert seen[0].tolist() == [50, 50]
    assert objective.K.tolist() == [50, 47, 50, 47]
    objective(model, x, torch.tensor([0, 1]), torch.tensor([3, 2]))
    assert seen[1].tolist() == [47, 50]
    assert objective.K.tolist() == [50, 47, 47, 44]


def test_k_stays_within_bounds_under_extreme_steps():
    x, y = toy_data()
    cfg = ObjectiveConfig(mu=1000.0, k_min=30, k_max=60, k_init=45)
    objective = SMOOT(cfg, n_train=len(x), classes=10)
    model = build_model("tiny_cnn", SPEC.shape, 10)
    ks = []
    train(model, x, y, SPEC, TrainConfig(epochs=3, batch_size=32, lr=0.05), seed=0,
          objective=objective, on_epoch_end=lambda e: ks.append(objective.K.clone()),
          progress=False)
    for k in ks:
        assert k.min() >= 30 and k.max() <= 60
    assert set(torch.cat(ks).unique().tolist()) <= set(range(30, 61))
    assert (torch.cat(ks) != 45).any()  # it moved


# λ = 0 ---------------------------------------------------------------------------------------
def test_lambda_zero_reduces_sgt_to_traditional():
    x, y = toy_data()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    trained = {}
    for name, objective in (("traditional", Traditional()),
                            ("sgt", SGT(ObjectiveConfig(lam=0.0), seed=3))):
        torch.manual_seed(0)
        model = build_model("tiny_cnn", SPEC.shape, 10)  # no dropout
        train(model, x, y, SPEC, cfg, seed=0, objective=objective, progress=False)
        trained[name] = model.state_dict()
    for key, value in trained["traditional"].items():
        torch.testing.assert_close(trained["sgt"][key], value, rtol=0, atol=1e-6)
    # with λ > 0 the parameters differ
    torch.manual_seed(0)
    model = build_model("tiny_cnn", SPEC.shape, 10)
    train(model, x, y, SPEC, cfg, seed=0, objective=SGT(ObjectiveConfig(lam=1.0)), progress=False)
    assert any(not torch.allclose(model.state_dict()[k], v) for k, v in trained["traditional"].items())


def test_lambda_zero_gives_the_cross_entropy_gradient_with_dropout():
    x, y = toy_data(32)
    xb = SPEC.normalize(x)
    grads = []
    for objective in (Traditional(), SGT(ObjectiveConfig(lam=0.0))):
        torch.manual_seed(0)
        model = build_model("sgt_cnn", SPEC.shape, 10).train()
        torch.manual_seed(1)
        objective(model, xb, y, torch.arange(32)).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_make_objective_rejects_unknown_names_and_bad_configs():
    from saliencylab.errors import UserError
    with pytest.raises(UserError, match="unknown objective 'sgd'"):
        make_objective("sgd", ObjectiveConfig(), 10, 10)
    with pytest.raises(UserError, match="k_init"):
        ObjectiveConfig(k_init=90).validate()
    with pytest.raises(UserError, match="exceeds"):
        make_objective("smoot", ObjectiveConfig(n=5), 10, 3)


# planted AUC ---------------------------------------------------------------------------------
class BlockModel(nn.Module):
    """Linear classifier reading only the pixels where `mask` is True."""

    def __init__(self, weight: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight * mask.flatten())

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def test_planted_block_model_has_lower_auc_than_rankings_that_ignore_the_block():
    """A model that reads only a 3x3 pixel block: its gradient points at the block, so removing
    the most salient features destroys it at once (low AUC); a random ranking, or removing the
    least salient features first, leaves the block until late (high AUC)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8, generator=g)
    block = torch.zeros(8, 8, dtype=torch.bool)
    block[:3, :3] = True  # 9 of 64 pixels
    planted = BlockModel(torch.randn(10, 64, generator=g), block)
    y = planted(SPEC.normalize(x)).argmax(1)
    ds = type("DS", (), {"x_test": x, "y_test": y, "spec": SPEC})()

    def evaluate(**eval_fields):
        config = st.SaliencyTrainingConfig(eval=st.EvalConfig(**eval_fields))
        return st.evaluate_model(config, planted, ds)

    faithful = evaluate()
    assert faithful["accuracy"] == 1.0 and faithful["drop_0"] == 100.0
    assert faithful["drop_20"] < 25  # the block (14% of the pixels) is gone by 20%
    assert faithful["auc"] < evaluate(method="random")["auc"] - 20
    assert faithful["auc"] < evaluate(order="least")["auc"] - 40
    assert faithful["auc"] < evaluate(fill="mean")["auc"] + 5  # mean fill: also destroyed
