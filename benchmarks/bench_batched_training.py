"""Images/s of N LeNets trained as one batched model against N separately trained ones
(issue 19), and the fraction of the device's peak FLOP/s that each reaches.

Three ways to train N models, each on its own 28x28 images, batch 64, SGD with momentum:
- separate: `training.loop.train` once per model, one after the other (today's path);
- vmap: `training.batched.train_batched` (stack_module_state + vmap(functional_call)), the
  library's batched path;
- grouped: the same step written by hand as grouped convolutions (groups = N) and batched
  matrix products (benchmark only, to see whether it beats vmap).

The peak is measured in the same run, not taken from a datasheet: the best of a few large
fp32 matrix products (M = K = N = 2048 on the CPU, 8192 on CUDA) with the same threads. FLOPs
per image and step: 2,263,920 (LeNet forward 833,040, backward 1,430,880: conv1 needs no input
gradient; torch.utils.flop_counter gives the same), a multiply-add counted as 2.

    PYTHONPATH=src python benchmarks/bench_batched_training.py --device cpu --steps 4
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from saliencylab import data, models
from saliencylab.training.batched import train_batched
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train

SPEC = data.DataSpec("bench", (1, 28, 28), tuple("0123456789"), (0.13,), (0.31,))
FLOPS_PER_IMAGE = 2_263_920  # one training step of LeNet on 28x28 (see the docstring)
BATCH = 64


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device, repeats: int = 5) -> float:
    """The best FLOP/s of a large fp32 matrix product here: the practical peak."""
    size = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def lenets(n_models: int, device: torch.device) -> list[torch.nn.Module]:
    out = []
    for seed in range(n_models):
        torch.manual_seed(seed)
        out.append(models.build_model("lenet", SPEC.shape, 10).to(device))
    return out


def images(n_models: int, n: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    xs = [torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8).to(device)
          for _ in range(n_models)]
    ys = [torch.randint(0, 10, (n,), generator=g).to(device) for _ in range(n_models)]
    return xs, ys


def time_separate(n_models, xs, ys, cfg, device) -> float:
    nets = lenets(n_models, device)
    sync(device)
    start = time.perf_counter()
    for i, (net, x, y) in enumerate(zip(nets, xs, ys)):
        train(net, x, y, SPEC, cfg, i, progress=False)
    sync(device)
    return time.perf_counter() - start


def time_vmap(n_models, xs, ys, cfg, device) -> float:
    nets = lenets(n_models, device)
    sync(device)
    start = time.perf_counter()
    train_batched(nets, xs, ys, SPEC, cfg, list(range(n_models)), progress=False)
    sync(device)
    return time.perf_counter() - start


def grouped_forward(w: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """N LeNets at once: x [N, B, 1, 28, 28] -> logits [N, B, 10]; w holds the stacked weights
    (conv [N, O, C, k, k] as one grouped convolution, linear [N, O, I] as one bmm)."""
    n, b = x.shape[:2]
    h = x.transpose(0, 1).reshape(b, n, 28, 28)  # member n's image b in channel n
    h = F.max_pool2d(F.relu(F.conv2d(h, w[0].flatten(0, 1), w[1].flatten(), padding=2, groups=n)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, w[2].flatten(0, 1), w[3].flatten(), groups=n)), 2)
    h = h.reshape(b, n, 400).transpose(0, 1)  # [N, B, 400], each member's own flatten order
    h = F.relu(torch.baddbmm(w[5][:, None], h, w[4].transpose(1, 2)))
    h = F.relu(torch.baddbmm(w[7][:, None], h, w[6].transpose(1, 2)))
    return torch.baddbmm(w[9][:, None], h, w[8].transpose(1, 2))


def time_grouped(n_models, xs, ys, cfg, device) -> float:
    nets = lenets(n_models, device)
    w = [torch.stack([p.detach() for p in ps]).requires_grad_()
         for ps in zip(*(net.parameters() for net in nets))]
    optimizer = torch.optim.SGD(w, lr=cfg.lr, momentum=cfg.momentum)
    x_all, y_all = torch.stack(xs), torch.stack(ys)
    sync(device)
    start = time.perf_counter()
    for i in range(0, x_all.shape[1], BATCH):
        x = SPEC.normalize(x_all[:, i:i + BATCH].float())
        logits = grouped_forward(w, x)
        loss = F.cross_entropy(logits.flatten(0, 1), y_all[:, i:i + BATCH].flatten(),
                               reduction="sum") / logits.shape[1]  # Σ over members of the means
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


WAYS = {"separate": time_separate, "vmap": time_vmap, "grouped": time_grouped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="1,4,16,64", help="the N to time")
    parser.add_argument("--steps", type=int, default=20, help="training steps per model timed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_flops(device)
    print(f"device {name}, torch {torch.__version__}, {args.threads} thread(s); batch {BATCH}, "
          f"{args.steps} SGD steps per model; measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'N':>3} {'way':>9} {'seconds':>8} {'images/s':>10} {'GFLOP/s':>8} {'of peak':>8}")
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=0.01, momentum=0.9)
    for n_models in (int(n) for n in args.models.split(",")):
        xs, ys = images(n_models, args.steps * BATCH, device)
        for way, timer in WAYS.items():
            timer(n_models, [x[:BATCH] for x in xs], [y[:BATCH] for y in ys], cfg, device)  # warm-up
            seconds = timer(n_models, xs, ys, cfg, device)
            rate = n_models * args.steps * BATCH / seconds
            flops = rate * FLOPS_PER_IMAGE
            print(f"{n_models:>3} {way:>9} {seconds:>8.2f} {rate:>10.0f} {flops / 1e9:>8.2f} "
                  f"{100 * flops / peak:>7.1f}%", flush=True)


if __name__ == "__main__":
    main()
