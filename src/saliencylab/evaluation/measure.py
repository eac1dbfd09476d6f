"""Every faithfulness verdict about every method, for one model: the engine behind
`saliencylab evaluate` and `saliencylab.evaluate(...)`.

| metric          | what                                                              | better |
|-----------------|-------------------------------------------------------------------|--------|
| `road_morf`     | ROAD, most relevant first removed: AUC of accuracy (%) over 10–90% | lower  |
| `road_lerf`     | ROAD, least relevant first: the same AUC                           | higher |
| `road_gap`      | LeRF − MoRF                                                        | higher |
| `deletion`      | RISE deletion: AUC of the explained class's probability            | lower  |
| `insertion`     | RISE insertion into a blurred canvas: the same AUC                 | higher |
| `mprt`          | Spearman of |a| after randomising every layer (cascading)           | lower  |
| `accuracy_drop` | the SGT/SMOOT accuracy-drop AUC (top x% removed, x = 0..100%)      | lower  |

Each value is the mean over images of a per-image value (per-image areas under 0/1
correctness curves for the accuracy-based metrics), so a bootstrap over images gives its CI.
ROAR (remove and retrain) comes from an existing ROAR run: see protocols/evaluate.py.

The checks of a request (`Settings.validate`, `check_selection`, `applicable`) are shared by
`saliencylab.evaluate` and `saliencylab evaluate`, and run before any work.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import attribution
from ..attribution import MethodOptions
from ..core.checks import check, check_choice, check_unique
from ..core.errors import NotApplicable, UserError, a_type
from ..core.modes import restoring_modes
from ..removal import correctness, deletion_insertion, rank_pixels, road
from .randomization import NO_LAYERS, layers_top_down, mprt
from .settings import Settings

METRIC_GROUPS = {"road": ("road_morf", "road_lerf", "road_gap"), "deletion": ("deletion",),
                 "insertion": ("insertion",), "mprt": ("mprt",),
                 "accuracy_drop": ("accuracy_drop",), "roar": ("roar",)}
HIGHER_IS_BETTER = {"road_morf": False, "road_lerf": True, "road_gap": True, "deletion": False,
                    "insertion": True, "mprt": False, "accuracy_drop": False, "roar": False}


def check_selection(methods, metrics, metric_names=tuple(METRIC_GROUPS)) -> None:
    """Methods and metric groups: lists of known names, at least one each, no repeats."""
    for what, names, choices, kind in (("methods", methods, attribution.method_names(),
                                        "attribution method"),
                                       ("metrics", metrics, metric_names, "metric")):
        check(isinstance(names, (list, tuple)), f"{what} must be a list of names" + (
            f", such as [{names!r}], not the string {names!r}" if isinstance(names, str)
            else f", got {a_type(names)}"))
        check(len(names) > 0, f"{what} must name at least one {kind}")
        for name in names:
            check_choice(name, choices, kind)
        check_unique(names, what)


def per_image_auc(right: torch.Tensor, percents) -> np.ndarray:
    """Trapezoid area of each image's 0/1 correctness (in %) over x = percents / 100."""
    xs = torch.tensor([p / 100 for p in percents], dtype=torch.float64)
    return torch.trapezoid(100.0 * right.double().cpu(), xs, dim=1).numpy()


def explainer_for(name: str, options: MethodOptions, black, seed: int):
    import dataclasses

    return attribution.make_method(name, dataclasses.replace(options, seed=seed), black=black)


@restoring_modes
def applicable(model, x: torch.Tensor, y: torch.Tensor, spec, methods, metrics, *,
               options: MethodOptions = MethodOptions(), seed: int = 0):
    """Which of `methods` and metric groups apply to `model`, tried on the first two uint8
    images of x (labels y) before any work: (methods, metrics, skipped), `skipped` mapping a
    method or metric to why it does not apply (a method that raises NotApplicable, such as a CAM
    method on a model without a conv layer; mprt on a model without parameters). A method
    whose maps are malformed (shape, non-finite values) is a UserError naming it."""
    from ..data.batches import prepare_batch

    xb, yb = prepare_batch(x[:2], spec), y[:2]
    usable, skipped = [], {}
    for name in methods:
        method = explainer_for(name, options, spec.black(x.device), seed)
        try:
            maps = method.attribute(model, xb, yb)
        except NotApplicable as e:  # a typo such as a wrong cam_layer path stays an error
            skipped[name] = str(e)
            continue
        attribution.check_maps(maps, xb, name)
        usable.append(name)
    groups = list(metrics)
    if "mprt" in groups and not layers_top_down(model, xb):
        groups.remove("mprt")
        skipped["mprt"] = NO_LAYERS
    if not usable:
        raise UserError(f"no method applies to this model: {'; '.join(skipped.values())}")
    return usable, groups, skipped


