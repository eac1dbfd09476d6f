"""Attribution methods behind one verb: ``method.attribute(model, x, target) -> a``.

- ``x`` is the normalised float input ``[B, C, H, W]`` the model takes.
- ``target`` is a LongTensor ``[B]`` of class indices.
- ``a`` is float32 ``[B, 1, H, W]`` on the device of ``x``.

Input-space methods (gradient, IG, SmoothGrad, guided backprop) sum the signed per-channel
attribution over channels; consumers rank by absolute value themselves. Grad-CAM style
methods return the ReLU'd class activation map, upsampled bilinearly
(``align_corners=False``) to ``H x W``, *not* min-max normalised.

Every method leaves the model as it found it:
- the train/eval mode of every module is restored (attribution runs in eval mode);
- hooks are removed, also when the forward pass raises;
- parameters' ``.grad`` are untouched, because gradients come from ``torch.autograd.grad``
  (directly or through Captum).

Methods work inside a caller's ``torch.no_grad()``, and ``x`` does not need
``requires_grad``. Each call splits ``x`` into chunks of at most ``max_batch_rows`` images,
and IG and SmoothGrad also keep each forward pass at ``max_batch_rows`` rows or fewer, so
memory stays bounded whatever the size of ``x``.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency
from torch import Tensor, nn

from .errors import UserError

METHODS: tuple[str, ...] = (
    "gradient",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "gradcam",
    "gradcam++",
    "random",
)


class AttributionMethod(Protocol):
    name: str

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor: ...


# ---------------------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode, then restore each module's own `training` flag."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _check_inputs(x: Tensor, target: Tensor) -> Tensor:
    if x.dim() != 4:
        raise UserError(f"attribution input must be [B, C, H, W], got shape {tuple(x.shape)}")
    target = torch.as_tensor(target, device=x.device).long().reshape(-1)
    if target.shape[0] != x.shape[0]:
        raise UserError(
            f"attribution target has {target.shape[0]} entries for {x.shape[0]} images"
        )
    return target


def _run(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    rows: int,
    fn: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Apply `fn(x_chunk, target_chunk) -> [b, C', H, W]` in eval mode, with grad enabled,
    over chunks of at most `rows` images; return float32 [B, 1, H, W] (channels summed)."""
    target = _check_inputs(x, target)
    outs = []
    with _eval_mode(model), torch.enable_grad():
        for start in range(0, x.shape[0], rows):
            xb = x[start:start + rows].detach().requires_grad_(True)
            a = fn(xb, target[start:start + rows]).detach()
            outs.append(a.sum(dim=1, keepdim=True))
    if not outs:
        return x.new_zeros((0, 1, *x.shape[2:]), dtype=torch.float32)
    return torch.cat(outs).to(device=x.device, dtype=torch.float32)


