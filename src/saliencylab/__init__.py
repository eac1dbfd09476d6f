"""saliencylab: measure and improve saliency maps of image classifiers."""

__version__ = "0.2.0"


def evaluate(*args, **kwargs):
    """Every faithfulness metric of every method on your model: see `saliencylab.api.evaluate`."""
    from .api import evaluate as run

    return run(*args, **kwargs)
