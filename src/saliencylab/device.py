"""Placeholder until the device module lands: device_kind for the run hash."""

import torch


def device_kind(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name.split(":")[0]
