"""Measuring a model and its maps: classification, the faithfulness and randomisation metrics
behind `evaluate`, localisation, and statistics."""

from .settings import Settings

__all__ = ["Settings"]
