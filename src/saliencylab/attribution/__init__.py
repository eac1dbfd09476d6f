"""Attribution methods behind one verb: ``method.attribute(model, x, target) -> a``.

- ``x`` is the normalised float input ``[B, C, H, W]`` the model takes;
- ``target`` is a LongTensor ``[B]`` of class indices;
- ``a`` is float32 ``[B, 1, H, W]`` on the device of ``x``.

Input-space methods sum the signed per-channel attribution over channels (consumers rank by
absolute value); CAM methods return the ReLU'd map upsampled to ``H x W``. Every knob lives
in :class:`MethodOptions`. Memory is bounded: no forward pass holds more than
``max_batch_rows`` rows, whatever the size of ``x``.

Bring your own method: ``register(name, factory)`` with ``factory(options) -> method``, or
install a package that declares it in the ``saliencylab.methods`` entry-point group
(``name = "package.module:factory"``). A registered method is available to every protocol.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import Tensor, nn

from ..core.errors import UserError, a_type
from ..core.plugins import installed
from ..core.progress import steps
from ..data.batches import prepare_batch
from .attention import AttentionRollout, TransformerAttribution
from .cam import GradCAM, GradCAMPlusPlus
from .gradients import (
    DeepLiftMethod,
    DeepLiftShapMethod,
    Gradient,
    GradientShapMethod,
    GuidedBackpropMethod,
    InputXGradientMethod,
    IntegratedGradientsMethod,
    SmoothGrad,
    SmoothGradSquared,
    VarGrad,
)
from .lrp import LRPMethod
from .options import MethodOptions
from .perturbation import OcclusionMethod, RandomMethod

__all__ = ["AttributionMethod", "Checked", "METHODS", "MethodOptions", "TRANSFORMER_METHODS",
           "attribute_dataset", "check_maps", "make_method", "method_names", "register"]


class AttributionMethod(Protocol):
    name: str

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor: ...


_BUILTIN = {cls.name: cls for cls in (
    Gradient, IntegratedGradientsMethod, SmoothGrad, SmoothGradSquared, VarGrad,
    GuidedBackpropMethod, InputXGradientMethod, DeepLiftMethod, DeepLiftShapMethod,
    GradientShapMethod, OcclusionMethod, GradCAM, GradCAMPlusPlus, RandomMethod, LRPMethod,
    AttentionRollout, TransformerAttribution)}
METHODS: tuple[str, ...] = tuple(_BUILTIN)  # the built-in methods
# the methods that need a transformer's attention (NotApplicable on other models)
TRANSFORMER_METHODS: tuple[str, ...] = (AttentionRollout.name, TransformerAttribution.name)
_REGISTERED: dict[str, Callable[[MethodOptions], AttributionMethod]] = {}
_PLUGINS_LOADED = False
ENTRY_POINT_GROUP = "saliencylab.methods"


def register(name: str, factory: Callable[[MethodOptions], AttributionMethod],
             replace: bool = False) -> None:
    """Make `factory(options) -> method` available as `name` to every protocol."""
    if not replace and (name in _BUILTIN or name in _REGISTERED):
        raise UserError(f"attribution method {name!r} already exists: pick another name, or "
                        f"register(..., replace=True)")
    _REGISTERED[name] = factory


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for name, factory in installed(ENTRY_POINT_GROUP, "attribution"):
        _REGISTERED.setdefault(name, factory)


def method_names() -> tuple[str, ...]:
    """Every method a protocol can use: built-in, registered and installed plugins."""
    _load_plugins()
    return METHODS + tuple(n for n in _REGISTERED if n not in _BUILTIN)


def make_method(name: str, options: MethodOptions | None = None, *, black: Tensor | None = None,
                baseline_image: Tensor | None = None, absolute: bool = False,
                **overrides) -> AttributionMethod:
    """The method `name` with `options` (default MethodOptions()) and any field overridden by
    keyword (`make_method("integrated_gradients", ig_steps=16)`). `black` is the data set's
    normalised black image (baseline "black"); `baseline_image` an explicit baseline;
    `absolute` takes |gradient| per channel for `gradient` (Captum Saliency's default)."""
    options = options or MethodOptions()
    if overrides:
        import dataclasses

        try:
            options = dataclasses.replace(options, **overrides)
        except TypeError as e:
            raise UserError(f"unknown attribution option: {e}") from None
    if name in _BUILTIN:
        cls = _BUILTIN[name]
        kwargs = {"absolute": absolute} if cls is Gradient else {}
        return cls(options, black=black, baseline_image=baseline_image, **kwargs)
    _load_plugins()
    if name in _REGISTERED:
        return _REGISTERED[name](options)
    raise UserError(f"unknown attribution method {name!r}: choose one of {', '.join(method_names())}")


def check_maps(maps, x: Tensor, name: str) -> Tensor:
    """`maps` as float32 if they are finite maps [B, 1, H, W] for the images x [B, C, H, W],
    else a one-line UserError naming the method: maps for fewer images would be broadcast, and
    NaN maps would rank pixels arbitrarily."""
    b, _, h, w = x.shape
    expected = f"[B, 1, H, W] = [{b}, 1, {h}, {w}] for {b} images"
    if not torch.is_tensor(maps):
        raise UserError(f"attribution method {name!r} returned {a_type(maps)}, not a "
                        f"tensor {expected}")
    if tuple(maps.shape) != (b, 1, h, w):
        raise UserError(f"attribution method {name!r} returned maps of shape "
                        f"{tuple(maps.shape)}: it must return {expected}")
    maps = maps.to(torch.float32)
    bad = int((~torch.isfinite(maps)).sum())
    if bad:
        raise UserError(f"attribution method {name!r} returned {bad} NaN or infinite value(s) "
                        f"of {maps.numel()}: every map value must be finite")
    return maps


class Checked:
    """`method` with every output checked by `check_maps`: what every protocol attributes with
    (`attribute_dataset`, the randomisation test)."""

    def __init__(self, method: AttributionMethod):
        self.method = method
        self.name = getattr(method, "name", None) or type(method).__name__

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        return check_maps(self.method.attribute(model, x, target), x, self.name)


def attribute_dataset(method: AttributionMethod, model: nn.Module, x: Tensor, target: Tensor,
                      spec, batch_size: int = 256, progress: bool = True,
                      desc: str = "attribution") -> Tensor:
    """Attribute every uint8 image of `x` in batches, with a progress bar -> float32 [N,1,H,W]
    on x's device."""
    method = Checked(method)
    maps = [method.attribute(model, prepare_batch(x[i:i + batch_size], spec),
                             target[i:i + batch_size])
            for i in steps(range(0, len(x), batch_size), desc, unit="batch", enabled=progress,
                           each=False)]
    return torch.cat(maps) if maps else torch.zeros(0, 1, *x.shape[2:], device=x.device)
