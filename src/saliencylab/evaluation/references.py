"""Reference "methods" whose maps are the data's ground-truth masks, scored beside the real
methods on data with masks (the metric report card, docs/protocols.md §5): `oracle`, the mask
itself (1 inside, 0 outside), and `inverted_oracle`, its complement. With the built-in
`random` method they bracket every metric: a metric that can be trusted ranks oracle > random
> inverted oracle.

A reference's maps do not depend on the model, the input's pixels or the class: its `explain`
returns the masks of the first len(x) images (Context.explain is always called so).
"""

from __future__ import annotations

from torch import Tensor

REFERENCES = ("oracle", "inverted_oracle")
NO_MASKS = ("the data has no ground-truth masks: the localisation metrics and the oracle "
            "references need one mask per test image (the built-in `planted` data set has them; "
            "bring yours as PATH/masks/<class>/<image name>.png beside folder:PATH, or m_test "
            "in npz:FILE)")


def reference_maps(name: str, masks: Tensor) -> Tensor:
    """float32 maps [N,1,H,W] of reference `name` from bool masks [N,1,H,W]."""
    inside = masks.float()
    return inside if name == "oracle" else 1.0 - inside


def reference_explain(maps: Tensor):
    """explain(model, x, target) -> the maps of the first len(x) images."""
    def explain(model, x: Tensor, target: Tensor) -> Tensor:
        return maps[:len(x)].to(x.device)
    return explain
