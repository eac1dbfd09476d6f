"""The config of saliency-guided training (`saliencylab sgt`, `train`): every key, its default and
its source are in docs/protocols.md §2."""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import attribution, data, models
from ...attribution import MethodOptions
from ...core.checks import added, check, check_choice, check_count, check_unique, renamed
from ...data import DataOptions
from ...models.vit import VitConfig
from ...removal import FILLS, REMOVALS
from ...runs.config import RunOptions
from ...training.config import TrainConfig
from ...training.objectives import OBJECTIVES, ObjectiveConfig

# The SGT authors' evaluation (Scripts/maskedAcc_MNIST.py line 126, Helper.py lines 132-176):
# Captum Grad, SmoothGrad² (NoiseTunnel defaults: 5 samples, stdev 1.0), IG and DeepLift
# against uniform [0, 1) random baselines, GradientShap (stdev 0.09) and DeepLiftShap against a
# pool of 5 x batch random baselines (their test batch is 20: 100), and a random mask.
AUTHORS_METHODS = ("gradient", "smoothgrad_sq", "integrated_gradients", "deeplift",
                   "gradient_shap", "deeplift_shap", "random")
AUTHORS_OPTIONS = MethodOptions(baseline="uniform", smoothgrad_samples=5, smoothgrad_stdev=1.0,
                                shap_baselines=100, gradient_shap_samples=5,
                                gradient_shap_stdev=0.09, output="log_softmax")


@dataclass(frozen=True)
class DropTestConfig:
    """The accuracy-drop test (the SGT authors' maskedAcc_MNIST.py by default)."""

    methods: tuple[str, ...] = AUTHORS_METHODS  # each ranks the test pixels by |attribution|
    # what removed pixels become; the first is the headline: corner = each image's own top-left
    # pixel (their default `trueMask`), then mean and uniform (within the remaining range)
    fills: tuple[str, ...] = ("corner", "mean", "uniform")
    attribution: MethodOptions = AUTHORS_OPTIONS  # explains log p(label), as their model's output
    target: str = "label"  # label | predicted: the class the saliency explains
    # morf: remove the most salient pixels first | lerf: the least salient; once the key `order`
    # (most | least)
    removal: str = renamed("morf", "order", {"most": "morf", "least": "lerf"})
    percents: tuple[float, ...] = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)  # theirs stop at 90
    seed: int = 0  # random fills
    grid_images: int = 6  # test images in the saliency-map grid
    batch_size: int = 500

    def validate(self) -> None:
        check(len(self.methods) > 0, "eval.methods must name at least one method")
        for method in self.methods:
            check_choice(method, attribution.method_names(), "eval method")
        check_unique(self.methods, "eval.methods")
        check(len(self.fills) > 0, "eval.fills must name at least one fill")
        for fill in self.fills:
            check_choice(fill, FILLS, "eval fill")
        check_unique(self.fills, "eval.fills")
        self.attribution.validate()
        check_choice(self.target, ("label", "predicted"), "eval.target")
        check_choice(self.removal, REMOVALS, "eval.removal")
        check(len(self.percents) >= 2 and all(0 <= p <= 100 for p in self.percents)
              and list(self.percents) == sorted(set(self.percents)),
              "eval.percents must be at least two increasing values in [0, 100]")
        check(self.grid_images >= 1 and self.batch_size >= 1,
              "eval.grid_images and eval.batch_size must be >= 1")


@dataclass(frozen=True)
class SaliencyTrainingConfig(RunOptions):
    dataset: str = "mnist"
    data: DataOptions = added(default_factory=DataOptions)  # data.*: how folder:/npz: are read
    model: str = "sgt_cnn"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=100, batch_size=256, optimizer="adadelta", lr=1.0))
    objectives: tuple[str, ...] = OBJECTIVES
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval: DropTestConfig = field(default_factory=DropTestConfig)  # the accuracy-drop test
    vit: VitConfig = field(default_factory=VitConfig)  # used when model = deit_tiny
    seeds: tuple[int, ...] = (0, 1, 2)
    # which model is evaluated: last (after the final epoch) or best-val (the epoch with the
    # best accuracy on `val_size` training images held out; the authors pick the best *test*
    # accuracy, train_MNIST.py lines 140-150, which we do not copy)
    select: str = "last"
    val_size: int = 5000
    n_train: int | None = None  # use only the first n images (quick runs); None = all
    n_test: int | None = None

    def validate(self) -> None:
        data.check_dataset(self.dataset, self.data)
        models.check_model(self.model, self.vit)
        check(len(self.objectives) > 0, "objectives must name at least one objective")
        for name in self.objectives:
            check_choice(name, OBJECTIVES, "objective")
        check_unique(self.objectives, "objectives")
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.seeds, "seeds")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        check_choice(self.select, ("last", "best-val"), "select")
        check(self.val_size >= 1, "val_size must be >= 1")
        check(self.select != "best-val" or self.n_train is None or self.val_size < self.n_train,
              f"val_size ({self.val_size}) must be smaller than n_train ({self.n_train})")
        self.validate_run_options()
        self.train.validate()
        self.objective.validate()
        self.eval.validate()
