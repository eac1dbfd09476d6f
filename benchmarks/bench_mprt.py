"""Model-parameter randomisation test (MPRT) at the model's own cost (issue 17): every layer,
top down, on one model and one set of images, per method:

- ours: `mprt` (Spearman of |a| and of a, and SSIM, per image and layer), given the trained
  model's maps as `evaluate` gives them;
- floor: the same number of bare forward/backward passes (gradient of the explained logits
  with respect to the input) of the randomised models, in the same batch sizes, timed in the
  same run: one model per layer, each on every image (times the method's rows per image);
- Quantus 0.6.0's `MPRT` (`pip install '.[bench]'`) with our method as its explain_func, its
  Spearman only, batch size = all images (cascading only: `layer_order="top_down"`).

Settings: lenet on MNIST (28 px, 200 test images; gradient and integrated gradients with 16
steps) and the ResNet-18-style model of bench_metrics.py (3x224x224, 8 random smooth images,
untrained: only time counts; gradient). Seconds are the best of `--repeats`.

    PYTHONPATH=src:benchmarks python benchmarks/bench_mprt.py --data-dir ../shared/data
        [--n28 200] [--n224 8] [--threads 1] [--independent]
"""

import argparse
import copy

import numpy as np
import torch
import torch.nn.functional as F
from bench_metrics import resnet18, seconds

from saliencylab import data, explain_func
from saliencylab.attribution import make_method
from saliencylab.evaluation.randomization import layer_seed, layers_top_down, mprt, randomize_layer
from saliencylab.models.registry import build_model

ROWS = 512  # MethodOptions.max_batch_rows: the rows of one forward pass


def passes(model, x, y, rows_per_image):
    """Bare forward + backward (input gradient of the explained logits) of x's images, each
    repeated `rows_per_image` times, in chunks of at most ROWS rows (as the methods chunk)."""
    per_chunk = max(1, ROWS // rows_per_image) if rows_per_image > 1 else ROWS
    for start in range(0, len(x), per_chunk):
        xb = x[start:start + per_chunk].repeat(rows_per_image, 1, 1, 1).requires_grad_(True)
        yb = y[start:start + per_chunk].repeat(rows_per_image)
        torch.autograd.grad(model(xb).gather(1, yb[:, None]).sum(), xb)


def floor(model, x, y, rows_per_image, mode):
    """The passes of the randomised models of `mode`'s steps (the randomising untimed)."""
    randomised, total = copy.deepcopy(model), 0.0
    for i, name in enumerate(layers_top_down(model, x)):
        if mode == "independent":
            randomised = copy.deepcopy(model)
        randomize_layer(randomised, name, layer_seed(0, i))
        total += seconds(lambda m=randomised: passes(m, x, y, rows_per_image))
    return total


def quantus_mprt(model, x, y, name, options):
    try:
        import quantus  # lazy: optional `bench` extra
    except ImportError:
        return None
    metric = quantus.MPRT(layer_order="top_down", disable_warnings=True, display_progressbar=False)
    explain = explain_func(name, **options)
    return lambda: metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None,
                          explain_func=explain, device="cpu", batch_size=len(x))


def bench(label, model, x, y, methods, modes, repeats):
    layers = layers_top_down(model, x)
    print(f"\n## {label}: {len(x)} images, {tuple(x.shape[1:])}, {len(layers)} layers")
    print("| method | mode | floor (s) | ours (s) | ours / floor | Quantus (s) | Quantus / ours "
          "| final Spearman abs: ours, Quantus |")
    print("|---|---|---|---|---|---|---|---|")
    for name, options, rows_per_image in methods:
        explain = make_method(name, baseline="zeros", **options).attribute
        original = explain(model, x, y)
        for mode in modes:
            out = {}
            ours = seconds(lambda e=explain, m=mode, a=original, o=out: o.update(
                ours=mprt(model, x, y, e, m, 0, a)), repeats)
            base = floor(model, x, y, rows_per_image, mode)
            mine = out["ours"][-1]["spearman_abs"].mean()
            peer = quantus_mprt(model, x, y, name, options) if mode == "cascading" else None
            if peer is None:
                quantus = "absent | -" if mode == "cascading" else "n/a | -"
                theirs = "-"
            else:
                q = seconds(lambda p=peer, o=out: o.update(quantus=p()), repeats)
                quantus = f"{q:.2f} | {q / ours:.1f}x"
                theirs = f"{np.mean(list(out['quantus'].values())[-1]):.3f}"
            print(f"| {name} | {mode} | {base:.2f} | {ours:.2f} | {ours / base:.2f}x | {quantus} "
                  f"| {mine:.3f}, {theirs} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n28", type=int, default=200)
    parser.add_argument("--n224", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--independent", action="store_true", help="also independent mode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = ("cascading", "independent") if args.independent else ("cascading",)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    ds = data.load_dataset("mnist", args.data_dir, progress=False).subset(None, args.n28)
    torch.manual_seed(0)
    lenet = build_model("lenet", ds.spec.shape, 10).eval()
    bench("lenet, MNIST 28 px", lenet, ds.spec.normalize(ds.x_test), ds.y_test,
          [("gradient", {}, 1), ("integrated_gradients", {"ig_steps": 16}, 16)], modes,
          args.repeats)
    model = resnet18().eval()
    g = torch.Generator().manual_seed(1)
    x = F.avg_pool2d(torch.rand(args.n224, 3, 240, 240, generator=g), 17, 1)
    with torch.no_grad():
        y = model(x).argmax(1)
    bench("ResNet-18-style, 3x224x224", model, x, y, [("gradient", {}, 1)], modes, 1)
    print("\nours computes three similarities per layer (Spearman |a|, Spearman a, SSIM); "
          "Quantus one (Spearman of its max-normalised |a|)")


if __name__ == "__main__":
    main()
