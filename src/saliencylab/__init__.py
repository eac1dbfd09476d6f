"""saliencylab: measure and improve saliency maps of image classifiers."""

__version__ = "0.2.0"

from .api import evaluate, explain_func  # noqa: E402  (after __version__, which the CLI reads)

__all__ = ["evaluate", "explain_func", "__version__"]
