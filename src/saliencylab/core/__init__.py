"""The lowest layer, used by every other: errors, value checks, the device, a model's train/eval
mode, and progress and messages."""
