"""Traditional, SGT and SMOOT objectives: masking, the K update, λ = 0, planted AUC."""

import math

import pytest
import torch
from torch import nn

from saliencylab.data import DataSpec
from saliencylab.models.registry import build_model
from saliencylab.protocols import sgt as st
from saliencylab.protocols.sgt.config import AUTHORS_OPTIONS
from saliencylab.protocols.sgt.drop_test import drop_test
from saliencylab.runs import config as run_config
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train
from saliencylab.training.objectives import (
    SGT,
    SMOOT,
    ObjectiveConfig,
    Traditional,
    lowest_mask,
    make_objective,
    smoot_delta,
    smoot_step,
    smoot_update,
)

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


def test_per_image_counts_and_signed_vs_absolute_saliency():
    s = torch.tensor([[-5.0, -1.0, 0.5, 2.0, 3.0]]).view(1, 1, 1, 5).repeat(2, 1, 1, 1)
    mask = lowest_mask(s, torch.tensor([1, 3]))
    assert mask.flatten(1).tolist() == [[True, False, False, False, False],
                                        [True, True, True, False, False]]
    # absolute saliency: -5 is the most salient, so 0.5 and -1 go first
    assert lowest_mask(s.abs(), 2).flatten(1)[0].tolist() == [False, True, True, False, False]


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


@pytest.mark.parametrize("rounding, steps", [
    # μ·δ = −2.5, −0.3125, −0.078125, 0.3125, 0.625, 2.5 (δ exact in binary)
    ("floor", [-3, -1, -1, 0, 0, 2]),  # the paper's ⌊·⌋: every small negative δ is −1
    ("round", [-2, 0, 0, 0, 1, 2]),  # to the nearest, halves to even
    ("trunc", [-2, 0, 0, 0, 0, 2]),  # toward zero: symmetric
])
def test_k_update_readings_of_the_rounding(rounding, steps):
    delta = torch.tensor([-0.25, -0.03125, -0.0078125, 0.03125, 0.0625, 0.25])
    assert smoot_step(delta, 10, rounding).tolist() == steps


def test_k_readings_rank_on_the_masked_softmax_and_delta_per_batch():
    p = torch.tensor([[0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125]])
    p_masked = torch.tensor([[0.25, 0.375, 0.125, 0.125, 0.0625, 0.0625]])
    # ranked by p̃: classes 1, 0, 2, 3, 4 (ties in class order); δ1 = 0.375 − 0.25 = 0.125;
    # δ2 = (−0.25 + 0 + 0.0625 + 0.03125) / 4 = −0.0390625; δ = 0.95·0.125 + 0.05·δ2
    delta = smoot_delta(p, p_masked, alpha=0.95, n=5, rank="masked")
    assert delta.item() == pytest.approx(0.95 * 0.125 - 0.05 * 0.0390625, abs=1e-12)
    smoot = SMOOT(ObjectiveConfig(k_delta="batch"), n_train=4, classes=6, pixels=100)
    logits = torch.log(torch.cat([p, p_masked]))  # δ: −0.234765625 and −0.116796875 (above)
    smoot.after_forward(torch.tensor([0, 2]), logits, logits.flip(0))
    # per image the steps would be −3 and −2; the batch mean δ = −0.17578125, ⌊−1.76⌋ = −2 for both
    assert smoot.K.tolist() == [48, 50, 48, 50]
    assert "K step <0 100.0%, 0 0.0%, >0 0.0%, mean -2.000" in smoot.epoch_summary()
    smoot.reseed(1)
    assert smoot.epoch_summary() == "no SMOOT steps this epoch"


def test_the_k_readings_leave_the_run_hash_at_their_defaults():
    """Runs made before the options keep their hash; another reading is another run."""
    base = run_config.load_preset("sgt", "smoot-quick", st.SaliencyTrainingConfig())
    base = run_config.override(base, "device", "cpu")
    before = "862b7bf170"  # tests/test_config.py: a run made before issue 19
    assert run_config.config_hash(base) == before
    for key, default, other in [("k_rounding", "floor", "trunc"), ("k_delta", "image", "batch"),
                                ("k_rank", "clean", "masked")]:
        with_key = lambda value: run_config.override(base, f"objective.{key}", value)  # noqa: E731
        assert run_config.config_hash(with_key(default)) == before
        assert run_config.config_hash(with_key(other)) != before


