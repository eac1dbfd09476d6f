import pytest

from saliencylab.core.errors import UserError
from saliencylab.protocols.evaluate import EvaluateConfig
from saliencylab.protocols.prune import PruneConfig
from saliencylab.protocols.roar import RoarConfig
from saliencylab.protocols.sgt import SaliencyTrainingConfig
from saliencylab.runs import config as cfg


def test_set_overrides_nested_and_typed_fields():
    c = cfg.apply_sets(RoarConfig(), ["train.epochs=3", "train.lr=0.5", "seeds=1,2",
                                      "thresholds=0,12.5", "removal=lerf", "n_train=none",
                                      "methods=gradient,random"])
    assert c.train.epochs == 3 and c.train.lr == 0.5
    assert c.seeds == (1, 2) and c.thresholds == (0.0, 12.5) and c.removal == "lerf"
    assert c.n_train is None and c.methods == ("gradient", "random")


def test_unknown_key_and_wrong_type_are_user_errors():
    with pytest.raises(UserError, match="unknown config key 'train.epoch'"):
        cfg.apply_sets(RoarConfig(), ["train.epoch=3"])
    with pytest.raises(UserError, match="invalid value 'three' for train.epochs: expected int"):
        cfg.apply_sets(RoarConfig(), ["train.epochs=three"])
    with pytest.raises(UserError, match="not key=value"):
        cfg.apply_sets(RoarConfig(), ["train.epochs"])


def test_hash_changes_with_any_field_and_is_stable():
    a = RoarConfig()
    assert cfg.config_hash(a) == cfg.config_hash(RoarConfig())
    assert cfg.config_hash(a) != cfg.config_hash(cfg.override(a, "train.lr", "0.002"))


def test_presets_load_and_unknown_preset_is_a_user_error():
    c = cfg.load_preset("roar", "roar-mnist", RoarConfig())
    assert c.dataset == "mnist" and c.model == "lenet" and c.seeds == (0, 1, 2, 3, 4)
    assert c.train.lr == 0.001 and c.train.momentum == 0.9 and c.train.epochs == 10
    assert c.thresholds == (0, 10, 30, 50, 70, 90)
    assert c.methods == ("integrated_gradients", "random")
    with pytest.raises(UserError, match="unknown preset 'nope'"):
        cfg.load_preset("roar", "nope", RoarConfig())


@pytest.mark.parametrize("sets, message", [
    (["thresholds=0,120"], "thresholds must lie in"),
    (["thresholds=-5"], "thresholds must lie in"),
    (["methods=magic"], "unknown attribution method 'magic'"),
    (["dataset=imagenet"], "unknown data set 'imagenet'"),
    (["model=resnet"], "unknown model 'resnet'"),
    (["train.optimizer=adam"], "train.optimizer must be"),
])
def test_invalid_values_fail_validation(sets, message):
    with pytest.raises(UserError, match=message):
        cfg.apply_sets(RoarConfig(), sets).validate()


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_non_finite_numbers_are_rejected_everywhere(value):
    with pytest.raises(UserError, match="expected a finite number"):
        cfg.apply_sets(RoarConfig(), [f"train.lr={value}"])
    with pytest.raises(UserError, match="expected a finite number"):
        cfg.from_dict(RoarConfig(), {"train": {"momentum": float(value)}})


@pytest.mark.parametrize("sets, message", [
    (["thresholds="], "thresholds must list at least one percentage"),
    (["n_train=0"], "n_train must be at least 1"),
    (["n_train=-5"], "n_train must be at least 1"),
    (["n_test=0"], "n_test must be at least 1"),
    (["seeds=1,2,1"], "seeds lists 1 more than once"),
    (["methods=random,gradient,random"], "methods lists random more than once"),
    (["thresholds=0,10,10"], "thresholds lists 10.0 more than once"),
    (["threads_per_job=0"], "threads_per_job must be >= 1"),
])
def test_bad_counts_and_duplicates_fail_validation(sets, message):
    with pytest.raises(UserError, match=message):
        cfg.apply_sets(RoarConfig(), sets).validate()


