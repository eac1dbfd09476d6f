"""Training throughput of `lenet`: saliencylab's in-memory loop vs a plain DataLoader loop.

The reference is written the way a typical research script is: a per-sample Dataset that
normalises each image, a shuffling DataLoader, and a default (contiguous) model. Both train
the same model with the same SGD settings on the same MNIST-shaped images, alternately, in
the same process, so the ratio is robust to a noisy shared machine.

    .venv/bin/python benchmarks/bench_training.py [--images 12000] [--repeats 3]
"""

import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from saliencylab.data import DataSpec
from saliencylab.models.registry import build_model
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train

SPEC = DataSpec("mnist-shaped", (1, 28, 28), tuple(map(str, range(10))), (0.1307,), (0.3081,))
CONFIG = TrainConfig(epochs=1, batch_size=64, lr=1e-3, momentum=0.9)


class PerSampleDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (self.x[i].float() / 255 - 0.1307) / 0.3081, self.y[i]


def reference_epoch(x, y) -> float:
    torch.manual_seed(0)
    model = build_model("lenet", (1, 28, 28), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=CONFIG.lr, momentum=CONFIG.momentum)
    loader = DataLoader(PerSampleDataset(x, y), batch_size=CONFIG.batch_size, shuffle=True)
    start = time.perf_counter()
    for xb, yb in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    return len(x) / (time.perf_counter() - start)


def saliencylab_epoch(x, y, config: TrainConfig = CONFIG) -> float:
    torch.manual_seed(0)
    model = build_model("lenet", (1, 28, 28), 10)
    start = time.perf_counter()
    train(model, x, y, SPEC, config, seed=0, progress=False)
    return len(x) / (time.perf_counter() - start)


# Variants that would shorten the roar-mnist preset, measured for information only: the
# preset keeps batch 64 in fp32.
VARIANTS = {"batch 128": replace(CONFIG, batch_size=128),
            "bf16 autocast": replace(CONFIG, precision="bf16")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (args.images,), generator=g)
    ours, reference = [], []
    variants = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        reference.append(reference_epoch(x, y))
        ours.append(saliencylab_epoch(x, y))
        for name, config in VARIANTS.items():
            variants[name].append(saliencylab_epoch(x, y, config))
    ref, fast = statistics.median(reference), statistics.median(ours)
    print(f"lenet training, {args.images} images x {args.repeats} repeats, "
          f"{torch.get_num_threads()} threads")
    print(f"  reference DataLoader loop : {ref:8.0f} images/s")
    print(f"  saliencylab in-memory loop: {fast:8.0f} images/s")
    print(f"  ratio: {fast / ref:.2f}x (target >= 1.7x)")
    for name, rates in variants.items():
        rate = statistics.median(rates)
        print(f"  variant {name:<14}: {rate:8.0f} images/s, {rate / ref:.2f}x the reference")


if __name__ == "__main__":
    main()
