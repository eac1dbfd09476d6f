"""How a data set from your own files is read: the `data.*` keys of every protocol config."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.checks import check


@dataclass(frozen=True)
class DataOptions:
    """`--dataset folder:PATH` (torchvision's ImageFolder layout) and `--dataset npz:FILE`."""

    # 1 | 3: force grey or RGB; none = as stored (RGB as soon as one image is in colour)
    channels: int | None = None
    # H or H,W: resize the short side (bilinear, antialiased) and centre-crop, as torchvision's
    # Resize + CenterCrop; none = every image must already have one size
    size: tuple[int, ...] | None = None
    # per-channel mean and std in [0, 1] units (e.g. ImageNet's 0.485,0.456,0.406 and
    # 0.229,0.224,0.225); none = computed once over the train split and cached
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # one PATH/<class>/* tree: the share of each class held out as the test split (seeded)
    test_fraction: float = 0.2
    split_seed: int = 0  # the split, and the order of the images (subsets take the first n)
    # true: decode once into a memory-mapped uint8 cache in the user cache folder, read in
    # batches; false: decode into memory on every load
    cache: bool = True

    def validate(self) -> None:
        check(self.channels in (None, 1, 3), f"data.channels must be 1, 3 or none, got "
                                             f"{self.channels}")
        check(self.size is None or (len(self.size) in (1, 2) and min(self.size) >= 1),
              f"data.size must be H or H,W (pixels >= 1), got {self.size}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            check(value is None or len(value) in (1, 3), f"data.{key} must give 1 or 3 values "
                                                         f"(one per channel), got {value}")
        check((self.mean is None) == (self.std is None), "data.mean and data.std go together: "
                                                         "give both, or neither")
        check(self.std is None or min(self.std) > 0, f"data.std must be > 0, got {self.std}")
        check(0 < self.test_fraction < 1, f"data.test_fraction must lie in (0, 1), got "
                                          f"{self.test_fraction}")

    def shape(self) -> tuple[int, int] | None:
        """(H, W) asked for, or None."""
        return None if self.size is None else (self.size[0], self.size[-1])
