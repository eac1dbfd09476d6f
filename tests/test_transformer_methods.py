"""Transformer methods (issue 16) against hand-computed cases (research note §2.4-§2.5):
attention rollout and Chefer's transformer attribution; Grad-CAM on ViT tokens through the
token reshape; LRP through Captum (conservation, the hand-computed linear case, cleanup)."""

import json

import pytest
import torch
from tiny import read_results
from torch import nn

from saliencylab.attribution import MethodOptions, make_method
from saliencylab.attribution.attention import captured_attention, relevance, rollout
from saliencylab.attribution.tokens import to_grid
from saliencylab.core.errors import NotApplicable, UserError
from saliencylab.models.vit import DeiT, VitConfig

A1 = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]])
A2 = torch.tensor([[0.4, 0.4, 0.2], [0.3, 0.3, 0.4], [0.25, 0.25, 0.5]])
G1 = torch.tensor([[1.0, -2, 4], [0.5, 1, -1], [2, 0, 1]])
G2 = torch.tensor([[2.0, 1, -1], [1, -1, 2], [0, 3, 1]])


def one_head(m):  # [N, N] -> [B=1, H=1, N, N]
    return m[None, None]


def test_rollout_of_the_hand_computed_two_layer_case():
    r = rollout([one_head(A1), one_head(A2)])[0]
    want = torch.tensor([[0.55, 0.2625, 0.1875], [0.1875, 0.56875, 0.24375],
                         [0.14375, 0.228125, 0.628125]])
    torch.testing.assert_close(r, want)
    torch.testing.assert_close(r.sum(dim=1), torch.ones(3))  # row-stochastic


def test_chefer_of_the_hand_computed_two_layer_case():
    r = relevance([one_head(A1), one_head(A2)], [one_head(G1), one_head(G2)])[0]
    want = torch.tensor([[2.74, 0.64, 1.8], [0.71, 1.6, 1.58], [0.375, 1.2, 2.4]])
    torch.testing.assert_close(r, want)


def test_chefer_with_unit_gradients_is_two_to_the_layers_times_rollout():
    a = [one_head(A1), one_head(A2)]
    r = relevance(a, [torch.ones_like(t) for t in a])
    torch.testing.assert_close(r, 4 * rollout(a))


def test_chefer_clamps_each_head_before_the_head_mean():
    a = torch.tensor([[[0.5, 0.5], [0.5, 0.5]], [[0.25, 0.75], [0.5, 0.5]]])[None]
    g = torch.tensor([[[1.0, -1], [0, 0]], [[-2.0, 2], [0, 0]]])[None]
    assert relevance([a], [g])[0, 0, 1] == pytest.approx(0.75)  # 0.5: mean, then clamp


def test_chefer_with_no_positive_evidence_gives_zeros_not_nan():
    a = [one_head(A1)]
    r = relevance(a, [-torch.ones_like(a[0])])
    torch.testing.assert_close(r[0], torch.eye(3))


def toy_vit(depth=2):
    torch.manual_seed(0)
    return DeiT((1, 8, 8), 3, VitConfig(img_size=8, patch_size=4, dim=8, depth=depth, heads=2,
                                        allow_random_init=True)).eval()


def test_the_explicit_attention_path_matches_the_fused_one_and_is_restored():
    model, x = toy_vit(), torch.randn(2, 1, 8, 8)
    fused = model(x)
    with captured_attention(model) as store:
        explicit = model(x)
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-5)
    assert len(store) == 2 and store[0].shape == (2, 2, 5, 5)
    torch.testing.assert_close(store[0].sum(-1), torch.ones(2, 2, 5))
    assert all(block.attn.fused_attn for block in model.blocks)


def test_attention_methods_on_a_toy_vit_read_the_class_token_row():
    model, x, t = toy_vit(), torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    with captured_attention(model) as store:
        model(x)
    want = rollout(store)[:, 0, 1:].reshape(2, 1, 2, 2)
    maps = make_method("attention_rollout").attribute(model, x, t)
    assert maps.shape == (2, 1, 8, 8)
    up = torch.nn.functional.interpolate(want, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(maps, up)
    chefer = make_method("transformer_attribution").attribute(model, x, t)
    assert chefer.shape == (2, 1, 8, 8) and torch.isfinite(chefer).all()
    assert not torch.equal(chefer, make_method("transformer_attribution").attribute(
        model, x, torch.tensor([1, 1])))  # class-specific, unlike rollout


def test_attention_methods_are_not_applicable_to_a_cnn():
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3))
    with pytest.raises(NotApplicable, match=r"exposes no attention: no `attn_drop` module"):
        make_method("attention_rollout").attribute(cnn, torch.randn(1, 1, 8, 8), [0])


def test_an_attentions_attribute_is_the_documented_alternative():
    class Wrapper(nn.Module):  # a Hugging Face wrapper stores out.attentions on itself
        def __init__(self):
            super().__init__()
            self.vit = toy_vit()

        def forward(self, x):
            with captured_attention(self.vit) as store:
                logits = self.vit(x)
            self.attentions = tuple(store)
            return logits

    model, x, t = Wrapper(), torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    torch.testing.assert_close(make_method("attention_rollout").attribute(model, x, t),
                               make_method("attention_rollout").attribute(model.vit, x, t))


