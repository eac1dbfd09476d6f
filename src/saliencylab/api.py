"""`saliencylab.evaluate(model, x, y, ...)`: every faithfulness metric of every method on your
model and images, as a table, for a notebook; `saliencylab.explain_func(name)`: one of our
methods as a Quantus `explain_func`."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from .attribution import Checked, MethodOptions, make_method
from .core.checks import check, check_choice
from .core.errors import UserError, a_type
from .core.modes import eval_mode
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

    def to_dict(self) -> dict:
        """Everything the table holds, as plain Python values (a copy): {"rows": [{"method",
        "metric", "value", "ci_low", "ci_high", "better"}, ...], "accuracy", "skipped"}."""
        return {"rows": [dict(r) for r in self.rows], "accuracy": float(self.accuracy),
                "skipped": dict(self.skipped)}

    def to_pandas(self):
        """The rows as a pandas DataFrame (columns method, metric, value, ci_low, ci_high,
        better), with `accuracy` and `skipped` in its `attrs`."""
        try:
            import pandas  # lazy: optional dependency, needed only here
        except ImportError:
            raise UserError("Table.to_pandas needs pandas, which is not installed: pip install "
                            "pandas, or use Table.to_dict()") from None
        frame = pandas.DataFrame(self.rows, columns=["method", "metric", "value", "ci_low",
                                                     "ci_high", "better"])
        frame.attrs.update(accuracy=float(self.accuracy), skipped=dict(self.skipped))
        return frame

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


def evaluate(model: torch.nn.Module, x, y=None, *,
             methods=("gradient", "integrated_gradients", "smoothgrad_sq", "random"),
             metrics=("road", "deletion", "insertion", "mprt", "accuracy_drop"),
             spec: DataSpec | None = None, options: MethodOptions | None = None,
             settings: Settings = Settings(), target: str = "predicted", seed: int = 0,
             classes: int | None = None) -> Table:
    """Every metric (groups: road, deletion, insertion, mprt, accuracy_drop) of every method
    for `model` on images `x` [N,C,H,W] with labels `y` [N], on x's device; or, with `y`
    left out, on a torch `Dataset` of (x [C,H,W], class index) items or a `DataLoader` of
    (x [B,C,H,W], y [B]) batches as `x`, read once and whole (cut a large one with
    torch.utils.data.Subset) onto the model's device.

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
    if inputs.is_dataset(x):
        if y is not None:
            raise UserError(f"y must be left out when x is a {type(x).__name__}: the labels "
                            f"come from its (x, y) pairs")
        x, y = (t.to(inputs.device_of(model)) for t in inputs.examples(x))
    elif y is None:
        raise UserError("y is missing: give one class index per image of x, or pass a torch "
                        "Dataset or DataLoader of (x, y) pairs as x")
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


def explain_func(method_name: str, options: MethodOptions | None = None,
                 **overrides) -> Callable:
    """Our method `method_name` as a Quantus explain_func: `f(model, inputs, targets, **kwargs)`
    -> maps [B, 1, H, W] for the images `inputs` [B, C, H, W] (the model's normalised input) and
    class indices `targets` [B]. `options` and `overrides` are make_method's (a MethodOptions
    field by keyword, `black=`, `baseline_image=`); the baseline is zeros unless `black` is
    given. Numpy in (Quantus's arrays, as float32), numpy out; a torch tensor in, a tensor out
    on its device. The maps are computed on the model's device, in eval mode, each module's mode
    restored after; Quantus's `device` keyword is accepted and the model's device used."""
    if options is None:
        options = MethodOptions(baseline="zeros" if overrides.get("black") is None else "black")
    method = Checked(make_method(method_name, options, **overrides))

    def explain(model, inputs, targets, device=None, **kwargs):  # Quantus's names
        return quantus_maps(method, model, inputs, targets, kwargs)
    return explain


def quantus_maps(method: Checked, model, images, targets, unknown: dict):
    """The maps of `method` for explain_func's call, checked like `evaluate`'s arguments."""
    if unknown:
        raise UserError(f"the explain_func of {method.name!r} got unknown keyword(s) "
                        f"{', '.join(unknown)}: give the method's options to "
                        f"saliencylab.explain_func({method.name!r}, ...)")
    inputs.check_module(model)
    as_numpy = not torch.is_tensor(images)
    x = inputs.images(images, what="inputs")
    x = x.float() if as_numpy else x  # numpy's float64 to the float32 a model takes
    target = inputs.labels(targets, len(x), what="targets")
    on = inputs.device_of(model)
    with logits_output(model), eval_mode(model):
        x, target = x.to(on), target.to(on)
        inputs.check_labels(target, inputs.logits(model, x[:2]).shape[1], "targets")
        maps = method.attribute(model, x, target)
    return maps.cpu().numpy() if as_numpy else maps.to(images.device)
