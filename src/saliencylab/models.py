"""Registered image classifiers. Each builder adapts to the input shape and class count.

Every model exposes `cam_layer` for Grad-CAM style methods: the rectified output of the last
convolutional layer (its ReLU module), i.e. the feature maps A^k of Selvaraju et al. 2017. It is
a property, not a second registration of that module: Captum's DeepLift hooks every
registered child and fails on a module registered twice.
Models take normalised float input of shape [B, C, H, W].

Your own model: `--model package.module:function` or `--model path/to/file.py:function` names a
function returning an nn.Module; it is called as function(shape, classes) when it accepts two
positional arguments, else as function(). A model without `cam_layer` works with every method
but the CAM ones, which say so (or set attribution.cam_layer to conv or a module path).
"""

import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import UserError, a_type
from .vit import deit_tiny  # timm deit_tiny_patch16_224 layout, without timm (see vit.py)

Shape = tuple[int, int, int]


def _flat_features(features: nn.Module, shape: Shape) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, *shape)).flatten(1).shape[1]


class LeNet(nn.Module):
    """LeNet-5 as in docs/protocols.md §1: 2 conv, 2 max-pool and 3 linear layers."""

    def __init__(self, shape: Shape, classes: int):
        super().__init__()
        c, h, _ = shape
        # The second conv is unpadded on 28x28 input (classic LeNet); small inputs such as
        # the 8x8 digits would shrink to nothing, so it keeps their size instead.
        pad2 = 0 if h // 2 >= 10 else 2
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flat_features(self.features, shape), 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, classes),
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[4]

    def forward(self, x):
        return self.classifier(self.features(x))


class SGTNet(nn.Module):
    """The PyTorch MNIST example network used by SGT and SMOOT (docs/protocols.md §2)."""

    def __init__(self, shape: Shape, classes: int):
        super().__init__()
        c = shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(_flat_features(self.features, shape), 128), nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, classes),
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[3]

    def forward(self, x):
        return self.classifier(self.features(x))


class TinyCNN(nn.Module):
    """Lukkien's pruning model (docs/protocols.md §3): conv4-pool-conv8-pool-fc, 200 features on MNIST."""

    def __init__(self, shape: Shape, classes: int):
        super().__init__()
        c, h, _ = shape
        pad = 0 if h >= 16 else 1  # small inputs (8x8 digits) keep their size through the convs
        self.features = nn.Sequential(
            nn.Conv2d(c, 4, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(_flat_features(self.features, shape), classes),
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[4]

    def forward(self, x):
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[[Shape, int], nn.Module]] = {
    "lenet": LeNet,
    "sgt_cnn": SGTNet,
    "tiny_cnn": TinyCNN,
    "deit_tiny": deit_tiny,
}


def build_model(name: str, shape: Shape, classes: int) -> nn.Module:
    """Build a registered model, or your own (`package.module:function` or
    `path/to/file.py:function`), for inputs of `shape` (C, H, W) and `classes` outputs."""
    if ":" in name:
        return _user_model(name, tuple(shape), classes)
    check_model(name)
    return MODELS[name](tuple(shape), classes)


def check_model(name: str) -> None:
    """A one-line UserError unless `name` is a registered model or an importable function
    (for config validation: imports the module, builds nothing)."""
    if ":" in name:
        _resolve(name)
    elif name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}, or "
                        f"name your own as package.module:function or path/to/file.py:function")


_HINT = "write --model package.module:function (or path/to/file.py:function)"


