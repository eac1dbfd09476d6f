"""The front door (issue 14): `saliencylab --help`, every command's `--help` and `--version`."""

import tomllib
from pathlib import Path

import pytest

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
