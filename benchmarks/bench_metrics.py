"""Faithfulness metrics of `evaluate` at the model's own cost (issue 17): for ROAD (MoRF + LeRF,
9 percentages), deletion and insertion, on one model, one set of images and one set of maps:

- ours: saliencylab's implementation;
- floor: the same number of bare forward passes of the same model in the same batch sizes,
  timed in the same run (what no implementation can avoid);
- Quantus 0.6.0 (`pip install '.[bench]'`): ROAD (MoRF only: Quantus has no LeRF, and its ROAD
  fails on RGB input, so only at 28 px) and PixelFlipping with a 0.0 baseline in normalised
  space, one row per step (its nearest relative of RISE deletion; it has no insertion);
- for ROAD, the authors' way (tleemann/road_evaluation road/imputations.py 118-190,
  `NoisyLinearImputer`): the system built pixel by pixel and solved with scipy's spsolve per
  image, timed on `--reference-images` images and scaled;
- the imputer alone at 224 px, 90% removed in connected holes, 4 images x 3 channels, against
  spsolve per image.

Settings: lenet on MNIST (28 px, 1,000 test images) and a ResNet-18-style model written here
(3x224x224, 64 random smooth images, untrained: only time counts). Deletion/insertion step: one
row at 28 px; 1,792 pixels (RISE's batch setting, 224·8, 29 points) at 224 px.

    PYTHONPATH=src python benchmarks/bench_metrics.py --data-dir ../shared/data [--small] [--n224 N]
        [--threads 1] [--device cpu] [--imputer]
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from bench_road import reference_impute
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

from saliencylab import data
from saliencylab.attribution import make_method
from saliencylab.data import DataSpec
from saliencylab.data.batches import prepare_batch
from saliencylab.models.registry import build_model
from saliencylab.removal import deletion, insertion, linear_impute, rank_pixels, road, road_order
from saliencylab.removal.imputation import NEIGHBOURS
from saliencylab.removal.masks import removal_mask

PERCENTS = tuple(range(10, 100, 10))
BATCH = 500


def block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cout))


class Basic(nn.Module):
    """ResNet's basic block (He et al. 2016, fig. 2 left)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = block(cin, cout, stride)
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout)))

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


