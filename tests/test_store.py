"""Trust nothing on disk (issue 10 §1, §5, §6, §7; issue 14 D1, D3, D4, C2-C6, U2): corrupt,
foreign or edited job records and artifacts are quarantined and recomputed, corrupt/ keeps every
copy, config.json is never trusted, one process per run directory and a lock that is never
followed, an unwritable run found before any work, stale temporaries go, the umask is
respected, and a full disk is a one-line error."""

import errno
import json
import os
import shutil
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from damage import DROP, copy_run, edit_record, into_a_directory, rewrite_verified

from saliencylab.core.contents import Tensor
from saliencylab.core.errors import UserError
from saliencylab.protocols import roar
from saliencylab.runs import config as cfg
from saliencylab.runs.files import atomic_write, load_verified, quarantine, save_verified
from saliencylab.runs.store import RunStore

TINY = ["n_train=200", "n_test=80", "train.epochs=1", "train.lr=0.05", "seeds=0",
        "thresholds=0,50", "methods=random,gradient"]


def tiny_config(*extra):
    return cfg.apply_sets(cfg.load_preset("roar", "roar-quick", roar.RoarConfig()), TINY + list(extra))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """One uninterrupted run, as the reference every repaired run must equal."""
    return roar.run(tiny_config(), str(tmp_path_factory.mktemp("clean")), "tiny")


def results(run_dir: Path) -> str:
    return (run_dir / "results.csv").read_text()


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[:25]),  # truncated
    lambda p: p.write_bytes(b""),  # emptied
    lambda p: p.write_bytes(b"\xff\xfe\x00garbage\x81"),  # not UTF-8
    lambda p: p.write_text(p.read_text().replace('"accuracy": 0.', '"accuracy": "zero point ')),
    lambda p: p.write_text((p.parent / "random-t50-s0.json").read_text()),  # another job's file
    edit_record(threshold=0.0),  # another job's threshold (the reference's), in its own file
    edit_record(method="random"),  # another job's method
    edit_record(accuracy=2.0),
    edit_record(accuracy=-5.0),
    edit_record(accuracy=float("nan")),
    edit_record(precision_0=DROP),
    edit_record(precision_3="high"),
    into_a_directory,
], ids=["truncated", "empty", "not-utf8", "non-numeric-accuracy", "another-jobs-record",
        "another-jobs-threshold", "another-jobs-method", "accuracy-2", "accuracy-minus-5",
        "accuracy-nan", "no-precision_0", "text-precision", "a-directory"])
def test_a_damaged_job_record_is_quarantined_and_recomputed(clean_run, tmp_path, capsys, damage):
    run_dir = copy_run(clean_run, tmp_path)
    victim = run_dir / "jobs" / "gradient-t50-s0.json"
    damage(victim)
    assert roar.run(tiny_config(), str(tmp_path / "runs"), "tiny") == run_dir
    err = capsys.readouterr().err
    assert f"{victim}" in err and "moved to" in err and "computed again" in err
    assert (run_dir / "corrupt" / "jobs" / "gradient-t50-s0.json").exists()
    assert results(run_dir) == results(clean_run)


def test_a_record_of_another_config_is_not_trusted(clean_run, tmp_path, capsys):
    run_dir = copy_run(clean_run, tmp_path)
    victim = run_dir / "jobs" / "random-t50-s0.json"
    data = json.loads(victim.read_text())
    data["config_hash"] = "0123456789"
    victim.write_text(json.dumps(data))
    roar.run(tiny_config(), str(tmp_path / "runs"), "tiny")
    assert "belongs to another config" in capsys.readouterr().err
    assert results(run_dir) == results(clean_run)


def flip_bytes_inside_the_archive(path: Path) -> None:
    """Change tensor bytes but keep a valid zip archive: torch.load would accept it."""
    with zipfile.ZipFile(path) as source:
        entries = {name: source.read(name) for name in source.namelist()}
    data_name = next(n for n in entries if "/data/" in n and len(entries[n]) > 16)
    payload = bytearray(entries[data_name])
    payload[:8] = bytes(b ^ 0xFF for b in payload[:8])
    entries[data_name] = bytes(payload)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for name, content in entries.items():
            target.writestr(name, content)
    torch.load(path, weights_only=True)  # still loads: only the checksum can tell


