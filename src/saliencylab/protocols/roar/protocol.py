"""ROAR's steps (docs/protocols.md §1):

1. Train a base model on clean data; attribute every train and test image to the base
   model's predicted class (or the true label) and rank the pixels by |attribution|.
2. Replace the top-t% pixels of every image by the fill (the data set's mean pixel value), batch
   by batch as the loops read the images (`removal.RemovedImages`): no modified copy is held.
3. Train a fresh model on the modified train set, test it on the modified test set, per seed.
The `random` method is the baseline: a seeded random ranking per image, fixed for the run.

The base model and the rankings are the driver's work (`prepare`), stored once per run; the
jobs get the data set and the rankings as shared inputs. Every retraining shares the model,
the optimiser and the batch schedule, so with `batch_models` on they train as one batched
model (training/batched.py), each with its own seed, data and record.
"""

import dataclasses
import json
from functools import partial
from pathlib import Path

import torch

from ... import attribution, models
from ...core.contents import FRACTION, Tensor, model_state_spec
from ...core.errors import UserError
from ...core.progress import steps
from ...data.batches import predict
from ...evaluation.classification import classify
from ...removal import RemovedImages, rank_pixels, ranking_dtype
from ...runs import paths
from ...runs.config import config_hash, from_dict
from ...runs.files import load_verified
from ...runs.runner import Protocol
from ...runs.store import Layout, RunStore, read_finished
from ...training.batched import batchable, train_batched
from ...training.loop import train
from .config import REFERENCE, RoarConfig
from .report import write_report


def plan_keys(config: RoarConfig) -> list[tuple[str, float, int]]:
    """(method, threshold, seed) of every job: the 0% references, then each method's."""
    keys = [(REFERENCE, 0.0, s) for s in config.seeds if 0 in config.thresholds]
    return keys + [(m, t, s) for m in config.methods for t in config.thresholds if t > 0
                   for s in config.seeds]


def record_specs(config: RoarConfig, classes: int) -> dict[str, dict]:
    """Each job's record: its own method, threshold and seed, and its test accuracy and
    per-class precision, each in [0, 1]."""
    return {paths.roar_key(m, t, s): {"method": m, "threshold": t, "seed": s, "accuracy": FRACTION,
                                      **{f"precision_{c}": FRACTION for c in range(classes)}}
            for m, t, s in plan_keys(config)}


def remove_pixels(x: torch.Tensor, order: torch.Tensor, threshold: float, config: RoarConfig,
                  spec, seed: int = 0) -> RemovedImages:
    """The images with their top-t% pixels (lerf, KAR: bottom) replaced by `config.fill`, uint8
    again, made batch by batch as they are read (`removal.RemovedImages`). Random fills draw
    from `seed`, the same for every retraining seed of a (method, t)."""
    return RemovedImages(x, order, threshold, config.fill, direction=config.removal,
                         mean_pixel=spec.mean_pixel(x.device), seed=seed)


def load_ranking(run_dir: str, method: str, spec) -> dict:
    """A stored ranking, verified against its sha256 and `spec` (read by the workers)."""
    return load_verified(paths.artifact(Path(run_dir), paths.ranking(method)), Path(run_dir), spec)


class Roar(Protocol):
    name = "roar"

    def layout(self, config: RoarConfig, ds, context) -> Layout:
        """The records, the base model (a state dict that loads into the model, and its
        accuracy) and one ranking per method: every train and test image's pixel order."""
        pixels = ds.spec.shape[1] * ds.spec.shape[2]
        ranking = {split: Tensor((len(x), pixels), (torch.int16, torch.int32, torch.int64), 0,
                                 pixels - 1)
                   for split, x in (("train", ds.x_train), ("test", ds.x_test))}
        state = model_state_spec(lambda: models.build_model(config.model, ds.spec.shape,
                                                            ds.spec.num_classes))
        artifacts = {paths.BASE_MODEL: {"state": state, "accuracy": FRACTION}}
        artifacts.update({paths.ranking(m): ranking for m in config.methods})
        return Layout(record_specs(config, ds.spec.num_classes), artifacts)

    def prepare(self, config: RoarConfig, ds, store: RunStore, context) -> float:
        """The base model (trained once per run) and every method's ranking; returns the base
        model's test accuracy."""
        model, accuracy = base_model(config, ds, store)
        compute_rankings(config, ds, model, store)
        return accuracy

    def plan(self, config: RoarConfig, context) -> list:
        return [self.job(config, paths.roar_key(m, t, s), m, t, s,
                         shared={} if m == REFERENCE else {"ranking": f"ranking-{m}"},
                         batch="retrain")
                for m, t, s in plan_keys(config)]

    def shared(self, config: RoarConfig, data_dir, store: RunStore, context) -> dict:
        return {f"ranking-{m}": partial(load_ranking, str(store.dir), m,
                                        store.layout.artifact(paths.ranking(m)))
                for m in config.methods}

    def run_job(self, config: RoarConfig, ds, method: str, threshold: float, seed: int, *,
                progress: bool, ranking: dict | None = None) -> dict:
        """Train a fresh model on the modified train set and test it on the modified test set."""
        x_train, x_test = modified_data(config, ds, method, threshold, ranking)
        model = fresh_model(config, ds, seed)
        train(model, x_train, ds.y_train, ds.spec, config.train, seed, progress=progress,
              desc=paths.roar_key(method, threshold, seed))
        return job_record(model, x_test, ds, method, threshold, seed)

    def run_batch(self, config: RoarConfig, ds, members: list[tuple[tuple, dict]], *,
                  progress: bool) -> list:
        """`run_job` of every member, their models trained as one batched model; the seeds of
        one (method, threshold) share its modified data."""
        if not batchable(fresh_model(config, ds, 0)):
            return [self.run_job(config, ds, *args, progress=progress, **shared)
                    for args, shared in members]
        data = {}
        for (method, threshold, _), shared in members:
            if (method, threshold) not in data:
                data[method, threshold] = modified_data(config, ds, method, threshold,
                                                        shared.get("ranking"))
        keys = [args for args, _ in members]
        trained = train_batched([fresh_model(config, ds, s) for _, _, s in keys],
                                [data[m, t][0] for m, t, _ in keys], [ds.y_train] * len(keys),
                                ds.spec, config.train, [s for _, _, s in keys],
                                names=[paths.roar_key(*k) for k in keys], progress=progress,
                                desc="retraining")
        return [model if isinstance(model, BaseException)
                else job_record(model, data[m, t][1], ds, m, t, s)
                for model, (m, t, s) in zip(trained, keys)]

    def report(self, config: RoarConfig, store: RunStore, ds, base_accuracy: float,
               seconds: float, failed: dict[str, str]) -> None:
        write_report(config, store, ds.spec, base_accuracy, seconds, failed)