def resnet18(classes=1000):
    """ResNet-18's layout (He et al. 2016, table 1): 7x7 stem, 4 stages of 2 basic blocks."""
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    for cin, cout, stride in ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)):
        layers += [Basic(cin, cout, stride), Basic(cout, cout, 1)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


def seconds(work, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
@torch.no_grad()
def floor(model, x, spec, rows):
    """Bare forwards of `rows` images in batches of BATCH, on copies of x's images, as the
    metrics run them: without autograd, normalised in channels_last (`prepare_batch`)."""
    for a in range(0, rows, BATCH):
        idx = torch.arange(a, min(rows, a + BATCH)) % len(x)
        model(prepare_batch(x[idx], spec))


def authors_road(model, x, spec, order, images):
    """ROAD the authors' way on the first `images` images: per image and percentage, the system
    built pixel by pixel and spsolve'd (bench_road.reference_impute), then batched forwards."""
    rng = np.random.default_rng(0)
    x = x[:images].double()
    for direction in ("morf", "lerf"):
        for percent in PERCENTS:
            mask = removal_mask(order[:images], percent, x.shape[2:], direction)[:, 0].numpy()
            out = np.stack([reference_impute(x[i].numpy(), mask[i], 2.55, rng)
                            for i in range(images)])
            with torch.no_grad():
                model(spec.normalize(torch.from_numpy(out).float()))


def spsolve_impute(image, removed):
    """ROAD's system for one image (vectorised build, then spsolve): the solver alone."""
    c, h, w = image.shape
    unknown = np.flatnonzero(removed.ravel())
    index = -np.ones(h * w, dtype=int)
    index[unknown] = np.arange(len(unknown))
    r, k = np.divmod(unknown, w)
    rows, cols, vals = [np.arange(len(unknown))], [np.arange(len(unknown))], []
    diagonal, rhs, flat = np.zeros(len(unknown)), np.zeros((len(unknown), c)), image.reshape(c, -1)
    for (dr, dk), weight in NEIGHBOURS:
        rr, kk = r + dr, k + dk
        inside = (rr >= 0) & (rr < h) & (kk >= 0) & (kk < w)
        i, q = np.flatnonzero(inside), rr[inside] * w + kk[inside]
        diagonal[inside] += weight
        known = index[q] < 0
        rows.append(i[~known])
        cols.append(index[q[~known]])
        vals.append(np.full((~known).sum(), -weight))
        np.add.at(rhs, i[known], weight * flat[:, q[known]].T)
    matrix = coo_matrix((np.concatenate([diagonal] + vals),
                         (np.concatenate(rows), np.concatenate(cols))), shape=(len(unknown),) * 2)
    return spsolve(matrix.tocsc(), rhs)


def quantus_rows(model, x, y, a, spec, step):
    """Quantus's ROAD (MoRF) and PixelFlipping on the same model, images and maps; None if
    Quantus is absent or the input is RGB (its ROAD fails there)."""
    try:
        import quantus  # lazy: optional `bench` extra
    except ImportError:
        return None
    xn, yn, an = spec.normalize(x.float()).numpy(), y.numpy(), a.sum(1, keepdim=True).numpy()
    road_q = quantus.ROAD(percentages=list(PERCENTS), noise=0.01 / spec.std[0], display_progressbar=False,
                          disable_warnings=True)
    flip = quantus.PixelFlipping(features_in_step=step, perturb_baseline=0.0,
                                 disable_warnings=True, display_progressbar=False)
    out = {}
    if x.shape[1] == 1:
        out["road"] = seconds(lambda: road_q(model=model, x_batch=xn, y_batch=yn, a_batch=an,
                                             device="cpu", batch_size=BATCH))
    out["deletion"] = seconds(lambda: flip(model=model, x_batch=xn, y_batch=yn, a_batch=an,
                                           device="cpu", batch_size=BATCH))
    return out


def bench_setting(name, model, x, y, spec, a, step, reference_images):
    target = y
    order = rank_pixels(a.sum(1, keepdim=True))
    steps = len(range(0, x.shape[2] * x.shape[3], step)) + 1
    ours = {"road": seconds(lambda: road(model, x, y, spec, a, PERCENTS, batch_size=BATCH)),
            "deletion": seconds(lambda: deletion(model, x, target, spec, order, step=step,
                                                 batch_size=BATCH)),
            "insertion": seconds(lambda: insertion(model, x, target, spec, order, step=step,
                                                   batch_size=BATCH))}
    forwards = {"road": 2 * len(PERCENTS) * len(x), "deletion": steps * len(x),
                "insertion": steps * len(x)}
    floors = {k: seconds(lambda n=n: floor(model, x, spec, n)) for k, n in forwards.items()}
    m = min(reference_images, len(x))
    authors = seconds(lambda: authors_road(model, x, spec, road_order(a), m)) * len(x) / m
    peers = quantus_rows(model, x, y, a, spec, step)
    print(f"\n## {name}: {len(x)} images, {tuple(x.shape[1:])}, step {step} pixels "
          f"({steps} points), batch {BATCH}")
    print("| metric | forwards | floor (s) | ours (s) | ours / floor | Quantus (s) | Quantus / ours "
          "| authors' spsolve (s) | authors / ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in ours:
        q = peers.get(k) if peers else None
        quantus = (f"{q:.2f} | {q / ours[k]:.1f}x" if q is not None else
                   "absent | -" if peers is None else "n/a | -")
        mine = f"{authors:.1f} (scaled from {m}) | {authors / ours[k]:.1f}x" if k == "road" else "- | -"
        print(f"| {k} | {forwards[k]} | {floors[k]:.2f} | {ours[k]:.2f} | "
              f"{ours[k] / floors[k]:.2f}x | {quantus} | {mine} |")
    if peers is None:
        print("Quantus: not installed (pip install '.[bench]'), its column skipped")
    elif "road" not in peers:
        print("Quantus ROAD: n/a on RGB input (its ROAD indexes the mask by C·H·W, research note A.1)")
    else:
        print("Quantus ROAD is MoRF only (9 percentages); ours is MoRF + LeRF")


def bench_imputer(images, repeats=3):
    """The imputer alone: 224 px, 90% removed along a smooth ranking, 3 channels, against
    spsolve per image, interleaved, minimum of `repeats` of the process's CPU time (one thread:
    what other jobs on a shared CPU take is not counted)."""
    g = torch.Generator().manual_seed(0)
    x = F.avg_pool2d(torch.rand(images, 3, 232, 232, generator=g), 9, 1) * 255
    field = F.interpolate(torch.randn(images, 1, 6, 6, generator=g), size=(224, 224),
                          mode="bicubic", align_corners=False)
    mask = removal_mask(rank_pixels(field, signed=True), 90, (224, 224))
    out = linear_impute(x, mask)
    worst = 0.0

    def reference():
        nonlocal worst
        for i in range(images):
            solution = spsolve_impute(x[i].double().numpy(), mask[i, 0].numpy())
            mine = out[i].double().numpy().reshape(3, -1)[:, mask[i, 0].view(-1).numpy()]
            worst = max(worst, float(abs(mine - solution.T).max()) / 255)

    ours = theirs = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        linear_impute(x, mask)
        middle = time.process_time()
        reference()
        ours, theirs = min(ours, middle - start), min(theirs, time.process_time() - middle)
    print(f"\n## imputer alone: 224x224, 90% removed in connected holes, {images} images x 3 "
          f"channels (CPU time, min of {repeats})")
    print(f"ours {ours:.2f} s, scipy spsolve per image {theirs:.2f} s: {theirs / ours:.1f}x; "
          f"largest difference {worst:.1e} of the [0, 1] range")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--small", action="store_true", help="100 and 4 images: a few minutes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--imputer", action="store_true", help="only the imputer line")
    parser.add_argument("--n224", type=int, default=None,
                        help="images of the 224-px setting (default 64; 4 with --small)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.imputer:
        return bench_imputer(4 if not args.small else 2)
    n28, n224, ref28, ref224 = (100, 4, 20, 1) if args.small else (1000, 64, 100, 2)
    n224 = args.n224 or n224
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    torch.manual_seed(0)
    ds = data.load_dataset("mnist", args.data_dir, progress=False).subset(None, n28)
    lenet = build_model("lenet", ds.spec.shape, 10).eval()
    a = make_method("gradient").attribute(lenet, ds.spec.normalize(ds.x_test), ds.y_test)
    bench_setting("lenet, MNIST 28 px", lenet, ds.x_test, ds.y_test, ds.spec, a, 28, ref28)

    spec = DataSpec("smooth", (3, 224, 224), tuple(map(str, range(1000))),
                    (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    model = resnet18().eval()
    g = torch.Generator().manual_seed(1)
    x = (F.avg_pool2d(torch.rand(n224, 3, 240, 240, generator=g), 17, 1) * 255).round()
    y = model(spec.normalize(x)).argmax(1).detach()
    a224 = make_method("gradient").attribute(model, spec.normalize(x), y)
    bench_setting("ResNet-18-style, 3x224x224", model, x, y, spec, a224, 224 * 8, ref224)
    bench_imputer(4 if not args.small else 2)


if __name__ == "__main__":
    main()
