"""ROAR, remove and retrain (Hooker et al. 2019), and its mirror KAR (docs/protocols.md §1).

1. Train a base model on clean data; attribute every train and test image to the base
   model's predicted class (or the true label) and rank the pixels by |attribution|.
2. Replace the top-t% pixels of every image by the data set's mean pixel value.
3. Train a fresh model on the modified train set, test it on the modified test set, per seed.
The `random` method is the baseline: a seeded random ranking per image, fixed for the run.

Jobs get the data set and the rankings as shared inputs (loaded once per worker process, or
shipped through Ray's object store), and run on the configured device.
"""

import dataclasses
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import torch

from .. import attribution, data, models
from ..attribution import MethodOptions
from ..core.checks import check, check_choice, check_count, check_unique
from ..core.device import describe, on_device, prepare
from ..core.errors import UserError
from ..data.batches import predict
from ..evaluation.classification import evaluate
from ..evaluation.statistics import mean_std
from ..removal import FILLS, fill, rank_pixels, removal_mask
from ..runs.config import RunOptions, config_hash, from_dict
from ..runs.contents import FRACTION, Tensor, model_state_spec
from ..runs.executor import ExecOptions, Job, run_jobs
from ..runs.report import errorbar_plot, failures_section, fmt_mean_std, markdown_table, write_csv
from ..runs.store import Layout, RunStore, atomic_write_text, load_verified, read_finished
from ..training.config import TrainConfig
from ..training.loop import train

REFERENCE = "reference"  # the 0% jobs: clean data, shared by every method


@dataclass(frozen=True)
class RoarConfig(RunOptions):
    dataset: str = "mnist"
    model: str = "lenet"
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: tuple[str, ...] = ("integrated_gradients", "random")
    thresholds: tuple[float, ...] = (0.0, 10.0, 30.0, 50.0, 70.0, 90.0)  # percent removed
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    base_seed: int = 1000  # seed of the base model that the attributions explain
    kar: bool = False  # keep and retrain: remove the least important pixels instead
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
        check_choice(self.dataset, data.DATASETS, "dataset")
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
        check(self.attribution_batch >= 1, "attribution_batch must be >= 1")
        self.attribution.validate()
        self.train.validate()
        self.validate_run_options()


def job_key(method: str, threshold: float, seed: int) -> str:
    return f"{method}-t{threshold:g}-s{seed}"


@lru_cache(maxsize=2)
def load_data(config: RoarConfig, data_dir: str | None) -> "data.Dataset":
    return data.load_dataset(config.dataset, data_dir).subset(config.n_train, config.n_test)


# what the run's files hold (store.py, contents.py) ------------------------------------------
def record_specs(config: RoarConfig, classes: int) -> dict[str, dict]:
    """Each job's record: its own method, threshold and seed, and its test accuracy and
    per-class precision, each in [0, 1]."""
    return {job_key(m, t, s): {"method": m, "threshold": t, "seed": s, "accuracy": FRACTION,
                               **{f"precision_{c}": FRACTION for c in range(classes)}}
            for m, t, s in plan_keys(config)}


def layout(config: RoarConfig, ds) -> Layout:
    """The records, the base model (a state dict that loads into the model, and its accuracy)
    and one ranking per method: every train and test image's pixel order, [N, H*W]."""
    pixels = ds.spec.shape[1] * ds.spec.shape[2]
    ranking = {split: Tensor((len(x), pixels), (torch.int16, torch.int32, torch.int64), 0, pixels - 1)
               for split, x in (("train", ds.x_train), ("test", ds.x_test))}
    state = model_state_spec(lambda: models.build_model(config.model, ds.spec.shape,
                                                        len(ds.spec.classes)))
    artifacts = {"base_model.pt": {"state": state, "accuracy": FRACTION}}
    artifacts.update({ranking_artifact(m): ranking for m in config.methods})
    return Layout(record_specs(config, len(ds.spec.classes)), artifacts)


def read_run_config(run_dir: Path) -> RoarConfig:
    """The config of the ROAR run in `run_dir` (its config.json), or a one-line UserError."""
    fix = "point roar_run at a directory that `saliencylab roar` made, or drop the roar metric"
    try:
        table = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
        raise UserError(f"roar_run {run_dir} is not a ROAR run: its config.json cannot be read "
                        f"({why}): {fix}") from None
    if isinstance(table, dict):
        try:
            return from_dict(RoarConfig(), table)
        except UserError:
            pass
    raise UserError(f"roar_run {run_dir} is not a ROAR run: its config.json is not a ROAR config: "
                    f"{fix}")


