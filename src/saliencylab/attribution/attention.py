"""Transformer methods on the softmaxed attention of a ViT: attention rollout (Abnar & Zuidema
2020, "Quantifying attention flow in transformers", §3) and transformer attribution (Chefer,
Gur & Wolf 2021, "Generic attention-model explainability", eqs. 5-6).

Where the attention comes from, in order:
1. submodules named `attn_drop` whose forward output is the softmaxed attention [B, H, N, N]
   (timm's convention, timm/layers/attention.py, and our deit_tiny). While a method runs, every
   module with a `fused_attn` attribute has it set to False, so that the explicit softmax path
   (the one that calls `attn_drop`) is taken; the flags and hooks are restored afterwards;
2. else a model attribute `attentions`, a sequence of [B, H, N, N] graph tensors that the
   forward sets (a Hugging Face wrapper stores `output.attentions` there; docs/protocols.md).
The map is the class-token row without the leading tokens (class, distillation: the model's
`num_prefix_tokens`, else attribution.cam_tokens_dropped, else the fewest that leave a square
grid), reshaped to the patch grid and upsampled bilinearly to the input size.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import NotApplicable, UserError
from .base import Method, run_chunks
from .tokens import prefix_tokens

HOOKED = "attn_drop"


@contextlib.contextmanager
def captured_attention(model: nn.Module) -> Iterator[list[Tensor]]:
    """The attention probabilities of every `attn_drop` module, in call order, recorded during
    the forward passes inside the block (explicit, non-fused attention meanwhile)."""
    modules = [m for name, m in model.named_modules() if name.rpartition(".")[2] == HOOKED]
    flags = [(m, m.fused_attn) for m in model.modules() if isinstance(getattr(m, "fused_attn",
                                                                              None), bool)]
    store: list[Tensor] = []
    handles = [m.register_forward_hook(lambda module, inputs, out: store.append(out))
               for m in modules]
    try:
        for m, _ in flags:
            m.fused_attn = False
        yield store
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in flags:
            m.fused_attn = flag


def attention_of(model: nn.Module, store: list[Tensor]) -> list[Tensor]:
    """The captured attentions, else `model.attentions`, each checked to be [B, H, N, N]."""
    found = list(store) or list(getattr(model, "attentions", None) or ())
    if not found:
        raise NotApplicable(f"{type(model).__name__} exposes no attention: no `{HOOKED}` module "
                            f"was called and it has no `attentions` (for timm set "
                            f"fused_attn=False; for Hugging Face load with "
                            f"attn_implementation='eager' and store out.attentions)")
    for a in found:
        if not torch.is_tensor(a) or a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            shape = tuple(a.shape) if torch.is_tensor(a) else type(a).__name__
            raise UserError(f"an attention of {type(model).__name__} is {shape}, expected "
                            f"softmaxed attention [B, heads, N, N]")
    return found


def rollout(attentions: list[Tensor]) -> Tensor:
    """R = Â_L ⋯ Â_1 with Â_l = rownorm(½ mean_h A_l + ½ I) (Abnar & Zuidema §3): [B, N, N]."""
    joint = None
    for a in attentions:
        fused = a.float().mean(dim=1)
        eye = torch.eye(fused.shape[-1], device=fused.device).expand_as(fused)
        step = 0.5 * fused + 0.5 * eye
        step = step / step.sum(dim=-1, keepdim=True)
        joint = step if joint is None else step @ joint
    return joint


def relevance(attentions: list[Tensor], grads: list[Tensor]) -> Tensor:
    """R = I, then per layer R <- R + Ā_l R with Ā_l = mean_h (∇A_l ⊙ A_l)^+, the positive part
    taken before the head mean (Chefer et al. 2021b, eqs. 5-6): [B, N, N]."""
    joint = None
    for a, g in zip(attentions, grads):
        weighted = (g.float() * a.float()).clamp(min=0).mean(dim=1)
        if joint is None:
            joint = torch.eye(weighted.shape[-1], device=weighted.device).expand_as(weighted)
        joint = joint + weighted @ joint
    return joint


class AttentionMethod(Method):
    """A map from the class-token row of a [B, N, N] token relevance matrix."""

    def relevance(self, attentions: list[Tensor], scores: Tensor) -> Tensor:
        raise NotImplementedError

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        score_of, size = self.score(model), x.shape[2:]
        prefix = self.options.cam_tokens_dropped
        prefix = getattr(model, "num_prefix_tokens", None) if prefix is None else prefix

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            with captured_attention(model) as store:
                scores = score_of(xb).gather(1, tb[:, None]).sum()
            r = self.relevance(attention_of(model, store), scores)
            n, side = prefix_tokens(r.shape[-1], prefix, self.name)
            grid = r[:, 0, n:].reshape(len(xb), 1, side, side)
            return F.interpolate(grid.detach(), size=size, mode="bilinear", align_corners=False)

        return run_chunks(model, x, target, self.options.max_batch_rows, fn)


class AttentionRollout(AttentionMethod):
    """Class-agnostic: the same map for every target."""

    name = "attention_rollout"

    def relevance(self, attentions: list[Tensor], scores: Tensor) -> Tensor:
        return rollout([a.detach() for a in attentions])


class TransformerAttribution(AttentionMethod):
    """∂y_c/∂A_l from `torch.autograd.grad` of the explained score on the captured tensors."""

    name = "transformer_attribution"

    def relevance(self, attentions: list[Tensor], scores: Tensor) -> Tensor:
        grads = torch.autograd.grad(scores, attentions, allow_unused=True)  # None: no path to y
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(attentions, grads)]
        return relevance([a.detach() for a in attentions], grads)
