"""The built-in `planted` data set (issue 18): masks cover exactly the pasted digit, the
generator is deterministic per seed, masks travel with the data, and the report card runs."""

import numpy as np
import pytest
import torch
from tiny import evaluate_config, read_results

from saliencylab import data
from saliencylab.data import planted
from saliencylab.protocols import evaluate as ev
from saliencylab.runs import config as cfg


def test_the_mask_is_exactly_the_pasted_digit_and_the_image_holds_it_there():
    rng = np.random.default_rng(5)
    digit = data.load_dataset("digits").x_train[0, 0].numpy() / 255.0
    image, mask, layer = planted.plant(rng, digit, 3, decoy=3)
    assert mask.any() and np.array_equal(mask, layer > planted.INK)
    assert np.allclose(image[mask], layer[mask])  # the clutter is overwritten inside the mask
    assert layer[~mask].max() <= planted.INK  # no pasted ink above the threshold outside
    # the decoy for class 3 sits on the top edge, above every pasted digit
    assert not mask[:planted.DECOY + 1].any()


def test_the_generator_is_deterministic_per_seed():
    a = planted.load_planted(seed=1, n_train=30, n_test=10)
    b = planted.load_planted(seed=1, n_train=30, n_test=10)
    c = planted.load_planted(seed=2, n_train=30, n_test=10)
    for field in ("x_train", "y_train", "x_test", "y_test", "m_train", "m_test"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.x_train, c.x_train)
    assert a.m_test.dtype == torch.bool and a.m_test.shape == (10, 1, 28, 28)
    assert a.m_test.flatten(1).any(1).all()  # every image has a mask


def test_masks_travel_with_subset_and_the_registry():
    ds = data.load_dataset("planted").subset(50, 20)
    assert ds.spec.shape == (1, 28, 28) and ds.m_train.shape[0] == 50 and ds.m_test.shape[0] == 20
    assert data.load_dataset("digits").m_test is None


def test_the_train_decoy_shows_the_class_and_the_test_decoy_does_not():
    ds = planted.load_planted(seed=0, n_train=400, n_test=400)
    cols = [1 + c * (planted.SIZE - planted.DECOY - 1) // 9 for c in range(10)]

    def decoy_class(x):
        return torch.stack([x[:, 0, 1, c + 1].float() for c in cols], 1).argmax(1)

    train = (decoy_class(ds.x_train) == ds.y_train).float().mean().item()
    test = (decoy_class(ds.x_test) == ds.y_test).float().mean().item()
    assert train == pytest.approx(0.5 + 0.5 / 10, abs=0.07)  # honest half + chance in the rest
    assert test == pytest.approx(0.1, abs=0.05)


def planted_config(*extra):
    sets = ["n_train=200", "n_test=20", "train.epochs=1", "seeds=0",
            "methods=gradient,random,oracle,inverted_oracle",
            "metrics=localisation,complexity,sensitivity,mask_iou", "card_images=8",
            "card_perturbations=1", "settings.robustness_images=4",
            "settings.robustness_samples=2"]
    return cfg.apply_sets(cfg.load_preset("evaluate", "planted", ev.EvaluateConfig()),
                          sets + list(extra))


def test_evaluate_on_planted_reports_the_proof_and_the_report_card(tmp_path):
    run_dir = ev.run(planted_config(), str(tmp_path), "planted")
    rows = read_results(run_dir)
    value = {(r["method"], r["metric"]): float(r["value"]) for r in rows}
    for metric in ("pointing_game", "relevance_mass", "relevance_rank",
                   "attribution_localisation"):
        assert value["oracle", metric] == 1.0 and value["inverted_oracle", metric] == 0.0
    assert {"max_sensitivity", "avg_sensitivity", "sparseness", "complexity"} <= {
        r["metric"] for r in rows}
    report = (run_dir / "report.md").read_text()
    assert "## Does the model use the planted region?" in report
    assert "| planted region removed (mean pixel) |" in report
    assert "## Which metric to trust? (report card)" in report
    assert "| relevance_mass | pass (" in report  # oracle 1 > random > inverted oracle 0
    assert "| max_sensitivity | fail (+0, +0)" in report  # masks do not move: no ranking


def test_without_masks_localisation_is_left_out_with_one_line(tmp_path):
    config = evaluate_config("metrics=localisation,complexity", "methods=gradient,oracle")
    run_dir = ev.run(config, str(tmp_path), "digits")
    report = (run_dir / "report.md").read_text()
    assert "- `localisation`: the data has no ground-truth masks" in report
    assert "- `oracle`: the data has no ground-truth masks" in report
    assert {r["metric"] for r in read_results(run_dir)} == {"sparseness", "complexity"}


def test_the_card_needs_masks(fails, tmp_path):
    fails(["evaluate", "--preset", "evaluate-quick", "--out", str(tmp_path), "--set",
           "card_images=5"], "card_images needs data with ground-truth masks")


def test_the_new_keys_at_their_defaults_keep_the_run_hashes_of_before():
    """Issue 18's keys are left out of the hash at their defaults (tests/test_config.py pins
    the presets' hashes), and count once set."""
    added = {"card_images", "card_perturbations", "robustness_images", "robustness_samples",
             "sensitivity_radius", "lipschitz_std"}
    for preset in ("evaluate-quick", "evaluate-mnist"):
        config = cfg.load_preset("evaluate", preset, ev.EvaluateConfig())
        hashed = cfg.legacy_dict(config)
        assert not added & {*hashed, *hashed["settings"]}
        assert cfg.config_hash(cfg.apply_sets(config, ["card_images=3"])) != cfg.config_hash(config)