def read_finished_run(run_dir: Path, config: RoarConfig, classes: int) -> list[dict]:
    """Every job record of the finished ROAR run in `run_dir` (made with `config`), each one
    checked as the run's own store checks it; a one-line UserError if any is missing or invalid."""
    kinds = ("cpu", "cuda") if config.device == "auto" else (config.device,)
    hashes = [config_hash(dataclasses.replace(config, device=kind)) for kind in kinds]
    run_hash = next((h for h in hashes if run_dir.name.endswith(h)), hashes[0])
    records, untrusted = read_finished(run_dir, run_hash, Layout(record_specs(config, classes)))
    if untrusted:
        key, why = next(iter(untrusted.items()))
        raise UserError(f"roar_run {run_dir} is not a finished ROAR run: {len(untrusted)} of "
                        f"{len(untrusted) + len(records)} jobs are missing or invalid ({key}: "
                        f"{why}): finish it with `saliencylab roar` and the same config")
    return list(records.values())


def load_ranking(run_dir: str, method: str, spec) -> dict:
    """A cached ranking (computed by `compute_rankings`), verified against its sha256 and `spec`."""
    return load_verified(Path(run_dir) / "artifacts" / ranking_artifact(method), Path(run_dir), spec)


def ranking_artifact(method: str) -> str:
    return f"ranking-{method}.pt"


def remove_pixels(x: torch.Tensor, order: torch.Tensor, threshold: float, config: RoarConfig,
                  spec, seed: int = 0) -> torch.Tensor:
    """The images with their top-t% pixels (KAR: bottom) replaced by `config.fill`, uint8 again.
    Random fills draw from `seed`, the same for every retraining seed of a (method, t)."""
    mask = removal_mask(order, threshold, spec.shape[1:], keep=config.kar)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    chunks = [fill(x[i:i + 4096].float(), mask[i:i + 4096], config.fill,
                   mean_pixel=spec.mean_pixel(x.device), generator=generator)
              for i in range(0, len(x), 4096)]
    return torch.cat(chunks).round().clamp(0, 255).to(torch.uint8)


def roar_job(config: RoarConfig, method: str, threshold: float, seed: int, *, progress: bool,
             dataset, ranking: dict | None = None) -> dict:
    """Train a fresh model on the modified train set and test it on the modified test set."""
    device = prepare(config)
    ds = on_device(dataset, device)
    x_train, x_test = ds.x_train, ds.x_test
    if method != REFERENCE:
        x_train = remove_pixels(x_train, ranking["train"].to(device), threshold, config, ds.spec, 1)
        x_test = remove_pixels(x_test, ranking["test"].to(device), threshold, config, ds.spec, 2)
    torch.manual_seed(seed)
    model = models.build_model(config.model, ds.spec.shape, len(ds.spec.classes)).to(device)
    train(model, x_train, ds.y_train, ds.spec, config.train, seed, progress=progress,
          desc=job_key(method, threshold, seed))
    result = evaluate(model, x_test, ds.y_test, ds.spec)
    return {"method": method, "threshold": threshold, "seed": seed, **result.as_record()}


def base_model(config: RoarConfig, ds, store: RunStore) -> tuple[torch.nn.Module, float]:
    """The model the attributions explain: trained once per run, then loaded from the run."""
    torch.manual_seed(config.base_seed)
    model = models.build_model(config.model, ds.spec.shape, len(ds.spec.classes))
    model.to(ds.x_train.device)
    cached = store.load_tensor("base_model.pt")
    if cached is None:
        train(model, ds.x_train, ds.y_train, ds.spec, config.train, config.base_seed,
              desc="base model")
        accuracy = evaluate(model, ds.x_test, ds.y_test, ds.spec).accuracy
        store.save_tensor("base_model.pt", {"state": model.state_dict(), "accuracy": accuracy})
    else:
        model.load_state_dict(cached["state"])
        accuracy = cached["accuracy"]
    return model.eval(), accuracy


def compute_rankings(config: RoarConfig, ds, model, store: RunStore) -> None:
    """Attribute every train and test image once per method and cache the pixel rankings."""
    for method in config.methods:
        name = ranking_artifact(method)
        if store.load_tensor(name) is not None:
            continue
        explainer = attribution.make_method(method, config.attribution,
                                            black=ds.spec.black(ds.x_train.device))
        ranking = {}
        for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
            target = y if config.target == "label" else predict(model, x, ds.spec).argmax(1)
            a = attribution.attribute_dataset(explainer, model, x, target, ds.spec,
                                              batch_size=config.attribution_batch,
                                              desc=f"{method} ({split})")
            ranking[split] = rank_pixels(a).cpu()
        store.save_tensor(name, ranking)


