"""Data sets from your own files (issue 16): `folder:PATH` (ImageFolder PNGs, grey and RGB,
sizes, splits), `npz:FILE` (both layouts), the memory-mapped cache, and one line for each bad
input, naming the file."""

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import digits_arrays, save
from PIL import Image
from tiny import evaluate_config

import saliencylab
from saliencylab import data
from saliencylab.core.errors import UserError
from saliencylab.data import DataOptions, cache, folder
from saliencylab.runs import config as cfg

pytestmark = pytest.mark.usefixtures("user_cache")


def picture(seed: int, shape=(6, 6, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def image_tree(root: Path, shape=(6, 6, 3), per_class=(3, 2)) -> dict:
    """root/train/<class>/*.png and root/test/<class>/*.png; {path: pixels} of what was saved."""
    saved = {}
    for split, count in zip(("train", "test"), per_class):
        for c, name in enumerate(("cat", "dog")):
            for i in range(count):
                pixels = picture(100 * c + 10 * i + len(split), shape)
                saved[save(root / split / name / f"{i}.png", pixels)] = pixels
    return saved


def as_chw(pixels: np.ndarray) -> np.ndarray:
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


@pytest.mark.parametrize("shape, channels", [((6, 6, 3), 3), ((6, 6), 1)])
def test_a_folder_of_pngs_gives_their_pixels_labels_and_classes(tmp_path, shape, channels):
    saved = image_tree(tmp_path / "pets", shape)
    ds = data.load_dataset(f"folder:{tmp_path / 'pets'}")
    assert ds.spec.classes == ("cat", "dog") and ds.spec.shape == (channels, 6, 6)
    assert len(ds.x_train) == 6 and len(ds.x_test) == 4
    stored = {}  # every saved image, by its bytes, with its label
    for x, y in zip(torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test])):
        stored[x.numpy().tobytes()] = int(y)
    for path, pixels in saved.items():
        assert stored[as_chw(pixels).tobytes()] == ("cat", "dog").index(path.parent.name)
    mean = torch.cat([ds.x_train.float() / 255]).mean(dim=(0, 2, 3))
    torch.testing.assert_close(torch.tensor(ds.spec.mean, dtype=torch.float32), mean)


def test_grey_and_rgb_together_give_rgb_and_channels_forces_one(tmp_path):
    image_tree(tmp_path / "pets")
    save(tmp_path / "pets" / "train" / "cat" / "grey.png", picture(7, (6, 6)))
    assert data.load_dataset(f"folder:{tmp_path / 'pets'}").spec.shape == (3, 6, 6)
    grey = data.load_dataset(f"folder:{tmp_path / 'pets'}", options=DataOptions(channels=1))
    assert grey.spec.shape == (1, 6, 6)
    rgb = data.load_dataset(f"folder:{tmp_path / 'pets'}", options=DataOptions(channels=3))
    where = [i for i, x in enumerate(rgb.x_train) if torch.equal(x[0], x[1]) and
             torch.equal(x[1], x[2])]
    assert len(where) == 1  # the grey image, replicated over R, G and B


def test_two_sizes_are_refused_naming_both_files_then_resized(tmp_path):
    image_tree(tmp_path / "pets")
    wide = np.zeros((4, 12, 3), dtype=np.uint8)  # 12 wide, 4 high: red | green | blue
    wide[:, :4, 0], wide[:, 4:8, 1], wide[:, 8:, 2] = 255, 255, 255
    save(tmp_path / "pets" / "test" / "dog" / "wide.png", wide)
    with pytest.raises(UserError, match=r"images differ in size: .*\.png is 6x6, .*wide\.png is "
                                        r"12x4; set data\.size=H"):
        data.load_dataset(f"folder:{tmp_path / 'pets'}")
    ds = data.load_dataset(f"folder:{tmp_path / 'pets'}", options=DataOptions(size=(4,)))
    assert ds.spec.shape == (3, 4, 4)
    # the short side is already 4: no resize, the centre 4x4 crop is the green block
    green = [x for x in ds.x_test if torch.equal(x, torch.tensor([0, 255, 0], dtype=torch.uint8)
                                                 .view(3, 1, 1).expand(3, 4, 4))]
    assert len(green) == 1
    flat = data.load_dataset(f"folder:{tmp_path / 'pets'}", options=DataOptions(size=(2, 3)))
    assert flat.spec.shape == (3, 2, 3)


