"""Ground-truth masks of your own data (issue 18): PATH/masks/ beside a `folder:` data set, resized
and cropped with its image (nearest neighbour) and cached with it; m_test/m_train in an `.npz`;
one line for a missing or misshapen mask; and `evaluate`'s localisation metrics on them."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import digits_arrays, save
from tiny import evaluate_config, read_results

from saliencylab import data
from saliencylab.core.errors import UserError
from saliencylab.data import DataOptions, cache, folder
from saliencylab.protocols import evaluate as ev

pytestmark = pytest.mark.usefixtures("user_cache")


def block(k: int) -> np.ndarray:
    """The hand-made mask of image k, 8 high and 12 wide: 1 on rows 2..5, columns k..k+5."""
    mask = np.zeros((8, 12), dtype=np.uint8)
    mask[2:6, k:k + 6] = 1
    return mask


def masked_tree(root: Path, split_layout: bool) -> None:
    """Images 8 high, 12 wide, image k of grey level 10 + 20 k (so that it is known again after
    JPEG and resizing), under root/<class>/ or root/<split>/<class>/, one of three a .jpg, each
    with its mask block(k) under root/masks/: grey 0/1, or RGB non-zero in blue only."""
    k = 0
    for split in ("train", "test") if split_layout else ("",):
        for name in ("cat", "dog"):
            for i in range(3):
                where = Path(split) / name
                save(root / where / f"{i}.{'jpg' if i == 2 else 'png'}",
                     np.full((8, 12, 3), 10 + 20 * k, np.uint8))
                mask = block(k)
                if i == 1:  # RGB: (0, 0, 1) is inside, (0, 0, 0) outside
                    mask = np.stack([0 * mask, 0 * mask, mask], axis=2)
                save(root / "masks" / where / f"{i}.png", mask)
                k += 1


def which(x: torch.Tensor) -> int:
    """The k of a stored image of masked_tree (its grey level 10 + 20 k, within JPEG's error)."""
    return round((x.float().mean().item() - 10) / 20)


@pytest.mark.parametrize("split_layout", [False, True])
@pytest.mark.parametrize("cache", [True, False])
def test_folder_masks_follow_their_images_through_the_split(tmp_path, split_layout, cache):
    masked_tree(tmp_path / "pets", split_layout)
    ds = data.load_dataset(f"folder:{tmp_path / 'pets'}",
                           options=DataOptions(cache=cache, test_fraction=0.34))
    assert ds.spec.classes == ("cat", "dog")  # masks/ is not a class
    assert ds.m_test.dtype == torch.bool and ds.m_test.shape == (len(ds.x_test), 1, 8, 12)
    seen = []
    for split in ("train", "test"):
        for x, m in zip(getattr(ds, f"x_{split}"), getattr(ds, f"m_{split}")):
            seen.append(which(x))
            assert torch.equal(m[0], torch.from_numpy(block(seen[-1]) == 1)), seen[-1]
    assert sorted(seen) == list(range(12 if split_layout else 6))


def test_folder_masks_are_resized_and_cropped_as_their_images(tmp_path):
    """12x8 -> data.size=4: Pillow scales by 1/2 to 6x4 and crops columns 1..4; nearest
    neighbour takes source pixel 2i + 1, so the mask is m[1::2, 1::2][:, 1:5]."""
    masked_tree(tmp_path / "pets", split_layout=True)
    ds = data.load_dataset(f"folder:{tmp_path / 'pets'}", options=DataOptions(size=(4,)))
    assert ds.m_test.shape == (6, 1, 4, 4) and ds.m_train.shape == (6, 1, 4, 4)
    for x, m in zip(torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.m_train, ds.m_test])):
        want = block(which(x))[1::2, 1::2][:, 1:5] == 1
        assert torch.equal(m[0], torch.from_numpy(want)), which(x)
    assert len({m.numpy().tobytes() for m in torch.cat([ds.m_train, ds.m_test])}) >= 5


def test_masks_are_cached_with_the_images_keyed_and_verified(tmp_path, user_cache, monkeypatch):
    masked_tree(tmp_path / "pets", split_layout=True)
    name = f"folder:{tmp_path / 'pets'}"
    ds = data.load_dataset(name)
    want = ds.m_test.clone()  # ds maps the cache's file, which this test damages
    (entry,) = user_cache.iterdir()
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["masks"] == ["train", "test"] and "m_test.u8" in meta["sha256"]

    def no_decoding(*args):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(folder, "decode_mask", no_decoding)
        assert torch.equal(data.load_dataset(name).m_test, want)  # from the cache
    with open(entry / "m_test.u8", "r+b") as f:  # a damaged mask file: the cache is rebuilt
        first = f.read(1)[0]
        f.seek(0)
        f.write(bytes([1 - first]))
    warned = []
    monkeypatch.setattr(cache, "warn", warned.append)
    assert torch.equal(data.load_dataset(name).m_test, want)
    assert "does not match its sha256 sums: rebuilding it" in warned[0]
    save(tmp_path / "pets" / "masks" / "test" / "cat" / "0.png", np.zeros((8, 12), np.uint8))
    again = data.load_dataset(name)  # a changed mask: a new key, decoded again
    assert len(list(user_cache.iterdir())) == 2
    assert (again.m_test.sum() < want.sum()).item()