ROAR = Roar()


def modified_data(config: RoarConfig, ds, method: str, threshold: float,
                  ranking: dict | None) -> tuple:
    """The train and test images of job (method, threshold): clean for the reference, else
    views that remove pixels batch by batch (the rankings stay where they were loaded)."""
    if method == REFERENCE:
        return ds.x_train, ds.x_test
    return (remove_pixels(ds.x_train, ranking["train"], threshold, config, ds.spec, 1),
            remove_pixels(ds.x_test, ranking["test"], threshold, config, ds.spec, 2))


def fresh_model(config: RoarConfig, ds, seed: int) -> torch.nn.Module:
    """A retraining's untrained model, initialised from its seed, on the data's device."""
    torch.manual_seed(seed)
    return models.build_model(config.model, ds.spec.shape, ds.spec.num_classes).to(
        ds.x_train.device)


def job_record(model, x_test, ds, method: str, threshold: float, seed: int) -> dict:
    result = classify(model, x_test, ds.y_test, ds.spec)
    return {"method": method, "threshold": threshold, "seed": seed, **result.as_record()}


def base_model(config: RoarConfig, ds, store: RunStore) -> tuple[torch.nn.Module, float]:
    """The model the attributions explain: trained once per run, then loaded from the run."""
    torch.manual_seed(config.base_seed)
    model = models.build_model(config.model, ds.spec.shape, ds.spec.num_classes)
    model.to(ds.x_train.device)
    cached = store.load_tensor(paths.BASE_MODEL)
    if cached is None:
        train(model, ds.x_train, ds.y_train, ds.spec, config.train, config.base_seed,
              desc="base model")
        accuracy = classify(model, ds.x_test, ds.y_test, ds.spec).accuracy
        store.save_tensor(paths.BASE_MODEL, {"state": model.state_dict(), "accuracy": accuracy})
    else:
        model.load_state_dict(cached["state"])
        accuracy = cached["accuracy"]
    return model.eval(), accuracy


def compute_rankings(config: RoarConfig, ds, model, store: RunStore) -> None:
    """Attribute every train and test image once per method and store the pixel rankings."""
    for method in config.methods:
        name = paths.ranking(method)
        if store.load_tensor(name) is not None:
            continue
        explainer = attribution.make_method(method, config.attribution,
                                            black=ds.spec.black(ds.x_train.device))
        pixels = ds.spec.shape[1] * ds.spec.shape[2]
        with (store.scratch(name, (len(ds.x_train), pixels), ranking_dtype(pixels)) as train,
              store.scratch(name, (len(ds.x_test), pixels), ranking_dtype(pixels)) as test):
            for split, rows, x, y in (("train", train, ds.x_train, ds.y_train),
                                      ("test", test, ds.x_test, ds.y_test)):
                rank_split(config, explainer, model, x, y, ds.spec, rows, f"{method} ({split})")
            store.save_tensor(name, {"train": train, "test": test})


def rank_split(config: RoarConfig, explainer, model, x, y, spec, rows: torch.Tensor,
               desc: str) -> None:
    """Write the pixel ranking of every image of `x` into `rows` [N, H·W] (on the CPU; a file
    of the run, so that no split's ranking is held in memory), attributed and ranked one batch
    of `attribution_batch` images at a time: one batch's float maps at most are held."""
    size = config.attribution_batch
    for i in steps(range(0, len(x), size), desc, unit="batch", each=False):
        xb, yb = x[i:i + size], y[i:i + size]
        target = yb if config.target == "label" else predict(model, xb, spec).argmax(1)
        maps = attribution.attribute_dataset(explainer, model, xb, target, spec, batch_size=size,
                                             progress=False)
        rows[i:i + size] = rank_pixels(maps).cpu()


# another ROAR run, read by evaluate's roar metric ---------------------------------------------
def read_run_config(run_dir: Path) -> RoarConfig:
    """The config of the ROAR run in `run_dir` (its config.json), or a one-line UserError."""
    fix = "point roar_run at a directory that `saliencylab roar` made, or drop the roar metric"
    try:
        table = json.loads(paths.config_file(run_dir).read_text())
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