def test_constant_image_stays_constant_when_resized():
    image = Image.fromarray(np.full((10, 7, 3), 77, dtype=np.uint8))
    out = np.asarray(folder.resize_crop(image, (5, 5)))
    assert out.shape == (5, 5, 3) and (out == 77).all()


def test_one_tree_is_split_per_class_by_a_seeded_fraction(tmp_path):
    for c in ("a", "b"):
        for i in range(5):
            save(tmp_path / "flat" / c / f"{i}.png", picture(i + (c == "b") * 50))
    name = f"folder:{tmp_path / 'flat'}"
    ds = data.load_dataset(name, options=DataOptions(test_fraction=0.4))
    assert len(ds.x_train) == 6 and len(ds.x_test) == 4
    assert sorted(ds.y_test.tolist()) == [0, 0, 1, 1]
    train = {x.numpy().tobytes() for x in ds.x_train}
    test = {x.numpy().tobytes() for x in ds.x_test}
    assert not train & test and len(train | test) == 10
    again = data.load_dataset(name, options=DataOptions(test_fraction=0.4, cache=False))
    assert torch.equal(again.x_test, ds.x_test)
    other = data.load_dataset(name, options=DataOptions(test_fraction=0.4, split_seed=1))
    assert {x.numpy().tobytes() for x in other.x_test} != test


@pytest.mark.parametrize("damage, match", [
    (lambda r: (r / "train" / "cat" / "0.png").write_bytes(b"not a png"),
     r"cannot decode image .*train/cat/0\.png \(UnidentifiedImageError"),
    (lambda r: (r / "train" / "cat" / "0.png").write_bytes(
        (r / "train" / "cat" / "1.png").read_bytes()[:60]),
     r"cannot decode image .*train/cat/0\.png"),
    (lambda r: [p.unlink() for p in (r / "test" / "dog").iterdir()],
     r"class folder .*test/dog holds no images \(\.png, \.jpg"),
    (lambda r: [p.unlink() for p in (r / "test" / "dog").iterdir()]
     and (r / "test" / "dog").rmdir(), r"class 'dog' is missing from the test split: add "),
    (lambda r: (r / "test" / "cow").mkdir() or save(r / "test" / "cow" / "0.png", picture(1)),
     r"class 'cow' of .*test is missing from the train split"),
])
def test_bad_folders_are_one_line_naming_the_file(tmp_path, damage, match):
    image_tree(tmp_path / "pets")
    damage(tmp_path / "pets")
    with pytest.raises(UserError, match=match) as error:
        data.load_dataset(f"folder:{tmp_path / 'pets'}")
    assert "\n" not in str(error.value)