@pytest.mark.parametrize("unit, start, after_one, after_two", [
    # percent: K in integer percent; 16 pixels, so 50% masks 8 pixels
    ("percent", 50, [50, 47, 50, 47], [50, 47, 47, 44]),
    # pixels: K starts at ⌊50% · 16⌋ = 8 pixels and moves by ⌊μ·δ⌋ = −3 pixels, bounded by
    # ⌊20% · 16⌋ = 3 and ⌊80% · 16⌋ = 12 pixels
    ("pixels", 8, [8, 5, 8, 5], [8, 5, 5, 3]),
])
def test_smoot_step_masks_with_the_current_k_then_updates_it(unit, start, after_one, after_two):
    objective = SMOOT(ObjectiveConfig(k_init=50, k_unit=unit, saliency_pass="shared"), n_train=4,
                      classes=6, pixels=16)  # one forward of x, then one of x̃
    assert objective.K.tolist() == [start] * 4
    seen = []
    real = objective.masked_input
    objective.masked_input = lambda x, s, counts: seen.append(counts.clone()) or real(x, s, counts)
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
    assert seen[0].tolist() == [8, 8]  # pixels masked: 50% of 16 in either unit
    assert objective.K.tolist() == after_one
    objective(model, x, torch.tensor([0, 1]), torch.tensor([3, 2]))
    masked = [int(math.floor(k * 16 / 100)) if unit == "percent" else k for k in after_one]
    assert seen[1].tolist() == [masked[3], masked[2]]
    assert objective.K.tolist() == after_two


def test_k_in_pixels_stays_within_20_and_80_percent_of_the_pixels():
    x, y = toy_data()  # 8x8 = 64 pixels: K starts at ⌊0.5·64⌋ = 32, bounds ⌊0.2·64⌋ = 12, ⌊0.8·64⌋ = 51
    objective = SMOOT(ObjectiveConfig(mu=1000.0), n_train=len(x), classes=10, pixels=64)
    assert (objective.K == 32).all() and (objective.k_min, objective.k_max) == (12, 51)
    model = build_model("tiny_cnn", SPEC.shape, 10)
    ks = []
    train(model, x, y, SPEC, TrainConfig(epochs=3, batch_size=32, lr=0.05), seed=0,
          objective=objective, on_epoch_end=lambda e: ks.append(objective.K.clone()),
          progress=False)
    k = torch.cat(ks)
    assert k.min() >= 12 and k.max() <= 51
    assert (k == 12).any() or (k == 51).any()  # μ = 1000 drives K to a bound
    assert objective.k_stats(64) == {"k_min": float(objective.K.min()),
                                     "k_median": float(objective.K.double().median()),
                                     "k_max": float(objective.K.max())}


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
    from saliencylab.core.errors import UserError
    with pytest.raises(UserError, match="unknown objective 'sgd'"):
        make_objective("sgd", ObjectiveConfig(), 10, 10, 64)
    with pytest.raises(UserError, match="k_init"):
        ObjectiveConfig(k_init=90).validate()
    with pytest.raises(UserError, match="exceeds"):
        make_objective("smoot", ObjectiveConfig(n=5), 10, 3, 64)


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

    def evaluate(method="gradient", fill="uniform", **eval_fields):
        config = st.SaliencyTrainingConfig(eval=st.DropTestConfig(methods=(method,), fills=(fill,),
                                                               **eval_fields))
        record = drop_test(config, planted, ds)
        return record["accuracy"], record["curves"][method][fill], record["auc"][method][fill]

    accuracy, curve, faithful = evaluate()
    assert accuracy == 1.0 and curve[0] == 100.0
    assert curve[2] < 25  # the block (14% of the pixels) is gone by 20%
    assert faithful < evaluate(method="random")[2] - 20
    assert faithful < evaluate(removal="lerf")[2] - 40
    assert faithful < evaluate(fill="mean")[2] + 5  # mean fill: also destroyed


