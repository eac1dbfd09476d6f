"""Pruning (masks, strategies, rewinding) and the pruning protocol end to end on scikit-learn
digits: tiny, offline and fast."""

import csv
import json

import pytest
import torch
from damage import copy_run, flip_a_byte, into_a_directory, rewrite_verified
from torch import nn

from saliencylab import attribution, data, models
from saliencylab.attribution.maps import normalize_maps
from saliencylab.cli import main
from saliencylab.evaluation.localisation import soft_iou
from saliencylab.protocols import prune as pruning
from saliencylab.protocols.prune import protocol
from saliencylab.runs import config as cfg
from saliencylab.runs.jobs import ExecOptions
from saliencylab.training.config import TrainConfig
from saliencylab.training.pruning import (
    GlobalMagnitude,
    RandomPruning,
    apply_masks,
    count_to_prune,
    density,
    enforce,
    expected_remaining,
    full_masks,
    layer_densities,
    masked_weights,
    prunable,
    prune,
    rewind,
)

# deterministic: the resume and parallel tests compare results bit for bit, also on CUDA
TINY = ["n_train=256", "n_test=64", "levels=3", "pretrain.epochs=2", "retrain.epochs=2",
        "retrain.lr_milestones=1", "pretrain.lr_milestones=1", "seeds=333", "n_examples=2",
        "deterministic=true"]


def tiny_config(*extra):
    return cfg.apply_sets(cfg.load_preset("prune", "prune-quick", pruning.PruneConfig()),
                          TINY + list(extra))


def read_results(run_dir):
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """tiny_cnn runs on one thread, as the protocol's chains do (two are slower on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits").subset(256, 64)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One uninterrupted tiny run, shared by the tests that only read it."""
    return pruning.run(tiny_config(), str(tmp_path_factory.mktemp("runs")), "tiny")


# masks ------------------------------------------------------------------------------------
def test_prunable_weights_are_conv_and_linear_weights_only():
    model = models.build_model("tiny_cnn", (1, 28, 28), 10)
    params = prunable(model)
    assert list(params) == ["features.0.weight", "features.3.weight", "classifier.1.weight"]
    assert [p.numel() for p in params.values()] == [36, 288, 2000]  # 200 features -> fc 10


def test_pruned_weights_stay_exactly_zero_through_retraining_with_momentum_and_decay(digits):
    torch.manual_seed(0)
    model = models.build_model("tiny_cnn", digits.spec.shape, 10)
    masks = prune(masked_weights(model), full_masks(model), 0.5, GlobalMagnitude())
    apply_masks(model, masks)
    start = masked_weights(model)
    config = tiny_config("retrain.epochs=3", "retrain.weight_decay=0.01")
    protocol.retrain_level(config, digits, model, masks, seed=1, level=1, progress=False)
    weights = prunable(model)
    for name, mask in masks.items():
        assert torch.all(weights[name][~mask] == 0), name  # exactly zero, not just small
        assert not torch.equal(weights[name][mask], start[name][mask]), name  # survivors trained
    assert density(masks) == pytest.approx(0.5, abs=1 / 644)


def test_masking_only_the_forward_pass_is_not_enough(digits):
    """The control: without re-masking, momentum and weight decay revive pruned weights."""
    torch.manual_seed(0)
    model = models.build_model("tiny_cnn", digits.spec.shape, 10)
    masks = prune(masked_weights(model), full_masks(model), 0.5, GlobalMagnitude())
    apply_masks(model, masks)
    from saliencylab.training.loop import train
    train(model, digits.x_train[:64], digits.y_train[:64], digits.spec,
          TrainConfig(epochs=1, batch_size=32, lr=0.05, weight_decay=0.01), 0, progress=False)
    weights = prunable(model)
    assert any(torch.any(weights[n][~m] != 0) for n, m in masks.items())