def test_npz_in_both_layouts_gives_the_same_data_set(tmp_path):
    arrays = digits_arrays()
    np.savez(tmp_path / "nchw.npz", **arrays)
    nhwc = {k: v.transpose(0, 2, 3, 1) if k.startswith("x") else v for k, v in arrays.items()}
    np.savez(tmp_path / "nhwc.npz", **nhwc, classes=np.array([f"c{i}" for i in range(10)]))
    a = data.load_dataset(f"npz:{tmp_path / 'nchw.npz'}")
    b = data.load_dataset(f"npz:{tmp_path / 'nhwc.npz'}")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, key), torch.from_numpy(arrays[key]))
        assert torch.equal(getattr(b, key), getattr(a, key))
    assert b.spec.classes[3] == "c3" and a.spec.classes[3] == "3"
    ref = data.spec.make_dataset("d", range(10), *arrays.values())
    assert (a.spec.mean, a.spec.std) == (ref.spec.mean, ref.spec.std)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_an_npz_is_read_in_batches_never_whole(tmp_path, save):
    """The images and masks stream from the archive into the cache: the peak of numpy's
    allocations (traced by tracemalloc) stays far below the arrays' size, in both layouts,
    stored or deflated; the data are those saved."""
    rng = np.random.default_rng(0)
    n = 12000
    arrays = {"x_train": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n), "x_test": rng.integers(0, 256, (n, 3, 16, 16),
                                                                         dtype=np.uint8),
              "y_test": rng.integers(0, 10, n), "m_test": rng.random((n, 16, 16)) < 0.3}
    save(tmp_path / "big.npz", **arrays)
    size = sum(v.nbytes for k, v in arrays.items() if not k.startswith("y"))
    tracemalloc.start()
    try:
        ds = data.load_dataset(f"npz:{tmp_path / 'big.npz'}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size / 4, (peak, size)
    assert torch.equal(ds.x_train, torch.from_numpy(arrays["x_train"].transpose(0, 3, 1, 2)))
    assert torch.equal(ds.x_test, torch.from_numpy(arrays["x_test"]))
    assert torch.equal(ds.m_test, torch.from_numpy(arrays["m_test"][:, None]))
    assert ds.m_train is None


@pytest.mark.parametrize("change, match", [
    (lambda a: a.pop("y_test"), r"lacks y_test \(it has x_train, y_train, x_test\)"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.float32)),
     r"x_train is float32, expected uint8"),
    (lambda a: a.update(x_test=np.zeros((30, 5, 8, 8), np.uint8)),
     r"x_test has shape \(30, 5, 8, 8\), expected images NHWC or NCHW"),
    (lambda a: a.update(classes=np.array(["a", "b"])),
     r"y_train holds labels 0\.\.9, but there are 2 classes"),
    (lambda a: a.update(y_test=a["y_test"] - 5), r"y_test holds labels -5\.\.4"),
])
def test_bad_npz_is_one_line_naming_the_file(tmp_path, change, match):
    arrays = digits_arrays()
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=r"bad\.npz.*" + match):
        data.load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_mean_and_std_can_be_given(tmp_path):
    image_tree(tmp_path / "pets")
    imagenet = DataOptions(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    spec = data.load_dataset(f"folder:{tmp_path / 'pets'}", options=imagenet).spec
    assert (spec.mean, spec.std) == (imagenet.mean, imagenet.std)
    with pytest.raises(UserError, match=r"data\.mean and data\.std go together"):
        data.load_dataset(f"folder:{tmp_path / 'pets'}", options=DataOptions(mean=(0.5,)))


def mapped_files(tensor: torch.Tensor) -> set[str]:
    """The files mapped into this process at the address of `tensor`'s first byte (Linux)."""
    address, found = tensor.data_ptr(), set()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        low, high = (int(v, 16) for v in parts[0].split("-"))
        if low <= address < high and len(parts) > 5:
            found.add(parts[5])
    return found


def test_the_cache_is_memory_mapped_keyed_and_sha256_verified(tmp_path, user_cache, monkeypatch):
    image_tree(tmp_path / "pets")
    name = f"folder:{tmp_path / 'pets'}"
    ds = data.load_dataset(name)
    (cached,) = user_cache.iterdir()
    assert str(cached / "x_train.u8") in mapped_files(ds.x_train)  # read from the file, not copied
    meta = json.loads((cached / "meta.json").read_text())
    assert meta["sha256"]["x_train.u8"] == cache.sha256_file(cached / "x_train.u8")
    memory = data.load_dataset(name, options=DataOptions(cache=False))
    assert not any(str(user_cache) in f for f in mapped_files(memory.x_train))
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(ds, key), getattr(memory, key))
    assert ds.spec == memory.spec

    def no_decoding(*args):
        raise AssertionError("decoded again")

    decode = folder.decode
    monkeypatch.setattr(folder, "decode", no_decoding)
    assert torch.equal(data.load_dataset(name).x_train, ds.x_train)  # the cache, as it is
    monkeypatch.setattr(folder, "decode", decode)
    with open(cached / "x_train.u8", "r+b") as f:  # a damaged cache is rebuilt
        first = f.read(1)[0]
        f.seek(0)
        f.write(bytes([255 - first]))
    warned = []
    monkeypatch.setattr(cache, "warn", warned.append)
    assert torch.equal(data.load_dataset(name).x_train, memory.x_train)
    assert "does not match its sha256 sums: rebuilding it" in warned[0]
    save(tmp_path / "pets" / "train" / "cat" / "9.png", picture(99))  # a new file: a new key
    assert len(data.load_dataset(name).x_train) == 7
    assert len(list(user_cache.iterdir())) == 2


