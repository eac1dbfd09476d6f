"""How concentrated a map is (docs/protocols.md §5), from |a| per image.

| metric       | per image                                                              | better |
|--------------|------------------------------------------------------------------------|--------|
| `sparseness` | Gini index Σ_k (2k − n − 1) c_(k) / (n Σ_k c_(k)), c = |a|/max|a| + 1e-7 sorted ascending | higher |
| `complexity` | entropy −Σ_i p_i ln(p_i + 1e-12), p = |a| / Σ|a|                        | lower  |

Sparseness: Chalasani et al. 2020 (ICML) with the Gini index of Hurley & Rickard 2009, as
Quantus 0.6.0 computes it (sparseness.py:236-265): abs, divided by the largest value, 1e-7
added to every entry, n = all pixels; 0 for a constant map, 1 − 1/n (up to the 1e-7) for a map
with one nonzero pixel. Quantus divides by the largest value of the whole batch; we divide each
map by its own (the Gini index itself is scale-invariant; only the 1e-7 sees the scale).
Complexity: Bhatt et al. 2020 (IJCAI) §4, the entropy of the fractional contributions, as
Quantus (complexity.py:231-256); ln n for a constant map, 0 for one nonzero pixel (and for an
all-zero map).
"""

import math

import torch
from torch import Tensor

from .metric import Context, GroupResult, Metric, MetricGroup


def gini(a: Tensor) -> Tensor:
    c = a.flatten(1).double().abs()
    c = c / c.amax(1, keepdim=True).clamp(min=torch.finfo(c.dtype).tiny) + 1e-7
    c, n = torch.sort(c, dim=1).values, c.shape[1]
    k = torch.arange(1, n + 1, dtype=c.dtype, device=c.device)
    return ((2 * k - n - 1) * c).sum(1) / (n * c.sum(1))


def entropy(a: Tensor) -> Tensor:
    m = a.flatten(1).double().abs()
    p = m / m.sum(1, keepdim=True).clamp(min=torch.finfo(m.dtype).tiny)
    return -(p * torch.log(p + 1e-12)).sum(1)


def _complexity(ctx: Context, a: Tensor) -> GroupResult:
    return GroupResult({"sparseness": gini(a).cpu().numpy(),
                        "complexity": entropy(a).cpu().numpy()})


COMPLEXITY = MetricGroup(
    "complexity",
    (Metric("sparseness", "sparseness (Gini)", True, "complexity", "Chalasani et al. 2020",
            (0.0, 1.0)),
     Metric("complexity", "complexity (entropy)", False, "complexity", "Bhatt et al. 2020",
            (0.0, math.inf))),
    _complexity,
    description=lambda s: "how concentrated |a| is: the Gini index of its values (sparseness) "
                          "and the entropy of |a| / Σ|a| (complexity)")
