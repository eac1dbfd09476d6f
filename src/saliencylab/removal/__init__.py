"""Removing pixels, in one place for every protocol: rankings and masks (`masks`), what a
removed pixel becomes (`fills`), a data set with pixels removed, made batch by batch
(`removed`), and every removal curve (`curves`): ROAR's masks and fills,
the SGT/SMOOT accuracy-drop curve, ROAD, deletion and insertion."""

from .curves import (
    SUBSTRATES,
    accuracy_curve,
    auc,
    correctness,
    deletion,
    insertion,
    road,
    road_order,
)
from .fills import FILLS, RANDOM_FILLS, blurred, fill, fill_uniform_in_range, noisy_linear_impute
from .imputation import linear_impute
from .masks import (
    REMOVALS,
    count_all_but_kept,
    count_removed,
    mask_first,
    rank_pixels,
    ranking_dtype,
    removal_mask,
)
from .removed import RemovedImages

__all__ = ["FILLS", "RANDOM_FILLS", "REMOVALS", "SUBSTRATES", "RemovedImages", "accuracy_curve",
           "auc", "blurred", "correctness", "count_all_but_kept", "count_removed",
           "deletion", "fill", "fill_uniform_in_range", "linear_impute", "mask_first", "insertion",
           "noisy_linear_impute", "rank_pixels", "ranking_dtype", "removal_mask", "road",
           "road_order"]