def test_token_grid_drops_class_and_distillation_tokens():
    tokens = torch.arange(2 * 6 * 3, dtype=torch.float).reshape(2, 6, 3)  # [B, 2 + 2x2, D]
    grid = to_grid(tokens, None, "layer")
    assert grid.shape == (2, 3, 2, 2) and torch.equal(grid[0, :, 0, 0], tokens[0, 2])
    with pytest.raises(UserError, match=r"7 tokens do not make a square patch grid \(dropping 1 "
                                        r"leaves 6\)"):
        to_grid(torch.zeros(1, 7, 3), 1, "layer")


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_gradcam_on_a_two_block_toy_vit_through_the_token_reshape(method):
    model, x, t = toy_vit(), torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    tokens = make_method(method, cam_layer="blocks.1.norm1").attribute(model, x, t)
    assert tokens.shape == (2, 1, 8, 8) and (tokens >= 0).all() and tokens.abs().sum() > 0
    # by hand: the norm1 output tokens without the class token, as a grid, and their gradient
    store = {}
    handle = model.blocks[1].norm1.register_forward_hook(lambda m, i, o: store.update(a=o))
    score = model(x).gather(1, t[:, None]).sum()
    handle.remove()
    (g,) = torch.autograd.grad(score, store["a"])
    a, g = store["a"][:, 1:].detach(), g[:, 1:]
    if method == "gradcam":
        cam = torch.relu((g.mean(dim=1, keepdim=True) * a).sum(-1)).reshape(2, 1, 2, 2)
        up = torch.nn.functional.interpolate(cam, size=(8, 8), mode="bilinear",
                                             align_corners=False)
        torch.testing.assert_close(tokens, up)


def test_lrp_of_the_hand_computed_linear_case():
    lin = nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 3.0]]))
        lin.bias.fill_(0.5)
    model = nn.Sequential(nn.Flatten(), lin)
    r = make_method("lrp").attribute(model, torch.tensor([[[[1.0, 1.0, 2.0]]]]), [0])
    torch.testing.assert_close(r[0, 0, 0], torch.tensor([1.0, -2.0, 6.0]))  # w ⊙ x


def bias_free_relu_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 5, bias=False), nn.ReLU(),
                         nn.Linear(5, 3, bias=False)).eval()


def test_lrp_conserves_relevance_and_leaves_the_model_clean():
    model, x, t = bias_free_relu_net(), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    r = make_method("lrp").attribute(model, x, t)
    logits = model(x).gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(r.sum(dim=(1, 2, 3)), logits, rtol=1e-5, atol=1e-5)
    ixg = make_method("input_x_gradient").attribute(model, x, t)
    torch.testing.assert_close(r, ixg, rtol=1e-5, atol=1e-6)
    assert not any(hasattr(m, "rule") or hasattr(m, "activations") for m in model.modules())


def test_lrp_on_a_layer_captum_has_no_rule_for_is_not_applicable():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.GELU(), nn.Linear(8, 3))
    with pytest.raises(NotApplicable, match=r"lrp cannot explain Sequential: Captum's LRP has "
                                            r"no rule for 2 \(GELU\)$"):
        make_method("lrp").attribute(model, torch.randn(1, 1, 8, 8), [0])
    assert not any(hasattr(m, "rule") or hasattr(m, "activations") for m in model.modules())


def test_lrp_keeps_a_rule_the_user_set():
    from captum.attr._utils.lrp_rules import GammaRule

    model = bias_free_relu_net()
    rule = model[4].rule = GammaRule()
    make_method("lrp").attribute(model, torch.randn(2, 1, 8, 8), [0, 1])
    assert model[4].rule is rule and not hasattr(model[0], "rule")


def test_cam_tokens_dropped_is_an_option():
    model, x, t = toy_vit(), torch.randn(1, 1, 8, 8), torch.tensor([0])
    with pytest.raises(UserError, match=r"5 tokens do not make a square patch grid \(dropping 2"):
        make_method("gradcam", cam_layer="blocks.1.norm1", cam_tokens_dropped=2).attribute(
            model, x, t)
    with pytest.raises(UserError, match=r"cam_tokens_dropped must be >= 0"):
        MethodOptions(cam_tokens_dropped=-1).validate()


# evaluate model=deit_tiny with sgt's vit.* keys -----------------------------------------------
SMALL_VIT_KEYS = ["vit.img_size=8", "vit.patch_size=4", "vit.dim=8", "vit.depth=2", "vit.heads=2"]


def test_evaluate_takes_deit_tiny_with_the_vit_keys_of_sgt(tmp_path, capsys):
    from saliencylab.cli import main

    sets = [arg for key in SMALL_VIT_KEYS + ["vit.allow_random_init=true", "n_test=12",
                                            "n_train=60", "seeds=0", "train.epochs=1",
                                            "methods=attention_rollout,transformer_attribution,"
                                            "gradcam,random", "metrics=deletion"]
            for arg in ("--set", key)]
    assert main(["evaluate", "--preset", "evaluate-quick", "--model", "deit_tiny", *sets,
                 "--workers", "1", "--out", str(tmp_path / "runs")]) == 0
    capsys.readouterr()
    (run,) = (tmp_path / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["vit"]["depth"] == 2 and config["vit"]["img_size"] == 8
    assert {row["method"] for row in read_results(run)} == {
        "attention_rollout", "transformer_attribution", "gradcam", "random"}


def test_evaluate_deit_tiny_without_weights_or_random_init_is_one_line(tmp_path, capsys):
    from saliencylab.cli import main

    argv = ["evaluate", "--preset", "evaluate-quick", "--model", "deit_tiny",
            "--out", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "vit.pretrained=PATH" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
    # with your weights (model_file) the model is built without pretrained weights, then loaded
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(DeiT((1, 8, 8), 10, VitConfig(img_size=8, patch_size=4, dim=8, depth=2, heads=2,
                                             allow_random_init=True)).state_dict(), weights)
    sets = [arg for key in SMALL_VIT_KEYS + [f"model_file={weights}", "n_test=8", "seeds=0",
                                            "methods=attention_rollout,random",
                                            "metrics=deletion"]
            for arg in ("--set", key)]
    assert main(argv + sets + ["--workers", "1"]) == 0
