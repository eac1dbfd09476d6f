"""Bad input ends in one line on stderr, exit code 2, and no run directory left behind."""

import gzip
import subprocess
import sys
import urllib.request

import pytest
from tiny import QUICK_ROAR

from saliencylab.cli import main


@pytest.mark.parametrize("extra, message", [
    (["--preset", "roar-imagenet"], "unknown preset 'roar-imagenet' for roar: choose one of"),
    (["--set", "train.epoch=2"], "unknown config key 'train.epoch'"),
    (["--set", "train.epochs=two"], "invalid value 'two' for train.epochs: expected int"),
    (["--set", "thresholds=0,150"], "thresholds must lie in [0, 100]"),
    (["--set", "methods=lime"], "unknown attribution method 'lime'"),
    (["--set", "dataset=svhn"], "unknown data set 'svhn'"),
    (["--set", "model=vgg"], "unknown model 'vgg'"),
    (["--set", "kar=maybe"], "invalid value 'maybe' for kar: expected bool"),
])
def test_bad_config_is_one_line(fails, tmp_path, extra, message):
    fails(QUICK_ROAR + ["--out", str(tmp_path)] + extra, message)
    assert not any(tmp_path.iterdir())


def test_unwritable_output_directory(fails, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fails(QUICK_ROAR + ["--out", str(blocker / "runs")], "cannot write the run directory")


def test_missing_data_files_offline(fails, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SALIENCYLAB_DATA", raising=False)
    err = fails(QUICK_ROAR + ["--out", str(tmp_path / "runs"), "--set", "dataset=mnist",
                                 "--data-dir", str(tmp_path / "empty")], "--data-dir")
    assert "MNIST" in err or "mnist" in err
    assert not (tmp_path / "runs").exists()


def test_corrupt_data_file(fails, tmp_path, monkeypatch):
    data = tmp_path / "mnist"
    data.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03 truncated"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fails(QUICK_ROAR + ["--out", str(tmp_path / "runs"), "--set", "dataset=mnist",
                           "--data-dir", str(data)], "corrupt")
    assert not (tmp_path / "runs").exists()


def test_console_script_prints_no_traceback():
    result = subprocess.run([sys.executable, "-m", "saliencylab.cli", "roar", "--set", "seeds="],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == ("saliencylab: error: invalid config: seeds must list at "
                                     "least one seed")


def test_show_config_lists_every_key(capsys):
    assert main(["roar", "--preset", "roar-mnist", "--show-config"]) == 0
    out = capsys.readouterr().out
    assert "train.lr = 0.001" in out and "seeds = (0, 1, 2, 3, 4)" in out and "removal = 'morf'" in out