def test_enforce_zeroes_momentum_and_weight_decay_keeps_an_exact_zero_at_zero():
    layer = nn.Linear(4, 3)
    masks = {"weight": torch.tensor([[1, 0, 1, 0]] * 3, dtype=torch.bool)}
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(5):
        loss = layer(torch.randn(8, 4)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        enforce(layer, masks, optimizer)
        buffer = optimizer.state[layer.weight]["momentum_buffer"]
        assert torch.all(layer.weight[~masks["weight"]] == 0)
        assert torch.all(buffer[~masks["weight"]] == 0)
    # SGD with weight decay and momentum on an exactly-zero weight with zero grad and buffer
    w = nn.Parameter(torch.zeros(3))
    sgd = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        w.grad = torch.zeros(3)
        sgd.step()
    assert torch.all(w == 0)


# density schedule and strategies -------------------------------------------------------------
def test_density_after_level_l_is_0_8_to_the_l_with_per_layer_counts():
    torch.manual_seed(0)
    model = models.build_model("tiny_cnn", (1, 28, 28), 10)
    masks = full_masks(model)
    total = 2324
    generator = torch.Generator().manual_seed(0)
    for level in range(1, 26):
        weights = {n: torch.randn(m.shape, generator=generator) for n, m in masks.items()}
        before = sum(int(m.sum()) for m in masks.values())
        new = prune(weights, masks, 0.2, GlobalMagnitude())
        kept = sum(int(m.sum()) for m in new.values())
        assert before - kept == count_to_prune(before, 0.2) == round(0.2 * before)
        assert all(not torch.any(new[n] & ~masks[n]) for n in masks)  # nothing revived
        assert kept == expected_remaining(total, 0.2, level)
        assert abs(kept - total * 0.8 ** level) <= 2.5  # to rounding
        assert density(new) == pytest.approx(0.8 ** level, abs=2.5 / total)
        layers = layer_densities(new)
        assert sum(layers[n] * new[n].numel() for n in new) == pytest.approx(kept)
        masks = new
    assert kept == expected_remaining(total, 0.2, 25) and 6 <= kept <= 11


def test_global_magnitude_prunes_the_smallest_weights_across_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(8, 2))
    conv, fc = model[0].weight, model[2].weight  # 8 and 16 weights
    with torch.no_grad():
        conv.copy_(torch.tensor([0.9, -0.01, 0.8, 0.7, 0.6, -0.5, 0.45, 0.02]).view_as(conv))
        values = torch.linspace(1, 2, 16)
        values[3], values[10], values[12] = -0.03, 0.005, 0.04
        fc.copy_(values.view_as(fc))
    masks = full_masks(model)
    new = prune(masked_weights(model), masks, 0.25, GlobalMagnitude())  # round(0.25 * 24) = 6
    assert set((~new["0.weight"]).flatten().nonzero().flatten().tolist()) == {1, 7, 6}
    assert set((~new["2.weight"]).flatten().nonzero().flatten().tolist()) == {3, 10, 12}
    # the next level ranks only the survivors: 0.5, 0.6, 0.7, 0.8 go (all fc weights are >= 1)
    again = prune(masked_weights(model), new, 0.25, GlobalMagnitude())  # round(0.25 * 18) = 4
    assert set((~again["0.weight"]).flatten().nonzero().flatten().tolist()) == {1, 2, 3, 4, 5, 6, 7}
    assert torch.equal(again["2.weight"], new["2.weight"])


def test_random_pruning_prunes_the_same_count_among_survivors_reproducibly():
    model = models.build_model("tiny_cnn", (1, 28, 28), 10)
    masks = prune(masked_weights(model), full_masks(model), 0.2, GlobalMagnitude())
    weights = masked_weights(model)
    first = prune(weights, masks, 0.2, RandomPruning(), torch.Generator().manual_seed(1))
    second = prune(weights, masks, 0.2, RandomPruning(), torch.Generator().manual_seed(1))
    by_magnitude = prune(weights, masks, 0.2, GlobalMagnitude())
    kept = sum(int(m.sum()) for m in masks.values())
    assert sum(int(m.sum()) for m in first.values()) == kept - round(0.2 * kept)
    assert all(torch.equal(first[n], second[n]) for n in masks)
    assert all(not torch.any(first[n] & ~masks[n]) for n in masks)
    assert any(not torch.equal(first[n], by_magnitude[n]) for n in masks)


