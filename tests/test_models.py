"""Registered models and bring-your-own models (`--model package.module:function` or
`path/to/file.py:function`): how the function is called, and a one-line error for each way a
name can be wrong."""

import itertools
import re
import sys
import textwrap

import pytest
import torch
from torch import nn

from saliencylab import attribution, models
from saliencylab.core.errors import UserError

USER_MODULE = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self, shape=(1, 8, 8), classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], classes))

    def forward(self, x):
        return self.net(x)


def with_shape(shape, classes):
    return Small(shape, classes)


def named_differently(input_shape, num_classes, width=4):
    return Small(input_shape, num_classes)


def without_arguments():
    return Small()


def keyword_only(*, weights=None, progress=True):  # torchvision style: called with none
    return Small()


def three_required(a, b, c):
    return Small()


def not_a_module(shape, classes):
    return {"weights": torch.zeros(3)}


def wrong_classes(shape, classes):
    return Small(shape, 3)


def wrong_input(shape, classes):
    return nn.Linear(5, classes)


def broken(shape, classes):
    return 1 / 0


def with_sys_exit(shape, classes):
    raise SystemExit(7)


with_batchnorm = lambda shape, classes: nn.Sequential(  # noqa: E731
    nn.Flatten(), nn.Linear(shape[1] * shape[2], classes), nn.BatchNorm1d(classes))

NOT_CALLABLE = 3
'''

MODULE_NUMBERS = itertools.count()


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """An importable module (a new name per test: sys.modules caches imports)."""
    name = f"user_models_{next(MODULE_NUMBERS)}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def one_line_error(spec, shape=(1, 8, 8), classes=10) -> str:
    with pytest.raises(UserError) as e:
        models.build_model(spec, shape, classes)
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["lenet", "sgt_cnn", "tiny_cnn"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_registered_models_give_logits_and_a_rectified_cam_layer(name, shape):
    model = models.build_model(name, shape, 7).eval()
    assert model(torch.zeros(3, *shape)).shape == (3, 7)
    assert isinstance(model.cam_layer, nn.ReLU)
    models.check_model(name)


def test_an_unknown_name_lists_the_models_and_the_own_model_form():
    for check in (lambda: models.build_model("resnet", (1, 8, 8), 10),
                  lambda: models.check_model("resnet")):
        with pytest.raises(UserError, match=r"unknown model 'resnet': choose one of deit_tiny, "
                                            r"lenet, sgt_cnn, tiny_cnn, or name your own as "
                                            r"package\.module:function"):
            check()


@pytest.mark.parametrize("function", ["with_shape", "named_differently"])
def test_a_function_taking_two_arguments_gets_shape_and_classes(user_module, function):
    model = models.build_model(f"{user_module}:{function}", (1, 6, 5), 4)
    assert model.net[1].in_features == 30 and model.net[1].out_features == 4
    models.check_model(f"{user_module}:{function}")


@pytest.mark.parametrize("function", ["without_arguments", "keyword_only"])
def test_a_function_without_positional_parameters_is_called_with_none(user_module, function):
    model = models.build_model(f"{user_module}:{function}", (1, 8, 8), 10)
    assert model.net[1].in_features == 64


def test_batchnorm_models_pass_the_output_check_and_keep_their_mode(user_module):
    model = models.build_model(f"{user_module}:with_batchnorm", (1, 8, 8), 10)
    assert model.training  # the check ran in eval mode (batch of 2) and restored the mode
    assert model[2].num_batches_tracked.item() == 0  # and did not update the running stats


@pytest.mark.parametrize("function, message", [
    ("three_required", r"three_required\(a, b, c\) must take \(shape, classes\) or no arguments"),
    ("not_a_module", r"returned a dict, not a torch\.nn\.Module"),
    ("wrong_classes", r"gives \(2, 3\) for 2 images, expected logits \(2, 10\)"),
    ("wrong_input", r"fails on a batch of shape \[2, 1, 8, 8\] \(RuntimeError: "),
    ("broken", r"raised ZeroDivisionError: division by zero \(.*user_models_.*\.py:\d+\)"),
    ("NOT_CALLABLE", r": NOT_CALLABLE in user_models_\d+ is an int, not a function"),
    ("with_sys_exit", r"called sys\.exit\(7\) instead of returning a torch\.nn\.Module"),
    ("sys:exit", r"'sys:exit' called sys\.exit\(None\) instead of returning"),
    ("missing", r"has no function 'missing' \(it has: .*with_shape"),
])
def test_each_wrong_function_gets_one_line(user_module, function, message):
    spec = function if ":" in function else f"{user_module}:{function}"
    assert re.search(message, one_line_error(spec))


def test_a_model_file_that_exits_on_import_is_one_line(tmp_path):
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(5)\n")
    with pytest.raises(UserError, match=r"importing .*quits\.py called sys\.exit\(5\): a model "
                                        r"file must define the function, not exit"):
        models.check_model(f"{tmp_path / 'quits.py'}:build")


def test_a_python_file_is_loaded_once_with_its_folder_importable(tmp_path):
    folder = tmp_path / "my project"
    folder.mkdir()
    (folder / "layers.py").write_text("from torch import nn\nWIDTH = 8\n")
    (folder / "net.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass  # needs the module in sys.modules

        from torch import nn

        from layers import WIDTH  # a neighbour file


        @dataclass
        class Size:
            classes: int


        def build(shape, classes):
            width = shape[1] * shape[2]
            return nn.Sequential(nn.Flatten(), nn.Linear(width, Size(classes).classes))
    '''))
    spec = f"{folder / 'net.py'}:build"
    first = models.build_model(spec, (1, 4, 4), 3)
    second = models.build_model(spec, (1, 4, 4), 3)
    assert first[1].out_features == 3
    assert type(first) is type(second)
    assert str(folder) not in sys.path  # the folder was on the path only while importing


