"""Ways to damage a run directory's files, shared by the tests that check each one is caught."""

import hashlib
import io
import json
import shutil
from pathlib import Path

import torch

DROP = object()  # edit_record: remove the field


def copy_run(source: Path, tmp_path: Path) -> Path:
    """A copy of run directory `source` under tmp_path/runs, to damage and re-run."""
    target = tmp_path / "runs" / source.name
    shutil.copytree(source, target)
    return target


def edit_record(**changes):
    """A damage that sets (or, with DROP, removes) fields of a job file's record; a dotted
    name reaches into nested dicts (per_image.road_morf.gradient)."""
    def damage(path: Path) -> None:
        data = json.loads(path.read_text())
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            target = data["record"]
            for key in parents:
                target = target[key]
            if value is DROP:
                del target[last]
            else:
                target[last] = value
        path.write_text(json.dumps(data))
    return damage


def rewrite_verified(path: Path, obj) -> None:
    """Replace an artifact's content by `obj` and rewrite its sha256 to match: the hash holds,
    only a check of the content can tell."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path.write_bytes(buffer.getvalue())
    path.with_name(path.name + ".sha256").write_text(hashlib.sha256(buffer.getvalue()).hexdigest())


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def into_a_directory(path: Path) -> None:
    """A directory where the file should be."""
    path.unlink()
    path.mkdir()