@pytest.mark.parametrize("artifact, damage", [
    ("ranking-gradient.pt", lambda p: p.write_bytes(p.read_bytes()[:100])),
    ("ranking-gradient.pt", flip_bytes_inside_the_archive),
    ("base_model.pt", lambda p: p.write_bytes(p.read_bytes()[:100])),
    # the content replaced, its sha256 rewritten to match (issue 14 C4)
    ("ranking-gradient.pt", lambda p: rewrite_verified(p, {k: v[:5] for k, v in
                                                            torch.load(p).items()})),
    ("ranking-gradient.pt", lambda p: rewrite_verified(p, {k: v + 1000 for k, v in
                                                            torch.load(p).items()})),
    ("base_model.pt", lambda p: rewrite_verified(p, {"foo": 1})),
    ("base_model.pt", lambda p: rewrite_verified(p, torch.zeros(3))),
    ("ranking-gradient.pt", into_a_directory),
], ids=["truncated-ranking", "flipped-ranking", "truncated-model", "5-rows", "out-of-range",
        "foo", "bare-tensor", "a-directory"])
def test_a_damaged_artifact_is_quarantined_and_recomputed(clean_run, tmp_path, capsys, artifact,
                                                          damage):
    run_dir = copy_run(clean_run, tmp_path)
    for job in (run_dir / "jobs").glob("gradient-*"):
        job.unlink()  # the jobs that need the ranking run again
    damage(run_dir / "artifacts" / artifact)
    roar.run(tiny_config(), str(tmp_path / "runs"), "tiny")
    err = capsys.readouterr().err
    assert any(f"{artifact} {why}" in err for why in ("does not match its sha256", "cannot be loaded",
                                                       "does not hold what its job makes",
                                                       "is not a regular file"))
    assert (run_dir / "corrupt" / "artifacts" / artifact).exists()
    assert results(run_dir) == results(clean_run)


def test_an_edited_config_json_is_rewritten_from_the_command_never_used(clean_run, tmp_path, capsys):
    run_dir = copy_run(clean_run, tmp_path)
    (run_dir / "config.json").write_text('{"train": {"lr": 99}, garbled')
    roar.run(tiny_config(), str(tmp_path / "runs"), "tiny")
    assert "config.json disagrees with this run's config" in capsys.readouterr().err
    written = json.loads((run_dir / "config.json").read_text())
    assert written == json.loads(json.dumps(cfg.to_dict(tiny_config())))
    assert results(run_dir) == results(clean_run)
    roar.run(tiny_config(), str(tmp_path / "runs"), "tiny")  # now it agrees: no warning
    assert "disagrees" not in capsys.readouterr().err


def test_verified_files_round_trip_and_a_missing_checksum_is_not_trusted(tmp_path, capsys):
    path = tmp_path / "artifacts" / "x.pt"
    spec = {"a": Tensor((3,))}
    save_verified(path, {"a": torch.arange(3)}, spec)
    assert torch.equal(load_verified(path, tmp_path, spec)["a"], torch.arange(3))
    path.with_name("x.pt.sha256").unlink()
    assert load_verified(path, tmp_path, spec) is None
    assert "has no readable sha256" in capsys.readouterr().err
    assert not path.exists() and (tmp_path / "corrupt" / "artifacts" / "x.pt").exists()