class _Base:
    name: str = ""

    def __init__(self, max_batch_rows: int = 512):
        if max_batch_rows < 1:
            raise UserError(f"max_batch_rows must be at least 1, got {max_batch_rows}")
        self.max_batch_rows = int(max_batch_rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ---------------------------------------------------------------------------------------
# Input-space methods (Captum)
# ---------------------------------------------------------------------------------------


class Gradient(_Base):
    """Plain gradient of the target logit w.r.t. the input (Captum `Saliency`, abs=False);
    with `absolute=True`, the per-channel absolute gradient (Simonyan et al. 2014)."""

    name = "gradient"

    def __init__(self, absolute: bool = False, max_batch_rows: int = 512):
        super().__init__(max_batch_rows)
        self.absolute = absolute

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        saliency = Saliency(model)
        return _run(model, x, target, self.max_batch_rows,
                    lambda xb, tb: saliency.attribute(xb, target=tb, abs=self.absolute))


class IntegratedGradientsMethod(_Base):
    """Integrated Gradients (Sundararajan et al. 2017) via Captum, Gauss-Legendre rule.

    `baseline` is [C, H, W] or [1, C, H, W] in normalised space (the black image is
    (0 - mean) / std); None means zeros. At most `max_batch_rows` rows (images x steps)
    go through the model at once: x is split into chunks of at most `max_batch_rows`
    images and Captum's `internal_batch_size` is `max_batch_rows`, so each forward holds
    b * max(1, max_batch_rows // b) <= max_batch_rows rows.
    """

    name = "integrated_gradients"

    def __init__(self, baseline: Tensor | None = None, steps: int = 50,
                 max_batch_rows: int = 512):
        super().__init__(max_batch_rows)
        if steps < 1:
            raise UserError(f"ig_steps must be at least 1, got {steps}")
        if baseline is not None:
            baseline = torch.as_tensor(baseline)
            if baseline.dim() == 4 and baseline.shape[0] == 1:
                baseline = baseline[0]
            if baseline.dim() != 3:
                raise UserError(
                    "IG baseline must have shape [C, H, W] or [1, C, H, W], "
                    f"got {tuple(baseline.shape)}"
                )
        self.baseline = baseline
        self.steps = int(steps)

    def _baseline_for(self, x: Tensor) -> Tensor:
        if self.baseline is None:
            return torch.zeros_like(x)
        if tuple(self.baseline.shape) != tuple(x.shape[1:]):
            raise UserError(
                f"IG baseline shape {tuple(self.baseline.shape)} does not match input "
                f"shape {tuple(x.shape[1:])}"
            )
        return self.baseline.to(device=x.device, dtype=x.dtype).expand_as(x).contiguous()

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        ig = IntegratedGradients(model)

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            return ig.attribute(xb, baselines=self._baseline_for(xb), target=tb,
                                n_steps=self.steps, method="gausslegendre",
                                internal_batch_size=self.max_batch_rows)

        return _run(model, x, target, self.max_batch_rows, fn)


class SmoothGrad(_Base):
    """SmoothGrad (Smilkov et al. 2017): mean gradient over noisy copies of x, via Captum
    `NoiseTunnel(Saliency)` with nt_type="smoothgrad" (signed gradient, abs=False).

    The noise std is `sigma * (x.max() - x.min())`, taken over the whole `x` of the call
    (one scalar per call, before chunking). The noise is drawn from the global RNG, forked
    and seeded with `seed` at every call, so the caller's RNG state is untouched and the
    result depends only on (model, x, target, seed, max_batch_rows).
    `nt_samples_batch_size = max(1, max_batch_rows // b)` bounds the rows per forward.
    """

    name = "smoothgrad"

    def __init__(self, samples: int = 25, sigma: float = 0.15, seed: int = 0,
                 max_batch_rows: int = 512):
        super().__init__(max_batch_rows)
        if samples < 1:
            raise UserError(f"smoothgrad_samples must be at least 1, got {samples}")
        if sigma < 0:
            raise UserError(f"smoothgrad_sigma must be non-negative, got {sigma}")
        self.samples = int(samples)
        self.sigma = float(sigma)
        self.seed = int(seed)

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        tunnel = NoiseTunnel(Saliency(model))
        stdev = float(self.sigma * (x.max() - x.min())) if x.numel() else 0.0

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            return tunnel.attribute(
                xb, nt_type="smoothgrad", nt_samples=self.samples, stdevs=stdev,
                nt_samples_batch_size=max(1, self.max_batch_rows // xb.shape[0]),
                target=tb, abs=False,
            )

        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return _run(model, x, target, self.max_batch_rows, fn)


class GuidedBackpropMethod(_Base):
    """Guided backpropagation (Springenberg et al. 2015) via Captum `GuidedBackprop`.

    Captum overrides the gradient of every `nn.ReLU` *module* (negative gradients are
    zeroed on the way back); functional `F.relu` calls are not seen and behave like a plain
    gradient. Captum removes its hooks in a `finally`. A ReLU module used twice in one
    forward is not supported by Captum.
    """

    name = "guided_backprop"

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        gbp = GuidedBackprop(model)

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                return gbp.attribute(xb, target=tb)

        return _run(model, x, target, self.max_batch_rows, fn)


# ---------------------------------------------------------------------------------------
# Class activation maps
# ---------------------------------------------------------------------------------------


def _resolve_layer(model: nn.Module, layer: str | None) -> nn.Module:
    if layer is not None:
        try:
            return model.get_submodule(layer)
        except AttributeError as err:
            raise UserError(f"model has no layer {layer!r} for Grad-CAM") from err
    cam_layer = getattr(model, "cam_layer", None)
    if not isinstance(cam_layer, nn.Module):
        raise UserError(
            f"{type(model).__name__} has no `cam_layer`: Grad-CAM needs the last conv layer"
        )
    return cam_layer


@contextlib.contextmanager
def _capture_output(layer: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Record `layer`'s output during the forward pass; the hook is always removed."""
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
        store["A"] = output

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


class _CAMBase(_Base):
    """Shared CAM machinery. A^k = output of the CAM layer ([b, K, u, v]),
    dY^c/dA^k from `torch.autograd.grad` of the target logit Y^c (pre-softmax)."""

    def __init__(self, layer: str | None = None, max_batch_rows: int = 512):
        super().__init__(max_batch_rows)
        self.layer = layer

    def _weights(self, A: Tensor, grads: Tensor) -> Tensor:  # -> [b, K]
        raise NotImplementedError

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        layer = _resolve_layer(model, self.layer)
        size = x.shape[2:]

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            with _capture_output(layer) as store:
                logits = model(xb)
            if "A" not in store:
                raise UserError("the Grad-CAM layer was not called in the model's forward")
            A = store["A"]
            if A.dim() != 4:
                raise UserError(
                    f"the Grad-CAM layer must output [B, K, h, w], got {tuple(A.shape)}"
                )
            score = logits.gather(1, tb[:, None]).sum()  # images are independent
            (grads,) = torch.autograd.grad(score, A)
            with torch.no_grad():
                A, grads = A.detach(), grads.detach()
                w = self._weights(A, grads)
                # L^c = ReLU(sum_k w_k^c A^k) (Grad-CAM eq. 2; the same form in Grad-CAM++)
                cam = F.relu((w[:, :, None, None] * A).sum(dim=1, keepdim=True))
                return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)

        return _run(model, x, target, self.max_batch_rows, fn)


class GradCAM(_CAMBase):
    """Grad-CAM (Selvaraju et al. 2017).

    Eq. 1: alpha_k^c = (1/Z) sum_ij dY^c/dA_ij^k (global average of the gradients).
    Eq. 2: L^c = ReLU(sum_k alpha_k^c A^k), then bilinear upsampling to H x W.
    """

    name = "gradcam"

    def _weights(self, A: Tensor, grads: Tensor) -> Tensor:
        return grads.mean(dim=(2, 3))


class GradCAMPlusPlus(_CAMBase):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018), closed form with S^c = exp(Y^c).

    Eq. 19: alpha_ij^kc = g^2 / (2 g^2 + sum_ab A_ab^k g^3), g = dY^c/dA_ij^k;
            0/0 (and any zero denominator) is taken as 0.
    Eq. 9:  w_k^c = sum_ij alpha_ij^kc ReLU(dS^c/dA_ij^k), with dS^c/dA = exp(Y^c) g.
            exp(Y^c) > 0 is one factor per image, common to all k, so it is dropped
            (as in the authors' code and pytorch-grad-cam): w_k^c = sum_ij alpha ReLU(g).
    Map:    L^c = ReLU(sum_k w_k^c A^k), upsampled bilinearly; no min-max normalisation.
    """

    name = "gradcam++"

    def _weights(self, A: Tensor, grads: Tensor) -> Tensor:
        g2 = grads.pow(2)
        g3 = grads.pow(3)
        sum_A = A.sum(dim=(2, 3), keepdim=True)  # sum_ab A_ab^k
        denom = 2 * g2 + sum_A * g3
        nonzero = denom != 0
        alpha = torch.where(nonzero, g2 / torch.where(nonzero, denom, torch.ones_like(denom)),
                            torch.zeros_like(denom))
        return (alpha * F.relu(grads)).sum(dim=(2, 3))


# ---------------------------------------------------------------------------------------
# Random baseline
# ---------------------------------------------------------------------------------------


class RandomMethod(_Base):
    """A seeded random ranking: uniform [0, 1) values per pixel, ignoring the model.

    Values come from a CPU `torch.Generator` seeded with `seed` when the method is made
    (and by `reset()`), so the same sequence of calls gives the same maps on any device,
    and successive calls give different maps.
    """

    name = "random"

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)
        self.reset()

    def reset(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        _check_inputs(x, target)
        a = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=self._generator)
        return a.to(device=x.device)


# ---------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------


def make_method(
    name: str,
    *,
    baseline: Tensor | None = None,
    seed: int = 0,
    ig_steps: int = 50,
    max_batch_rows: int = 512,
    smoothgrad_samples: int = 25,
    smoothgrad_sigma: float = 0.15,
    absolute_gradient: bool = False,
    cam_layer: str | None = None,
) -> AttributionMethod:
    """Build the attribution method `name` (one of METHODS).

    `cam_layer` optionally names a submodule (e.g. "features.3") for Grad-CAM(++);
    by default the model's own `cam_layer` is used.
    """
    if name == "gradient":
        return Gradient(absolute=absolute_gradient, max_batch_rows=max_batch_rows)
    if name == "integrated_gradients":
        return IntegratedGradientsMethod(baseline=baseline, steps=ig_steps,
                                         max_batch_rows=max_batch_rows)
    if name == "smoothgrad":
        return SmoothGrad(samples=smoothgrad_samples, sigma=smoothgrad_sigma, seed=seed,
                          max_batch_rows=max_batch_rows)
    if name == "guided_backprop":
        return GuidedBackpropMethod(max_batch_rows=max_batch_rows)
    if name == "gradcam":
        return GradCAM(layer=cam_layer, max_batch_rows=max_batch_rows)
    if name == "gradcam++":
        return GradCAMPlusPlus(layer=cam_layer, max_batch_rows=max_batch_rows)
    if name == "random":
        return RandomMethod(seed=seed)
    raise UserError(f"unknown attribution method {name!r}: choose one of {', '.join(METHODS)}")


def attribute_dataset(method: AttributionMethod, model: nn.Module, x: Tensor, target: Tensor,
                      spec, batch_size: int = 256, progress: bool = True,
                      desc: str = "attribution") -> Tensor:
    """Attribute every uint8 image of `x` in batches, with a progress bar -> float32 [N,1,H,W]."""
    from tqdm.auto import tqdm

    from .training import prepare_batch

    maps = [method.attribute(model, prepare_batch(x[i:i + batch_size], spec),
                             target[i:i + batch_size])
            for i in tqdm(range(0, len(x), batch_size), desc=desc, unit="batch",
                          disable=not progress, leave=False, dynamic_ncols=True)]
    return torch.cat(maps)
