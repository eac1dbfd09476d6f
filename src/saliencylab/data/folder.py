"""`folder:PATH`: images in torchvision's ImageFolder layout, decoded with Pillow.

PATH/train/<class>/* and PATH/test/<class>/*, or one PATH/<class>/* tree split per class by a
seeded test_fraction. Files ending in png, jpg, jpeg, bmp or webp (any case) are images; other
files are ignored, as ImageFolder does. Classes are the sorted folder names.

Optional ground-truth masks (issue 18) live in PATH/masks/, a tree that mirrors the images':
the mask of PATH/<class>/NAME.ext is PATH/masks/<class>/NAME.png, and of
PATH/<split>/<class>/NAME.ext is PATH/masks/<split>/<class>/NAME.png (masks/train/ and
masks/test/ each optional). A mask is True where any channel of a pixel is non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..core.errors import UserError
from .options import DataOptions

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_GREY = ("1", "L", "LA")
_WIDE = ("I", "I;16", "I;16B", "I;16L", "F")  # more than 8 bits: refused, not clipped
MASKS = "masks"  # PATH/masks/: the masks' tree, never a class


@dataclass(frozen=True)
class Listing:
    """Every image of the data set: (file, label) per split, in the order they are stored."""

    classes: tuple[str, ...]
    train: tuple[tuple[Path, int], ...]
    test: tuple[tuple[Path, int], ...]


def _classes(folder: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    found = sorted(p for p in folder.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and p.name not in skip)
    if not found:
        raise UserError(f"{folder} has no class folders: put each class's images in "
                        f"{folder}/<class>/ (torchvision's ImageFolder layout)")
    return found


def _images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise UserError(f"class folder {folder} holds no images ({', '.join(EXTENSIONS)}): add "
                        f"images or remove the folder")
    return files


def _order(items: list[tuple[Path, int]], seed: int, salt: int) -> tuple:
    """A seeded permutation, so that the first n images of a split mix the classes."""
    perm = np.random.default_rng([seed, salt]).permutation(len(items))
    return tuple(items[i] for i in perm)


def scan(root: Path, options: DataOptions) -> Listing:
    """The images under `root`, by layout; a one-line UserError naming the folder at fault."""
    if not root.is_dir():
        raise UserError(f"folder:{root} is not a folder: give PATH with PATH/<class>/* or "
                        f"PATH/train/<class>/* and PATH/test/<class>/*")
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() or test_dir.is_dir():
        if not (train_dir.is_dir() and test_dir.is_dir()):
            raise UserError(f"{root} has {'train' if train_dir.is_dir() else 'test'}/ but no "
                            f"{'test' if train_dir.is_dir() else 'train'}/: give both splits, "
                            f"or one PATH/<class>/* tree to split by data.test_fraction")
        train_classes = [p.name for p in _classes(train_dir)]
        test_classes = [p.name for p in _classes(test_dir)]
        for name in train_classes:
            if name not in test_classes:
                raise UserError(f"class {name!r} is missing from the test split: add "
                                f"{test_dir / name}/ with its test images")
        for name in test_classes:
            if name not in train_classes:
                raise UserError(f"class {name!r} of {test_dir} is missing from the train split: "
                                f"add {train_dir / name}/ or remove it from test")
        train = [(f, c) for c, n in enumerate(train_classes) for f in _images(train_dir / n)]
        test = [(f, c) for c, n in enumerate(train_classes) for f in _images(test_dir / n)]
        classes = train_classes
    else:
        classes = [p.name for p in _classes(root, skip=(MASKS,))]
        train, test = [], []
        for c, name in enumerate(classes):
            files = _images(root / name)
            if len(files) < 2:
                raise UserError(f"class folder {root / name} holds one image: a train/test "
                                f"split needs at least 2 per class")
            n_test = min(len(files) - 1, max(1, round(options.test_fraction * len(files))))
            perm = np.random.default_rng([options.split_seed, c]).permutation(len(files))
            test += [(files[i], c) for i in sorted(perm[:n_test])]
            train += [(files[i], c) for i in sorted(perm[n_test:])]
    return Listing(tuple(classes), _order(train, options.split_seed, 1),
                   _order(test, options.split_seed, 2))


def mask_path(root: Path, image: Path) -> Path:
    """Where the mask of `image` (a file under `root`) is: root/masks/<its folders>/<stem>.png."""
    return root / MASKS / image.relative_to(root).parent / (image.stem + ".png")


def mask_files(root: Path, listing: Listing) -> dict[str, tuple[Path, ...] | None]:
    """Each split's masks in its images' order, or None where the split has none (no
    root/masks/; in the train/test layout, no masks/<split>/); a one-line UserError naming an
    image without its mask, or two images whose names differ only in their suffix."""
    top = root / MASKS
    split_layout = (root / "train").is_dir()
    if not top.is_dir():
        return {"train": None, "test": None}
    if split_layout and not ((top / "train").is_dir() or (top / "test").is_dir()):
        raise UserError(f"{top} has no train/ or test/ folder: with the train/test layout the mask "
                        f"of {root}/test/<class>/NAME.* is {top}/test/<class>/NAME.png")
    found = {}
    for split in ("train", "test"):
        if split_layout and not (top / split).is_dir():
            found[split] = None
            continue
        masks, owner = [], {}
        for image, _ in getattr(listing, split):
            mask = mask_path(root, image)
            if not mask.is_file():
                raise UserError(f"image {image} has no mask: add {mask} (non-zero where the "
                                f"class is), or remove {top / split if split_layout else top}")
            if mask in owner:
                raise UserError(f"images {owner[mask]} and {image} would share the mask {mask}: "
                                f"rename one of them")
            owner[mask] = image
            masks.append(mask)
        found[split] = tuple(masks)
    return found


def _undecodable(path: Path, error: Exception, what: str = "image") -> UserError:
    return UserError(f"cannot decode {what} {path} ({type(error).__name__}: "
                     f"{' '.join(str(error).split())[:120]}): replace or delete the file")


def header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the file's header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise _undecodable(path, e) from None


def layout(listing: Listing, options: DataOptions) -> tuple[int, int, int]:
    """(C, H, W) of the stored images: the channels and size asked for, else as stored (one
    size for all, else a UserError naming two files of different sizes)."""
    channels, size, first = options.channels, options.shape(), None
    colour = False
    for path, _ in listing.train + listing.test:
        mode, (w, h) = header(path)
        if mode in _WIDE:
            raise UserError(f"{path} is a {mode} image (more than 8 bits per pixel): save it "
                            f"as 8-bit grey or RGB")
        colour = colour or mode not in _GREY
        if options.size is None:
            if first is None:
                first = (path, (h, w))
            elif (h, w) != first[1]:
                raise UserError(f"images differ in size: {first[0]} is {first[1][1]}x"
                                f"{first[1][0]}, {path} is {w}x{h}; set data.size=H (or H,W) "
                                f"to resize the short side and centre-crop")
    channels = channels or (3 if colour else 1)
    return (channels, *(size or first[1]))


def resize_crop(image: Image.Image, size: tuple[int, int],
                resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """Scale so the image covers (H, W), keeping its aspect (the short side to H when H = W),
    then crop the centre: torchvision's Resize(size) + CenterCrop(size)."""
    height, width = size
    w, h = image.size
    scale = max(height / h, width / w)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    left, top = round((new_w - width) / 2), round((new_h - height) / 2)
    return image.crop((left, top, left + width, top + height))


