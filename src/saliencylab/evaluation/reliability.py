"""How far a metric can be trusted, as MetaQuantus scores it (Hedström et al. 2023, TMLR, "The
meta-evaluation problem in explainable AI", §4; code: annahedstroem/MetaQuantus @ 84bdc2f,
meta_evaluation.py:589-835, perturbation_tests/mpt.py:112-196 and ipt.py:105-188).

A metric is measured again, for every method, after a perturbation of the model's weights
(each parameter multiplied element-wise by N(1, σ²), buffers untouched; mpt.py) or of the input
(uniform noise added to every pixel; ipt.py), `perturbations` times, each seeded.

- noise resilience: after a minor perturbation (σ = 0.001; input noise of one grey level),
  on the images whose predicted class is unchanged, the scores should not move:
  IAC_NR = the p-value of the two-sided Wilcoxon signed-rank test (zsplit) between the per-image
  scores before and after, averaged over methods and perturbations; IEC_NR = the share of
  places at which the methods' ranking per image is the same before and after.
- reactivity (MetaQuantus's adversary reactivity): after a disruptive perturbation (σ = 2, the
  MNIST setting of configs.py:603-616; input noise spanning the whole pixel range), on the
  images whose class changed, the scores should move, and for the worse: IAC_AR = 1 − p;
  IEC_AR = the share of (method, image) whose score got worse (the paper's rule; the code at
  meta_evaluation.py:787 tests a non-empty string, which inverts it for higher-is-better
  metrics).
Resilience = (IAC_NR + IEC_NR) / 2 and reactivity = (IAC_AR + IEC_AR) / 2, each averaged over
the two kinds of perturbation, in [0, 1], higher better. As in MetaQuantus, a test that cannot
be run (no image qualifies, too few) counts as p = 0.

Our inputs are uint8 pixels, so input noise is in pixel units: MetaQuantus's 0.001 (in the
model's normalised units) is below one grey level, and we use one (1/255); its adversary's 5.0
spans the whole range, as our 1.0 does. Perturbed images are rounded and clipped to 0..255.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from scipy.stats import wilcoxon
from torch import Tensor, nn

from ..core.device import generator
from ..data.batches import predict
from .measure import measure
from .references import REFERENCES
from .registry import metric

MINOR = {"model": 0.001, "input": 1 / 255}
DISRUPTIVE = {"model": 2.0, "input": 1.0}


def perturbation_seed(seed: int, kind: str, disruptive: bool, k: int) -> int:
    return int(np.random.SeedSequence([seed, len(kind), int(disruptive), k]).generate_state(1)[0])


def perturbed_model(model: nn.Module, std: float, seed: int) -> nn.Module:
    """A copy of `model` with every parameter multiplied element-wise by N(1, std²)."""
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for i, p in enumerate(noisy.parameters()):
            g = generator(p.device, seed + i)
            p.mul_(1 + std * torch.randn(p.shape, generator=g, device=p.device, dtype=p.dtype))
    return noisy


def perturbed_inputs(x: Tensor, radius: float, seed: int) -> Tensor:
    """uint8 images plus U(−radius, radius) · 255 per pixel, rounded and clipped."""
    g = generator(x.device, seed)
    noise = (torch.rand(x.shape, generator=g, device=x.device) * 2 - 1) * radius * 255
    return (x.float() + noise).round().clamp(0, 255).to(torch.uint8)


def p_value(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p (zsplit): 1 when nothing moved, 0 when it cannot run."""
    if len(before) == 0:
        return 0.0
    if np.allclose(before, after, rtol=0, atol=1e-12):
        return 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(wilcoxon(before, after, zero_method="zsplit").pvalue)
    except ValueError:
        return 0.0
    return p if np.isfinite(p) else 0.0


def ranking_agreement(before: np.ndarray, after: np.ndarray) -> float:
    """[methods, images] scores -> the mean over images of the share of positions at which the
    argsort over methods is the same (IEC_NR); 0 with no image."""
    if before.shape[1] == 0:
        return 0.0
    same = np.argsort(before, axis=0, kind="stable") == np.argsort(after, axis=0, kind="stable")
    return float(same.mean())


def scores(before: np.ndarray, after: list[np.ndarray], keep: list[np.ndarray],
           higher_is_better: bool, disruptive: bool) -> tuple[float, float]:
    """(IAC, IEC) of one metric and one kind of perturbation: `before` [methods, images],
    `after` one [methods, images] per perturbation, `keep` which images count for each."""
    iac, iec = [], []
    for moved, chosen in zip(after, keep):
        q, q_hat = before[:, chosen], moved[:, chosen]
        ps = [p_value(a, b) for a, b in zip(q, q_hat)]
        iac += [1 - p for p in ps] if disruptive else ps
        if disruptive:
            worse = q_hat < q if higher_is_better else q_hat > q
            iec.append(float(worse.mean()) if worse.size else 0.0)
        else:
            iec.append(ranking_agreement(q, q_hat))
    return float(np.mean(iac)), float(np.mean(iec))


def measure_reliability(model: nn.Module, x: Tensor, y: Tensor, spec, methods, metrics, *,
                        perturbations: int, seed: int, masks=None, **measuring) -> dict:
    """metric -> {"resilience", "reactivity"} of every metric of the groups `metrics`, from the
    real methods' scores (not the oracle references, whose maps ignore model and input) on
    uint8 images x, before and after `perturbations` perturbations of each kind and strength;
    `measuring`: measure's options, settings and target."""
    methods = [m for m in methods if m not in REFERENCES]
    base = measure(model, x, y, spec, methods, metrics, seed=seed, masks=masks, **measuring)
    predicted = predict(model, x, spec).argmax(1)
    graded = {"resilience": {}, "reactivity": {}}
    for kind in ("model", "input"):
        for disruptive in (False, True):
            level = (DISRUPTIVE if disruptive else MINOR)[kind]
            afters, keeps = [], []
            for k in range(perturbations):
                s = perturbation_seed(seed, kind, disruptive, k)
                m, xs = ((perturbed_model(model, level, s), x) if kind == "model"
                         else (model, perturbed_inputs(x, level, s)))
                afters.append(measure(m, xs, y, spec, methods, metrics, seed=seed, masks=masks,
                                      **measuring)["per_image"])
                changed = (predict(m, xs, spec).argmax(1) != predicted).cpu().numpy()
                keeps.append(changed if disruptive else ~changed)
            for name, by_method in base["per_image"].items():
                before = np.stack([by_method[m] for m in methods])
                after = [np.stack([r[name][m] for m in methods]) for r in afters]
                keep = [chosen[:before.shape[1]] for chosen in keeps]
                iac, iec = scores(before, after, keep, metric(name).higher_is_better,
                                  disruptive)
                graded["reactivity" if disruptive else "resilience"].setdefault(name, []).append(
                    (iac + iec) / 2)
    return {name: {what: float(np.mean(graded[what][name])) for what in graded}
            for name in base["per_image"]}
