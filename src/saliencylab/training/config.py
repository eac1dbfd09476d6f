"""How one model is trained: `TrainConfig`, the `train.*` keys of every protocol."""

import dataclasses

from ..core.checks import check

MAX_EPOCHS = 10_000  # a bound against typos: 1000000000 epochs once had an ETA of 43,024 h
OPTIMIZERS = ("sgd", "adadelta", "adamw")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How one model is trained. The learning rate is multiplied by `lr_decay` at each milestone epoch."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adadelta | adamw (ViTs from scratch)
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_decay: float = 0.1
    precision: str = "fp32"  # fp32 | bf16 (CPU autocast)

    def validate(self) -> None:
        check(0 <= self.epochs <= MAX_EPOCHS, f"train.epochs must lie in [0, {MAX_EPOCHS}] (the "
              f"longest preset trains 100), got {self.epochs}")
        check(self.batch_size >= 1, "train.batch_size must be >= 1")
        check(self.optimizer in OPTIMIZERS, f"train.optimizer must be one of {', '.join(OPTIMIZERS)}")
        check(self.lr > 0, "train.lr must be > 0")
        check(self.precision in ("fp32", "bf16"), "train.precision must be fp32 or bf16")
        check(all(0 < m <= self.epochs for m in self.lr_milestones),
               "train.lr_milestones must be epochs within 1..train.epochs")
