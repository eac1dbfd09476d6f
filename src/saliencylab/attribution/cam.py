"""Class activation maps: Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al.
2018). Captum has no Grad-CAM++, so both are written here on the same hook.

The layer A^k comes from `attribution.cam_layer`:
- "activation" (default): the model's `cam_layer` attribute, the ReLU after the last conv,
  i.e. rectified feature maps;
- "conv": the last `nn.Conv2d` itself (pre-ReLU activations). pytorch-grad-cam's users pass a
  module as the target layer, and passing the Conv2d gives these activations;
- any dotted submodule path (e.g. "features.3", "layer4.1.conv2", "blocks.11.norm1").
A layer that outputs ViT tokens [B, T, D] is reshaped to the patch grid [B, D, h, w] after the
leading class/distillation tokens are dropped (attribution.cam_tokens_dropped; default: the
fewest that leave a perfect square), activations and gradients alike (tokens.py).
The map is ReLU(sum_k w_k A^k), upsampled bilinearly (align_corners=False) to the input size,
not min-max normalised. The gradients are of the explained score (logit or log-softmax).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import NotApplicable, UserError
from .base import Method, run_chunks
from .tokens import to_grid


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    if layer not in ("activation", "conv"):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise UserError(f"model has no layer {layer!r} for Grad-CAM: give a submodule path "
                            f"such as 'features.3', or activation or conv") from None
    activation = getattr(model, "cam_layer", None)
    if layer == "activation":
        if not isinstance(activation, nn.Module):
            raise NotApplicable(f"{type(model).__name__} has no `cam_layer`: Grad-CAM needs the "
                            f"last conv layer (set attribution.cam_layer to conv or a module path)")
        return activation
    return last_conv(model, activation)


def last_conv(model: nn.Module, before: nn.Module | None) -> nn.Conv2d:
    """The last Conv2d registered before `before` (the conv feeding the model's cam_layer), or
    the model's last Conv2d."""
    found = None
    for module in model.modules():
        if module is before and found is not None:
            return found
        if isinstance(module, nn.Conv2d):
            found = module
    if found is None:
        raise NotApplicable(f"{type(model).__name__} has no Conv2d layer for Grad-CAM")
    return found


@contextlib.contextmanager
def capture_output(layer: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Record `layer`'s output during the forward pass; the hook is always removed."""
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
        store["A"] = output

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


class CAMMethod(Method):
    """A^k = output of the CAM layer [b, K, u, v]; dY^c/dA^k from `torch.autograd.grad` of the
    explained score Y^c of the target class."""

    def weights(self, A: Tensor, grads: Tensor) -> Tensor:  # -> [b, K]
        raise NotImplementedError

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        layer = resolve_layer(model, self.options.cam_layer)
        score_of = self.score(model)
        size = x.shape[2:]

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            with capture_output(layer) as store:
                scores = score_of(xb)
            if "A" not in store:
                raise UserError("the Grad-CAM layer was not called in the model's forward")
            A = store["A"]
            if A.dim() not in (3, 4):
                raise NotApplicable(f"the Grad-CAM layer must output [B, K, h, w] or ViT tokens "
                                    f"[B, T, D], got {tuple(A.shape)}")
            (grads,) = torch.autograd.grad(scores.gather(1, tb[:, None]).sum(), A)
            with torch.no_grad():
                A, grads = A.detach(), grads.detach()
                if A.dim() == 3:
                    tokens = self.options.cam_tokens_dropped
                    A, grads = (to_grid(t, tokens, "Grad-CAM layer") for t in (A, grads))
                # L^c = ReLU(sum_k w_k^c A^k) (Grad-CAM eq. 2; the same form in Grad-CAM++)
                cam = F.relu((self.weights(A, grads)[:, :, None, None] * A).sum(dim=1, keepdim=True))
                return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)

        return run_chunks(model, x, target, self.options.max_batch_rows, fn)


class GradCAM(CAMMethod):
    """Eq. 1: alpha_k^c = (1/Z) sum_ij dY^c/dA_ij^k (global average of the gradients)."""

    name = "gradcam"

    def weights(self, A: Tensor, grads: Tensor) -> Tensor:
        return grads.mean(dim=(2, 3))


class GradCAMPlusPlus(CAMMethod):
    """Closed form with S^c = exp(Y^c).

    Eq. 19: alpha_ij^kc = g^2 / (2 g^2 + sum_ab A_ab^k g^3), g = dY^c/dA_ij^k; 0/0 (and any
            zero denominator) is taken as 0.
    Eq. 9:  w_k^c = sum_ij alpha_ij^kc ReLU(dS^c/dA_ij^k), with dS^c/dA = exp(Y^c) g; exp(Y^c)
            is one positive factor per image, common to all k, so it is dropped (as in the
            authors' code and pytorch-grad-cam): w_k^c = sum_ij alpha ReLU(g).
    """

    name = "gradcam++"

    def weights(self, A: Tensor, grads: Tensor) -> Tensor:
        g2 = grads.pow(2)
        denom = 2 * g2 + A.sum(dim=(2, 3), keepdim=True) * g2 * grads
        nonzero = denom != 0
        alpha = torch.where(nonzero, g2 / torch.where(nonzero, denom, torch.ones_like(denom)),
                            torch.zeros_like(denom))
        return (alpha * F.relu(grads)).sum(dim=(2, 3))
