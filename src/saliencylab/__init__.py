"""saliencylab: measure and improve saliency maps of image classifiers."""

__version__ = "0.2.0"

__all__ = ["evaluate", "__version__"]


def __getattr__(name: str):
    """`saliencylab.evaluate`, imported on first use (PEP 562): importing any part of the package
    (a worker process, `saliencylab --help`) must not pay for Captum and SciPy."""
    if name == "evaluate":
        from .api import evaluate  # lazy: see the docstring

        return evaluate
    raise AttributeError(f"module 'saliencylab' has no attribute {name!r}")
