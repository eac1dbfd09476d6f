"""Image classifiers: the built-in ones, your own (`module:function`), the ViT, and model files."""

from .registry import MODELS, build_model, check_model

__all__ = ["MODELS", "build_model", "check_model"]
