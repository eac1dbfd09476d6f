"""`sgt-analysis --model-file` and `--model-file` weights: every file that is not a model gets one
line saying what it is and what to give instead (issue 10 §7); nothing in a file is executed."""

import os
import pickle
import tempfile
from pathlib import Path

import pytest
import torch

from saliencylab import cli
from saliencylab.core.errors import UserError
from saliencylab.models.files import load_sgt_model, load_weights
from saliencylab.models.registry import build_model


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("epochs: 10\nlr: 0.1\n"), "is not a PyTorch file (it looks like a text file)"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "(it looks like a PNG image)"),
    (lambda p: torch.save({"train": torch.zeros(2, 4), "test": torch.zeros(1, 4)}, p),
     "is a ROAR ranking artifact, not a trained model"),
    (lambda p: torch.save({"state": {}, "mask": {}, "metrics": {}, "examples": torch.zeros(1),
                           "inputs": torch.zeros(1)}, p), "is a pruning level file, not a trained model"),
    (lambda p: torch.save({"weights": torch.zeros(3)}, p), "is not a saliencylab model file"),
])
def test_sgt_analysis_names_what_a_wrong_file_is_in_one_line(tmp_path, capsys, make, message):
    path = tmp_path / "model.pt"
    make(path)
    assert cli.main(["sgt-analysis", "--model-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert "give a model saved by `saliencylab train`" in err


class Boom:
    """Unpickling this calls os.system: a file that must never run."""

    def __reduce__(self):
        import os

        return os.system, (f"touch {MARKER}",)


MARKER = Path(tempfile.gettempdir()) / f"saliencylab-pwned-{os.getpid()}"


def test_a_crafted_pickle_is_refused_without_running(tmp_path):
    import zipfile

    with open(tmp_path / "raw.pkl", "wb") as f:  # a plain pickle, not a torch archive
        pickle.dump(Boom(), f)
    with pytest.raises(UserError, match="is not a PyTorch file"):
        load_sgt_model(tmp_path / "raw.pkl")
    torch.save({"x": torch.zeros(1)}, tmp_path / "good.pt")  # a torch archive whose data.pkl
    with zipfile.ZipFile(tmp_path / "good.pt") as good, \
            zipfile.ZipFile(tmp_path / "evil.pt", "w") as evil:  # is replaced by Boom
        for item in good.namelist():
            content = pickle.dumps(Boom(), protocol=2) if item.endswith("data.pkl") else good.read(item)
            evil.writestr(item, content)
    with pytest.raises(UserError, match=r"evil.pt holds a pickled posix.system, which a "
                                        r"weights-only load refuses to run \(nothing was run"):
        load_sgt_model(tmp_path / "evil.pt")
    assert not os.path.exists(MARKER)


def test_weights_load_and_a_mismatch_lists_the_differences(tmp_path):
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded = load_weights(build_model("tiny_cnn", (1, 8, 8), 10), tmp_path / "w.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 model.state_dict().values()))
    with pytest.raises(UserError, match=r"does not fit the model: .*has shape"):
        load_weights(build_model("tiny_cnn", (1, 8, 8), 3), tmp_path / "w.pt")
    with pytest.raises(UserError, match="missing features.0.weight"):
        torch.save({"other.weight": torch.zeros(1)}, tmp_path / "x.pt")
        load_weights(build_model("tiny_cnn", (1, 8, 8), 10), tmp_path / "x.pt")


class Whole(torch.nn.Module):
    """Saved whole with torch.save(model): the file names this class."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)


def test_files_that_are_not_weights_say_what_they_are(tmp_path):
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({k: v.numpy() for k, v in model.state_dict().items()}, f)
    with pytest.raises(UserError, match=r"it looks like a Python pickle, not a torch.save file"):
        load_weights(model, tmp_path / "plain.pkl")
    torch.save(Whole(), tmp_path / "whole.pt")
    with pytest.raises(UserError, match=r"holds a pickled [\w.]*Whole, which a weights-only load "
                                        r"refuses to run .* give a state_dict saved with"):
        load_weights(model, tmp_path / "whole.pt")
    torch.save(model.state_dict(), tmp_path / "cut.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "cut.pt").read_bytes()[:300])
    with pytest.raises(UserError, match=r"cut.pt is truncated or damaged, not a readable PyTorch "
                                        r"file \(\w+"):
        load_weights(model, tmp_path / "cut.pt")
    torch.save({"train": torch.zeros(2, 64), "test": torch.zeros(1, 64)}, tmp_path / "ranking.pt")
    with pytest.raises(UserError, match="is a ROAR ranking artifact, not weights"):
        load_weights(model, tmp_path / "ranking.pt")


def test_weights_in_the_old_format_and_in_our_own_files_load(tmp_path):
    trained = build_model("tiny_cnn", (1, 8, 8), 10)
    torch.save(trained.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    torch.save({"state": trained.state_dict(), "mask": {}, "metrics": {},
                "examples": torch.zeros(1), "inputs": torch.zeros(1)}, tmp_path / "level03.pt")
    for name in ("old.pt", "level03.pt"):
        torch.manual_seed(1)
        loaded = load_weights(build_model("tiny_cnn", (1, 8, 8), 10), tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                     trained.state_dict().values()))