def remove(path: Path) -> None:
    for p in sorted(path.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    path.rmdir()


def test_without_a_masks_folder_there_are_no_masks_and_a_split_may_lack_them(tmp_path):
    masked_tree(tmp_path / "pets", split_layout=True)
    remove(tmp_path / "pets" / "masks" / "train")
    ds = data.load_dataset(f"folder:{tmp_path / 'pets'}")
    assert ds.m_train is None and ds.m_test.shape == (6, 1, 8, 12)
    remove(tmp_path / "pets" / "masks")
    ds = data.load_dataset(f"folder:{tmp_path / 'pets'}")
    assert ds.m_train is None and ds.m_test is None


def masks_without_splits(root: Path) -> None:
    """root/masks/<class>/ in the train/test layout: the single tree's rule, misapplied."""
    (root / "masks" / "train").rename(root / "flat")
    remove(root / "masks")
    (root / "flat").rename(root / "masks")


@pytest.mark.parametrize("damage, match", [
    (lambda r: (r / "masks" / "test" / "dog" / "2.png").unlink(),
     r"image .*test/dog/2\.jpg has no mask: add .*masks/test/dog/2\.png"),
    (lambda r: save(r / "masks" / "train" / "cat" / "0.png", np.ones((8, 11), np.uint8)),
     r"mask .*masks/train/cat/0\.png is 11x8 but its image .*train/cat/0\.png is 12x8"),
    (lambda r: (r / "masks" / "train" / "cat" / "1.png").write_bytes(b"not a png"),
     r"cannot decode mask .*masks/train/cat/1\.png"),
    (masks_without_splits, r"masks has no train/ or test/ folder: with the train/test layout "),
    (lambda r: save(r / "train" / "cat" / "0.jpg", np.zeros((8, 12, 3), np.uint8)),
     r"images .*train/cat/0\.(png|jpg) and .*train/cat/0\.(png|jpg) would share the mask "
     r".*masks/train/cat/0\.png: rename one"),
])
def test_bad_folder_masks_are_one_line_naming_the_file(tmp_path, damage, match):
    masked_tree(tmp_path / "pets", split_layout=True)
    damage(tmp_path / "pets")
    with pytest.raises(UserError, match=match) as error:
        data.load_dataset(f"folder:{tmp_path / 'pets'}")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("layout", ["NHW", "NCHW", "NHWC"])
def test_npz_masks_in_each_layout(tmp_path, layout):
    arrays = digits_arrays()
    truth = arrays["x_test"][:, 0] > 128  # [N, 8, 8]
    stored = {"NHW": truth, "NCHW": truth[:, None], "NHWC": truth[..., None]}[layout]
    np.savez(tmp_path / "d.npz", **arrays, m_test=stored.astype(np.uint8) * 7)
    ds = data.load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert ds.m_train is None and ds.m_test.dtype == torch.bool
    assert torch.equal(ds.m_test, torch.from_numpy(truth[:, None]))
    memory = data.load_dataset(f"npz:{tmp_path / 'd.npz'}", options=DataOptions(cache=False))
    assert torch.equal(memory.m_test, ds.m_test)


@pytest.mark.parametrize("masks, match", [
    ({"m_test": np.zeros((30, 8, 7), bool)},
     r"m_test has shape \(30, 8, 7\), expected \(30, 8, 8\), \(30, 1, 8, 8\) or \(30, 8, 8, 1\) "
     r"for x_test's 30 images of 8x8"),
    ({"m_train": np.zeros((119, 8, 8), bool)}, r"m_train has shape \(119, 8, 8\)"),
    ({"m_test": np.zeros((30, 8, 8), np.float32)}, r"m_test is float32, expected bool or uint8"),
])
def test_bad_npz_masks_are_one_line_naming_the_key(tmp_path, masks, match):
    np.savez(tmp_path / "bad.npz", **digits_arrays(), **masks)
    with pytest.raises(UserError, match=r"bad\.npz: " + match) as error:
        data.load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    assert "\n" not in str(error.value)


def test_evaluate_measures_localisation_on_folder_masks_and_skips_it_without(digit_folder,
                                                                             tmp_path):
    """The mask of each digit is its ink: the oracle scores relevance mass 1, its complement 0."""
    masked = tmp_path / "masked"
    shutil.copytree(digit_folder, masked)
    for image in sorted(masked.rglob("*.png")):
        ink = np.asarray(folder.Image.open(image)) > 64
        save(masked / "masks" / image.relative_to(masked), ink.astype(np.uint8))
    sets = ["n_train=120", "n_test=20", "train.epochs=1", "metrics=localisation,complexity",
            "methods=gradient,oracle,inverted_oracle"]
    run_dir = ev.run(evaluate_config(*sets, f"dataset=folder:{masked}"), str(tmp_path / "runs"),
                     "with")
    value = {(r["method"], r["metric"]): float(r["value"]) for r in read_results(run_dir)}
    assert value["oracle", "relevance_mass"] == 1.0
    assert value["inverted_oracle", "relevance_mass"] == 0.0
    assert 0 < value["gradient", "relevance_mass"] < 1
    run_dir = ev.run(evaluate_config(*sets, f"dataset=folder:{digit_folder}"),
                     str(tmp_path / "runs"), "without")
    report = (run_dir / "report.md").read_text()
    (line,) = [x for x in report.splitlines() if x.startswith("- `localisation`: ")]
    assert "no ground-truth masks" in line and "PATH/masks/" in line and "m_test" in line
    assert {r["metric"] for r in read_results(run_dir)} == {"sparseness", "complexity"}
