"""A small Vision Transformer whose parameter names match timm's `deit_tiny_patch16_224`.

timm itself is not used: `import timm` imports torchvision (timm.layers), and torchvision
would pull in a different torch build. This module re-implements the forward of timm's
`VisionTransformer` as `deit_tiny_patch16_224` configures it (Touvron et al. 2021: patch 16,
dim 192, depth 12, 3 heads, MLP ratio 4, LayerNorm eps 1e-6, GELU, qkv bias, class token,
learned position embedding, classifier on the final-norm class token), with the same
state_dict keys:

    cls_token, pos_embed, patch_embed.proj.{weight,bias},
    blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.{weight,bias},
    norm.{weight,bias}, head.{weight,bias}

so a local pretrained file (timm's or the DeiT authors' `{"model": state_dict}`) loads with
`load_pretrained`. Inputs of any size are resized bilinearly to `img_size` inside the model.
Normalisation is the data set's mean/std (DeiT used ImageNet's; fine-tuning adapts).

`cam_layer` is an identity module that sees the patch tokens entering the last block as a
grid [B, dim, h, w]: the residual stream before the last block's norm1. pytorch-grad-cam's
ViT recipe targets the *output* of that norm1 instead (the LayerNorm'd tokens); with us that
is `attribution.cam_layer=blocks.11.norm1` (the tokens are reshaped to the grid).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.checks import check
from ..core.errors import UserError


@dataclass(frozen=True)
class VitConfig:
    """Shape of the `deit_tiny` model (defaults: timm's deit_tiny_patch16_224)."""

    img_size: int = 224
    patch_size: int = 16
    dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    pretrained: str = ""  # path of a local state_dict file; "" = none
    allow_random_init: bool = False  # train deit_tiny without pretrained weights (tests)

    def validate(self) -> None:
        """The vit.* keys of a config: the shape, and pretrained weights or random init."""
        self.check_shape()
        check(bool(self.pretrained) or self.allow_random_init,
              "deit_tiny needs pretrained weights: --set vit.pretrained=PATH (a local timm "
              "deit_tiny_patch16_224 state_dict), or --set vit.allow_random_init=true to train "
              "from scratch")

    def check_shape(self) -> None:
        check(self.img_size % self.patch_size == 0, "vit.img_size must be a multiple of vit.patch_size")
        check(self.dim % self.heads == 0, "vit.dim must be a multiple of vit.heads")
        check(self.depth >= 1, "vit.depth must be >= 1")

    def random_init(self) -> "VitConfig":
        """The same shape without pretrained weights: a model whose weights are loaded next."""
        return dataclasses.replace(self, pretrained="", allow_random_init=True)


class Attention(nn.Module):
    """Multi-head self-attention with timm's switch (timm/layers/attention.py): `fused_attn`
    True runs PyTorch's fused kernel; False computes softmax(q kᵀ / sqrt(d)) explicitly and
    passes it through `attn_drop` (a parameter-free identity here), whose output the attention
    methods hook (attribution/attention.py)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / sqrt(d)) v
        else:
            attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)  # [B, dim, h, w]


class DeiT(nn.Module):
    def __init__(self, shape, classes: int, cfg: VitConfig | None = None):
        super().__init__()
        cfg = cfg or VitConfig()
        cfg.check_shape()
        self.img_size = cfg.img_size
        self.num_prefix_tokens = 1  # the class token (timm's attribute)
        tokens = (cfg.img_size // cfg.patch_size) ** 2
        self.patch_embed = PatchEmbed(shape[0], cfg.patch_size, cfg.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, cfg.dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(cfg.dim, cfg.heads, cfg.mlp_ratio)
                                      for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, classes)
        self.cam_layer = nn.Identity()  # patch-token grid entering the last block
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear",
                              align_corners=False)
        grid = self.patch_embed(x)
        b, c, h, w = grid.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), grid.flatten(2).transpose(1, 2)], 1)
        x = x + self.pos_embed
        for block in self.blocks[:-1]:
            x = block(x)
        patches = self.cam_layer(x[:, 1:].transpose(1, 2).reshape(b, c, h, w))
        x = torch.cat([x[:, :1], patches.flatten(2).transpose(1, 2)], 1)
        x = self.norm(self.blocks[-1](x))
        return self.head(x[:, 0])


def load_pretrained(model: DeiT, path: str | Path) -> list[str]:
    """Load a timm/DeiT state_dict file into `model`. The classifier head is skipped when its
    class count differs (fine-tuning to CIFAR). Returns the keys that were not loaded."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"pretrained weights {path} not found: give the path of a local "
                        "deit_tiny_patch16_224 state_dict file with --set vit.pretrained=PATH")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot read pretrained weights {path} ({type(e).__name__}): "
                        "it must be a torch.save'd state_dict") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    own = model.state_dict()
    skipped = [k for k in ("head.weight", "head.bias")
               if k in state and state[k].shape != own[k].shape]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing = [k for k in own if k not in state and k not in skipped]
    if missing:
        raise UserError(f"{path} is not a deit_tiny state_dict for this shape: missing "
                        f"{', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}")
    bad = [k for k in own if k in state and state[k].shape != own[k].shape]
    if bad:
        raise UserError(f"{path} does not match the model: {bad[0]} has shape "
                        f"{tuple(state[bad[0]].shape)}, expected {tuple(own[bad[0]].shape)}")
    model.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    return skipped


def build_deit(shape, classes: int, cfg: VitConfig | None = None) -> DeiT:
    """deit_tiny with `cfg`, loading `cfg.pretrained` when given."""
    cfg = cfg or VitConfig()
    cfg.validate()
    model = DeiT(shape, classes, cfg)
    if cfg.pretrained:
        load_pretrained(model, cfg.pretrained)
    return model


def deit_tiny(shape, classes: int) -> DeiT:
    """The registry entry: timm's deit_tiny_patch16_224 shape, random init."""
    return DeiT(shape, classes, VitConfig(allow_random_init=True))
