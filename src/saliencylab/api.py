"""`saliencylab.evaluate(model, x, y, ...)`: every faithfulness metric of every method on your
model and images, as a table, for a notebook."""

from __future__ import annotations

import numpy as np
import torch

from .attribution import MethodOptions
from .data import DataSpec
from .faithfulness import HIGHER_IS_BETTER, METRIC_GROUPS, Settings, measure
from .metrics import bootstrap_ci
from .report import markdown_table


class Table:
    """Rows of (method, metric, value, ci_low, ci_high, better), the value a mean over images
    and the CI a bootstrap over images; prints as markdown."""

    def __init__(self, rows: list[dict], accuracy: float):
        self.rows, self.accuracy = rows, accuracy  # accuracy: the model's, on x

    def value(self, method: str, metric: str) -> float:
        return next(r["value"] for r in self.rows if r["method"] == method and r["metric"] == metric)

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
    for `model` on images `x` [N,C,H,W] with labels `y`, on x's device.

    Without `spec`, x is what the model takes (already normalised) and the removed pixels are
    filled in that space; with a saliencylab `DataSpec`, x are raw uint8 images. The baseline of
    IG, DeepLift and occlusion is the black image with a spec, zeros without (override with
    `options`)."""
    classes = classes or int(y.max()) + 1
    if spec is None:
        spec = identity_spec(x, classes)
        x = x.float() * 255  # raw pixels under the identity spec
        options = options or MethodOptions(baseline="zeros")
    options = options or MethodOptions()
    result = measure(model, x, y, spec, list(methods), list(metrics), options=options,
                     settings=settings, target=target, seed=seed)
    rows = []
    for group in metrics:
        for metric in METRIC_GROUPS[group]:
            for method, values in result["per_image"].get(metric, {}).items():
                low, high = bootstrap_ci(values, seed=seed)
                rows.append({"method": method, "metric": metric, "value": float(np.mean(values)),
                             "ci_low": low, "ci_high": high,
                             "better": "higher" if HIGHER_IS_BETTER[metric] else "lower"})
    return Table(rows, result["accuracy"])
