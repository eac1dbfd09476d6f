"""Write a 224x224 RGB image folder made offline from MNIST: `python examples/mnist224.py OUT`.

Each image is one MNIST digit, upscaled (bilinear) to a side drawn in [96, 160] px, tinted a
random bright colour and pasted at a random position on a dark canvas: a random colour gradient
plus uniform noise of +-16 levels. The folder has torchvision's ImageFolder layout,
OUT/train/<digit>/<i>.png and OUT/test/<digit>/<i>.png, from the first --train MNIST training
images and the first --test MNIST test images; everything is drawn from --seed.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from saliencylab import data

SIDE = 224


def canvas(rng: np.random.Generator) -> np.ndarray:
    """A dark random gradient (two corner colours blended along a random direction) with noise."""
    a, b = rng.uniform(0, 90, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / (SIDE - 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / (t.max() - t.min())
    image = a + (b - a) * t[..., None]
    return image + rng.uniform(-16, 16, image.shape)


def paste(rng: np.random.Generator, digit: np.ndarray) -> np.ndarray:
    """One 224x224x3 uint8 image holding `digit` (28x28 uint8)."""
    side = int(rng.integers(96, 161))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.BILINEAR), float) / 255
    top, left = rng.integers(0, SIDE - side + 1, 2)
    image = canvas(rng)
    colour = rng.uniform(150, 255, 3)
    window = image[top:top + side, left:left + side]
    window[:] = window * (1 - ink[..., None]) + colour * ink[..., None]
    return image.round().clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--test", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="where MNIST's IDX files are")
    args = parser.parse_args()
    mnist = data.load_dataset("mnist", data_dir=args.data_dir)
    rng = np.random.default_rng(args.seed)
    for split, x, y, n in (("train", mnist.x_train, mnist.y_train, args.train),
                           ("test", mnist.x_test, mnist.y_test, args.test)):
        for i in range(n):
            folder = args.out / split / str(int(y[i]))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(paste(rng, x[i, 0].numpy())).save(folder / f"{i}.png")
    print(f"wrote {args.train} train and {args.test} test images to {args.out}")


if __name__ == "__main__":
    main()
