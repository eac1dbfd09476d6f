"""Every metric of every method, for one model: the engine behind `saliencylab evaluate` and
`saliencylab.evaluate(...)`. Each method's maps are made once, on all the images, and every
metric group (registry.py) measures them.

The checks of a request (`Settings.validate`, `check_selection`, `applicable`) are shared by
`saliencylab.evaluate` and `saliencylab evaluate`, and run before any work.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from .. import attribution
from ..attribution import MethodOptions
from ..core import progress
from ..core.checks import check, check_choice, check_unique
from ..core.errors import NotApplicable, UserError, a_type
from ..core.modes import restoring_modes
from ..data.batches import predict, prepare_batch
from . import registry
from .classification import accuracy_of
from .metric import Context
from .references import NO_MASKS, REFERENCES, reference_explain, reference_maps
from .settings import Settings


def check_selection(methods, metrics, metric_names=None) -> None:
    """Methods and metric groups: lists of known names, at least one each, no repeats."""
    metric_names = tuple(registry.groups()) if metric_names is None else metric_names
    for what, names, choices, kind in (("methods", methods,
                                        attribution.method_names() + REFERENCES,
                                        "attribution method"),
                                       ("metrics", metrics, metric_names, "metric")):
        check(isinstance(names, (list, tuple)), f"{what} must be a list of names" + (
            f", such as [{names!r}], not the string {names!r}" if isinstance(names, str)
            else f", got {a_type(names)}"))
        check(len(names) > 0, f"{what} must name at least one {kind}")
        for name in names:
            check_choice(name, choices, kind)
        check_unique(names, what)


def explainer_for(name: str, options: MethodOptions, black, seed: int):
    return attribution.make_method(name, dataclasses.replace(options, seed=seed), black=black)


@restoring_modes
def applicable(model, x: torch.Tensor, y: torch.Tensor, spec, methods, metrics, *,
               options: MethodOptions = MethodOptions(), seed: int = 0, masks=None):
    """Which of `methods` and metric groups apply to `model`, tried on the first two uint8
    images of x (labels y) before any work: (methods, metrics, skipped), `skipped` mapping a
    method or metric to why it does not apply (a method that raises NotApplicable, such as a CAM
    method on a model without a conv layer; a group whose `not_applicable` says so, such as mprt
    on a model without parameters; a reference method or a group that `needs_masks` on data
    without `masks`). A method whose maps are malformed (shape, non-finite values) is a
    UserError naming it."""
    xb, yb = prepare_batch(x[:2], spec), y[:2]
    usable, skipped = [], {}
    for name in methods:
        if name in REFERENCES:
            if masks is None:
                skipped[name] = NO_MASKS
            else:
                usable.append(name)
            continue
        method = explainer_for(name, options, spec.black(x.device), seed)
        try:
            maps = method.attribute(model, xb, yb)
        except NotApplicable as e:  # a typo such as a wrong cam_layer path stays an error
            skipped[name] = str(e)
            continue
        attribution.check_maps(maps, xb, name)
        usable.append(name)
    groups = []
    for name in metrics:
        group = registry.group(name)
        why = (NO_MASKS if group.needs_masks and masks is None
               else group.not_applicable(model, xb))
        if why:
            skipped[name] = why
        else:
            groups.append(name)
    if not usable:
        raise UserError(f"no method applies to this model: {'; '.join(skipped.values())}")
    return usable, groups, skipped


@restoring_modes
def measure(model, x: torch.Tensor, y: torch.Tensor, spec, methods, metrics, *,
            options: MethodOptions = MethodOptions(), settings: Settings = Settings(),
            target: str = "predicted", seed: int = 0, show_progress: bool = False,
            masks=None) -> dict:
    """Every metric group of `metrics` (computed here: not ROAR) for every method, on uint8
    images x (labels y) with their ground-truth `masks` (bool [N,1,H,W] or None), on x's
    device. Returns {"accuracy": the model's on x, "per_image": {metric: {method: values}},
    "curves": {group: {method: curve}}, "details": {group: {method: details}}, "seconds":
    {group: seconds spent on it, all methods}}."""
    model.eval()
    predicted = predict(model, x, spec).argmax(1)
    explained = predicted if target == "predicted" else y
    black = spec.black(x.device)
    measured = [registry.group(name) for name in metrics if registry.group(name).compute]
    result = {"accuracy": accuracy_of(predicted, y), "per_image": {}, "curves": {}, "details": {},
              "seconds": {group.name: 0.0 for group in measured}}
    masks = None if masks is None else masks.to(x.device).bool()
    for name in progress.steps(methods, "methods", unit="method", enabled=show_progress):
        if name in REFERENCES:
            a = reference_maps(name, masks)
            explain = reference_explain(a)
        else:
            method = explainer_for(name, options, black, seed)
            a = attribution.attribute_dataset(method, model, x, explained, spec,
                                              batch_size=settings.batch_size, progress=False)

            def explain(model, xb, tb, name=name):  # a fresh method (and seed) per call
                return attribution.Checked(explainer_for(name, options, black, seed)).attribute(
                    model, xb, tb)

        ctx = Context(model, x, y, explained, spec, settings, seed, name, explain, masks)
        for group in measured:
            started = time.perf_counter()
            out = group.compute(ctx, a)
            result["seconds"][group.name] += time.perf_counter() - started
            for metric, values in out.per_image.items():
                result["per_image"].setdefault(metric, {})[name] = values
            if out.curve is not None:
                result["curves"].setdefault(group.name, {})[name] = out.curve
            if out.details is not None:
                result["details"].setdefault(group.name, {})[name] = out.details
    return result
