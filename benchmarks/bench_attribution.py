"""Integrated Gradients over many images: saliencylab's bounded step batching vs Captum's defaults.

The reference is what a typical research script does: `IntegratedGradients(model).attribute(
x, target=t)` with Captum's defaults (50 steps, every step of every image in one forward
pass). Its memory grows with batch x steps, so a large batch runs out of memory; ours caps
the rows per forward pass (`max_batch_rows`), so its peak stays flat. Each measurement runs in
a fresh subprocess so that its peak resident memory (ru_maxrss) is its own.

    .venv/bin/python benchmarks/bench_attribution.py [--images 1024] [--batches 64,256,1024]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def measure(kind: str, images: int, batch: int) -> dict:
    from captum.attr import IntegratedGradients

    from saliencylab.attribution import make_method
    from saliencylab.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("lenet", (1, 28, 28), 10).eval()
    x = torch.randn(images, 1, 28, 28)
    target = torch.randint(0, 10, (images,))
    ours = make_method("integrated_gradients", ig_steps=50, baseline="zeros")  # as Captum
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for i in range(0, images, batch):
        xb, tb = x[i:i + batch], target[i:i + batch]
        if kind == "captum-defaults":
            IntegratedGradients(model).attribute(xb, target=tb)
        else:
            ours.attribute(model, xb, tb)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"images_per_s": images / seconds, "extra_peak_mb": (peak - before) / 1024}


def run_child(kind: str, images: int, batch: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(images), str(batch)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batches", default="64,256,1024")
    args = parser.parse_args()
    print(f"IG (50 steps) on lenet, {args.images} images of 28x28, {torch.get_num_threads()} threads")
    print(f"{'batch':>6} {'captum img/s':>13} {'ours img/s':>11} {'speed ratio':>12} "
          f"{'captum +MB':>11} {'ours +MB':>9}")
    for batch in map(int, args.batches.split(",")):
        ref = run_child("captum-defaults", args.images, batch)
        ours = run_child("saliencylab", args.images, batch)
        print(f"{batch:>6} {ref['images_per_s']:>13.0f} {ours['images_per_s']:>11.0f} "
              f"{ours['images_per_s'] / ref['images_per_s']:>11.2f}x "
              f"{ref['extra_peak_mb']:>11.0f} {ours['extra_peak_mb']:>9.0f}")


if __name__ == "__main__":
    main()
