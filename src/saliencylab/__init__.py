"""saliencylab: measure and improve saliency maps of image classifiers."""

__version__ = "0.2.0"

__all__ = ["evaluate", "explain_func", "__version__"]


def __getattr__(name: str):
    """`saliencylab.evaluate` and `saliencylab.explain_func`, imported on first use (PEP 562):
    importing any part of the package (a worker process, `saliencylab --help`) must not pay for
    Captum and SciPy."""
    if name in ("evaluate", "explain_func"):
        from . import api  # lazy: see the docstring

        return getattr(api, name)
    raise AttributeError(f"module 'saliencylab' has no attribute {name!r}")
