"""ROAD's imputer (removal/imputation.py) with each preconditioner of its conjugate gradients,
Jacobi and the multigrid V-cycle, on the same images and masks, by image size: where the
V-cycle starts to pay (`MULTIGRID_FROM`). Connected holes come from a smooth ranking (as MoRF on
a smooth map), scattered ones from a random ranking; minimum of `--repeats` interleaved runs
of the process's CPU time (one thread: what other jobs on a shared CPU take is not counted).

    PYTHONPATH=src python benchmarks/bench_imputer.py [--rows 32] [--sizes 28,48,64,96,128]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from saliencylab.removal import imputation, rank_pixels
from saliencylab.removal.masks import removal_mask

PRECONDITIONERS = {"jacobi": 10 ** 9, "multigrid": 0}  # the MULTIGRID_FROM that forces each


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32, help="images (1 channel) per solve")
    parser.add_argument("--sizes", default="28,48,64,96,128")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    crossover = imputation.MULTIGRID_FROM
    print(f"torch {torch.__version__}, 1 thread, {args.rows} images x 1 channel per solve")
    for size in map(int, args.sizes.split(",")):
        x = torch.rand(args.rows, 1, size, size, generator=g) * 255
        field = F.interpolate(torch.randn(args.rows, 1, 6, 6, generator=g), size=(size, size),
                              mode="bicubic", align_corners=False)
        rankings = {"connected": rank_pixels(field, signed=True),
                    "scattered": torch.stack([torch.randperm(size * size, generator=g)
                                              for _ in range(args.rows)])}
        for holes, order in rankings.items():
            for percent in (50, 90):
                mask = removal_mask(order, percent, (size, size))
                best = dict.fromkeys(PRECONDITIONERS, float("inf"))
                for _ in range(args.repeats):
                    for name, start in PRECONDITIONERS.items():
                        imputation.MULTIGRID_FROM = start
                        t = time.process_time()
                        imputation.linear_impute(x, mask)
                        best[name] = min(best[name], time.process_time() - t)
                print(f"{size:4d} px, {holes} holes, {percent}% removed: Jacobi "
                      f"{best['jacobi'] * 1e3:.1f} ms, multigrid {best['multigrid'] * 1e3:.1f} ms,"
                      f" multigrid / Jacobi {best['multigrid'] / best['jacobi']:.2f}")
    imputation.MULTIGRID_FROM = crossover


if __name__ == "__main__":
    main()
