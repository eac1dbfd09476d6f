"""The sgt protocol end to end on tiny data: report, resume with K, CLI, deit_tiny on CIFAR files,
and a damaged model file or record rebuilt (issue 14)."""

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from damage import copy_run, edit_record, flip_a_byte, into_a_directory, rewrite_verified
from tiny import read_results, sgt_config

from saliencylab import cli
from saliencylab.attribution import make_method
from saliencylab.models.vit import DeiT, VitConfig, load_pretrained
from saliencylab.protocols import sgt as st
from saliencylab.protocols.sgt import protocol as sgt_protocol
from saliencylab.protocols.sgt import tools as sgt_tools
from saliencylab.protocols.sgt import training
from saliencylab.runs import config as cfg
from saliencylab.runs.checkpoints import Checkpoints
from saliencylab.runs.runner import data_of

torch.set_num_threads(1)
def checkpoints(folder: Path, key: str = "smoot-s0") -> Checkpoints:
    """A job's checkpoints in a run directory `folder` (made here)."""
    (folder / "artifacts").mkdir(parents=True, exist_ok=True)
    return Checkpoints(folder, key)


def test_sgt_run_writes_table_curves_maps_and_k_plots(tmp_path):
    run_dir = st.run(sgt_config(), str(tmp_path), "tiny")
    rows = read_results(run_dir)
    assert [(r["objective"], r["seed"], r["method"], r["fill"]) for r in rows] == [
        (o, "0", m, f) for o in ("traditional", "sgt", "smoot") for m in ("gradient", "random")
        for f in ("corner", "uniform")]
    assert list(rows[0]) == ["objective", "seed", "method", "fill", "accuracy", "auc", "auc_0_90",
                             "k_min", "k_median", "k_max", "epochs", "selected_epoch", "n_test",
                             "train_seconds", "drop_0", "drop_50", "drop_100"]
    smoot = rows[-1]  # K in pixels of the 8x8 digits: within ⌊20% · 64⌋ = 12 and ⌊80% · 64⌋ = 51
    assert 12 <= float(smoot["k_min"]) <= float(smoot["k_median"]) <= float(smoot["k_max"]) <= 51
    assert rows[4]["k_median"] == "32.0" and rows[0]["k_median"] == "nan"
    for r in rows:  # AUC by the trapezoid rule over x = 0, 0.5, 1; over 0-90%: x = 0, 0.5
        drops = [float(r[f"drop_{p}"]) for p in (0, 50, 100)]
        assert float(r["auc"]) == pytest.approx(0.25 * (drops[0] + 2 * drops[1] + drops[2]))
        assert float(r["auc_0_90"]) == pytest.approx(0.25 * (drops[0] + drops[1]))
        assert float(r["accuracy"]) * 100 == pytest.approx(drops[0])
    report = (run_dir / "report.md").read_text()
    assert ("| model | # test | Min(K) | Median(K) | Max(K) | accuracy (%) | AUC 0–100% | "
            "AUC 0–90% |") in report
    assert "| SGT | 60 | 32 (50%) | 32 (50%) | 32 (50%) |" in report
    assert "| model | corner 0–100% | corner 0–90% | uniform 0–100% | uniform 0–90% |" in report
    assert "**Budget actually run:** 1 epoch(s) per model" in report
    assert "**Model selection:** last" in report
    for png in ("accuracy_drop.png", "saliency_maps.png", "smoot_k.png"):
        assert (run_dir / png).stat().st_size > 1000
    saved = torch.load(run_dir / "artifacts" / "model-smoot-s0.pt")
    assert saved["objective"]["K"].shape == (160,) and saved["objective"]["k_unit"] == "pixels"


def test_smoot_k_survives_a_save_and_resume(tmp_path):
    config = sgt_config("train.epochs=2")
    ds = data_of(config, None)
    whole, obj_whole, hist_whole = training.train_model(config, ds, "smoot", 0,
                                                        checkpoints(tmp_path / "a"), progress=False)
    # stop after one epoch, then resume from the checkpoint
    first = cfg.apply_sets(config, ["train.epochs=1"])
    _, obj_first, _ = training.train_model(first, ds, "smoot", 0, checkpoints(tmp_path / "b"),
                                           progress=False)
    k_after_one = obj_first.K.clone()
    assert (k_after_one != 32).any()  # K started at 32 of the 64 pixels and moved
    resumed_model, obj_resumed, hist = training.train_model(config, ds, "smoot", 0,
                                                            checkpoints(tmp_path / "b"),
                                                            progress=False)
    assert hist["epoch"] == 2 and len(hist["k_median"]) == 2
    assert hist["k_median"] == hist_whole["k_median"]
    assert torch.equal(obj_resumed.K, obj_whole.K)
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value)
    # a finished checkpoint is loaded, not retrained
    _, obj_again, _ = training.train_model(config, ds, "smoot", 0, checkpoints(tmp_path / "b"),
                                           progress=False)
    assert torch.equal(obj_again.K, obj_whole.K)


