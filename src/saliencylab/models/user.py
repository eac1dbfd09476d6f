"""Your own model: `--model package.module:function` or `--model path/to/file.py:function` names
a function returning an nn.Module; it is called as function(shape, classes) when it accepts two
positional arguments, else as function(). The file is executed when it is imported (at
validation, and again in every worker process).
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

from ..core.errors import UserError, a_type
from .inputs import logits
from .zoo import Shape

_HINT = "write --model package.module:function (or path/to/file.py:function)"


def _import_file(path: Path, reference: str):
    """The module in the .py file `path`, executed once per process and registered in
    sys.modules (dataclasses and pickling need that); its folder is on sys.path while it
    runs, so it can import its neighbours."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise UserError(f"--model {reference!r}: {path} is not a file: {_HINT}")
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


def resolve_function(reference: str) -> Callable:
    """The function behind `module:function` or `file.py:function`."""
    where, _, attribute = reference.strip().rpartition(":")
    if not where or not attribute.isidentifier():
        raise UserError(f"--model {reference!r} is not module:function: {_HINT}")
    is_file = where.endswith(".py")
    if not is_file and ("/" in where or "\\" in where):
        raise UserError(f"--model {reference!r}: {where} looks like a file path; a file must end in "
                        f".py ({where}.py:{attribute}), a module is dotted (package.module)")
    try:
        module = _import_file(Path(where), reference) if is_file else importlib.import_module(where)
    except UserError:
        raise
    except ModuleNotFoundError as e:
        if not is_file and e.name and where.startswith(e.name):
            raise UserError(f"--model {reference!r}: cannot import {where}: no module named "
                            f"{e.name!r} here (install it, add its folder to PYTHONPATH, or "
                            f"give the file: path/to/file.py:{attribute})") from None
        raise UserError(f"--model {reference!r}: cannot import {where}, it fails with {e}") from None
    except SystemExit as e:
        raise UserError(f"--model {reference!r}: importing {where} called sys.exit({e.code!r}): a "
                        f"model file must define the function, not exit") from None
    except Exception as e:
        raise UserError(f"--model {reference!r}: cannot import {where}, it fails with "
                        f"{type(e).__name__}: {_one_line(e)}") from None
    function = getattr(module, attribute, None)
    if function is None:
        found = sorted(k for k, v in vars(module).items()
                       if callable(v) and not k.startswith("_") and getattr(v, "__module__", None)
                       == module.__name__)
        raise UserError(f"--model {reference!r}: {where} has no function {attribute!r}"
                        f"{' (it has: ' + ', '.join(found[:8]) + ')' if found else ''}; {_HINT}")
    if not callable(function):
        raise UserError(f"--model {reference!r}: {attribute} in {where} is {a_type(function)}, not a "
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


def user_model(reference: str, shape: Shape, classes: int) -> nn.Module:
    """Your function's model: called as function(shape, classes) when it accepts them, else
    function(); then checked on a [2, C, H, W] batch of zeros to give [2, classes] logits."""
    function = resolve_function(reference)
    arguments = _arguments(function, shape, classes)
    try:
        model = function(*arguments)
    except SystemExit as e:
        raise UserError(f"--model {reference!r} called sys.exit({e.code!r}) instead of returning a "
                        f"torch.nn.Module") from None
    except Exception as e:
        frame = traceback.extract_tb(e.__traceback__)[-1]
        raise UserError(f"--model {reference!r} raised {type(e).__name__}: {_one_line(e)} "
                        f"({frame.filename}:{frame.lineno})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {reference!r} returned {a_type(model)}, not a torch.nn.Module")
    check_output(model, reference, shape, classes)
    return model


def check_output(model: nn.Module, reference: str, shape: Shape, classes: int) -> None:
    """One forward pass on zeros in eval mode (BatchNorm cannot train on a batch this small),
    checked by `inputs.logits` (every submodule's mode restored); then the class count."""
    where = next(model.parameters(), torch.zeros(())).device
    out = logits(model, torch.zeros(2, *shape, device=where), f"--model {reference!r}")
    if out.shape[1] != classes:
        raise UserError(f"--model {reference!r} gives {tuple(out.shape)} for 2 images, expected logits (2, "
                        f"{classes}): it must return one logit per class of the data set")
