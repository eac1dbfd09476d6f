"""saliencylab: measure and improve saliency maps of image classifiers."""

__version__ = "0.1.0"