def test_run_stopped_during_evaluation_resumes_without_retraining(tmp_path, monkeypatch):
    config = sgt_config("objectives=smoot")
    real_test, real_train = sgt_protocol.drop_test, sgt_protocol.train_model

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sgt_protocol, "drop_test", interrupted)
    with pytest.raises(KeyboardInterrupt):
        st.run(config, str(tmp_path / "a"), "tiny")
    run_dir = next((tmp_path / "a").iterdir())
    kept = run_dir / "checkpoints" / "smoot-s0"
    assert (kept / "trained.pt").exists() and (kept / "training.pt").exists()
    assert not (run_dir / "artifacts" / "model-smoot-s0.pt").exists()  # the driver stores it
    monkeypatch.setattr(sgt_protocol, "drop_test", real_test)
    monkeypatch.setattr(sgt_protocol, "train_model", lambda *a, **k: pytest.fail("retrained"))
    st.run(config, str(tmp_path / "a"), "tiny")
    assert (run_dir / "artifacts" / "model-smoot-s0.pt").exists() and not kept.exists()
    monkeypatch.setattr(sgt_protocol, "train_model", real_train)
    fresh = st.run(config, str(tmp_path / "b"), "tiny")
    assert read_results(run_dir)[0]["auc"] == read_results(fresh)[0]["auc"]


def test_bf16_training_runs_and_learns(tmp_path):
    config = sgt_config("train.precision=bf16", "objectives=sgt", "train.epochs=3")
    rows = read_results(st.run(config, str(tmp_path), "bf16"))
    assert float(rows[0]["accuracy"]) > 0.3