def plan_keys(config: RoarConfig) -> list[tuple[str, float, int]]:
    """(method, threshold, seed) of every job: the 0% references, then each method's."""
    keys = [(REFERENCE, 0.0, s) for s in config.seeds if 0 in config.thresholds]
    return keys + [(m, t, s) for m in config.methods for t in config.thresholds if t > 0
                   for s in config.seeds]


def plan_jobs(config: RoarConfig) -> list[Job]:
    return [Job(job_key(m, t, s), roar_job, (config, m, t, s),
                {"dataset": "dataset"} if m == REFERENCE else
                {"dataset": "dataset", "ranking": f"ranking-{m}"}) for m, t, s in plan_keys(config)]


def shared_inputs(config: RoarConfig, store: RunStore, data_dir: str | None) -> dict:
    inputs = {"dataset": partial(load_data, config, data_dir)}
    inputs.update({f"ranking-{m}": partial(load_ranking, str(store.dir), m,
                                           store.layout.artifact(ranking_artifact(m)))
                   for m in config.methods})
    return inputs


def run(config: RoarConfig, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()) -> Path:
    """Run (or resume) the protocol and write its report; returns the run directory."""
    config.validate()
    device = prepare(config)
    started = time.time()
    ds = load_data(config, data_dir)
    store = RunStore(out, name, config, layout(config, ds))
    try:
        model, base_accuracy = base_model(config, on_device(ds, device), store)
        compute_rankings(config, on_device(ds, device), model, store)
        outcome = run_jobs(store, plan_jobs(config), shared=shared_inputs(config, store, data_dir),
                           options=options, desc=name)
        write_report(config, store, ds.spec, base_accuracy, time.time() - started, outcome.failed)
    finally:
        store.close()
    return store.dir


# report --------------------------------------------------------------------------------------
FILL_TEXT = {"mean": "the data set's mean pixel value",
             "linear": "ROAD's noisy linear imputation (Rong et al. 2022)"}


def write_report(config: RoarConfig, store: RunStore, spec, base_accuracy: float,
                 seconds: float, failed: dict[str, str]) -> None:
    records = sorted(store.records(), key=lambda r: (r["method"] != REFERENCE, r["method"],
                                                      r["threshold"], r["seed"]))
    classes = len(spec.classes)
    write_csv(store.dir / "results.csv", records,
              ["method", "threshold", "seed", "accuracy"] + [f"precision_{c}" for c in range(classes)])

    def runs(method: str, threshold: float) -> list[dict]:
        method = REFERENCE if threshold == 0 else method
        return [r for r in records if r["method"] == method and r["threshold"] == threshold]

    thresholds = [t for t in config.thresholds if any(runs(m, t) for m in config.methods)]
    mode = "KAR (keep and retrain)" if config.kar else "ROAR (remove and retrain)"
    accuracy_rows = [[m] + [fmt_mean_std([r["accuracy"] for r in runs(m, t)], 100)
                            for t in thresholds] for m in config.methods]
    text = [f"# {mode}: {config.dataset}, {config.model}\n",
            f"Base model (seed {config.base_seed}) test accuracy: {100 * base_accuracy:.2f}%. "
            f"{len(records)} jobs over seeds {', '.join(map(str, config.seeds))}; "
            f"{config.train.epochs} epochs each; this invocation took {seconds / 60:.1f} min on "
            f"{describe(config.device)}.\n",
            f"Attributions explain the base model's {config.target} class; removed pixels get "
            f"{FILL_TEXT.get(config.fill, config.fill)}. The 0% column is the clean-data reference "
            f"shared by all methods.\n",
            "## Test accuracy (%), mean ± std over seeds\n",
            markdown_table(["method"] + [f"{t:g}%" for t in thresholds], accuracy_rows),
            "![accuracy vs threshold](accuracy.png)\n", *failures_section(failed)]
    series = {}
    for method in config.methods:
        stats = [mean_std([100 * r["accuracy"] for r in runs(method, t)]) for t in thresholds]
        series[method] = (thresholds, [m for m, _ in stats], [s for _, s in stats])
        rows = [[f"{t:g}%"] + [fmt_mean_std([r[f"precision_{c}"] for r in runs(method, t)], 100)
                               for c in range(classes)] for t in thresholds]
        text += [f"## Per-class precision (%): {method}\n",
                 markdown_table(["removed"] + [f"class {c}" for c in range(classes)], rows)]
    errorbar_plot(store.dir / "accuracy.png", series, "% of pixels removed" + (
        " (least important)" if config.kar else " (most important)"), "test accuracy (%)",
        f"{'KAR' if config.kar else 'ROAR'}: {config.dataset}, {config.model}")
    atomic_write_text(store.dir / "report.md", "\n".join(text))
