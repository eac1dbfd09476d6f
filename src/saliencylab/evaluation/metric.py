"""What a metric is: a number per image that says how good a method's maps are, with what a
reader needs to read it (its direction, category and paper), as Quantus's `score_direction` and
`evaluation_category` do, on the metric itself.

A `MetricGroup` is what `metrics=` names: metrics computed together for each method, from the
same maps (ROAD gives MoRF, LeRF and their gap). Its `compute(context, maps)` returns a
`GroupResult`: the per-image values of each of its metrics, and optionally a curve and details
for the report's figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from torch import Tensor, nn

CATEGORIES = ("faithfulness", "randomisation", "robustness", "localisation", "complexity",
              "retraining")


@dataclass(frozen=True)
class Metric:
    name: str  # a column of the report and a `metric` of results.csv, e.g. road_morf
    title: str  # the report's header, e.g. "ROAD MoRF AUC"
    higher_is_better: bool
    category: str  # one of CATEGORIES
    paper: str  # where it is defined, e.g. "Rong et al. 2022"
    value_range: tuple[float, float] = (-math.inf, math.inf)  # what a per-image value can be

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


@dataclass(frozen=True)
class Context:
    """What a metric may use, for one method on one model: uint8 images `x` (raw pixels, on the
    model's device), labels `y`, the classes the maps explain (`target`), the data set's
    `spec`, the evaluation's settings and seed, and `explain(model, x_normalised, target)`,
    which makes that method's maps again (for a randomised model or a perturbed input), and
    the data's ground-truth `masks` of x (bool [N,1,H,W], True inside the region that carries
    the class; None when the data has none).

    `explain` is always called on the first len(x_normalised) images of x, in order (perturbed
    or not): a reference method (evaluation/references.py), whose maps are the masks, relies
    on it."""

    model: nn.Module
    x: Tensor
    y: Tensor
    target: Tensor
    spec: object
    settings: object
    seed: int
    method: str
    explain: Callable[[nn.Module, Tensor, Tensor], Tensor]
    masks: Tensor | None = None


@dataclass
class GroupResult:
    per_image: dict[str, np.ndarray]  # metric name -> its values, one per image measured
    curve: object = None  # JSON-able, for the report's curve figure
    details: object = None  # JSON-able, for the report's other figures (MPRT's layers)


@dataclass(frozen=True)
class CurvePlot:
    """How the report draws a group's curves: one panel per (key of the curve or None, title);
    a title may name settings, as "{insertion_canvas}"."""

    panels: tuple[tuple[str | None, str], ...]
    xlabel: str
    ylabel: str
    xs: Callable[[object, int], list[float]]  # (settings, points) -> x values


@dataclass(frozen=True)
class MetricGroup:
    name: str  # what `metrics=` names
    metrics: tuple[Metric, ...]
    # (context, maps [N,1,H,W]) -> GroupResult; None: not computed on the model here (ROAR is
    # read from a ROAR run)
    compute: Callable[[Context, Tensor], GroupResult] | None
    # settings -> how the report says it is computed
    description: Callable[[object], str] = lambda settings: ""
    # how many images a per-image value covers, given the settings and the images measured
    images: Callable[[object, int], int] = lambda settings, n: n
    curve_plot: CurvePlot | None = None
    curve_spec: Callable[[object], object] | None = None  # settings -> spec of one curve
    details_spec: object = None  # spec of one method's details (runs/contents.py)
    # model -> why the group cannot measure it, or None (MPRT: a model without parameters)
    not_applicable: Callable[[nn.Module, Tensor], str | None] = field(default=lambda model, x: None)
    # True: it compares maps with the data's ground-truth masks (Context.masks), and does not
    # apply to data without them
    needs_masks: bool = False