def test_rewind_restores_survivors_to_the_stored_weights_and_zeroes_the_pruned():
    torch.manual_seed(0)
    model = models.build_model("tiny_cnn", (1, 8, 8), 10)
    stored = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # "training"
    masks = prune(masked_weights(model), full_masks(model), 0.5, GlobalMagnitude())
    rewind(model, stored, masks)
    weights = prunable(model)
    for name, mask in masks.items():
        assert torch.equal(weights[name][mask], stored[name][mask])
        assert torch.all(weights[name][~mask] == 0)
    assert torch.equal(model.classifier[1].bias, stored["classifier.1.bias"])  # biases too


# heatmaps and IoU --------------------------------------------------------------------------
def test_normalize_maps_relu_and_min_max_per_image():
    a = torch.tensor([[-1.0, 0.0], [1.0, 3.0]]).view(1, 1, 2, 2)
    b = torch.tensor([[2.0, 4.0], [4.0, 6.0]]).view(1, 1, 2, 2)
    zero = torch.zeros(1, 1, 2, 2)
    constant = torch.full((1, 1, 2, 2), 5.0)
    out = normalize_maps(torch.relu(torch.cat([a, b, zero, constant])))
    assert torch.allclose(out[0, 0], torch.tensor([[0.0, 0.0], [1 / 3, 1.0]]))
    assert torch.allclose(out[1, 0], torch.tensor([[0.0, 0.5], [0.5, 1.0]]))
    assert torch.all(out[2:] == 0)


class Echo:
    """A planted 'explainer' whose heatmap is the input image itself (de-normalised)."""

    def __init__(self, spec, shift=None):
        self.spec, self.shift = spec, shift

    def attribute(self, model, x, target):
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (self.spec.mean, self.spec.std))
        a = (x * std + mean).sum(1, keepdim=True)
        return a.roll(self.shift, dims=3) if self.shift else a


def test_heatmap_identical_to_the_input_gives_iou_1_and_disjoint_gives_0(digits):
    model = models.build_model("tiny_cnn", digits.spec.shape, 10).eval()
    x = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 2:6, 1:3] = 255  # a bar in columns 1-2
    maps = protocol.heatmaps(Echo(digits.spec), model, x, digits.spec)
    assert torch.allclose(soft_iou(maps, x.float() / 255), torch.ones(2))
    moved = protocol.heatmaps(Echo(digits.spec, shift=4), model, x, digits.spec)  # columns 5-6
    assert torch.all(soft_iou(moved, x.float() / 255) == 0)
    half = protocol.heatmaps(Echo(digits.spec, shift=1), model, x, digits.spec)  # columns 2-3
    assert torch.allclose(soft_iou(half, x.float() / 255), torch.full((2,), 4 / 12))


def test_heatmaps_are_normalised_gradcam_plus_plus_of_the_predicted_class(digits):
    torch.manual_seed(0)
    model = models.build_model("tiny_cnn", digits.spec.shape, 10).eval()
    x = digits.x_test[:16]
    explainer = attribution.make_method("gradcam++")
    maps = protocol.heatmaps(explainer, model, x, digits.spec, batch_size=5)
    xn = digits.spec.normalize(x)
    target = model(xn).argmax(1)
    expected = normalize_maps(torch.relu(explainer.attribute(model, xn, target)))
    assert maps.shape == (16, 1, 8, 8)
    assert torch.allclose(maps, expected, atol=1e-6)
    assert maps.min() >= 0 and maps.max() <= 1


