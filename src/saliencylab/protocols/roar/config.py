"""The config of ROAR and KAR (`saliencylab roar`): every key, its default and its source are in
docs/protocols.md §1."""

from dataclasses import dataclass, field

from ... import attribution, data, models
from ...attribution import MethodOptions
from ...core.checks import added, check, check_choice, check_count, check_unique, renamed
from ...data import DataOptions
from ...removal import FILLS, REMOVALS
from ...runs.config import RunOptions
from ...training.config import TrainConfig

REFERENCE = "reference"  # the 0% jobs: clean data, shared by every method


@dataclass(frozen=True)
class RoarConfig(RunOptions):
    dataset: str = "mnist"
    data: DataOptions = added(default_factory=DataOptions)  # data.*: how folder:/npz: are read
    model: str = "lenet"
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: tuple[str, ...] = ("integrated_gradients", "random")
    thresholds: tuple[float, ...] = (0.0, 10.0, 30.0, 50.0, 70.0, 90.0)  # percent removed
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    base_seed: int = 1000  # seed of the base model that the attributions explain
    # morf: remove the most important pixels first (ROAR) | lerf: the least important (KAR, keep
    # and retrain); once the key `kar` (true = lerf)
    removal: str = renamed("morf", "kar", {False: "morf", True: "lerf"})
    # what removed pixels become: mean (Hooker et al.), or linear, ROAD's noisy linear
    # imputation (Rong et al. 2022), their fix for the class information that the mask's
    # shape leaks; every fill of `removal.FILLS` is accepted
    fill: str = "mean"
    target: str = "predicted"  # predicted | label: the class the attribution explains
    attribution: MethodOptions = field(default_factory=MethodOptions)  # every method's knobs
    attribution_batch: int = 256  # images per attribution call
    n_train: int | None = None  # use only the first n images (quick runs); None = all
    n_test: int | None = None

    def validate(self) -> None:
        data.check_dataset(self.dataset, self.data)
        models.check_model(self.model)
        for method in self.methods:
            check_choice(method, attribution.method_names(), "attribution method")
        check(len(self.methods) > 0, "methods must name at least one attribution method")
        check(len(self.thresholds) > 0, "thresholds must list at least one percentage, e.g. "
              "--set thresholds=0,10,30,50,70,90")
        check(all(0 <= t <= 100 for t in self.thresholds),
              f"thresholds must lie in [0, 100] (percent removed), got {self.thresholds}")
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.methods, "methods")
        check_unique(self.thresholds, "thresholds")
        check_unique(self.seeds, "seeds")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        check(self.target in ("predicted", "label"), "target must be predicted or label")
        check_choice(self.fill, FILLS, "fill")
        check_choice(self.removal, REMOVALS, "removal")
        check(self.attribution_batch >= 1, "attribution_batch must be >= 1")
        self.attribution.validate()
        self.train.validate()
        self.validate_run_options()
