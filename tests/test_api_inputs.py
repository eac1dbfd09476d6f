"""The API's other inputs and outputs (issue 16, item 6): a torch Dataset or DataLoader for
`saliencylab.evaluate`, `Table.to_dict` / `Table.to_pandas`, and `saliencylab.explain_func`, our
methods as a Quantus `explain_func(model=, inputs=, targets=, **kwargs)`."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

import saliencylab
from saliencylab import attribution, data
from saliencylab.api import Table
from saliencylab.attribution import MethodOptions
from saliencylab.core.errors import UserError

FAST = dict(methods=["gradient", "random"], metrics=["deletion"])  # cheap: not ROAD's solver


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(256, 10)).eval()


@pytest.fixture(scope="module")
def images():
    """20 normalised 1x8x8 digits and their labels, and the raw uint8 ones with their spec."""
    ds = data.load_dataset("digits").subset(20, 20)
    return ds.spec.normalize(ds.x_test).float(), ds.y_test, ds


def one_line_error(match, call, *args, **kwargs):
    with pytest.raises(UserError, match=match) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)


class Pairs(Dataset):
    """A map-style Dataset of (x [C,H,W], int) items that counts how often each item is read."""

    def __init__(self, x, y):
        self.x, self.y, self.reads = x, y, [0] * len(x)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads[i] += 1
        return self.x[i], int(self.y[i])


class Stream(IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return zip(self.x, self.y.tolist())


class Items(Dataset):
    """A Dataset whose every item is `item`."""

    def __init__(self, item, count=3):
        self.item, self.count = item, count

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        return self.item


def test_a_dataset_and_a_dataloader_give_the_tables_of_the_tensors(images):
    x, y, _ = images
    model = small_cnn()
    tensors = saliencylab.evaluate(model, x, y, **FAST)
    pairs = Pairs(x, y)
    for given in (pairs, TensorDataset(x, y), Stream(x, y),
                  DataLoader(TensorDataset(x, y), batch_size=7),
                  DataLoader(pairs, batch_size=6)):
        table = saliencylab.evaluate(model, given, **FAST)
        assert table.rows == tensors.rows, type(given).__name__
        assert table.accuracy == tensors.accuracy
    assert pairs.reads == [2] * len(x)  # once as a Dataset, once through its DataLoader
    # a Subset reads only its images: the way to cut a large data set
    assert saliencylab.evaluate(model, Subset(pairs, range(8)), **FAST).rows == \
        saliencylab.evaluate(model, x[:8], y[:8], **FAST).rows
    assert pairs.reads == [3] * 8 + [2] * 12


def test_a_dataset_of_raw_pixels_takes_the_spec_as_tensors_do(images):
    _, _, ds = images
    model = small_cnn()
    tensors = saliencylab.evaluate(model, ds.x_test, ds.y_test, spec=ds.spec, **FAST)
    given = saliencylab.evaluate(model, TensorDataset(ds.x_test, ds.y_test), spec=ds.spec, **FAST)
    assert given.rows == tensors.rows
    # without the spec, raw pixels are refused as they are from tensors
    one_line_error(r"x is torch\.uint8: without spec, x must be the float input",
                   saliencylab.evaluate, model, TensorDataset(ds.x_test, ds.y_test), **FAST)


@pytest.mark.parametrize("given, match", [
    (Items(torch.zeros(1, 8, 8)), r"item 0 of the Dataset is a Tensor: each must be a pair "
                                  r"\(x, y\) with x an image tensor \[C, H, W\] and y a class "
                                  r"index"),
    (Items((torch.zeros(1, 8, 8), 1, "a")), r"item 0 of the Dataset is a tuple of 3: each must "
                                            r"be a pair"),
    (Items({"image": torch.zeros(1, 8, 8), "label": 1}), r"item 0 of the Dataset is a dict"),
    (Items((torch.zeros(8, 8), 1)), r"item 0 of the Dataset holds x of shape \(8, 8\) and y of "
                                    r"shape \(\): each must be a pair"),
    (Items((torch.zeros(1, 8, 8), torch.eye(10)[3])), r"item 0 of the Dataset holds x of shape "
                                                      r"\(1, 8, 8\) and y of shape \(10,\)"),
    (Items((torch.zeros(1, 8, 8), "three")), r"item 0 of the Dataset's y must be a tensor"),
    (Items((torch.zeros(1, 8, 8), 1), count=0), r"the Items holds no images: give at least one"),
    (DataLoader(Items((torch.zeros(1, 8, 8), 1)), batch_size=None),
     r"batch 0 of the DataLoader holds x of shape \(1, 8, 8\) and y of shape \(\): each must "
     r"be a pair \(x, y\) with x \[B, C, H, W\] and y \[B\]"),
    (DataLoader(Items((torch.zeros(3, 1, 8, 8), torch.zeros(2, dtype=torch.long))),
                batch_size=None),
     r"batch 0 of the DataLoader holds x of shape \(3, 1, 8, 8\) and y of shape \(2,\)"),
    (DataLoader(Items({"image": torch.zeros(1, 8, 8)}), batch_size=2),
     r"batch 0 of the DataLoader is a dict: each must be a pair"),
])
def test_items_of_another_form_are_one_line(given, match):
    one_line_error(match, saliencylab.evaluate, small_cnn(), given, **FAST)


class TwoSizes(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.zeros(1, 8, 8 if i < 3 else 6), 0


class NoLength(Dataset):
    def __getitem__(self, i):
        return torch.zeros(1, 8, 8), 0


def test_a_dataset_with_two_image_shapes_or_no_length_or_with_y_is_one_line(images):
    x, y, _ = images
    model = small_cnn()
    one_line_error(r"the TwoSizes holds images of shape \(1, 8, 8\) and, at item 3, \(1, 8, 6\): "
                   r"all images must share one shape", saliencylab.evaluate, model, TwoSizes(),
                   **FAST)
    one_line_error(r"the Dataset NoLength has no len\(\): give it a __len__, or make it an "
                   r"IterableDataset", saliencylab.evaluate, model, NoLength(), **FAST)
    one_line_error(r"y must be left out when x is a TensorDataset: the labels come from its "
                   r"\(x, y\) pairs", saliencylab.evaluate, model, TensorDataset(x, y), y, **FAST)
    one_line_error(r"y is missing: give one class index per image of x, or pass a torch Dataset",
                   saliencylab.evaluate, model, x, **FAST)
    one_line_error(r"y holds labels 0\.\.12, but the model gives 10 logits",
                   saliencylab.evaluate, model, TensorDataset(x, torch.arange(20) % 13), **FAST)


HAND_ROWS = [
    {"method": "gradient", "metric": "road_gap", "value": 0.25, "ci_low": 0.125, "ci_high": 0.5,
     "better": "higher"},
    {"method": "random", "metric": "road_gap", "value": 0.0, "ci_low": -0.5, "ci_high": 0.5,
     "better": "higher"},
]


def test_to_dict_holds_the_rows_the_accuracy_and_what_was_skipped():
    table = Table([dict(r) for r in HAND_ROWS], np.float64(0.75), {"mprt": "no parameters"})
    got = table.to_dict()
    assert got == {"rows": HAND_ROWS, "accuracy": 0.75, "skipped": {"mprt": "no parameters"}}
    assert type(got["accuracy"]) is float
    json.dumps(got)  # plain values
    got["rows"][0]["value"] = 99.0
    got["skipped"].clear()
    assert table.value("gradient", "road_gap") == 0.25 and table.skipped  # a copy


def test_to_dict_of_an_evaluation(images):
    x, y, _ = images
    table = saliencylab.evaluate(small_cnn(), x, y, **FAST)
    got = table.to_dict()
    assert got["rows"] == table.rows and got["accuracy"] == table.accuracy
    assert [(r["method"], r["metric"], r["better"]) for r in got["rows"]] == [
        ("gradient", "deletion", "lower"), ("random", "deletion", "lower")]
    json.dumps(got)


def test_to_pandas_gives_the_rows_as_a_frame():
    pandas = pytest.importorskip("pandas")
    frame = Table([dict(r) for r in HAND_ROWS], 0.75, {"mprt": "no parameters"}).to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["method", "metric", "value", "ci_low", "ci_high", "better"]
    assert frame.to_dict("records") == HAND_ROWS
    assert frame.attrs == {"accuracy": 0.75, "skipped": {"mprt": "no parameters"}}


def test_to_pandas_without_pandas_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    one_line_error(r"Table\.to_pandas needs pandas, which is not installed: pip install pandas, "
                   r"or use Table\.to_dict\(\)", Table(HAND_ROWS, 0.75).to_pandas)


def test_pandas_is_imported_only_inside_to_pandas():
    package = Path(saliencylab.__file__).parent
    lines = [(path.name, line.strip()) for path in package.rglob("*.py")
             for line in path.read_text().splitlines() if "pandas" in line and "import" in line]
    assert lines == [("api.py", "import pandas  # lazy: optional dependency, needed only here")]


def linear():
    """f(x) = W flatten(x) + b on 1x2x2 input: the gradient of class k is row k of W."""
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0],
                                       [0.0, 0.0, 1.0, 0.0]]))
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin)


def test_explain_func_gives_the_hand_computed_gradient_as_quantus_calls_it():
    explain = saliencylab.explain_func("gradient")
    x = np.random.default_rng(0).normal(size=(2, 1, 2, 2))  # float64, as numpy makes them
    a = explain(model=linear(), inputs=x, targets=np.array([0, 1]), device="cpu")
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(a, [[[[1, 2], [3, 4]]], [[[-1, 0.5], [0, 2]]]])


@pytest.mark.parametrize("name, options", [
    ("gradient", {}), ("integrated_gradients", dict(ig_steps=8)),
    ("smoothgrad", dict(smoothgrad_samples=4, seed=3)), ("gradcam", dict(cam_layer="1")),
    ("occlusion", dict(occlusion_window=2, occlusion_stride=2)),
])
def test_explain_func_equals_make_method_on_the_same_inputs(images, name, options):
    x, y, _ = images
    model = small_cnn()
    expected = attribution.make_method(name, MethodOptions(baseline="zeros"), **options) \
        .attribute(model, x[:5], y[:5])
    explain = saliencylab.explain_func(name, **options)
    got = explain(model=model, inputs=x[:5].numpy(), targets=y[:5].numpy())
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, expected.numpy())
    as_tensor = explain(model, x[:5], y[:5])  # torch in, torch out
    assert torch.is_tensor(as_tensor) and torch.equal(as_tensor, expected)


def test_explain_func_passes_a_black_baseline_and_options_like_make_method(images):
    x, y, ds = images
    model = small_cnn()
    black = ds.spec.black()
    expected = attribution.make_method("integrated_gradients", black=black, ig_steps=4) \
        .attribute(model, x[:3], y[:3])
    got = saliencylab.explain_func("integrated_gradients", black=black, ig_steps=4)(
        model, x[:3].numpy(), y[:3].numpy())
    np.testing.assert_array_equal(got, expected.numpy())
    zeros = saliencylab.explain_func("integrated_gradients", ig_steps=4)(
        model, x[:3].numpy(), y[:3].numpy())
    assert not np.array_equal(zeros, got)  # the baseline differs: black is not zeros here


class Noisy(nn.Module):
    """Dropout and BatchNorm, and a Hugging Face-style output {"logits": ...}."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Dropout(0.5), nn.Flatten(), nn.Linear(256, 10))

    def forward(self, x):
        return {"logits": self.net(x)}


