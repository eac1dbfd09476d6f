"""The front door (issue 14): `saliencylab --help`, every command's `--help` and `--version`."""

from pathlib import Path

import pytest
import tomllib

import saliencylab
from saliencylab.cli import COMMANDS, TOOLS, main

ROOT = Path(__file__).parent.parent


def help_text(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr()
    assert exit_.value.code == 0, out.err
    assert out.err == ""
    return out.out


def test_top_level_help_lists_every_command(capsys):
    text = help_text(capsys, ["--help"])
    assert text.startswith("usage: saliencylab")
    for name in [*COMMANDS, *TOOLS]:
        assert name in text
    assert "remove the top t%, retrain" in " ".join(text.split())  # the % that crashed argparse


@pytest.mark.parametrize("name", [*COMMANDS, *TOOLS])
def test_every_command_has_a_help(capsys, name):
    text = help_text(capsys, [name, "--help"])
    assert text.startswith(f"usage: saliencylab {name}")


def test_version_is_the_package_version(capsys):
    assert help_text(capsys, ["--version"]) == f"saliencylab {saliencylab.__version__}\n"


def test_the_version_is_written_in_one_place():
    """pyproject.toml reads the version from saliencylab.__version__: they cannot drift."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "saliencylab.__version__"}


def test_make_demo_runs_every_faithfulness_test_offline():
    """`make demo` is the run that shows what the tool is for (issue 14, 4): every metric of
    several methods against the random baseline, on the digits that ship with scikit-learn."""
    from saliencylab.protocols.evaluate import EvaluateConfig
    from saliencylab.runs import config as cfg

    makefile = (ROOT / "Makefile").read_text()
    command = makefile.split("\ndemo: setup\n\t", 1)[1].splitlines()[0].split()
    assert command[:2] == ["$(VENV)/bin/saliencylab", "evaluate"] and command[2] == "--preset"
    preset = cfg.load_preset("evaluate", command[3], EvaluateConfig())
    assert preset.dataset == "digits" and "random" in preset.methods and len(preset.methods) > 2
    assert {"road", "deletion", "mprt"} <= set(preset.metrics)
