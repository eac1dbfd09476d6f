import pytest

from saliencylab import config as cfg
from saliencylab.errors import UserError
from saliencylab.protocols.roar import RoarConfig


def test_set_overrides_nested_and_typed_fields():
    c = cfg.apply_sets(RoarConfig(), ["train.epochs=3", "train.lr=0.5", "seeds=1,2",
                                      "thresholds=0,12.5", "kar=true", "n_train=none",
                                      "methods=gradient,random"])
    assert c.train.epochs == 3 and c.train.lr == 0.5
    assert c.seeds == (1, 2) and c.thresholds == (0.0, 12.5) and c.kar is True
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
    (["dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["model=resnet"], "unknown model 'resnet'"),
    (["train.optimizer=adam"], "train.optimizer must be"),
])
def test_invalid_values_fail_validation(sets, message):
    with pytest.raises(UserError, match=message):
        cfg.apply_sets(RoarConfig(), sets).validate()