def _import_file(path: Path, spec: str):
    """The module in the .py file `path`, executed once per process and registered in
    sys.modules (dataclasses and pickling need that); its folder is on sys.path while it
    runs, so it can import its neighbours."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise UserError(f"--model {spec!r}: {path} is not a file: {_HINT}")
    name = f"saliencylab_user_model_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        if str(path.parent) in sys.path:
            sys.path.remove(str(path.parent))
    return module


def _resolve(spec: str) -> Callable:
    """The function behind `module:function` or `file.py:function`."""
    where, _, attribute = spec.strip().rpartition(":")
    if not where or not attribute.isidentifier():
        raise UserError(f"--model {spec!r} is not module:function: {_HINT}")
    is_file = where.endswith(".py")
    if not is_file and ("/" in where or "\\" in where):
        raise UserError(f"--model {spec!r}: {where} looks like a file path; a file must end in "
                        f".py ({where}.py:{attribute}), a module is dotted (package.module)")
    try:
        module = _import_file(Path(where), spec) if is_file else importlib.import_module(where)
    except UserError:
        raise
    except ModuleNotFoundError as e:
        if not is_file and e.name and where.startswith(e.name):
            raise UserError(f"--model {spec!r}: cannot import {where}: no module named "
                            f"{e.name!r} here (install it, add its folder to PYTHONPATH, or "
                            f"give the file: path/to/file.py:{attribute})") from None
        raise UserError(f"--model {spec!r}: cannot import {where}, it fails with {e}") from None
    except SystemExit as e:
        raise UserError(f"--model {spec!r}: importing {where} called sys.exit({e.code!r}): a "
                        f"model file must define the function, not exit") from None
    except Exception as e:
        raise UserError(f"--model {spec!r}: cannot import {where}, it fails with "
                        f"{type(e).__name__}: {_one_line(e)}") from None
    function = getattr(module, attribute, None)
    if function is None:
        found = sorted(k for k, v in vars(module).items()
                       if callable(v) and not k.startswith("_") and getattr(v, "__module__", None)
                       == module.__name__)
        raise UserError(f"--model {spec!r}: {where} has no function {attribute!r}"
                        f"{' (it has: ' + ', '.join(found[:8]) + ')' if found else ''}; {_HINT}")
    if not callable(function):
        raise UserError(f"--model {spec!r}: {attribute} in {where} is {a_type(function)}, not a "
                        f"function; {_HINT}")
    return function


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]


def _arguments(function: Callable, shape: Shape, classes: int) -> tuple:
    """(shape, classes) when the function accepts two positional arguments, () when it can
    be called without any: how your function is called."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: try the plain call
        return ()
    for arguments in ((shape, classes), ()):
        try:
            signature.bind(*arguments)
            return arguments
        except TypeError:
            continue
    raise UserError(f"--model: {function.__qualname__}{signature} must take (shape, classes) "
                    f"or no arguments")


def _user_model(spec: str, shape: Shape, classes: int) -> nn.Module:
    """Your function's model: called as function(shape, classes) when it accepts them, else
    function(); then checked on a [2, C, H, W] batch of zeros to give [2, classes] logits."""
    function = _resolve(spec)
    arguments = _arguments(function, shape, classes)
    try:
        model = function(*arguments)
    except SystemExit as e:
        raise UserError(f"--model {spec!r} called sys.exit({e.code!r}) instead of returning a "
                        f"torch.nn.Module") from None
    except Exception as e:
        frame = traceback.extract_tb(e.__traceback__)[-1]
        raise UserError(f"--model {spec!r} raised {type(e).__name__}: {_one_line(e)} "
                        f"({frame.filename}:{frame.lineno})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {spec!r} returned {a_type(model)}, not a torch.nn.Module")
    _check_output(model, spec, shape, classes)
    return model


def _check_output(model: nn.Module, spec: str, shape: Shape, classes: int) -> None:
    """One forward pass on zeros in eval mode (BatchNorm cannot train on a batch this small),
    checked by `inputs.logits` (every submodule's mode restored); then the class count."""
    from .inputs import logits

    where = next(model.parameters(), torch.zeros(())).device
    out = logits(model, torch.zeros(2, *shape, device=where), f"--model {spec!r}")
    if out.shape[1] != classes:
        raise UserError(f"--model {spec!r} gives {tuple(out.shape)} for 2 images, expected logits (2, "
                        f"{classes}): it must return one logit per class of the data set")
