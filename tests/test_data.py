"""Offline tests for saliencylab.data on tiny synthetic files (plus real MNIST if present)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from saliencylab import data
from saliencylab.core.errors import UserError
from saliencylab.data import Dataset, DataSpec, load_dataset, read_idx

IDX = data.idx.IDX_FILES  # train-images, train-labels, t10k-images, t10k-labels
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, env var, system folder or network in any test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SALIENCYLAB_DATA", raising=False)
    monkeypatch.setattr(data.files, "SYSTEM_DIRS", {})

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


# ----------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000 08 ndim, big-endian dims, data."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape
    )
    return header + arr.tobytes()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def write_mnist(folder: Path, rng_seed=0, n_train=12, n_test=5, hw=(4, 4), gz=True):
    """Four synthetic IDX files; returns (arrays, {file name: bytes on disk})."""
    rng = np.random.default_rng(rng_seed)
    arrays = {
        IDX[0]: rng.integers(0, 256, size=(n_train, *hw), dtype=np.uint8),
        IDX[1]: rng.integers(0, 10, size=n_train, dtype=np.uint8),
        IDX[2]: rng.integers(0, 256, size=(n_test, *hw), dtype=np.uint8),
        IDX[3]: rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for base, arr in arrays.items():
        raw = idx_bytes(arr)
        blob = gzip.compress(raw, mtime=0) if gz else raw
        fname = base + ".gz" if gz else base
        (folder / fname).write_bytes(blob)
        written[fname] = blob
        written[base + "#raw"] = raw
    return arrays, written


def plant_md5(monkeypatch, name: str, written: dict[str, bytes]):
    """Make MD5 describe the synthetic files (both .gz and decompressed entries)."""
    table = {k: v for k, v in data.MD5.items() if k[0] != name}
    for fname, blob in written.items():
        key = fname[:-4] if fname.endswith("#raw") else fname
        table[(name, key)] = md5(blob)
    monkeypatch.setattr(data.files, "MD5", table)


# ----------------------------------------------------------------- read_idx


def test_read_idx_round_trip_gz_and_plain(tmp_path):
    imgs = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    (tmp_path / "i.gz").write_bytes(gzip.compress(idx_bytes(imgs)))
    (tmp_path / "l").write_bytes(idx_bytes(labels))
    x = read_idx(tmp_path / "i.gz")
    y = read_idx(str(tmp_path / "l"))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (2, 3, 5)
    assert np.array_equal(x.numpy(), imgs)
    assert y.dtype == torch.uint8 and y.tolist() == [7, 0, 9]
    assert x.numpy().flags.writeable  # a real copy, no read-only buffer warnings


def test_read_idx_header_magic_values():
    assert idx_bytes(np.zeros((1, 2, 2)))[:4] == (2051).to_bytes(4, "big")
    assert idx_bytes(np.zeros(3))[:4] == (2049).to_bytes(4, "big")


def test_read_idx_bad_magic(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)  # float IDX, not uint8
    with pytest.raises(UserError, match="not a uint8 IDX"):
        read_idx(p)


def test_read_idx_size_mismatch(tmp_path):
    p = tmp_path / "short.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 3, 3)))[:-5]))
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_idx(p)


def test_read_idx_truncated_gz(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    p = tmp_path / "cut.gz"
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="truncated or not valid gzip"):
        read_idx(p)


# ----------------------------------------------------------------- MNIST-style loading


@pytest.mark.parametrize("layout", ["folder", "parent"])
def test_load_mnist_from_data_dir(tmp_path, monkeypatch, layout):
    folder = tmp_path / "d" / "mnist" if layout == "parent" else tmp_path / "d"
    arrays, written = write_mnist(folder)
    plant_md5(monkeypatch, "mnist", written)
    ds = load_dataset("mnist", tmp_path / "d", progress=False)
    assert isinstance(ds, Dataset)
    assert ds.x_train.dtype == torch.uint8 and tuple(ds.x_train.shape) == (12, 1, 4, 4)
    assert ds.y_train.dtype == torch.int64 and tuple(ds.y_test.shape) == (5,)
    assert np.array_equal(ds.x_train[:, 0].numpy(), arrays[IDX[0]])
    assert np.array_equal(ds.y_test.numpy(), arrays[IDX[3]])
    assert ds.spec.shape == (1, 4, 4) and ds.spec.classes == tuple("0123456789")
    tr = arrays[IDX[0]].astype(np.float64) / 255
    assert ds.spec.mean[0] == pytest.approx(tr.mean(), abs=1e-12)
    assert ds.spec.std[0] == pytest.approx(tr.std(), abs=1e-12)


def test_load_mnist_plain_files_and_env_var(tmp_path, monkeypatch):
    _, written = write_mnist(tmp_path / "env" / "mnist", gz=False)
    plant_md5(monkeypatch, "mnist", written)
    monkeypatch.setenv("SALIENCYLAB_DATA", str(tmp_path / "env"))
    ds = load_dataset("MNIST", progress=False)
    assert tuple(ds.x_test.shape) == (5, 1, 4, 4)


def test_data_dir_wins_over_env_and_cache(tmp_path, monkeypatch):
    a, wa = write_mnist(tmp_path / "arg", rng_seed=1)
    _, wb = write_mnist(tmp_path / "env", rng_seed=2)
    _, wc = write_mnist(tmp_path / "cache" / "saliencylab" / "mnist", rng_seed=3)
    monkeypatch.setattr(data.files, "MD5", {})  # no entries: nothing checked
    monkeypatch.setenv("SALIENCYLAB_DATA", str(tmp_path / "env"))
    ds = load_dataset("mnist", tmp_path / "arg", progress=False)
    assert np.array_equal(ds.x_train[:, 0].numpy(), a[IDX[0]])
    # without data_dir the env var is next, then the cache
    b = load_dataset("mnist", progress=False)
    assert not torch.equal(b.x_train, ds.x_train)
    monkeypatch.delenv("SALIENCYLAB_DATA")
    c = load_dataset("mnist", progress=False)
    assert not torch.equal(c.x_train, b.x_train)


def test_md5_mismatch_names_the_file(tmp_path, monkeypatch):
    _, written = write_mnist(tmp_path)
    plant_md5(monkeypatch, "mnist", written)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.ones(5, dtype=np.uint8)), mtime=0)
    )
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte\.gz is corrupt \(md5 \w+, expected \w+\)"):
        load_dataset("mnist", tmp_path, progress=False)


def test_recompressed_gz_accepted_by_decompressed_md5(tmp_path, monkeypatch):
    """Debian re-compresses Fashion-MNIST: the .gz md5 differs, the content does not."""
    _, written = write_mnist(tmp_path)
    plant_md5(monkeypatch, "fashion-mnist", written)
    for base in IDX:  # same content, different gzip bytes
        (tmp_path / (base + ".gz")).write_bytes(
            gzip.compress(written[base + "#raw"], compresslevel=1, mtime=12345)
        )
    ds = load_dataset("fashion-mnist", tmp_path, progress=False)
    assert ds.spec.classes[0] == "T-shirt/top" and len(ds.spec.classes) == 10


def test_truncated_gz_in_dataset(tmp_path, monkeypatch):
    _, written = write_mnist(tmp_path)
    plant_md5(monkeypatch, "mnist", written)
    blob = written["train-images-idx3-ubyte.gz"]
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(blob[:-10])
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz is truncated"):
        load_dataset("mnist", tmp_path, progress=False)


def test_wrong_magic_in_dataset(tmp_path, monkeypatch):
    arrays, _ = write_mnist(tmp_path)
    monkeypatch.setattr(data.files, "MD5", {})
    # a label file where the train images belong
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(arrays[IDX[1]]))
    )
    with pytest.raises(UserError, match="magic 2049, expected 2051"):
        load_dataset("mnist", tmp_path, progress=False)


def test_label_out_of_range(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    monkeypatch.setattr(data.files, "MD5", {})
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.array([0, 1, 2, 3, 11], dtype=np.uint8)))
    )
    with pytest.raises(UserError, match=r"labels must lie in 0\.\.9"):
        load_dataset("mnist", tmp_path, progress=False)


def test_missing_files_download_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        load_dataset("mnist", tmp_path / "empty", progress=False)
    msg = str(e.value)
    cache = tmp_path / "cache" / "saliencylab" / "mnist"
    assert msg.startswith("MNIST not found: put the four IDX .gz files")
    assert f"in {cache} or pass --data-dir DIR" in msg
    assert str(tmp_path / "empty") in msg  # the places tried
    assert "download failed" in msg and "no network in tests" in msg
    assert "\n" not in msg
    assert not list(cache.glob("*.part"))  # no temp files left behind


def test_missing_files_no_download(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    with pytest.raises(UserError, match="Fashion-MNIST not found.*download=False"):
        load_dataset("fashion-mnist", tmp_path, download=False)


class FakeResponse(io.BytesIO):
    def __init__(self, blob):
        super().__init__(blob)
        self.headers = {"Content-Length": str(len(blob))}


def test_download_into_cache(tmp_path, monkeypatch):
    _, written = write_mnist(tmp_path / "server")
    plant_md5(monkeypatch, "mnist", written)
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return FakeResponse(written[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    ds = load_dataset("mnist", progress=False)
    cache = tmp_path / "cache" / "saliencylab" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(b + ".gz" for b in IDX)
    assert len(urls) == 4 and all(u.startswith(data.URLS["mnist"][0]) for u in urls)
    assert tuple(ds.x_train.shape) == (12, 1, 4, 4)
    load_dataset("mnist", progress=False)  # second time: from the cache
    assert len(urls) == 4


def test_download_md5_mismatch_leaves_nothing(tmp_path, monkeypatch):
    _, written = write_mnist(tmp_path / "server")
    plant_md5(monkeypatch, "mnist", written)
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda url, timeout=None: FakeResponse(b"garbage")
    )
    with pytest.raises(UserError, match="download of .* is corrupt"):
        load_dataset("mnist", progress=False)
    cache = tmp_path / "cache" / "saliencylab" / "mnist"
    assert not cache.exists() or not list(cache.iterdir())


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown data set 'svhn': choose one of digits, mnist"):
        load_dataset("svhn")


# ----------------------------------------------------------------- digits


def test_digits():
    ds = load_dataset("digits")
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.spec.shape == (1, 8, 8)
    assert len(ds.x_train) + len(ds.x_test) == 1797 and len(ds.x_test) == 359
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    assert set(ds.y_test.tolist()) <= set(range(10))
    again = load_dataset("digits")
    assert torch.equal(ds.x_test, again.x_test) and torch.equal(ds.y_train, again.y_train)
    # scaled from sklearn's 0..16 values
    from sklearn.datasets import load_digits

    raw = load_digits().images
    perm = np.random.default_rng(0).permutation(len(raw))
    expect = np.round(raw[perm[-359:]] * 255 / 16).astype(np.uint8)
    assert np.array_equal(ds.x_test[:, 0].numpy(), expect)
    tr = ds.x_train.numpy().astype(np.float64) / 255
    assert ds.spec.mean[0] == pytest.approx(tr.mean(), abs=1e-12)
    assert ds.spec.std[0] == pytest.approx(tr.std(), abs=1e-12)


def test_subset_keeps_spec():
    ds = load_dataset("digits")
    sub = ds.subset(10, None)
    assert len(sub.x_train) == 10 and len(sub.y_train) == 10
    assert len(sub.x_test) == len(ds.x_test)
    assert torch.equal(sub.x_train, ds.x_train[:10]) and sub.spec is ds.spec
    assert len(ds.subset(None, 3).x_test) == 3


@pytest.mark.parametrize("n_train, n_test", [(0, None), (-5, None), (None, 0), (None, -1),
                                             (2.5, None), (True, None)])
def test_subset_rejects_counts_below_one_in_one_line(n_train, n_test):
    ds = load_dataset("digits")
    what = "n_train" if n_train is not None else "n_test"
    with pytest.raises(UserError, match=rf"^{what} must be a whole number of images >= 1") as e:
        ds.subset(n_train, n_test)
    assert "\n" not in str(e.value)


def test_to_moves_all_four_tensors_and_keeps_dtypes_and_spec():
    ds = load_dataset("digits").subset(20, 10)
    moved = ds.to("meta")  # a real move without a GPU: meta tensors have shapes, no data
    for name in ("x_train", "y_train", "x_test", "y_test"):
        before, after = getattr(ds, name), getattr(moved, name)
        assert after.device.type == "meta" and after.dtype == before.dtype
        assert after.shape == before.shape
    assert moved.x_train.dtype == torch.uint8 and moved.spec is ds.spec
    assert ds.x_train.device.type == "cpu"  # the original stays where it was


# ----------------------------------------------------------------- DataSpec


def test_dataspec_hand_example():
    spec = DataSpec("toy", (2, 1, 2), ("a", "b"), mean=(0.5, 0.2), std=(0.25, 0.1))
    x = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # [1,2,1,2]
    out = spec.normalize(x)
    assert out.dtype == torch.float32
    expect = torch.tensor([[[[-2.0, 2.0]], [[0.0, 2.0]]]])
    assert torch.allclose(out, expect, atol=1e-6)
    assert torch.allclose(spec.normalize(x.float()), expect, atol=1e-6)
    black = spec.black()
    assert black.shape == (2, 1, 2)
    assert torch.allclose(black, torch.tensor([[[-2.0, -2.0]], [[-2.0, -2.0]]]))
    mp = spec.mean_pixel()
    assert mp.dtype == torch.uint8 and mp.shape == (2, 1, 1)
    assert mp.flatten().tolist() == [128, 51]  # round(127.5), round(51.0)
    # the black image is what normalize gives for raw zeros
    assert torch.allclose(spec.normalize(torch.zeros(1, 2, 1, 2)), black[None])
    assert spec.num_classes == 2
    # black and mean_pixel are made on the device asked for
    assert spec.black("meta").device.type == "meta" and spec.mean_pixel("meta").device.type == "meta"
    assert spec.normalize(x.to("meta")).device.type == "meta"


# ----------------------------------------------------------------- CIFAR


def cifar_images(n, seed):
    x = np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return x


def write_cifar10(root: Path, protocol=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i in range(1, 6):
        x = cifar_images(2, i)
        y = [(i + j) % 10 for j in range(2)]
        batches[f"data_batch_{i}"] = (x, y)
    x = cifar_images(3, 99)
    # plant: test image 1, green channel, row 2, column 5
    x[1, 1 * 1024 + 2 * 32 + 5] = 200
    x[1, 0 * 1024 + 2 * 32 + 5] = 0
    batches["test_batch"] = (x, [3, 4, 5])
    for fname, (x, y) in batches.items():
        d = {b"batch_label": b"x", b"labels": y, b"data": x, b"filenames": [b"f"] * len(y)}
        (folder / fname).write_bytes(pickle.dumps(d, protocol=protocol))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]
    meta = {b"label_names": names, b"num_cases_per_batch": 2, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder, batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10(tmp_path, protocol):
    folder, batches = write_cifar10(tmp_path / "d", protocol)
    ds = load_dataset("cifar10", tmp_path / "d", progress=False)
    assert tuple(ds.x_train.shape) == (10, 3, 32, 32) and tuple(ds.x_test.shape) == (3, 3, 32, 32)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.spec.classes[0] == "airplane" and ds.spec.classes[9] == "truck"
    assert ds.y_train.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert ds.y_test.tolist() == [3, 4, 5]
    assert ds.x_test[1, 1, 2, 5] == 200 and ds.x_test[1, 0, 2, 5] == 0
    assert np.array_equal(ds.x_train[2].numpy().reshape(-1), batches["data_batch_2"][0][0])
    tr = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(10, 3, -1)
    for c in range(3):
        assert ds.spec.mean[c] == pytest.approx(tr[:, c].mean() / 255, abs=1e-12)
        assert ds.spec.std[c] == pytest.approx((tr[:, c] / 255).std(), abs=1e-12)
    # the extracted folder itself works as data_dir too
    assert torch.equal(load_dataset("cifar10", folder).x_test, ds.x_test)


def test_cifar100(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x = cifar_images(4, 0)
    x[3, 2 * 1024 + 31 * 32 + 0] = 7  # blue, bottom-left
    train = {b"data": x, b"fine_labels": [0, 99, 5, 42], b"coarse_labels": [0, 1, 2, 3]}
    test = {b"data": cifar_images(2, 1), b"fine_labels": [1, 2], b"coarse_labels": [0, 0]}
    names = [f"class{i}".encode() for i in range(100)]
    (folder / "train").write_bytes(pickle.dumps(train, protocol=2))
    (folder / "test").write_bytes(pickle.dumps(test, protocol=2))
    (folder / "meta").write_bytes(
        pickle.dumps({b"fine_label_names": names, b"coarse_label_names": names[:20]})
    )
    ds = load_dataset("cifar100", tmp_path, progress=False)
    assert len(ds.spec.classes) == 100 and ds.spec.classes[42] == "class42"
    assert ds.y_train.tolist() == [0, 99, 5, 42] and ds.y_test.tolist() == [1, 2]
    assert ds.x_train[3, 2, 31, 0] == 7
    assert ds.spec.shape == (3, 32, 32)


def test_cifar10_from_archive(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "src")
    archive = tmp_path / "dl" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    table = dict(data.MD5)
    table[("cifar10", archive.name)] = md5(archive.read_bytes())
    monkeypatch.setattr(data.files, "MD5", table)
    ds = load_dataset("cifar10", tmp_path / "dl", progress=False)
    assert tuple(ds.x_test.shape) == (3, 3, 32, 32)
    assert (tmp_path / "cache" / "saliencylab" / "cifar10" / "cifar-10-batches-py").is_dir()
    # a corrupt archive is refused before extraction (fresh cache: nothing extracted yet)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    table[("cifar10", archive.name)] = "0" * 32
    with pytest.raises(UserError, match="cifar-10-python.tar.gz is corrupt"):
        load_dataset("cifar10", tmp_path / "dl", progress=False)
    assert not (tmp_path / "cache2" / "saliencylab" / "cifar10" / "cifar-10-batches-py").exists()


def test_cifar_missing(tmp_path):
    with pytest.raises(UserError, match=r"CIFAR-100 not found: put cifar-100-python/ \(or cifar-100-python.tar.gz\) in .*download failed"):
        load_dataset("cifar100", tmp_path, progress=False)


def test_cifar_unreadable_and_malicious_pickle(tmp_path):
    folder, _ = write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError, match="data_batch_3 is not a readable CIFAR pickle"):
        load_dataset("cifar10", tmp_path, progress=False)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(UserError, match="refusing to load builtins.print"):
        load_dataset("cifar10", tmp_path, progress=False)


# ----------------------------------------------------------------- real data


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"no real MNIST at {SHARED / 'mnist'}")
def test_real_mnist():
    ds = load_dataset("mnist", SHARED, download=False, progress=False)  # parent layout
    assert tuple(ds.x_train.shape) == (60000, 1, 28, 28)
    assert tuple(ds.x_test.shape) == (10000, 1, 28, 28)
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert ds.spec.mean[0] == pytest.approx(0.130660, abs=1e-5)
    assert ds.spec.std[0] == pytest.approx(0.308108, abs=1e-5)
    assert ds.spec.mean_pixel().item() == 33


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason=f"no Fashion-MNIST at {DEBIAN_FASHION}")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(data.files, "SYSTEM_DIRS", {"fashion-mnist": (DEBIAN_FASHION,)})
    ds = load_dataset("fashion-mnist", download=False, progress=False)  # found as system dir
    assert tuple(ds.x_train.shape) == (60000, 1, 28, 28)
    assert tuple(ds.x_test.shape) == (10000, 1, 28, 28)
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10


def test_cifar_archive_cannot_escape(tmp_path, monkeypatch):
    """Extraction uses tarfile's "data" filter: no member may land outside the cache."""
    archive = tmp_path / "cifar-10-python.tar.gz"
    payload = b"owned"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    monkeypatch.setattr(data.files, "MD5", {})
    with pytest.raises(UserError, match="cannot extract .*cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path, progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