def test_background_noise_touches_only_zero_pixels():
    x = torch.tensor([0.0, 0.5, 0.0, 1.0] * 50)
    noisy = protocol.background_noise(x, torch.Generator().manual_seed(0), high=0.2)
    assert torch.equal(noisy[x > 0], x[x > 0])
    assert noisy[x == 0].min() >= 0 and noisy[x == 0].max() <= 0.2 and noisy[x == 0].std() > 0


# the protocol --------------------------------------------------------------------------------
def test_run_writes_results_report_plots_and_per_level_checkpoints(tiny_run):
    rows = read_results(tiny_run)
    assert list(rows[0])[:6] == ["seed", "level", "density", "accuracy", "accuracy_noisy", "iou"]
    assert list(rows[0])[6:] == ["density_features_0", "density_features_3",
                                 "density_classifier_1"]
    assert [(int(r["seed"]), int(r["level"])) for r in rows] == [(333, lv) for lv in range(4)]
    assert [float(r["density"]) for r in rows] == pytest.approx([1, 0.8, 0.64, 0.512], abs=2e-3)
    assert all(0 <= float(r["iou"]) <= 1 and 0 <= float(r["accuracy"]) <= 1 for r in rows)
    report = (tiny_run / "report.md").read_text()
    assert "Pearson ρ" in report and "Spearman ρ" in report and "| 3 |" in report
    for png in ("vs_level.png", "vs_density.png", "heatmaps.png"):
        assert (tiny_run / png).stat().st_size > 1000
    checkpoint = torch.load(tiny_run / "artifacts" / "seed333" / "level03.pt")
    assert set(checkpoint) >= {"state", "mask", "metrics", "examples"}
    assert checkpoint["examples"].shape == (2, 1, 8, 8)
    for name, mask in checkpoint["mask"].items():  # the stored model honours its mask
        assert torch.all(checkpoint["state"][name][~mask] == 0)


def test_interrupted_chain_resumes_at_the_next_level_with_the_same_results(tiny_run, tmp_path,
                                                                           monkeypatch):
    config = tiny_config()
    real = protocol.retrain_level
    calls = []

    def interrupted_at_level_3(config, ds, model, masks, seed, level, progress):
        if level == 3:
            raise KeyboardInterrupt
        calls.append(level)
        return real(config, ds, model, masks, seed, level, progress)

    monkeypatch.setattr(protocol, "retrain_level", interrupted_at_level_3)
    with pytest.raises(KeyboardInterrupt):
        pruning.run(config, str(tmp_path), "tiny")
    run_dir = next(tmp_path.iterdir())
    stored = sorted(p.name for p in (run_dir / "checkpoints" / "seed333").glob("*.pt"))
    assert stored == ["level00.pt", "level01.pt", "level02.pt", "rewind.pt"]
    assert not list(run_dir.rglob("*.tmp")) and not list((run_dir / "jobs").iterdir())
    assert calls == [1, 2]

    calls.clear()
    monkeypatch.setattr(protocol, "retrain_level", lambda *a: calls.append(a[5]) or real(*a))
    monkeypatch.setattr(protocol, "pretrain", lambda *a: pytest.fail("level 0 ran again"))
    assert pruning.run(config, str(tmp_path), "tiny") == run_dir
    assert calls == [3]
    assert read_results(run_dir) == read_results(tiny_run)


def test_rewind_epoch_zero_rewinds_to_the_initial_weights(tmp_path):
    config = tiny_config("levels=1", "rewind_epoch=0", "n_heatmaps=8")
    run_dir = pruning.run(config, str(tmp_path), "tiny")
    stored = torch.load(run_dir / "artifacts" / "seed333" / "rewind.pt")
    torch.manual_seed(333)
    init = models.build_model("tiny_cnn", (1, 8, 8), 10).state_dict()
    assert all(torch.equal(stored[k], init[k]) for k in init)
    pretrained = torch.load(run_dir / "artifacts" / "seed333" / "level00.pt")["state"]
    assert not torch.equal(pretrained["classifier.1.weight"], init["classifier.1.weight"])


