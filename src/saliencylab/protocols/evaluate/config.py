"""The config of `saliencylab evaluate`: every key, its default and its source are in
docs/protocols.md §5."""

from dataclasses import dataclass, field
from pathlib import Path

from ... import data, models
from ...attribution import MethodOptions
from ...core.checks import added, check, check_choice, check_count, check_unique
from ...data import DataOptions
from ...evaluation.measure import check_selection
from ...evaluation.settings import Settings
from ...models.vit import VitConfig
from ...runs.config import RunOptions
from ...training.config import TrainConfig

DEFAULT_METHODS = ("gradient", "integrated_gradients", "guided_backprop", "smoothgrad",
                   "smoothgrad_sq", "vargrad", "deeplift", "gradcam++", "random")


@dataclass(frozen=True)
class EvaluateConfig(RunOptions):
    dataset: str = "mnist"
    data: DataOptions = added(default_factory=DataOptions)  # data.*: how folder:/npz: are read
    model: str = "lenet"  # a registered model, or your own: package.module:function
    model_file: str = ""  # your weights (a state_dict); "" = train the model here, per seed
    vit: VitConfig = added(default_factory=VitConfig)  # vit.*: used when model = deit_tiny
    train: TrainConfig = field(default_factory=TrainConfig)  # roar-mnist's schedule
    methods: tuple[str, ...] = DEFAULT_METHODS
    metrics: tuple[str, ...] = ("road", "deletion", "insertion", "mprt", "accuracy_drop", "roar")
    attribution: MethodOptions = field(default_factory=MethodOptions)
    target: str = "predicted"  # predicted | label: the class the maps explain
    settings: Settings = field(default_factory=Settings)
    seeds: tuple[int, ...] = (0, 1, 2)
    roar_run: str = ""  # a finished ROAR run of the same data and model, for the roar metric
    n_train: int | None = None
    n_test: int | None = 1000  # test images every metric is measured on
    bootstrap: int = 1000  # resamples of the 95% CIs over images
    # the metric report card (issue 18; data with masks): MetaQuantus's resilience and
    # reactivity on the first card_images test images (0: no card), card_perturbations each
    card_images: int = added(0)
    card_perturbations: int = added(5)  # MetaQuantus README K

    def vit_for_build(self) -> VitConfig:
        """deit_tiny's vit.* keys as the model is built: without pretrained weights when your
        weights (model_file) are loaded into it next."""
        return self.vit.random_init() if self.model_file else self.vit

    def validate(self) -> None:
        data.check_dataset(self.dataset, self.data)
        models.check_model(self.model, self.vit_for_build())
        check_selection(self.methods, self.metrics)
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.seeds, "seeds")
        check_choice(self.target, ("predicted", "label"), "target")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        check(self.bootstrap >= 10, "bootstrap must be >= 10 resamples")
        check(isinstance(self.card_images, int) and self.card_images >= 0,
              f"card_images must be a whole number >= 0 (0: no report card), got {self.card_images!r}")
        check(isinstance(self.card_perturbations, int) and self.card_perturbations >= 1,
              f"card_perturbations must be a whole number >= 1, got {self.card_perturbations!r}")
        self.settings.validate()
        check(not self.model_file or Path(self.model_file).is_file(),
              f"model_file {self.model_file!r} is not a file: give the weights saved with "
              f"torch.save(model.state_dict(), PATH)")
        check("roar" not in self.metrics or not self.roar_run or Path(self.roar_run).is_dir(),
              f"roar_run {self.roar_run!r} is not a directory: give a finished ROAR run")
        self.attribution.validate()
        self.train.validate()
        self.validate_run_options()
