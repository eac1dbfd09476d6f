"""`saliencylab.evaluate(model, x, y, ...)`: every faithfulness metric of every method on your
model and images, as a table, for a notebook."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .attribution import MethodOptions
from .core.checks import check, check_choice
from .core.errors import UserError, a_type
from .data import DataSpec
from .evaluation import registry
from .evaluation.measure import applicable, check_selection, measure
from .evaluation.settings import Settings
from .evaluation.statistics import bootstrap_ci
from .models import inputs
from .models.outputs import logits_output
from .runs.report import markdown_table


def api_metrics() -> tuple[str, ...]:
    """The metric groups computed on the model itself (ROAR retrains: not here)."""
    return tuple(name for name, group in registry.groups().items() if group.compute)


class Table:
    """Rows of (method, metric, value, ci_low, ci_high, better), the value a mean over images
    and the CI a bootstrap over images; prints as markdown. `skipped` maps each method or
    metric that does not apply to the model to why."""

    def __init__(self, rows: list[dict], accuracy: float, skipped: dict[str, str] | None = None):
        self.rows, self.accuracy = rows, accuracy  # accuracy: the model's, on x
        self.skipped = skipped or {}

    def value(self, method: str, metric: str) -> float:
        for r in self.rows:
            if r["method"] == method and r["metric"] == metric:
                return r["value"]
        pairs = ", ".join(sorted({f"{r['method']}/{r['metric']}" for r in self.rows}))
        raise UserError(f"the table has no value for method {method!r} and metric {metric!r}"
                        f"{' (' + self.skipped[method] + ')' if method in self.skipped else ''}: "
                        f"it has {pairs or 'no rows'}")

    def to_markdown(self) -> str:
        return markdown_table(["method", "metric", "value", "95% CI", "better"],
                              [[r["method"], r["metric"], f"{r['value']:.4g}",
                                f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]", r["better"]]
                               for r in self.rows])

    __repr__ = __str__ = to_markdown

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def identity_spec(x: torch.Tensor, classes: int) -> DataSpec:
    """A spec with mean 0 and std 1: `normalize(255 x)` gives back x, so the model's own inputs,
    scaled by 255, stand for raw pixels (ROAD's noise of 0.01 is then 0.01 of the model's input
    units), and the `mean` fill uses 0."""
    c = x.shape[1]
    return DataSpec("user", tuple(x.shape[1:]), tuple(map(str, range(classes))), (0.0,) * c,
                    (1.0,) * c)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
             methods=("gradient", "integrated_gradients", "smoothgrad_sq", "random"),
             metrics=("road", "deletion", "insertion", "mprt", "accuracy_drop"),
             spec: DataSpec | None = None, options: MethodOptions | None = None,
             settings: Settings = Settings(), target: str = "predicted", seed: int = 0,
             classes: int | None = None) -> Table:
    """Every metric (groups: road, deletion, insertion, mprt, accuracy_drop) of every method
    for `model` on images `x` [N,C,H,W] with labels `y` [N], on x's device.

    Without `spec`, x is what the model takes (already normalised float) and the removed pixels
    are filled in that space; with a saliencylab `DataSpec`, x are raw pixels (uint8). x and y
    may be torch tensors or numpy arrays (y also a list of ints). The baseline of IG, DeepLift
    and occlusion is the black image with a spec, zeros without (override with `options`).

    Every argument is checked before any work, each failure one UserError naming it: x's
    shape, dtype and finiteness, y's length and range against the model's number of logits
    (`classes`, if given, must equal it), the model's output (a tensor, a tuple or list whose
    first element is one, a dict with "logits" or an object with .logits), `settings`,
    `target`, `seed`,
    the names of methods and metrics (lists, no repeats), and each method's maps on two images.
    A method that cannot apply to the model (e.g. gradcam++ on a model without a conv layer),
    and mprt on a model without parameters, is skipped with a warning (`Table.skipped`). The
    model's train/eval mode is restored afterwards, module by module."""
    if options is None:
        options = MethodOptions(baseline="black" if spec is not None else "zeros")
    check(isinstance(options, MethodOptions), f"options must be a MethodOptions, got a "
                                              f"{type(options).__name__}")
    options.validate()
    check(isinstance(settings, Settings), f"settings must be a saliencylab.evaluation.Settings "
                                          f"(Settings(batch_size=...)), got {a_type(settings)}")
    settings.validate()
    check_choice(target, ("predicted", "label"), "target")
    check(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32,
          f"seed must be a whole number in 0..2**32 - 1, got {seed!r}")
    check_selection(methods, metrics, api_metrics())
    inputs.check_module(model)
    with logits_output(model):  # any output convention, only while we measure
        x, y, spec = check_request(model, x, y, spec, classes)
        methods, metrics, skipped = applicable(model, x, y, spec, methods, metrics, options=options,
                                               seed=seed)
        for what, reason in skipped.items():
            warnings.warn(f"saliencylab.evaluate: {what} skipped: {reason}", stacklevel=2)
        result = measure(model, x, y, spec, methods, metrics, options=options,
                         settings=settings, target=target, seed=seed)
        rows = []
        for group in metrics:
            for metric in registry.group(group).metrics:
                for method, values in result["per_image"].get(metric.name, {}).items():
                    low, high = bootstrap_ci(values, seed=seed)
                    rows.append({"method": method, "metric": metric.name,
                                 "value": float(np.mean(values)), "ci_low": low, "ci_high": high,
                                 "better": metric.direction})
        return Table(rows, result["accuracy"], skipped)


def check_request(model, x, y, spec: DataSpec | None, classes: int | None):
    """The model, images and labels checked against each other: (x as raw pixels, y, the spec
    they are measured under)."""
    inputs.check_module(model)
    check(spec is None or isinstance(spec, DataSpec),
          f"spec must be a saliencylab DataSpec (ds.spec) or None, got {a_type(spec)}")
    x = inputs.images(x, spec)
    y = inputs.labels(y, len(x))
    first = x[:2] if spec is None else spec.normalize(x[:2])
    found = inputs.logits(model, first).shape[1]
    check(classes is None or (isinstance(classes, int) and classes == found),
          f"classes is {classes!r}, but the model gives {found} logits per image")
    inputs.check_labels(y, found)
    if spec is None:
        spec = identity_spec(x, found)
        x = x.float() * 255  # raw pixels under the identity spec
    return x, y.to(x.device), spec
