"""Saliency-guided training: Traditional vs SGT vs SMOOT, with the accuracy-drop test (Ismail et
al. 2021 for SGT, the SMOOT paper; defaults from the SGT authors' code, docs/protocols.md §2).

Jobs are objective x seed. Each job trains one model epoch by epoch (training.py, resumable
from its checkpoints), measures test accuracy and the accuracy-drop curves (drop_test.py), and
returns the trained model (with its K) and the saliency maps of the report's grid to the driver
as artifacts. The report is in report.py.
"""

from __future__ import annotations

import torch

from ...core.contents import FRACTION, Items, Number, Tensor, model_state_spec
from ...runs import paths
from ...runs.checkpoints import Checkpoints
from ...runs.config import to_dict
from ...runs.jobs import JobOutput
from ...runs.runner import Protocol
from ...runs.store import Layout, RunStore
from ...training.objectives import k_stats_of, make_objective
from .config import SaliencyTrainingConfig
from .drop_test import drop_test, headline_auc, method_maps
from .report import write_report
from .training import (
    build_model,
    cpu_state,
    file_specs,
    load_model,
    pixels_of,
    train_model,
    train_size,
)


def record_spec(config: SaliencyTrainingConfig, name: str, seed: int, n_test: int, pixels: int) -> dict:
    """A job's record: its own objective and seed, every epoch trained, K within the image
    (NaN for Traditional), and per method and fill the drop curve and its AUCs in [0, 100]."""
    e, epochs = config.eval, config.train.epochs
    k = Number(0, pixels, nan=name == "traditional")

    def by_fill(spec):
        return {m: {f: spec for f in e.fills} for m in e.methods}

    return {"objective": name, "seed": seed, "epochs": epochs,
            "selected_epoch": Number(0, epochs, integer=True), "train_seconds": Number(0),
            "n_test": n_test, "k_min": k, "k_median": k, "k_max": k,
            "k_median_per_epoch": Items(k, epochs),
            "val_accuracy": Items(FRACTION, epochs if config.select == "best-val" else 0),
            "accuracy": FRACTION, "curves": by_fill(Items(Number(0, 100), len(e.percents))),
            "auc": by_fill(Number(0, 100)), "auc_0_90": by_fill(Number(0, 100))}


def grid_size(config: SaliencyTrainingConfig, ds) -> int:
    return min(config.eval.grid_images, len(ds.x_test))


class SaliencyTraining(Protocol):
    name = "sgt"

    def layout(self, config: SaliencyTrainingConfig, ds, context) -> Layout:
        """The records, and each job's model file and grid maps, which its record relies on."""
        state = model_state_spec(lambda: build_model(config, ds.spec, pretrained=False))
        maps = Tensor((grid_size(config, ds), 1, *ds.spec.shape[1:]), (torch.float32,), 0)
        jobs = [(o, s) for o in config.objectives for s in config.seeds]
        artifacts = {}
        for o, s in jobs:
            artifacts[paths.sgt_model(o, s)] = file_specs(config, ds.spec, train_size(config, ds),
                                                         o, s, state)[0]
            artifacts[paths.sgt_maps(o, s)] = maps
        return Layout(
            {paths.sgt_key(o, s): record_spec(config, o, s, len(ds.x_test), pixels_of(ds.spec))
             for o, s in jobs},
            artifacts,
            {paths.sgt_key(o, s): (paths.sgt_model(o, s), paths.sgt_maps(o, s)) for o, s in jobs})

    def plan(self, config: SaliencyTrainingConfig, context) -> list:
        return [self.job(config, paths.sgt_key(o, s), o, s, checkpoints=True)
                for o in config.objectives for s in config.seeds]

    def run_job(self, config: SaliencyTrainingConfig, ds, name: str, seed: int, *,
                progress: bool, checkpoints: Checkpoints) -> JobOutput:
        """Train (or take from the checkpoints) one (objective, seed) model, measure it, and
        return it with its K and the grid's maps."""
        spec = file_specs(config, ds.spec, train_size(config, ds), name, seed)[0]
        state = checkpoints.load(paths.TRAINED_MODEL, spec)
        if state is not None:  # trained before the run was stopped during the drop test
            model = load_model(config, ds.spec, state).to(ds.x_train.device)
            objective = make_objective(name, config.objective, train_size(config, ds),
                                       ds.spec.num_classes, pixels_of(ds.spec))
            objective.load_state_dict(state["objective"])
            history = state["history"]
        else:
            model, objective, history = train_model(config, ds, name, seed, checkpoints, progress)
            state = {"model": cpu_state(model), "objective": objective.state_dict(),
                     "history": history, "config": to_dict(config), "objective_name": name,
                     "seed": seed}
            checkpoints.save(paths.TRAINED_MODEL, state, spec)
        record = {"objective": name, "seed": seed, "epochs": history["epoch"],
                  "selected_epoch": history["selected_epoch"], "train_seconds": history["seconds"],
                  "n_test": len(ds.x_test), **k_stats_of(objective, pixels_of(ds.spec)),
                  "k_median_per_epoch": history["k_median"], "val_accuracy": history["val_accuracy"]}
        record.update(drop_test(config, model, ds))
        n = grid_size(config, ds)
        maps = method_maps(config, model, ds.x_test[:n], ds.y_test[:n], ds.spec,
                           config.eval.methods[0]).abs().cpu()
        return JobOutput(record, {paths.sgt_model(name, seed): state,
                                  paths.sgt_maps(name, seed): maps})

    def describe(self, record: dict) -> str:
        return f"accuracy {record['accuracy']:.4f}, AUC {headline_auc(record):.2f}"

    def report(self, config: SaliencyTrainingConfig, store: RunStore, ds, context,
               seconds: float, failed: dict[str, str]) -> None:
        write_report(config, store, ds, seconds, failed)


SALIENCY_TRAINING = SaliencyTraining()