def decode(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """The image at `path` as uint8 [C, H, W] of `shape` (grey or RGB, resized if asked)."""
    channels, height, width = shape
    try:
        with Image.open(path) as image:
            image.load()
            image = image.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _undecodable(path, e) from None
    if image.size != (width, height):
        image = resize_crop(image, (height, width))
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def decode_mask(path: Path, image: Path, size: tuple[int, int]) -> np.ndarray:
    """The mask at `path` of the image at `image` as bool [1, H, W] of `size` (H, W): True where
    any channel is non-zero, resized and cropped as its image is, by nearest neighbour. A mask
    must have its image's size (a one-line UserError naming both otherwise)."""
    _, (width, height) = header(image)
    try:
        with Image.open(path) as mask:
            mask.load()
            plain = mask.mode in ("1", "L", "F") or mask.mode.startswith("I")
            pixels = np.asarray(mask if plain else mask.convert("RGB"))  # alpha dropped
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _undecodable(path, e, "mask") from None
    if pixels.shape[:2] != (height, width):
        raise UserError(f"mask {path} is {pixels.shape[1]}x{pixels.shape[0]} but its image "
                        f"{image} is {width}x{height}: save the mask at its image's size")
    inside = pixels != 0
    if inside.ndim == 3:
        inside = inside.any(axis=2)
    if inside.shape != size:
        scaled = resize_crop(Image.fromarray(inside.astype(np.uint8) * 255), size,
                             Image.Resampling.NEAREST)
        inside = np.asarray(scaled) > 0
    return inside[None]
