"""Model-parameter randomisation test (cascading and independent, every layer) on lenet for
1,000 MNIST test images with the gradient method: its time, and per layer the time of a plain
reference that recomputes each randomised model's maps one image at a time (the way a
per-sample loop does it), for the ratio.

    .venv/bin/python benchmarks/bench_mprt.py [--data-dir ../shared/data] [--n 1000]
"""

import argparse
import copy
import time

import torch

from saliencylab import data
from saliencylab.attribution import make_method
from saliencylab.evaluation.randomization import (
    layers_top_down,
    mprt,
    randomize_layer,
    similarities,
)
from saliencylab.models.registry import build_model


def per_image_reference(model, x, y, layers) -> float:
    start = time.perf_counter()
    gradient = make_method("gradient")
    original = torch.cat([gradient.attribute(model, x[i:i + 1], y[i:i + 1]) for i in range(len(x))])
    randomised = copy.deepcopy(model)
    for i, name in enumerate(layers):
        randomize_layer(randomised, name, i)
        maps = torch.cat([gradient.attribute(randomised, x[j:j + 1], y[j:j + 1]) for j in range(len(x))])
        similarities(original, maps)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    ds = data.load_dataset("mnist", args.data_dir).subset(None, args.n)
    torch.manual_seed(0)
    model = build_model("lenet", ds.spec.shape, 10).eval()
    x, y = ds.spec.normalize(ds.x_test), ds.y_test
    explain = make_method("gradient").attribute
    start = time.perf_counter()
    rows = {mode: mprt(model, x, y, explain, mode) for mode in ("cascading", "independent")}
    ours = time.perf_counter() - start
    layers = layers_top_down(model, x)
    reference = per_image_reference(model, x, y, layers)
    print(f"MPRT, lenet ({len(layers)} layers), {len(x)} MNIST test images, gradient")
    print(f"cascading + independent, batched: {ours:6.1f} s")
    print(f"cascading only, one image at a time: {reference:6.1f} s "
          f"({reference / (ours / 2):.1f}x the batched cascading half)")
    print("final cascading Spearman |a|: "
          f"{rows['cascading'][-1]['spearman_abs'].mean():.3f}")


if __name__ == "__main__":
    main()
