"""Methods that perturb the input instead of differentiating: occlusion, and the random baseline."""

from __future__ import annotations

import torch
from captum.attr import Occlusion
from torch import Tensor, nn

from ..core.device import generator
from .base import Method, check_inputs, run_chunks


class OcclusionMethod(Method):
    """Occlusion (Zeiler and Fergus 2014), Captum `Occlusion`: slide a square patch of
    `occlusion_window` pixels (all channels at once) with `occlusion_stride`, replace it by the
    baseline, and attribute the drop of the explained score to the patch's pixels (averaged
    over the patches covering a pixel). Each forward holds at most `max_batch_rows` rows."""

    name = "occlusion"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        occlusion, o, generator = Occlusion(self.score(model)), self.options, self.generator(x)
        c = x.shape[1]

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            with torch.no_grad():
                return occlusion.attribute(
                    xb, sliding_window_shapes=(c, o.occlusion_window, o.occlusion_window),
                    strides=(c, o.occlusion_stride, o.occlusion_stride),
                    baselines=self.baselines(xb, generator=generator), target=tb,
                    perturbations_per_eval=max(1, o.max_batch_rows // xb.shape[0]))

        return run_chunks(model, x, target, o.max_batch_rows, fn)


class RandomMethod(Method):
    """A seeded random ranking: uniform [0, 1) values per pixel, ignoring the model.

    Values come from a CPU generator seeded with `seed` when the method is made (and by
    `reset()`), so the same sequence of calls gives the same maps on any device, and
    successive calls give different maps."""

    name = "random"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reset()

    def reset(self) -> None:
        self._generator = generator("cpu", self.options.seed)

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        check_inputs(x, target)
        a = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=self._generator)
        return a.to(device=x.device)
