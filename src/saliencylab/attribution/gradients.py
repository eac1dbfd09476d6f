"""Input-space methods, all through Captum, with at most `max_batch_rows` rows per forward pass.

Each returns the signed attribution summed over channels, [B, 1, H, W]; consumers rank by
|a|. SmoothGrad² and VarGrad are non-negative by construction. Randomness (noise, random
baselines, GradientShap's draws) comes from the method's seed: the same call gives the same
map, and the caller's random generators are left as they were.
"""

from __future__ import annotations

import warnings

import torch
from captum.attr import (
    DeepLift,
    DeepLiftShap,
    GradientShap,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import Tensor, nn

from ..core.errors import UserError
from .base import Method, run_chunks, seeded


class Gradient(Method):
    """The gradient of the explained score w.r.t. the input (Simonyan et al. 2014; Captum
    `Saliency`). With `absolute=True`, |gradient| per channel before the channel sum, as
    Captum's `Saliency` does by default (the SGT authors' evaluation, Helper.py line 134)."""

    name = "gradient"

    def __init__(self, *args, absolute: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.absolute = absolute

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        saliency = Saliency(self.score(model))
        return run_chunks(model, x, target, self.options.max_batch_rows,
                          lambda xb, tb: saliency.attribute(xb, target=tb, abs=self.absolute))


class IntegratedGradientsMethod(Method):
    """Integrated Gradients (Sundararajan et al. 2017), Captum's Gauss-Legendre rule. Each
    forward holds b * max(1, rows // b) <= rows rows (`internal_batch_size`)."""

    name = "integrated_gradients"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        ig, rows, generator = IntegratedGradients(self.score(model)), self.options.max_batch_rows, self.generator(x)

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            return ig.attribute(xb, baselines=self.baselines(xb, generator=generator), target=tb,
                                n_steps=self.options.ig_steps, method="gausslegendre",
                                internal_batch_size=rows)

        return run_chunks(model, x, target, rows, fn)


class NoiseTunnelMethod(Method):
    """SmoothGrad family (Captum `NoiseTunnel(Saliency)`, signed gradients) over
    `smoothgrad_samples` noisy copies: smoothgrad = mean (Smilkov et al. 2017), smoothgrad_sq =
    mean of squares, vargrad = variance (Hooker et al. 2019; Adebayo et al. 2018). The noise std
    is `smoothgrad_stdev`, or `smoothgrad_sigma` times the range of the whole x of the call."""

    nt_type = "smoothgrad"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        tunnel, rows, o = NoiseTunnel(Saliency(self.score(model))), self.options.max_batch_rows, self.options
        if o.smoothgrad_stdev is not None:
            stdev = float(o.smoothgrad_stdev)
        else:
            stdev = float(o.smoothgrad_sigma * (x.max() - x.min())) if x.numel() else 0.0

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            return tunnel.attribute(xb, nt_type=self.nt_type, nt_samples=o.smoothgrad_samples,
                                    stdevs=stdev, nt_samples_batch_size=max(1, rows // xb.shape[0]),
                                    target=tb, abs=False)

        with seeded(o.seed, x.device):
            return run_chunks(model, x, target, rows, fn)


class SmoothGrad(NoiseTunnelMethod):
    name, nt_type = "smoothgrad", "smoothgrad"


class SmoothGradSquared(NoiseTunnelMethod):
    name, nt_type = "smoothgrad_sq", "smoothgrad_sq"


class VarGrad(NoiseTunnelMethod):
    name, nt_type = "vargrad", "vargrad"


class GuidedBackpropMethod(Method):
    """Guided backpropagation (Springenberg et al. 2015), Captum `GuidedBackprop`: negative
    gradients are zeroed at every `nn.ReLU` module (functional relu calls are not seen)."""

    name = "guided_backprop"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        gbp = GuidedBackprop(self.score(model))

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                return gbp.attribute(xb, target=tb)

        return run_chunks(model, x, target, self.options.max_batch_rows, fn)


class InputXGradientMethod(Method):
    """Input times gradient (Shrikumar et al. 2016), Captum `InputXGradient`."""

    name = "input_x_gradient"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        ixg = InputXGradient(self.score(model))
        return run_chunks(model, x, target, self.options.max_batch_rows,
                          lambda xb, tb: ixg.attribute(xb, target=tb))


def _quiet(call):
    with warnings.catch_warnings():  # Captum warns about hooks and reused modules it handles
        warnings.simplefilter("ignore", UserWarning)
        return call()


class DeepLiftMethod(Method):
    """DeepLIFT, Rescale rule (Shrikumar et al. 2017), Captum `DeepLift`; the baseline is
    `attribution.baseline`. Captum runs inputs and baselines together: 2b rows."""

    name = "deeplift"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        dl, generator = DeepLift(self.score(model)), self.generator(x)
        rows = max(1, self.options.max_batch_rows // 2)
        return run_chunks(model, x, target, rows, lambda xb, tb: _quiet(
            lambda: dl.attribute(xb, baselines=self.baselines(xb, generator=generator), target=tb)))


class DeepLiftShapMethod(Method):
    """DeepLIFT averaged over `shap_baselines` baselines (Lundberg and Lee 2017), Captum
    `DeepLiftShap`. Each image is attributed against every baseline of its chunk's pool (for
    uniform baselines a fresh seeded pool per chunk); baselines go in groups so that a forward
    holds at most `max_batch_rows` rows (2 x images x baselines), and the groups' DeepLift
    averages are combined, weighted by their sizes."""

    name = "deeplift_shap"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        dls, generator = DeepLiftShap(self.score(model)), self.generator(x)
        n, rows = self.options.shap_baselines, self.options.max_batch_rows

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            pool = self.baselines(xb[:1], count=n, generator=generator)
            group = max(2, rows // (2 * xb.shape[0]))
            total = torch.zeros_like(xb)
            for start in range(0, n, group):
                part = pool[start:start + group]
                weight = len(part)
                if weight == 1:  # Captum's DeepLiftShap needs two baselines: the same one twice
                    part = part.expand(2, *part.shape[1:])
                total += _quiet(lambda: dls.attribute(xb, baselines=part, target=tb)) * weight
            return total / n

        return run_chunks(model, x, target, max(1, rows // 4), fn)


class GradientShapMethod(Method):
    """GradientShap (Lundberg and Lee 2017), Captum `GradientShap`: `gradient_shap_samples`
    points per image, each on the line from a baseline drawn from a pool of `shap_baselines`
    to the input plus Gaussian noise (std `gradient_shap_stdev`); b * samples rows per forward."""

    name = "gradient_shap"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        gs, o = GradientShap(self.score(model)), self.options
        if o.gradient_shap_samples > o.max_batch_rows:
            raise UserError(f"attribution.gradient_shap_samples ({o.gradient_shap_samples}) must "
                            f"not exceed attribution.max_batch_rows ({o.max_batch_rows})")
        generator = self.generator(x)

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            pool = self.baselines(xb[:1], count=o.shap_baselines, generator=generator)
            return gs.attribute(xb, baselines=pool, n_samples=o.gradient_shap_samples,
                                stdevs=o.gradient_shap_stdev, target=tb)

        with seeded(o.seed, x.device):
            return run_chunks(model, x, target, max(1, o.max_batch_rows // o.gradient_shap_samples), fn)
