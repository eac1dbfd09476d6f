"""Metrics shared by the protocols."""

import math


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value; NaN for none)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def kendall_tau(first, second) -> float:
    """Kendall's tau-b between two scorings of the same items (e.g. methods ranked by two
    metrics), -1 (reversed) .. 1 (the same order); NaN when either scoring is constant."""
    from scipy.stats import kendalltau

    return float(kendalltau(list(first), list(second)).statistic)


def bootstrap_ci(values, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of per-image `values`."""
    import numpy as np

    values = np.asarray(list(values), dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
