"""The config of pruning vs explanation quality (`saliencylab prune`): every key, its default and
its source are in docs/protocols.md §3."""

from dataclasses import dataclass, field

from ... import attribution, data, models
from ...core.checks import added, check, check_choice, check_count, check_unique
from ...data import DataOptions
from ...runs.config import RunOptions
from ...training.config import TrainConfig
from ...training.pruning import STRATEGIES

COLUMNS = ["seed", "level", "density", "accuracy", "accuracy_noisy", "iou"]


def _pretrain() -> TrainConfig:  # 10 epochs: lr 0.01, then 0.001 for the last 2
    return TrainConfig(epochs=10, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9,
                       weight_decay=1e-4, lr_milestones=(8,), lr_decay=0.1)


def _retrain() -> TrainConfig:  # 10 epochs: lr 0.01 x5, 0.001 x3, 0.0001 x2
    return TrainConfig(epochs=10, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9,
                       weight_decay=1e-4, lr_milestones=(5, 8), lr_decay=0.1)


@dataclass(frozen=True)
class PruneConfig(RunOptions):
    dataset: str = "mnist"
    data: DataOptions = added(default_factory=DataOptions)  # data.*: how folder:/npz: are read
    model: str = "tiny_cnn"
    pretrain: TrainConfig = field(default_factory=_pretrain)
    retrain: TrainConfig = field(default_factory=_retrain)
    levels: int = 25  # pruning levels after level 0 (the pre-trained model)
    fraction: float = 0.2  # of the remaining prunable weights, per level
    strategy: str = "magnitude"  # magnitude | random (the control)
    rewind_epoch: int | None = None  # None: rewind to the pre-trained weights; k: after k epochs
    seeds: tuple[int, ...] = (333, 334, 335)
    method: str = "gradcam++"  # attribution method of the heatmaps
    # the layer Grad-CAM(++) reads: activation (the ReLU after the last conv: rectified maps) or
    # conv (the Conv2d itself, pre-ReLU, as pytorch-grad-cam's users pass it), or a module path
    cam_layer: str = "activation"
    noise: float = 0.2  # background noise: uniform in [0, noise] on zero pixels
    test_noise_seed: int = 0  # the noisy test set is drawn once from this seed
    n_train: int | None = None  # use only the first n images (quick runs); None = all
    n_test: int | None = None
    n_heatmaps: int | None = None  # IoU over the first n test images; None = the whole test set
    attribution_batch: int = 1000
    n_examples: int = 6  # example heatmaps kept per level for the report's grid
    grid_levels: tuple[int, ...] = ()  # levels shown in the grid; () = about 6, evenly spaced

    def validate(self) -> None:
        data.check_dataset(self.dataset, self.data)
        models.check_model(self.model)
        check_choice(self.method, attribution.method_names(), "attribution method")
        attribution.MethodOptions(cam_layer=self.cam_layer).validate()
        check_choice(self.strategy, STRATEGIES, "pruning strategy")
        check(self.levels >= 0, "levels must be >= 0")
        check(0 < self.fraction < 1, f"fraction must lie in (0, 1), got {self.fraction}")
        check(self.rewind_epoch is None or 0 <= self.rewind_epoch <= self.pretrain.epochs,
              "rewind_epoch must be empty (pre-trained weights) or within 0..pretrain.epochs")
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.seeds, "seeds")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        check(0 <= self.noise <= 1, "noise must lie in [0, 1] (pixel scale)")
        check(self.n_heatmaps is None or self.n_heatmaps >= 1, "n_heatmaps must be >= 1")
        check(self.attribution_batch >= 1 and self.n_examples >= 0,
              "attribution_batch must be >= 1 and n_examples >= 0")
        check(all(0 <= g <= self.levels for g in self.grid_levels),
              "grid_levels must lie within 0..levels")
        self.pretrain.validate()
        self.retrain.validate()
        self.validate_run_options()
