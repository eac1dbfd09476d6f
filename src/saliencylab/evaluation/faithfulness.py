"""The faithfulness metrics of `evaluate`, each the mean over images of a per-image value (per-image
areas under 0/1 correctness curves for the accuracy-based ones), so that a bootstrap over images
gives its CI. Settings: evaluation/settings.py; the curves: removal/curves.py.

| group           | metrics                          | per image                                   |
|-----------------|----------------------------------|---------------------------------------------|
| `road`          | road_morf, road_lerf, road_gap   | AUC of correctness (%) over 10–90% removed, most (MoRF) or least (LeRF) relevant first, noisy linear imputation |
| `deletion`      | deletion                         | AUC of the explained class's probability as pixels are deleted (to the data set's mean) |
| `insertion`     | insertion                        | the same as pixels are inserted into a blurred canvas |
| `accuracy_drop` | accuracy_drop                    | AUC of correctness (%) over 0–100% removed, the SGT authors' fill |
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.contents import Items, Number
from ..core.device import generator
from ..removal import correctness, deletion, insertion, rank_pixels, road
from .metric import Context, CurvePlot, GroupResult, Metric, MetricGroup


def per_image_auc(right: torch.Tensor, percents) -> np.ndarray:
    """Trapezoid area of each image's 0/1 correctness (in %) over x = percents / 100."""
    xs = torch.tensor([p / 100 for p in percents], dtype=torch.float64)
    return torch.trapezoid(100.0 * right.double().cpu(), xs, dim=1).numpy()


def percent_curve(right: torch.Tensor) -> list[float]:
    """The accuracy (%) at each point of 0/1 correctness curves [N, points]."""
    return (100 * right.float().mean(0)).tolist()


def _road(ctx: Context, a: torch.Tensor) -> GroupResult:
    s = ctx.settings
    right = road(ctx.model, ctx.x, ctx.y, ctx.spec, a, s.road_percents, batch_size=s.batch_size,
                 seed=ctx.seed)
    morf, lerf = per_image_auc(right["morf"], s.road_percents), per_image_auc(right["lerf"], s.road_percents)
    return GroupResult({"road_morf": morf, "road_lerf": lerf, "road_gap": lerf - morf},
                       {kind: percent_curve(v) for kind, v in right.items()})


def _deletion(ctx: Context, a: torch.Tensor) -> GroupResult:
    s = ctx.settings
    curve, area = deletion(ctx.model, ctx.x, ctx.target, ctx.spec, rank_pixels(a),
                           step=s.deletion_pixels(a.shape[-2] * a.shape[-1]),
                           substrate=s.deletion_substrate, batch_size=s.batch_size)
    return GroupResult({"deletion": area.cpu().numpy()}, curve.mean(0).tolist())


def _insertion(ctx: Context, a: torch.Tensor) -> GroupResult:
    s = ctx.settings
    curve, area = insertion(ctx.model, ctx.x, ctx.target, ctx.spec, rank_pixels(a),
                            step=s.deletion_pixels(a.shape[-2] * a.shape[-1]),
                            canvas=s.insertion_canvas, batch_size=s.batch_size)
    return GroupResult({"insertion": area.cpu().numpy()}, curve.mean(0).tolist())


def _accuracy_drop(ctx: Context, a: torch.Tensor) -> GroupResult:
    s = ctx.settings
    right = correctness(ctx.model, ctx.x, ctx.y, ctx.spec, rank_pixels(a), s.drop_percents,
                        s.drop_fill, batch_size=s.batch_size,
                        generator=generator(ctx.x.device, ctx.seed))
    return GroupResult({"accuracy_drop": per_image_auc(right, s.drop_percents)}, percent_curve(right))


def _fractions(settings, points: int) -> list[float]:
    """x of a deletion or insertion curve: the fraction of the pixels, in %."""
    return list(np.linspace(0, 100, points))


ROAD_RANGE, PROBABILITY = (0.0, 100.0), (0.0, 1.0)
SUBSTRATE_NAMES = {"mean": "the data set's mean pixel (RISE)", "black": "black"}
ROAD = MetricGroup(
    "road",
    (Metric("road_morf", "ROAD MoRF AUC", False, "faithfulness", "Rong et al. 2022", ROAD_RANGE),
     Metric("road_lerf", "ROAD LeRF AUC", True, "faithfulness", "Rong et al. 2022", ROAD_RANGE),
     Metric("road_gap", "ROAD LeRF − MoRF", True, "faithfulness", "Rong et al. 2022",
            (-100.0, 100.0))),
    _road,
    description=lambda s: f"accuracy (%) after removing {s.road_percents[0]:g}–"
                          f"{s.road_percents[-1]:g}% of the pixels, most (MoRF) or least (LeRF) "
                          f"relevant first, with noisy linear imputation, no retraining; AUC over "
                          f"the removed fraction",
    curve_plot=CurvePlot((("morf", "ROAD, most relevant removed first"),
                          ("lerf", "ROAD, least relevant removed first")),
                         "% of pixels removed", "test accuracy (%)",
                         lambda settings, points: list(settings.road_percents)),
    curve_spec=lambda s: {kind: Items(Number(0, 100), len(s.road_percents))
                          for kind in ("morf", "lerf")})
DELETION = MetricGroup(
    "deletion",
    (Metric("deletion", "deletion AUC", False, "faithfulness", "Petsiuk et al. 2018", PROBABILITY),),
    _deletion,
    description=lambda s: f"probability of the explained class as pixels are deleted to "
                          f"{SUBSTRATE_NAMES[s.deletion_substrate]}, most salient first; AUC over "
                          f"the fraction deleted",
    curve_plot=CurvePlot(((None, "deletion (to {deletion_substrate})"),), "% of pixels removed",
                         "probability of the explained class", _fractions),
    curve_spec=lambda s: Items(Number(0, 1)))
INSERTION = MetricGroup(
    "insertion",
    (Metric("insertion", "insertion AUC", True, "faithfulness", "Petsiuk et al. 2018", PROBABILITY),),
    _insertion,
    description=lambda s: f"probability of the explained class as pixels are inserted into a "
                          f"{s.insertion_canvas} canvas, most salient first; AUC over the "
                          f"fraction inserted",
    curve_plot=CurvePlot(((None, "insertion (into a {insertion_canvas} canvas)"),), "% of pixels inserted",
                         "probability of the explained class", _fractions),
    curve_spec=lambda s: Items(Number(0, 1)))
ACCURACY_DROP = MetricGroup(
    "accuracy_drop",
    (Metric("accuracy_drop", "accuracy-drop AUC", False, "faithfulness",
            "Ismail et al. 2021 (SGT); the SMOOT paper", (0.0, 100.0)),),
    _accuracy_drop,
    description=lambda s: f"the SGT/SMOOT accuracy-drop curve, the most salient pixels filled by "
                          f"`{s.drop_fill}`, AUC over {s.drop_percents[0]:g}–"
                          f"{s.drop_percents[-1]:g}%",
    curve_plot=CurvePlot(((None, "accuracy drop ({drop_fill} fill)"),), "% of pixels removed", "test accuracy (%)",
                         lambda settings, points: list(settings.drop_percents)),
    curve_spec=lambda s: Items(Number(0, 100), len(s.drop_percents)))
