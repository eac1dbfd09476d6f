"""Fixtures shared by the test files (the shared run sizes are in tiny.py)."""

import importlib.metadata

import pytest
import torch
from image_files import save
from torch import nn

from saliencylab import data
from saliencylab.cli import main
from saliencylab.core import progress


@pytest.fixture(autouse=True, scope="session")
def log_to_stderr():
    """Every test sees saliencylab's log lines on stderr, as a user of the command line does."""
    progress.log_to_stderr()


@pytest.fixture
def fails(capsys):
    """`fails(argv, message)`: the command exits 2 with one line on stderr holding `message`."""
    def check(argv: list[str], message: str) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err  # one line, no traceback
        assert err.startswith("saliencylab: error: ") and message in err, err
        return err

    return check


@pytest.fixture
def linear_model():
    """`linear_model()`: f(x) = W flatten(x) + b on 1x2x2 (or 2x1x2) input, hand-set weights."""
    def build() -> nn.Module:
        lin = nn.Linear(4, 2)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]]))
            lin.bias.copy_(torch.tensor([0.1, -0.2]))
        return nn.Sequential(nn.Flatten(), lin)

    return build


class FakeEntryPoint:
    """An installed plugin's entry point: `load()` gives `target`, or raises it."""

    def __init__(self, name, target):
        self.name, self.value, self._target = name, f"fake:{name}", target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


@pytest.fixture
def installed_plugins(monkeypatch):
    """`installed_plugins(group, {name: target})`: what importlib.metadata finds installed."""
    def install(group: str, plugins: dict) -> None:
        def entry_points(group=None):
            return [FakeEntryPoint(n, t) for n, t in plugins.items()] if group == wanted else []

        wanted = group
        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    return install


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """Every cache these tests build goes to their own folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "saliencylab" / "decoded"


@pytest.fixture
def digit_folder(tmp_path):
    """The first 200 + 60 digits as 8x8 grey PNGs in root/train|test/<digit>/."""
    ds = data.load_dataset("digits")
    root = tmp_path / "digits"
    for split, x, y, n in (("train", ds.x_train, ds.y_train, 200), ("test", ds.x_test, ds.y_test,
                                                                      60)):
        for i in range(n):
            save(root / split / str(int(y[i])) / f"{i}.png", x[i, 0].numpy())
    return root