def test_nested_tuple_fields_can_be_set():
    config = tiny_config("retrain.lr_milestones=5,8")
    assert config.retrain.lr_milestones == (5, 8)
    mnist = cfg.load_preset("prune", "prune-mnist", pruning.PruneConfig())
    assert mnist == pruning.PruneConfig()  # the defaults are the paper protocol
    assert mnist.pretrain.lr_milestones == (8,) and mnist.levels == 25


@pytest.mark.parametrize("argv, message", [
    (["--method", "nope"], "unknown attribution method 'nope'"),
    (["--set", "strategy=sideways"], "unknown pruning strategy 'sideways'"),
    (["--set", "fraction=1.5"], "fraction must lie in (0, 1)"),
    (["--set", "rewind_epoch=99"], "rewind_epoch must be"),
])
def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, message):
    assert main(["prune", "--out", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_cli_method_shortcut_sets_the_heatmap_method(capsys):
    assert main(["prune", "--method", "gradcam", "--show-config"]) == 0
    assert "method = 'gradcam'" in capsys.readouterr().out


def test_expected_remaining_matches_the_closed_form_to_rounding():
    for total in (644, 2324, 10_000):
        for level in range(26):
            assert abs(expected_remaining(total, 0.2, level) - total * 0.8 ** level) <= 2.5



def test_seeds_in_parallel_workers_give_the_same_results_as_in_process(tmp_path):
    config = tiny_config("levels=1", "seeds=333,334", "n_heatmaps=16")
    serial = pruning.run(config, str(tmp_path / "serial"), "tiny", options=ExecOptions(workers=1))
    parallel = pruning.run(config, str(tmp_path / "parallel"), "tiny", options=ExecOptions(workers=2))
    assert read_results(serial) == read_results(parallel)
    assert [r["seed"] for r in read_results(serial)] == ["333", "333", "334", "334"]


# issue 14 D2, C2, C4: a chain's level files are part of its job ---------------------------------
@pytest.mark.parametrize("damage", [
    flip_a_byte,
    lambda p: p.with_name(p.name + ".sha256").unlink(),
    lambda p: rewrite_verified(p, {"foo": 1}),
    lambda p: rewrite_verified(p, {**torch.load(p), "examples": torch.zeros(2, 1, 4, 4)}),
    lambda p: rewrite_verified(p, {**torch.load(p), "metrics": {**torch.load(p)["metrics"], "level": 2}}),
    into_a_directory,
], ids=["flipped-byte", "no-sha256", "foo", "wrong-examples", "another-level", "a-directory"])
def test_a_damaged_level_file_is_quarantined_and_its_level_computed_again(tiny_run, tmp_path,
                                                                          capsys, damage):
    run_dir = copy_run(tiny_run, tmp_path)
    level = run_dir / "artifacts" / "seed333" / "level01.pt"
    damage(level)
    assert pruning.run(tiny_config(), str(tmp_path / "runs"), "tiny") == run_dir
    err = capsys.readouterr().err
    assert f"{level} " in err and "computed again" in err
    assert (run_dir / "corrupt" / "artifacts" / "seed333" / "level01.pt").exists()
    assert torch.load(level)["metrics"]["level"] == 1  # rebuilt
    assert read_results(run_dir) == read_results(tiny_run)


def test_an_edited_chain_record_is_quarantined_and_recomputed(tiny_run, tmp_path, capsys):
    run_dir = copy_run(tiny_run, tmp_path)
    victim = run_dir / "jobs" / "seed333.json"
    data = json.loads(victim.read_text())
    data["record"]["levels"][2]["accuracy"] = 1.5
    victim.write_text(json.dumps(data))
    pruning.run(tiny_config(), str(tmp_path / "runs"), "tiny")
    assert "record.levels[2].accuracy is 1.5, not a finite number in [0, 1]" in capsys.readouterr().err
    assert read_results(run_dir) == read_results(tiny_run)