def test_hash_ignores_scheduling_keys_and_names_the_device_by_kind():
    base = RoarConfig(device="cpu")
    assert cfg.config_hash(base) == cfg.config_hash(cfg.apply_sets(base, [
        "cpus_per_job=2", "gpus_per_job=0.25", "max_retries=7"]))
    assert cfg.config_hash(cfg.override(base, "device", "cuda:1")) == \
        cfg.config_hash(cfg.override(base, "device", "cuda"))
    assert cfg.config_hash(cfg.override(base, "device", "cuda")) != cfg.config_hash(base)
    assert cfg.config_hash(cfg.override(base, "threads_per_job", "2")) != cfg.config_hash(base)


def test_batch_models_enters_the_hash_only_where_it_batches():
    """issue 19: a run that trains each model alone keeps the hash it had before the key."""
    base = RoarConfig(device="cpu")
    for choice in ("auto", "off"):
        assert cfg.config_hash(cfg.override(base, "batch_models", choice)) == cfg.config_hash(base)
    assert cfg.config_hash(cfg.override(base, "batch_models", "on")) != cfg.config_hash(base)
    cuda = RoarConfig(device="cuda")
    assert cfg.hashed_dict(cuda)["batch_models"] == "on"  # auto batches on CUDA (AUTO_BATCHING)
    assert "batch_models" not in cfg.hashed_dict(cfg.override(cuda, "batch_models", "off"))
    with pytest.raises(UserError, match="batch_models must be one of auto, on, off"):
        cfg.override(base, "batch_models", "yes").validate()


# issue 15: renamed keys (removal = morf | lerf everywhere, the SGT fills named as removal.FILLS)
@pytest.mark.parametrize("protocol, preset, default, old, new", [
    ("roar", "roar-quick", RoarConfig(), "kar=true", "removal=lerf"),
    ("roar", "roar-quick", RoarConfig(), "kar=false", "removal=morf"),
    ("sgt", "smoot-quick", SaliencyTrainingConfig(), "eval.order=least", "eval.removal=lerf"),
    ("sgt", "smoot-quick", SaliencyTrainingConfig(), "objective.fill=image",
     "objective.fill=uniform_image"),
    ("sgt", "smoot-quick", SaliencyTrainingConfig(), "objective.fill=remaining",
     "objective.fill=uniform"),
])
def test_an_old_key_or_value_is_read_as_todays_and_hashes_the_same(protocol, preset, default,
                                                                    old, new):
    base = cfg.load_preset(protocol, preset, default)
    assert cfg.apply_sets(base, [old]) == cfg.apply_sets(base, [new])
    config = cfg.apply_sets(base, [new])
    saved = cfg.legacy_dict(config)  # a config.json written before the rename
    assert cfg.from_dict(default, saved) == config


def test_the_run_hash_is_computed_from_the_spelling_before_the_renames():
    """The hashes that name the quick presets' run directories did not change with the renames,
    so a run made before them resumes: these are the hashes of runs made before them (on the
    CPU)."""
    # evaluate-quick's was dcdbdfa1ee: issue 17 changed evaluate's definitions (deletion to the
    # mean, ROAD LeRF's counts, new settings keys), so its runs get a new name on purpose
    before = {"roar-quick": "7268b746f9", "smoot-quick": "862b7bf170", "prune-quick": "c4552e216a",
              "evaluate-quick": "c3d26e3a8c"}
    defaults = {"roar": RoarConfig(), "sgt": SaliencyTrainingConfig(), "prune": PruneConfig(),
                "evaluate": EvaluateConfig()}
    for name, expected in before.items():
        protocol = {"smoot": "sgt"}.get(name.split("-")[0], name.split("-")[0])
        config = cfg.override(cfg.load_preset(protocol, name, defaults[protocol]), "device", "cpu")
        assert cfg.config_hash(config) == expected, name
    legacy = cfg.legacy_dict(cfg.load_preset("roar", "roar-quick", RoarConfig()))
    assert legacy["kar"] is False and "removal" not in legacy
    legacy = cfg.legacy_dict(cfg.load_preset("sgt", "smoot-quick", SaliencyTrainingConfig()))
    assert legacy["eval"]["order"] == "most" and legacy["objective"]["fill"] == "remaining"
