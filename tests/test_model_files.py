"""`sgt-analysis --model-file` and `--model-file` weights: every file that is not a model gets one
line saying what it is and what to give instead (issue 10 §7); nothing in a file is executed."""

import pickle

import pytest
import torch

from saliencylab import cli
from saliencylab.errors import UserError
from saliencylab.model_files import load_sgt_model, load_weights
from saliencylab.models import build_model


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


MARKER = "/tmp/saliencylab-pwned"


def test_a_crafted_pickle_is_refused_without_running(tmp_path):
    import os
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
    with pytest.raises(UserError, match="cannot be loaded as weights only"):
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