def test_cli_unknown_objective_is_one_line_exit_2(capsys):
    assert cli.main(["train", "--objective", "sgd", "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown objective 'sgd'" in err and "traditional, sgt, smoot" in err
    assert cli.main(["sgt", "--set", "objectives=traditional,bogus"]) == 2
    assert "unknown objective 'bogus'" in capsys.readouterr().err
    assert cli.main(["sgt-analysis", "--model-file", "/nonexistent/model.pt"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_train_then_sgt_analysis(tmp_path, capsys):
    args = ["train", "--objective", "sgt", "--dataset", "digits", "--epochs", "1", "--out",
            str(tmp_path)] + [a for s in ("n_train=120", "n_test=40", "eval.grid_images=1",
                                          "eval.percents=0,100") for a in ("--set", s)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    model_file = Path(out.strip().splitlines()[-1].split(": ", 1)[1])
    assert model_file.name == "model-sgt-s0.pt" and model_file.exists()
    assert cli.main(["sgt-analysis", "--model-file", str(model_file), "--n-test", "40",
                     "--percents", "0,30,60,90", "--out", str(tmp_path / "an")]) == 0
    out = capsys.readouterr().out
    assert "40 test images" in out and "first rises and then falls" in out
    rows = list(csv.DictReader(open(tmp_path / "an" / "curves.csv")))
    assert len(rows) == 40 and list(rows[0])[-4:] == ["conf_0", "conf_30", "conf_60", "conf_90"]


def test_rises_then_falls():
    curves = torch.tensor([[0.5, 0.7, 0.6], [0.5, 0.4, 0.3], [0.5, 0.6, 0.7], [0.5, 0.51, 0.5]])
    assert sgt_tools.rises_then_falls(curves).tolist() == [True, False, False, True]
    assert sgt_tools.rises_then_falls(curves, tolerance=0.05).tolist() == [True, False, False, False]


def test_best_val_evaluates_the_epoch_with_the_best_validation_accuracy(tmp_path, monkeypatch):
    config = sgt_config("train.epochs=3", "select=best-val", "val_size=40", "objectives=sgt")
    ds = data_of(config, None)
    x_train, _, x_val, _ = training.split_validation(config, ds)
    assert len(x_train) == 120 and len(x_val) == 40
    planted = iter([0.5, 0.9, 0.7])  # validation accuracy after epochs 1, 2, 3
    states = []
    real_accuracy = training.accuracy

    def planted_accuracy(model, x, y, spec, *args, **kwargs):
        if len(x) == 40:  # the validation set: remember the model, plant the accuracy
            states.append({k: v.clone() for k, v in model.state_dict().items()})
            return next(planted)
        return real_accuracy(model, x, y, spec, *args, **kwargs)

    monkeypatch.setattr(training, "accuracy", planted_accuracy)
    model, _, history = training.train_model(config, ds, "sgt", 0, Checkpoints(None, "sgt-s0"),
                                             progress=False)
    assert history["selected_epoch"] == 2 and history["val_accuracy"] == [0.5, 0.9, 0.7]
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[1][key])
    assert not all(torch.equal(v, states[2][k]) for k, v in model.state_dict().items())


def test_val_size_must_leave_training_images():
    from saliencylab.core.errors import UserError
    with pytest.raises(UserError, match="val_size"):
        sgt_config("select=best-val", "val_size=160").validate()


# deit_tiny -----------------------------------------------------------------------------------
TIMM_BLOCK_KEYS = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                   "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                   "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
SMALL_VIT = VitConfig(img_size=16, patch_size=8, dim=16, depth=2, heads=2)


def test_deit_state_dict_uses_timm_names_and_shapes():
    keys = set(DeiT((3, 32, 32), 10).state_dict())  # full deit_tiny_patch16_224 shape
    expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                "norm.weight", "norm.bias", "head.weight", "head.bias"}
    expected |= {f"blocks.{i}.{k}" for i in range(12) for k in TIMM_BLOCK_KEYS}
    assert keys == expected
    sd = DeiT((3, 32, 32), 1000).state_dict()
    assert sd["pos_embed"].shape == (1, 197, 192) and sd["blocks.0.attn.qkv.weight"].shape == (576, 192)
    assert sd["blocks.11.mlp.fc1.weight"].shape == (768, 192)
    assert sum(v.numel() for v in sd.values()) == 5_717_416  # timm's deit_tiny parameter count


def test_pretrained_file_loads_and_the_head_is_replaced(tmp_path):
    source = DeiT((3, 32, 32), 1000, SMALL_VIT)  # "ImageNet" head
    torch.save({"model": source.state_dict()}, tmp_path / "w.pth")  # DeiT authors' layout
    model = DeiT((3, 32, 32), 10, SMALL_VIT)
    assert load_pretrained(model, tmp_path / "w.pth") == ["head.weight", "head.bias"]
    assert torch.equal(model.state_dict()["blocks.1.attn.qkv.weight"],
                       source.state_dict()["blocks.1.attn.qkv.weight"])
    x = torch.randn(2, 3, 32, 32)  # resized to 16 inside
    assert model(x).shape == (2, 10)
    cam = make_method("gradcam").attribute(model, x, torch.tensor([1, 2]))
    assert cam.shape == (2, 1, 32, 32) and (cam >= 0).all()


def write_cifar10(root: Path, n_per_batch=8, n_test=12):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_deit_tiny_protocol_on_small_cifar_files(tmp_path):
    write_cifar10(tmp_path / "data")
    torch.save(DeiT((3, 32, 32), 1000, SMALL_VIT).state_dict(), tmp_path / "w.pth")
    vit = [f"vit.{k}={v}" for k, v in (("img_size", 16), ("patch_size", 8), ("dim", 16),
                                       ("depth", 2), ("heads", 2))]
    config = cfg.apply_sets(cfg.load_preset("sgt", "smoot-cifar10", st.SaliencyTrainingConfig()),
                            vit + ["train.epochs=1", "seeds=0", "objectives=sgt,smoot",
                                   "eval.grid_images=2", "eval.percents=0,50,100",
                                   "eval.methods=gradient", "eval.fills=corner",
                                   f"vit.pretrained={tmp_path / 'w.pth'}"])
    assert config.objective.alpha == 0.8 and config.train.lr == 0.001
    run_dir = st.run(config, str(tmp_path / "runs"), "cifar", data_dir=str(tmp_path / "data"))
    rows = read_results(run_dir)
    assert [r["objective"] for r in rows] == ["sgt", "smoot"] and rows[0]["n_test"] == "12"
    assert (run_dir / "saliency_maps.png").exists()


def test_deit_tiny_without_weights_is_a_user_error(capsys):
    assert cli.main(["sgt", "--preset", "smoot-cifar10"]) == 2
    assert "vit.pretrained=PATH" in capsys.readouterr().err


# issue 14 D2, C2, C4: a job's model file is part of the job -----------------------------------
@pytest.fixture(scope="module")
def clean_smoot(tmp_path_factory):
    return st.run(sgt_config("objectives=smoot"), str(tmp_path_factory.mktemp("clean")), "tiny")


def without_timing(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in read_results(run_dir)]


def drop_record(run_dir: Path) -> None:
    (run_dir / "jobs" / "smoot-s0.json").unlink()


@pytest.mark.parametrize("damage", [
    lambda p: flip_a_byte(p),
    lambda p: p.with_name(p.name + ".sha256").unlink(),
    lambda p: rewrite_verified(p, {"foo": 1}),
    lambda p: rewrite_verified(p, torch.zeros(3)),
    lambda p: rewrite_verified(p, {**torch.load(p), "seed": 7}),
    lambda p: rewrite_verified(p, {**torch.load(p), "objective": {"K": torch.zeros(5, dtype=torch.int32),
                                                                  "k_unit": "pixels"}}),
    lambda p: (rewrite_verified(p, {"foo": 1}), drop_record(p.parent.parent)),
    into_a_directory,
], ids=["flipped-byte", "no-sha256", "foo", "bare-tensor", "another-seed", "5-K", "foo-no-record",
        "a-directory"])
def test_a_damaged_model_file_is_quarantined_and_its_job_run_again(clean_smoot, tmp_path, capsys,
                                                                   damage):
    from saliencylab.models.files import load_sgt_model

    run_dir = copy_run(clean_smoot, tmp_path)
    model_file = run_dir / "artifacts" / "model-smoot-s0.pt"
    damage(model_file)
    assert st.run(sgt_config("objectives=smoot"), str(tmp_path / "runs"), "tiny") == run_dir
    err = capsys.readouterr().err
    assert f"{model_file} " in err and "computed again" in err
    assert (run_dir / "corrupt" / "artifacts" / "model-smoot-s0.pt").exists()
    assert load_sgt_model(model_file)["objective"]["K"].shape == (160,)  # rebuilt, for sgt-analysis
    assert without_timing(run_dir) == without_timing(clean_smoot)


def test_a_record_without_its_model_file_is_not_done(clean_smoot, tmp_path, capsys):
    run_dir = copy_run(clean_smoot, tmp_path)
    (run_dir / "artifacts" / "model-smoot-s0.pt").unlink()
    st.run(sgt_config("objectives=smoot"), str(tmp_path / "runs"), "tiny")
    assert "model-smoot-s0.pt, which job smoot-s0 made, is missing" in capsys.readouterr().err
    assert (run_dir / "artifacts" / "model-smoot-s0.pt").exists()
    assert without_timing(run_dir) == without_timing(clean_smoot)


@pytest.mark.parametrize("damage", [edit_record(seed=1), edit_record(objective="sgt"),
                                    edit_record(accuracy=float("nan")), edit_record(epochs=5),
                                    edit_record(**{"auc.gradient.corner": 250.0}),
                                    edit_record(**{"curves.random": {}})],
                         ids=["seed", "objective", "nan-accuracy", "epochs", "auc-250", "no-fills"])
def test_an_edited_sgt_record_is_quarantined_and_recomputed(clean_smoot, tmp_path, capsys, damage):
    run_dir = copy_run(clean_smoot, tmp_path)
    damage(run_dir / "jobs" / "smoot-s0.json")
    st.run(sgt_config("objectives=smoot"), str(tmp_path / "runs"), "tiny")
    assert "smoot-s0.json holds an invalid record" in capsys.readouterr().err
    assert without_timing(run_dir) == without_timing(clean_smoot)


def test_a_checkpoint_that_does_not_hold_a_training_state_is_trained_again(tmp_path, capsys):
    config = sgt_config("objectives=smoot")
    ds = data_of(config, None)
    kept = checkpoints(tmp_path)
    checkpoint = kept.folder / "training.pt"
    checkpoint.parent.mkdir(parents=True)
    rewrite_verified(checkpoint, {"model": {}, "history": {"epoch": 1}})
    _, objective, history = training.train_model(config, ds, "smoot", 0, kept, progress=False)
    assert history["epoch"] == 1 and objective.K.shape == (160,)
    assert f"{checkpoint} does not hold what its job makes" in capsys.readouterr().err