# one process per run directory ------------------------------------------------------------------
HOLD = """
import sys, time
from saliencylab.runs.store import RunStore
from saliencylab.protocols.roar import RoarConfig
store = RunStore(sys.argv[1], "held", RoarConfig(device="cpu"))
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_process_on_the_same_run_directory_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"in use by another saliencylab process \(pid "
                                            rf"{holder.pid} on host"):
            RunStore(tmp_path, "held", roar.RoarConfig(device="cpu"))
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale and taken over, with a warning
    store = RunStore(tmp_path, "held", roar.RoarConfig(device="cpu"))
    store.close()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    run = tmp_path / f"held-{cfg.config_hash(roar.RoarConfig(device='cpu'))}"
    run.mkdir()
    (run / ".lock").write_text("pid 999999 on host elsewhere\n")
    RunStore(tmp_path, "held", roar.RoarConfig(device="cpu")).close()
    assert "taking over the stale lock" in capsys.readouterr().err
    assert (run / ".lock").read_text() == ""  # released on close


# temporaries, permissions, a full disk -----------------------------------------------------------
def test_stale_temporary_files_are_removed_when_a_run_is_opened(tmp_path):
    config = roar.RoarConfig(device="cpu")
    store = RunStore(tmp_path, "t", config)
    store.close()
    stale = [store.dir / ".config.json.abc123.tmp", store.dir / "artifacts" / ".x.pt.def.tmp"]
    for path in stale:
        path.write_text("half")
    RunStore(tmp_path, "t", config).close()
    assert not any(p.exists() for p in stale)


def test_files_respect_the_umask(tmp_path):
    import saliencylab.runs.store as store_module

    old = os.umask(0o022)
    try:
        store_module.FILE_MODE = 0o666 & ~0o022
        atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
        store_module.FILE_MODE = 0o666 & ~old


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:626] . "
                                                "unexpected pos 832 vs 726")])
def test_a_full_disk_is_one_line_naming_the_directory_and_leaves_no_partial_file(tmp_path, error):
    def write(tmp):
        tmp.write_bytes(b"partial")
        raise error

    with pytest.raises(UserError) as caught:
        atomic_write(tmp_path / "model.pt", write)
    message = str(caught.value)
    assert "\n" not in message and f"no space left to write model.pt in {tmp_path}" in message
    assert "MiB free" in message
    assert list(tmp_path.iterdir()) == []


# issue 14: what is moved aside is kept, the lock is never followed, the run is writable ---------
def test_a_file_quarantined_twice_keeps_both_copies(clean_run, tmp_path):
    run_dir = copy_run(clean_run, tmp_path)
    victim = run_dir / "jobs" / "gradient-t50-s0.json"
    for text in ("first damage", "second damage"):
        victim.write_text(text)
        roar.run(tiny_config(), str(tmp_path / "runs"), "tiny")
    kept = run_dir / "corrupt" / "jobs"
    assert {p.name: p.read_text() for p in kept.iterdir()} == {
        "gradient-t50-s0.json": "first damage", "gradient-t50-s0.json.1": "second damage"}
    assert results(run_dir) == results(clean_run)


def test_an_artifact_and_its_checksum_quarantined_twice_keep_their_pairs(tmp_path, capsys):
    path = tmp_path / "artifacts" / "x.pt"
    for n in range(3):
        save_verified(path, torch.full((2,), n), object)
        quarantine(path, tmp_path, "was damaged")
    kept = tmp_path / "corrupt" / "artifacts"
    for n, suffix in enumerate(("", ".1", ".2")):
        assert torch.equal(torch.load(kept / f"x.pt{suffix}"), torch.full((2,), n))
        assert (kept / f"x.pt.sha256{suffix}").exists()


def run_dir_of(out: Path, name: str = "held") -> Path:
    return out / f"{name}-{cfg.config_hash(roar.RoarConfig(device='cpu'))}"


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_lock_that_links_elsewhere_is_refused_never_followed_or_truncated(tmp_path, link):
    precious = tmp_path / "precious.txt"
    precious.write_text("my precious data, line 1\n")
    run = run_dir_of(tmp_path / "runs")
    run.mkdir(parents=True)
    (run / ".lock").symlink_to(precious) if link == "symlink" else os.link(precious, run / ".lock")
    with pytest.raises(UserError) as caught:
        RunStore(tmp_path / "runs", "held", roar.RoarConfig(device="cpu"))
    message = str(caught.value)
    assert f"{run / '.lock'} " in message and "never followed or truncated" in message
    assert ("is a symbolic link" if link == "symlink" else "has 2 hard links") in message
    assert "precious" not in message and "\n" not in message
    assert precious.read_text() == "my precious data, line 1\n"


def test_a_stale_lock_with_foreign_content_is_taken_over_without_printing_it(tmp_path, capsys):
    run = run_dir_of(tmp_path)
    run.mkdir()
    (run / ".lock").write_text("my precious data, line 1\n")
    RunStore(tmp_path, "held", roar.RoarConfig(device="cpu")).close()
    err = capsys.readouterr().err
    assert "taking over the stale lock" in err and "no saliencylab holder named" in err
    assert "precious" not in err


def test_a_lock_or_a_config_that_is_a_directory_is_named(tmp_path, capsys):
    run = run_dir_of(tmp_path)
    (run / ".lock").mkdir(parents=True)
    with pytest.raises(UserError, match=rf"{run / '.lock'} is a directory, not a lock file"):
        RunStore(tmp_path, "held", roar.RoarConfig(device="cpu"))
    (run / ".lock").rmdir()
    (run / "config.json").mkdir()
    RunStore(tmp_path, "held", roar.RoarConfig(device="cpu")).close()
    assert f"{run / 'config.json'} is not a regular file: moved to" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["dataset"] == "mnist"
    assert (run / "corrupt" / "config.json").is_dir()


def test_a_file_where_the_corrupt_folder_should_be_is_one_line(clean_run, tmp_path):
    run_dir = copy_run(clean_run, tmp_path)
    (run_dir / "corrupt").write_text("x\n")
    (run_dir / "jobs" / "gradient-t50-s0.json").write_text("garbage")
    with pytest.raises(UserError, match=rf"{run_dir / 'corrupt'} is not a directory, where damaged"):
        roar.run(tiny_config(), str(tmp_path / "runs"), "tiny")


@contextmanager
def unwritable(folder: Path):
    """`folder` made unwritable: chattr +i as root (chmod does not stop root), else chmod."""
    root = os.geteuid() == 0
    if root and (shutil.which("chattr") is None
                 or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode):
        pytest.skip("running as root without a working chattr +i: nothing makes a folder unwritable")
    if not root:
        folder.chmod(0o555)
    try:
        try:
            (folder / "probe").write_text("x")
            (folder / "probe").unlink()
            pytest.skip(f"{folder} is still writable")
        except PermissionError:
            pass
        yield
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


@pytest.mark.parametrize("folder", ["", "jobs", "artifacts"])
def test_an_unwritable_run_is_found_before_any_work(clean_run, tmp_path, monkeypatch, folder):
    run_dir = copy_run(clean_run, tmp_path)
    (run_dir / "jobs" / "gradient-t50-s0.json").unlink()
    monkeypatch.setattr(roar.ROAR, "run_job", lambda *a, **k: pytest.fail("a job ran"))
    with unwritable(run_dir / folder), pytest.raises(UserError) as caught:
        roar.run(tiny_config(), str(tmp_path / "runs"), "tiny")
    assert str(caught.value).startswith(f"cannot write in {run_dir / folder} (")


def test_a_directory_where_a_file_is_written_is_one_line_naming_it(tmp_path):
    (tmp_path / "results.csv").mkdir()
    with pytest.raises(UserError, match=rf"{tmp_path / 'results.csv'} is a directory, where"):
        atomic_write(tmp_path / "results.csv", lambda tmp: tmp.write_text("x"))


def test_an_artifact_is_loaded_memory_mapped_and_a_write_stays_in_memory(tmp_path):
    """issue 16: a stored ranking is mapped from its file (read as its rows are used), not read
    into memory whole; the mapping is copy-on-write, so the file keeps its bytes."""
    spec = {"rows": Tensor((None, 512), (torch.int32,))}
    path = tmp_path / "artifacts" / "ranking-x.pt"
    rows = torch.arange(512 * 512, dtype=torch.int32).view(512, 512)
    save_verified(path, {"rows": rows}, spec)
    first = path.read_bytes()
    save_verified(path, {"rows": rows}, spec)  # streamed to disk, yet the same bytes every time
    assert path.read_bytes() == first and zipfile.ZipFile(path).namelist()[0] == "archive/data.pkl"
    loaded = load_verified(path, tmp_path, spec)
    assert torch.equal(loaded["rows"], rows)
    if Path("/proc/self/maps").exists():
        assert str(path) in Path("/proc/self/maps").read_text()
    loaded["rows"][0, 0] = -5
    assert load_verified(path, tmp_path, spec)["rows"][0, 0] == 0


def test_a_scratch_tensor_lives_in_a_file_of_the_run_and_is_gone_after(tmp_path):
    """issue 16: ROAR writes each ranking into a memory-mapped file beside its artifact, so no
    split's ranking is held in memory; the file is removed afterwards (and, after a kill, as a
    stale temporary)."""
    store = RunStore(tmp_path, "held", roar.RoarConfig(device="cpu"))
    try:
        with store.scratch("ranking-gradient", (300, 64), torch.int16) as rows:
            (file,) = store.artifact("ranking-gradient").parent.glob(".ranking-gradient.*.tmp")
            assert file.stat().st_size == 300 * 64 * 2
            rows[7] = torch.arange(64)
            if Path("/proc/self/maps").exists():
                assert str(file) in Path("/proc/self/maps").read_text()
            assert torch.equal(torch.from_file(str(file), size=300 * 64,
                                               dtype=torch.int16).view(300, 64)[7],
                               torch.arange(64, dtype=torch.int16))
        assert not file.exists()
        with store.scratch("ranking-gradient", (0, 64), torch.int16) as empty:
            assert empty.shape == (0, 64)
    finally:
        store.close()