def test_explain_func_runs_in_eval_mode_and_restores_each_modules_mode(images):
    x, y, _ = images
    model = Noisy().train()
    model.net[1].eval()  # a mixed state, kept as it was
    modes = [m.training for m in model.modules()]
    explain = saliencylab.explain_func("gradient")
    first = explain(model, x[:4].numpy(), y[:4].numpy())
    second = explain(model, x[:4].numpy(), y[:4].numpy())
    np.testing.assert_array_equal(first, second)  # no dropout: eval mode during the call
    assert [m.training for m in model.modules()] == modes
    assert not model._forward_hooks  # the logits hook is gone after the call


def test_explain_funcs_wrong_inputs_are_one_line(images):
    x, y, _ = images
    model, xs, ys = small_cnn(), x[:4].numpy(), y[:4].numpy()
    explain = saliencylab.explain_func("gradient")
    one_line_error(r"unknown attribution method 'nope'", saliencylab.explain_func, "nope")
    one_line_error(r"unknown attribution option", saliencylab.explain_func, "gradient",
                   ig_stepz=3)
    one_line_error(r"the explain_func of 'gradient' got unknown keyword\(s\) softmax: give the "
                   r"method's options to saliencylab\.explain_func\('gradient', \.\.\.\)",
                   explain, model=model, inputs=xs, targets=ys, softmax=True)
    one_line_error(r"model must be a torch\.nn\.Module, got a function", explain,
                   lambda z: model(z), xs, ys)
    one_line_error(r"inputs must be images \[N, C, H, W\], got shape \(4, 8, 8\)", explain,
                   model, xs[:, 0], ys)
    one_line_error(r"inputs holds 64 NaN or infinite", explain, model,
                   np.where(np.arange(256).reshape(4, 1, 8, 8) < 64, np.nan, xs), ys)
    one_line_error(r"targets must hold one class index per image: 4 for x's 4 images, got "
                   r"shape \(3,\)", explain, model, xs, ys[:3])
    one_line_error(r"targets holds labels 0\.\.12, but the model gives 10 logits", explain,
                   model, xs, np.array([0, 1, 2, 12]))
    one_line_error(r"targets must hold integer class indices", explain, model, xs,
                   ys.astype(np.float32))
    one_line_error(r"model fails on a batch of shape \[2, 3, 8, 8\]", explain, model,
                   np.repeat(xs, 3, axis=1), ys)
