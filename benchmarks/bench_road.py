"""ROAD on MNIST test images, one method, 9 percentages, MoRF and LeRF: saliencylab's batched
noisy linear imputation (conjugate gradients on all images at once) vs a plain per-image
reference written the way Quantus and the ROAD authors' `NoisyLinearImputer.__call__` do it (a
scipy sparse system and spsolve per image), on the same images and rankings. Target: >= 10x.

Both sides share the model, the maps, the rankings and the forward passes' batching; only the
imputation differs. The reference runs on `--reference-images` of the images (it is slow) and
its time is scaled to all of them; the output says so.

    .venv/bin/python benchmarks/bench_road.py [--data-dir ../shared/data] [--n 10000]
        [--reference-images 500]
"""

import argparse
import time

import numpy as np
import torch
from scipy.sparse import lil_matrix
from scipy.sparse.linalg import spsolve

from saliencylab import data
from saliencylab.attribution import make_method
from saliencylab.models.registry import build_model
from saliencylab.removal import road, road_order
from saliencylab.removal.imputation import NEIGHBOURS
from saliencylab.removal.masks import removal_mask

PERCENTS = tuple(range(10, 100, 10))


def reference_impute(image: np.ndarray, removed: np.ndarray, noise: float, rng) -> np.ndarray:
    """One image [C,H,W], removed [H,W] bool: ROAD's system built and solved with scipy."""
    c, h, w = image.shape
    unknown = np.flatnonzero(removed.reshape(-1))
    index = -np.ones(h * w, dtype=int)
    index[unknown] = np.arange(len(unknown))
    flat = image.reshape(c, -1)
    system, rhs = lil_matrix((len(unknown), len(unknown))), np.zeros((len(unknown), c))
    for i, p in enumerate(unknown):
        r, k = divmod(p, w)
        for (dr, dk), weight in NEIGHBOURS:
            rr, kk = r + dr, k + dk
            if 0 <= rr < h and 0 <= kk < w:
                system[i, i] += weight
                q = rr * w + kk
                if index[q] >= 0:
                    system[i, index[q]] -= weight
                else:
                    rhs[i] += weight * flat[:, q]
    out = flat.copy()
    if len(unknown):
        solution = spsolve(system.tocsc(), rhs).reshape(len(unknown), c)
        out[:, unknown] = solution.T + noise * rng.standard_normal((c, len(unknown)))
    return out.reshape(c, h, w)


def reference_road(model, x, y, spec, order, noise: float) -> float:
    """The per-image reference: impute each image alone, then classify in batches; seconds."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for direction in ("morf", "lerf"):
        for percent in PERCENTS:
            mask = removal_mask(order, percent, x.shape[2:], direction)[:, 0].numpy()
            imputed = np.stack([reference_impute(x[i].double().numpy(), mask[i], noise, rng)
                                for i in range(len(x))])
            with torch.no_grad():
                model(spec.normalize(torch.from_numpy(imputed).float()))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n", type=int, default=10000, help="test images")
    parser.add_argument("--reference-images", type=int, default=500)
    args = parser.parse_args()
    ds = data.load_dataset("mnist", args.data_dir).subset(None, args.n)
    torch.manual_seed(0)
    model = build_model("lenet", ds.spec.shape, 10).eval()
    x, y = ds.x_test, ds.y_test
    a = make_method("gradient").attribute(model, ds.spec.normalize(x), y)
    start = time.perf_counter()
    road(model, x, y, ds.spec, a, PERCENTS)
    ours = time.perf_counter() - start
    m = min(args.reference_images, len(x))
    reference = reference_road(model, x[:m].float(), y[:m], ds.spec, road_order(a[:m]), 2.55)
    scaled = reference * len(x) / m
    print(f"ROAD, {len(x)} MNIST test images, {len(PERCENTS)} percentages, MoRF and LeRF, gradient")
    print(f"saliencylab (batched conjugate gradients): {ours:8.1f} s")
    print(f"per-image scipy reference: {reference:8.1f} s on {m} images -> {scaled:8.1f} s for "
          f"{len(x)} (scaled)")
    print(f"ratio: {scaled / ours:.1f}x faster (target >= 10x)")


if __name__ == "__main__":
    main()