@pytest.mark.parametrize("spec, message", [
    ("nowhere/my_model.py:build", r"my_model\.py is not a file"),
    ("models/my_model:build", r"looks like a file path; a file must end in \.py "
                              r"\(models/my_model\.py:build\)"),
    ("no_such_package_xyz.models:build",
     r"cannot import no_such_package_xyz\.models: no module named 'no_such_package_xyz' here"),
    ("saliencylab.models:", r"is not module:function"),
    (":build", r"is not module:function"),
])
def test_each_wrong_name_gets_one_line(spec, message):
    assert re.search(message, one_line_error(spec))
    with pytest.raises(UserError):
        models.check_model(spec)


def test_an_import_that_fails_inside_the_module_says_so(tmp_path, monkeypatch):
    (tmp_path / "needs_timm_xyz.py").write_text("import timm_not_installed_xyz\n")
    (tmp_path / "crashes_xyz.py").write_text("x = 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ("cannot import needs_timm_xyz, it fails with No module named "
            "'timm_not_installed_xyz'") in one_line_error("needs_timm_xyz:build")
    assert "cannot import crashes_xyz, it fails with ZeroDivisionError: division by zero" in \
        one_line_error("crashes_xyz:build")
    (tmp_path / "bad_syntax.py").write_text("def build(:\n")
    assert "cannot import" in one_line_error(f"{tmp_path / 'bad_syntax.py'}:build")


def test_a_model_without_cam_layer_works_for_gradients_and_cam_says_why_not(user_module):
    model = models.build_model(f"{user_module}:with_shape", (1, 8, 8), 10).eval()
    x, target = torch.rand(2, 1, 8, 8), torch.tensor([1, 2])
    a = attribution.make_method("gradient").attribute(model, x, target)
    assert a.shape == (2, 1, 8, 8) and a.abs().sum() > 0
    with pytest.raises(UserError, match="has no `cam_layer`"):
        attribution.make_method("gradcam").attribute(model, x, target)
