"""Every metric `evaluate` knows, with its metadata on it (metric.py): the built-in groups, the
ones registered in this process, and installed plugins.

Bring your own metric: `register_metric(name, compute, higher_is_better=..., category=...,
paper=...)` with `compute(context, maps) -> per-image values` (a group of one metric), or
`register_group(MetricGroup(...))` for several computed together; or install a package that
declares a MetricGroup in the `saliencylab.metrics` entry-point group (`name =
"package.module:GROUP"`), which worker processes then find too. A registered metric appears
in `evaluate`'s report and results.csv, like the built-in ones.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from torch import Tensor

from ..core.errors import UserError
from ..core.plugins import installed
from .complexity import COMPLEXITY
from .faithfulness import ACCURACY_DROP, DELETION, INSERTION, ROAD
from .localisation import LOCALISATION, MASK_IOU
from .metric import CATEGORIES, Context, GroupResult, Metric, MetricGroup
from .randomization import MPRT, RANDOM_LOGIT
from .robustness import LOCAL_LIPSCHITZ, SENSITIVITY

# ROAR retrains a model per method and threshold: `evaluate` reads it from a finished ROAR run
ROAR = MetricGroup("roar", (Metric("roar", "ROAR AUC", False, "retraining", "Hooker et al. 2019"),),
                   compute=None,
                   description=lambda s: "read from a finished ROAR run (`roar_run`, its own "
                                         "seeds): AUC of test accuracy (%) over the removed "
                                         "fraction, 0% included")
BUILTIN: dict[str, MetricGroup] = {g.name: g for g in (ROAD, DELETION, INSERTION, MPRT,
                                                        ACCURACY_DROP, ROAR, SENSITIVITY,
                                                        LOCAL_LIPSCHITZ, LOCALISATION,
                                                        COMPLEXITY, RANDOM_LOGIT, MASK_IOU)}
_REGISTERED: dict[str, MetricGroup] = {}
_PLUGINS_LOADED = False
ENTRY_POINT_GROUP = "saliencylab.metrics"


def register_group(group: MetricGroup, replace: bool = False) -> None:
    """Make `group` available to `evaluate` under `group.name` (its metrics' names must be new)."""
    if not isinstance(group, MetricGroup):
        raise UserError(f"register_group takes a MetricGroup, got a {type(group).__name__}")
    taken = {m.name for g in groups().values() if g.name != group.name for m in g.metrics}
    clash = [m.name for m in group.metrics if m.name in taken]
    if not replace and (group.name in groups() or clash):
        raise UserError(f"metric {(clash or [group.name])[0]!r} already exists: pick another name, "
                        f"or register with replace=True")
    for m in group.metrics:
        if m.category not in CATEGORIES:
            raise UserError(f"metric {m.name!r} has category {m.category!r}: choose one of "
                            f"{', '.join(CATEGORIES)}")
    _REGISTERED[group.name] = group


def register_metric(name: str, compute: Callable[[Context, Tensor], object], *,
                    higher_is_better: bool, category: str, paper: str, title: str | None = None,
                    value_range: tuple[float, float] = (-math.inf, math.inf),
                    replace: bool = False) -> MetricGroup:
    """One metric, `compute(context, maps) -> per-image values` (one per image of context.x),
    registered as a group of its own named `name`; returns the group."""
    def grouped(ctx: Context, a: Tensor) -> GroupResult:
        return GroupResult({name: np.asarray(compute(ctx, a), dtype=float).reshape(-1)})

    group = MetricGroup(name, (Metric(name, title or name, higher_is_better, category, paper,
                                      value_range),), grouped)
    register_group(group, replace=replace)
    return group


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for name, group in installed(ENTRY_POINT_GROUP, "metric"):
        if not isinstance(group, MetricGroup):
            raise UserError(f"the metric plugin {name!r} gives a {type(group).__name__}, not a "
                            f"saliencylab.evaluation.metric.MetricGroup")
        _REGISTERED.setdefault(group.name, group)


def groups() -> dict[str, MetricGroup]:
    """Every metric group: built-in, registered, and installed plugins."""
    _load_plugins()
    return {**BUILTIN, **{n: g for n, g in _REGISTERED.items() if n not in BUILTIN}}


def group(name: str) -> MetricGroup:
    found = groups().get(name)
    if found is None:
        raise UserError(f"unknown metric {name!r}: choose one of {', '.join(groups())}")
    return found


def metric(name: str) -> Metric:
    """The metric `name` (road_morf, ...), whichever group computes it."""
    for g in groups().values():
        for m in g.metrics:
            if m.name == name:
                return m
    raise UserError(f"unknown metric {name!r}")
