"""The accuracy-drop test of a saliency-trained model (the SGT authors'
Scripts/maskedAcc_MNIST.py and Helper.py `getSalinecyAugmnetedBatch`, by default):

for each method, rank the test pixels by |attribution| of the explained score (log p(label)
by default, as their model ends in log_softmax) and, for each fill, remove the top x% (x in
eval.percents), replace them by the fill and measure test accuracy without retraining. The
AUC (trapezoid, accuracy in %, x as a fraction in [0, 1]; lower = more faithful) is reported
over all of eval.percents (0–100% by default) and over 0–90%, the authors' range (their code
computes no AUC).
"""

from __future__ import annotations

import torch

from ... import attribution
from ...core.device import generator
from ...data.batches import predict
from ...evaluation.classification import accuracy
from ...removal import accuracy_curve, auc, rank_pixels


def test_target(config, model, x, y, spec):
    return y if config.eval.target == "label" else predict(model, x, spec).argmax(1)


def method_maps(config, model, x, y, spec, method: str, progress: bool = False) -> torch.Tensor:
    """Attribution maps [N,1,H,W] of uint8 images `x` under `model`, for eval `method`."""
    explainer = attribution.make_method(method, config.eval.attribution,
                                        black=spec.black(x.device))
    return attribution.attribute_dataset(explainer, model, x, test_target(config, model, x, y, spec),
                                         spec, batch_size=config.eval.batch_size,
                                         progress=progress, desc=f"test saliency ({method})")


def drop_test(config, model, ds, progress: bool = False) -> dict:
    """Test accuracy, and per method and fill the drop curve (%) and its AUCs."""
    model.eval()
    e = config.eval
    x, y = ds.x_test, ds.y_test
    test_accuracy = accuracy(model, x, y, ds.spec)
    curves, aucs, aucs_90 = {}, {}, {}
    fractions = [p / 100 for p in e.percents]
    for method in e.methods:
        order = rank_pixels(method_maps(config, model, x, y, ds.spec, method, progress))
        curves[method], aucs[method], aucs_90[method] = {}, {}, {}
        for fill in e.fills:
            curve = accuracy_curve(model, x, y, ds.spec, order, e.percents, fill,
                                   direction=e.removal, batch_size=e.batch_size,
                                   generator=generator(x.device, e.seed))
            curves[method][fill] = curve
            aucs[method][fill] = auc(fractions, curve)
            aucs_90[method][fill] = auc(fractions, curve, hi=0.9)
    return {"accuracy": test_accuracy, "curves": curves, "auc": aucs, "auc_0_90": aucs_90}


def headline_auc(record: dict) -> float:
    """The AUC of the first method under the first fill (the report's main table)."""
    method = next(iter(record["auc"]))
    return next(iter(record["auc"][method].values()))