def test_the_multi_method_evaluation_gives_one_auc_per_method_and_fill():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8, generator=g)
    model = build_model("tiny_cnn", SPEC.shape, 10)
    ds = type("DS", (), {"x_test": x, "y_test": torch.randint(0, 10, (60,), generator=g),
                         "spec": SPEC})()
    methods, fills = ("gradient", "deeplift", "random"), ("corner", "mean")
    config = st.SaliencyTrainingConfig(eval=st.DropTestConfig(
        methods=methods, fills=fills,
        attribution=AUTHORS_OPTIONS.__class__(baseline="uniform", shap_baselines=2)))
    record = drop_test(config, model, ds)
    for key in ("auc", "auc_0_90"):
        assert set(record[key]) == set(methods)
        assert all(set(record[key][m]) == set(fills) for m in methods)
    curve = record["curves"]["gradient"]["corner"]
    assert record["auc"]["gradient"]["corner"] == pytest.approx(
        sum((curve[i] + curve[i + 1]) / 2 * 0.1 for i in range(10)))
    assert record["auc_0_90"]["gradient"]["corner"] == pytest.approx(
        sum((curve[i] + curve[i + 1]) / 2 * 0.1 for i in range(9)))


# the training saliency, as in the authors' code ------------------------------------------------
def test_training_saliency_is_the_gradient_of_log_softmax_of_the_label():
    torch.manual_seed(0)
    model = build_model("tiny_cnn", SPEC.shape, 10).eval()
    x, y = toy_data(6)
    xb = SPEC.normalize(x)
    x_ = xb.clone().requires_grad_(True)
    score = torch.log_softmax(model(x_), 1).gather(1, y[:, None]).sum()
    (expected,) = torch.autograd.grad(score, x_)
    for saliency_pass in ("eval", "shared"):
        _, s = SGT(ObjectiveConfig(saliency_pass=saliency_pass)).saliency(model, xb, y)
        torch.testing.assert_close(s, expected)
    _, logit = SGT(ObjectiveConfig(saliency_output="logit")).saliency(model, xb, y)
    assert not torch.allclose(logit, expected)


def test_the_eval_mode_pass_uses_no_dropout_and_leaves_the_model_training():
    torch.manual_seed(0)
    model = build_model("sgt_cnn", SPEC.shape, 10).train()
    x, y = toy_data(4)
    xb = SPEC.normalize(x)
    objective = SGT(ObjectiveConfig(saliency_pass="eval"))
    first = objective.saliency(model, xb, y)[1]
    second = objective.saliency(model, xb, y)[1]
    assert model.training and all(m.training for m in model.modules())
    torch.testing.assert_close(first, second)  # dropout would make two passes differ
    shared = SGT(ObjectiveConfig(saliency_pass="shared"))
    assert not torch.allclose(shared.saliency(model, xb, y)[1], shared.saliency(model, xb, y)[1])


def test_the_fill_range_is_the_remaining_pixels_or_the_whole_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 1, 6, 6, generator=g)
    s = x.clone()  # the lowest pixels of x are the ones masked: the remaining range is high
    for fill_range, low in (("uniform", lambda i, m: x[i][~m[i]].min()),
                            ("uniform_image", lambda i, m: x[i].min())):
        objective = SGT(ObjectiveConfig(fill=fill_range), seed=1)
        out = objective.masked_input(x, s, 18)
        mask = lowest_mask(s, 18)
        for i in range(20):
            assert out[i][mask[i]].min() >= low(i, mask)
        lows = torch.stack([out[i][mask[i]].min() for i in range(20)])
        if fill_range == "uniform_image":  # draws reach below the remaining pixels' minimum
            assert (lows < torch.stack([x[i][~mask[i]].min() for i in range(20)])).any()