def test_memory_mapped_and_in_memory_data_give_identical_results(tmp_path):
    arrays = digits_arrays()
    np.savez(tmp_path / "d.npz", **arrays)
    torch.manual_seed(0)
    model = saliencylab.models.build_model("lenet", (1, 8, 8), 10).eval()
    tables = []
    for cache_on in (True, False):
        ds = data.load_dataset(f"npz:{tmp_path / 'd.npz'}", options=DataOptions(cache=cache_on))
        tables.append(saliencylab.evaluate(model, ds.x_test, ds.y_test, spec=ds.spec,
                                           methods=["gradient"], metrics=["road"]).rows)
    assert tables[0] == tables[1]


def test_config_keys_validation_and_unchanged_run_hashes(tmp_path):
    config = evaluate_config()
    assert cfg.config_hash(config) == cfg.config_hash(cfg.apply_sets(config, ["data.cache=true"]))
    assert "data" not in cfg.hashed_dict(config)
    sized = cfg.apply_sets(config, [f"dataset=folder:{tmp_path}", "data.size=224"])
    assert sized.data.size == (224,) and cfg.config_hash(sized) != cfg.config_hash(config)
    with pytest.raises(UserError, match=r"data\.\* keys apply to folder: and npz:"):
        cfg.apply_sets(config, ["data.size=32"]).validate()
    with pytest.raises(UserError, match=r"is not a folder"):
        cfg.apply_sets(config, [f"dataset=folder:{tmp_path / 'nope'}"]).validate()
    with pytest.raises(UserError, match=r"unknown data set 'svhn'.*or your files as folder:PATH"):
        cfg.apply_sets(config, ["dataset=svhn"]).validate()


def test_every_protocol_runs_on_a_folder_and_evaluate_on_an_npz(digit_folder, tmp_path, capsys):
    from saliencylab.cli import main

    small = ["--set", "n_train=120", "--set", "n_test=30", "--set", "seeds=0", "--workers", "1",
             "--out", str(tmp_path / "runs")]
    one_epoch = ["--set", "train.epochs=1"]
    source = ["--dataset", f"folder:{digit_folder}"]
    commands = [
        ["evaluate", "--preset", "evaluate-quick", "--set", "methods=gradient,random",
         "--set", "metrics=road,deletion", *one_epoch, *source],
        ["roar", "--preset", "roar-quick", "--set", "thresholds=0,50", "--set", "methods=random",
         *one_epoch, *source],
        ["sgt", "--preset", "smoot-quick", "--set", "eval.grid_images=2",
         "--set", "eval.percents=0,50", "--set", "eval.methods=random",
         "--set", "eval.fills=uniform", *one_epoch, *source],
        ["prune", "--preset", "prune-quick", "--set", "levels=1", "--set", "retrain.epochs=1",
         "--set", "retrain.lr_milestones=", "--set", "pretrain.epochs=1",
         "--set", "pretrain.lr_milestones=", *source],
    ]
    np.savez(tmp_path / "d.npz", **digits_arrays())
    commands.append(commands[0][:-2] + ["--dataset", f"npz:{tmp_path / 'd.npz'}"])
    for argv in commands:
        assert main(argv + small) == 0, argv
        out = capsys.readouterr().out
        assert "report:" in out


def test_run_labels_name_the_folder(tmp_path):
    assert data.run_label(f"folder:{tmp_path / 'pets'}") == "folder-pets"
    assert data.run_label("mnist") == "mnist"
