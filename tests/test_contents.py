"""contents.problem: the one check of a stored record or artifact against what its job makes
(issue 14's design point behind D2, D4, C4 and C5), with hand-written expectations."""

import math

import pytest
import torch

from saliencylab.core import contents
from saliencylab.core.contents import FRACTION, Either, Items, Number, Tensor, problem, tensors_like
from saliencylab.protocols import roar
from saliencylab.runs.files import save_verified
from saliencylab.runs.store import Layout, RunStore

RECORD = {"method": "gradient", "threshold": 50.0, "seed": 0, "accuracy": FRACTION,
          "scores": {"gradient": Items(Number(0, 100), 3), "random": Items(Number(0, 100), 3)}}
GOOD = {"method": "gradient", "threshold": 50, "seed": 0, "accuracy": 0.5,
        "scores": {"gradient": [1.0, 2, 100.0], "random": [0.0, 0.0, 0.0]}}


def edited(**changes):
    return {**GOOD, **changes}


@pytest.mark.parametrize("value, expected", [
    (GOOD, None),
    (edited(seed=1), "record.seed is 1, not 0"),
    (edited(seed=True), "record.seed is True, not 0"),  # a bool is no seed
    (edited(method="random"), "record.method is 'random', not 'gradient'"),
    (edited(threshold=0.0), "record.threshold is 0.0, not 50.0"),
    (edited(accuracy=2.0), "record.accuracy is 2.0, not a finite number in [0, 1]"),
    (edited(accuracy=-5.0), "record.accuracy is -5.0, not a finite number in [0, 1]"),
    (edited(accuracy=math.nan), "record.accuracy is nan, not a finite number in [0, 1]"),
    (edited(accuracy="0.5"), "record.accuracy is '0.5', not a finite number in [0, 1]"),
    (edited(accuracy=1 + 1e-9), None),  # rounding within the tolerance
    (edited(scores={}), "record.scores.gradient is missing"),
    (edited(scores={**GOOD["scores"], "extra": []}), "record.scores has an unexpected entry 'extra'"),
    (edited(scores={**GOOD["scores"], "gradient": "abc"}), "record.scores.gradient is 'abc', not a list"),
    (edited(scores={**GOOD["scores"], "gradient": [1.0]}), "record.scores.gradient has 1 items, not 3"),
    (edited(scores={**GOOD["scores"], "random": [0.0, math.inf, 0.0]}),
     "record.scores.random[1] is inf, not a finite number in [0, 100]"),
    ({k: v for k, v in GOOD.items() if k != "accuracy"}, "record.accuracy is missing"),
    ([1, 2], "record is a list of 2 items, not a dict"),
])
def test_a_record_is_checked_for_its_key_fields_ranges_and_complete_sets(value, expected):
    assert problem(value, RECORD, "record") == expected


def test_a_tensor_is_checked_for_shape_dtype_finite_values_and_range():
    ranking = Tensor((4, 64), (torch.int16, torch.int32), 0, 63)
    good = torch.arange(64, dtype=torch.int16).repeat(4, 1)
    assert problem(good, ranking) is None
    assert problem(good[:2], ranking) == "the content has shape (2, 64), not (4, 64)"
    assert problem(good.long(), ranking) == "the content is a torch.int64 tensor, not torch.int16 or torch.int32"
    assert problem(good + 1, ranking) == "the content holds values outside [0, 63]"
    assert problem({"foo": 1}, ranking) == "the content is a dict, not a tensor"
    weights = tensors_like({"w": torch.zeros(2, 3)})
    assert problem({"w": torch.full((2, 3), math.nan)}, weights) == "w holds values that are not finite"
    assert problem({"w": torch.zeros(3, 2)}, weights) == "w has shape (3, 2), not (2, 3)"
    assert problem(torch.zeros(3), weights) == "the content is a tensor of shape (3,), not a dict"
    assert problem(None, Either(None, weights)) is None
    assert problem({"w": torch.zeros(2, 3)}, Either(None, weights)) is None


def test_a_large_tensor_is_checked_in_slices_and_a_bad_value_in_the_last_one_is_found(monkeypatch):
    """issue 16: a memory-mapped artifact is checked slice by slice (no temporary of its size)."""
    monkeypatch.setattr(contents, "CHUNK", 10)
    x = torch.zeros(25, 4)
    assert [len(rows) for rows in contents.row_chunks(x)] == [2] * 12 + [1]
    assert problem(x, Tensor((25, 4))) is None
    x[24, 3] = math.inf
    assert problem(x, Tensor((25, 4))) == "the content holds values that are not finite"


def test_a_store_refuses_to_write_a_record_that_it_would_refuse_to_read(tmp_path):
    store = RunStore(tmp_path, "t", roar.RoarConfig(device="cpu"), Layout({"a": {"x": FRACTION}}))
    try:
        store.save_job("a", {"x": 0.25})
        with pytest.raises(ValueError, match=r"refusing to store job a: it holds an invalid record "
                                             r"\(record.x is nan"):
            store.save_job("a", {"x": math.nan})
        with pytest.raises(ValueError, match="it is no job of this run"):
            store.save_job("b", {"x": 0.25})
        with pytest.raises(ValueError, match="refusing to store y.pt, which does not match its spec"):
            save_verified(tmp_path / "y.pt", torch.zeros(2), {"a": int})
        assert store.records() == [{"x": 0.25}]
    finally:
        store.close()
