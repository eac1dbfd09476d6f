"""Cost of one SGT / SMOOT training step vs a plain cross-entropy step, and bf16 autocast vs
fp32 throughput, for `sgt_cnn` on MNIST-shaped images, on the CPU or a GPU (--device).

All variants run in the same process, interleaved, on the same batches, so the ratios are
robust to a noisy shared machine. Both saliency passes are measured: `eval` (the default, the
SGT authors' separate eval-mode pass) and `shared` (the saliency from the training forward,
train mode; one forward and input-backward fewer).

    .venv/bin/python benchmarks/bench_sgt_step.py [--steps 20] [--batch 256] [--repeats 3]
        [--threads 1] [--device cpu|cuda]
"""

import argparse
import statistics
import time

import torch

from saliencylab.core.device import resolve_device
from saliencylab.data import DataSpec
from saliencylab.data.batches import prepare_batch
from saliencylab.models.registry import build_model
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import autocast, make_optimizer
from saliencylab.training.objectives import SGT, SMOOT, ObjectiveConfig, Traditional

SPEC = DataSpec("mnist-shaped", (1, 28, 28), tuple(map(str, range(10))), (0.1307,), (0.3081,))


def steps_per_second(objective, x, y, batch: int, steps: int, precision: str) -> float:
    torch.manual_seed(0)
    model = build_model("sgt_cnn", SPEC.shape, 10).to(x.device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, TrainConfig(optimizer="adadelta", lr=1.0))
    batches = [(prepare_batch(x[i * batch:(i + 1) * batch], SPEC), y[i * batch:(i + 1) * batch],
                torch.arange(i * batch, (i + 1) * batch, device=x.device)) for i in range(steps + 1)]

    def step(xb, yb, idx):
        with autocast(precision, x.device):
            loss = objective(model, xb, yb, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(*batches[0])  # warm-up
    synchronize(x.device)
    start = time.perf_counter()
    for b in batches[1:]:
        step(*b)
    synchronize(x.device)
    return steps / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; 1 is faster on a busy machine)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    n = (args.steps + 1) * args.batch
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    variants = {
        "plain": lambda: Traditional(),
        "sgt (eval)": lambda: SGT(ObjectiveConfig(saliency_pass="eval")),
        "smoot (eval)": lambda: SMOOT(ObjectiveConfig(saliency_pass="eval"), n, 10, 784),
        "sgt (shared)": lambda: SGT(ObjectiveConfig(saliency_pass="shared")),
        "smoot (shared)": lambda: SMOOT(ObjectiveConfig(saliency_pass="shared"), n, 10, 784),
    }
    rates = {(v, p): [] for v in variants for p in ("fp32", "bf16")}
    for _ in range(args.repeats):
        for precision in ("fp32", "bf16"):
            for name, make in variants.items():
                rates[name, precision].append(
                    steps_per_second(make(), x, y, args.batch, args.steps, precision))
    rate = {k: statistics.median(v) for k, v in rates.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"sgt_cnn, batch {args.batch}, {args.steps} steps x {args.repeats} repeats, {where}")
    for precision in ("fp32", "bf16"):
        plain = rate["plain", precision]
        print(f"[{precision}] plain step: {1000 / plain:7.2f} ms ({plain * args.batch:7.0f} images/s)")
        for name in list(variants)[1:]:
            r = rate[name, precision]
            print(f"[{precision}] {name:15s}: {1000 / r:7.2f} ms ({r * args.batch:7.0f} images/s) = "
                  f"{plain / r:.2f}x a plain step")
    for name in variants:
        print(f"bf16 vs fp32, {name:15s}: {rate[name, 'bf16'] / rate[name, 'fp32']:.2f}x throughput")


if __name__ == "__main__":
    main()