@restoring_modes
def measure(model, x: torch.Tensor, y: torch.Tensor, spec, methods, metrics, *,
            options: MethodOptions = MethodOptions(), settings: Settings = Settings(),
            target: str = "predicted", seed: int = 0, progress: bool = False) -> dict:
    """Run every metric of the `metrics` groups for every method on uint8 images x (labels y),
    on x's device. Returns {"per_image": {metric: {method: array}}, "curves": {...},
    "mprt": {method: {mode: [{"layer", similarity: mean}]}}}."""
    from ..core.progress import steps
    from ..data.batches import predict

    model.eval()
    wanted = {m for group in metrics for m in METRIC_GROUPS[group]}
    predicted = predict(model, x, spec).argmax(1)
    explained = predicted if target == "predicted" else y
    black = spec.black(x.device)
    per_image = {m: {} for m in wanted if m != "roar"}
    curves: dict = {}
    randomisation: dict = {}
    for name in steps(methods, "methods", unit="method", enabled=progress):
        method = explainer_for(name, options, black, seed)
        a = attribution.attribute_dataset(method, model, x, explained, spec,
                                          batch_size=settings.batch_size, progress=False)
        order = rank_pixels(a)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        if wanted & {"road_morf", "road_lerf", "road_gap"}:
            right = road(model, x, y, spec, a, settings.road_percents,
                         batch_size=settings.batch_size, seed=seed)
            morf = per_image_auc(right["morf"], settings.road_percents)
            lerf = per_image_auc(right["lerf"], settings.road_percents)
            per_image["road_morf"][name], per_image["road_lerf"][name] = morf, lerf
            per_image["road_gap"][name] = lerf - morf
            curves.setdefault("road", {})[name] = {
                k: (100 * v.float().mean(0)).tolist() for k, v in right.items()}
        if wanted & {"deletion", "insertion"}:
            causal = deletion_insertion(model, x, explained, spec, order, step=settings.deletion_step,
                                        canvas=settings.insertion_canvas,
                                        batch_size=settings.batch_size)
            for kind in ("deletion", "insertion"):
                if kind in wanted:
                    per_image[kind][name] = causal[f"{kind}_auc"].cpu().numpy()
                    curves.setdefault(kind, {})[name] = causal[kind].mean(0).tolist()
        if "accuracy_drop" in wanted:
            right = correctness(model, x, y, spec, order, settings.drop_percents,
                                settings.drop_fill, batch_size=settings.batch_size,
                                generator=generator)
            per_image["accuracy_drop"][name] = per_image_auc(right, settings.drop_percents)
            curves.setdefault("accuracy_drop", {})[name] = (100 * right.float().mean(0)).tolist()
        if "mprt" in wanted:
            n = min(settings.mprt_images, len(x))
            xs, ts = spec.normalize(x[:n]), explained[:n]
            explain = lambda model, xb, tb: attribution.Checked(  # noqa: E731  fresh seed per call
                explainer_for(name, options, black, seed)).attribute(model, xb, tb)
            rows = {mode: mprt(model, xs, ts, explain, mode, seed) for mode in ("cascading", "independent")}
            per_image["mprt"][name] = rows["cascading"][-1]["spearman_abs"]
            randomisation[name] = {mode: [{"layer": r["layer"], **{k: float(np.mean(r[k])) for k in
                                                                    ("spearman_abs", "spearman", "ssim")}}
                                          for r in mode_rows] for mode, mode_rows in rows.items()}
    return {"per_image": per_image, "curves": curves, "mprt": randomisation,
            "accuracy": float((predicted == y).float().mean())}
