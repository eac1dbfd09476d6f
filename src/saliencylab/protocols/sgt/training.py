"""Training one SGT/SMOOT (or Traditional) model epoch by epoch, resumable after a kill: the
model, optimizer, objective state (SMOOT's K), history and best validation state are kept in
the job's checkpoints (runs/checkpoints.py) after every epoch."""

from __future__ import annotations

import dataclasses
import time

import torch

from ... import data, models
from ...core import progress as log
from ...core.contents import FRACTION, Either, Items, Number, Tensor, model_state_spec, tensors_like
from ...core.device import generator
from ...evaluation.classification import accuracy
from ...runs import paths
from ...runs.checkpoints import Checkpoints
from ...training.loop import lr_at, make_optimizer, train
from ...training.objectives import SMOOT, k_stats_of, make_objective
from .config import SaliencyTrainingConfig


def split_validation(config: SaliencyTrainingConfig, ds: data.Dataset):
    """(train images, train labels, validation images, validation labels): with best-val,
    `val_size` training images drawn by a fixed seeded permutation (the same for every model)
    are held out; with last, every training image trains and there is no validation set."""
    if config.select != "best-val":
        return ds.x_train, ds.y_train, None, None
    order = torch.randperm(len(ds.x_train), generator=generator("cpu", 0))
    val, keep = order[:config.val_size].to(ds.x_train.device), order[config.val_size:].to(ds.x_train.device)
    return ds.x_train[keep], ds.y_train[keep], ds.x_train[val], ds.y_train[val]


def build_model(config: SaliencyTrainingConfig, spec, pretrained: bool = True) -> torch.nn.Module:
    vit = config.vit if pretrained else config.vit.random_init()
    return models.build_model(config.model, spec.shape, spec.num_classes, vit)


def load_model(config: SaliencyTrainingConfig, spec, state: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(config, spec, pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval()


def pixels_of(spec) -> int:
    return spec.shape[1] * spec.shape[2]


def train_size(config: SaliencyTrainingConfig, ds) -> int:
    """The images a model trains on: all training images, less the validation split."""
    return len(ds.x_train) - (config.val_size if config.select == "best-val" else 0)


def file_specs(config: SaliencyTrainingConfig, spec, n_train: int, name: str, seed: int,
               state: dict | None = None) -> tuple[dict, dict]:
    """The specs of job (name, seed)'s model file and of its training checkpoint: the state
    dict of the model (`state`, or one built here), SMOOT's K of each of the n_train images
    within its bounds, the history of the epochs trained."""
    pixels, epochs = pixels_of(spec), config.train.epochs
    state = state or model_state_spec(lambda: build_model(config, spec, pretrained=False))
    objective = make_objective(name, config.objective, n_train, spec.num_classes, pixels)
    learned = ({"K": Tensor((n_train,), (torch.int32,), objective.k_min, objective.k_max),
                "k_unit": config.objective.k_unit} if name == "smoot" else {})
    k = Number(0, pixels, nan=name == "traditional")
    history = {"epoch": epochs, "k_median": Items(k, epochs),
               "val_accuracy": Items(FRACTION, epochs if config.select == "best-val" else 0),
               "seconds": Number(0), "selected_epoch": Number(0, epochs, integer=True)}
    model_file = {"model": state, "objective": learned, "history": history, "config": dict,
                  "objective_name": name, "seed": seed}
    so_far = {**history, "epoch": Number(1, epochs, integer=True), "k_median": Items(k),
              "val_accuracy": Items(FRACTION)}
    checkpoint = {"model": state, "optimizer": {"state": dict, "param_groups": list},
                  "objective": learned, "history": so_far,
                  "best": Either(None, {"model": state, "objective": learned})}
    return model_file, checkpoint


def train_model(config: SaliencyTrainingConfig, ds, name: str, seed: int,
                checkpoints: Checkpoints, progress: bool = True):
    """Train one model with objective `name`, one epoch at a time, on ds's device, resuming from
    the job's training checkpoint if there is one. Epoch e uses seed (seed, e) for shuffling,
    dropout and fill noise, so a resumed run gives the same result as an uninterrupted one.
    Returns (model, objective, history), the model being the selected one (`select`)."""
    device = ds.x_train.device
    x, y, x_val, y_val = split_validation(config, ds)
    torch.manual_seed(seed)
    model = build_model(config, ds.spec).to(device)
    optimizer = make_optimizer(model, config.train)
    objective = make_objective(name, config.objective, len(x), ds.spec.num_classes,
                               pixels_of(ds.spec), seed)
    history = {"epoch": 0, "k_median": [], "val_accuracy": [], "seconds": 0.0,
               "selected_epoch": 0}
    best = None
    spec = file_specs(config, ds.spec, len(x), name, seed, tensors_like(model.state_dict()))[1]
    state = checkpoints.load(paths.TRAINING_STATE, spec)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        objective.load_state_dict(state["objective"])
        history, best = state["history"], state["best"]
    for epoch in range(history["epoch"], config.train.epochs):
        started = time.perf_counter()
        epoch_seed = seed * 100003 + epoch
        objective.reseed(epoch_seed)
        cfg = dataclasses.replace(config.train, epochs=1, lr=lr_at(config.train, epoch),
                                  lr_milestones=())
        train(model, x, y, ds.spec, cfg, epoch_seed, objective=objective, optimizer=optimizer,
              progress=progress, desc=f"{paths.sgt_key(name, seed)} epoch {epoch + 1}/{config.train.epochs}",
              epoch_offset=epoch)
        if isinstance(objective, SMOOT):  # issue 19: how δ and K moved this epoch
            log.info(f"{paths.sgt_key(name, seed)} epoch {epoch + 1}: {objective.epoch_summary()}")
        history = {**history, "epoch": epoch + 1,
                   "seconds": history["seconds"] + time.perf_counter() - started,
                   "k_median": history["k_median"] + [k_stats_of(objective, pixels_of(ds.spec))["k_median"]]}
        if x_val is not None:
            score = accuracy(model, x_val, y_val, ds.spec)
            history["val_accuracy"] = history["val_accuracy"] + [score]
            if best is None or score > max(history["val_accuracy"][:-1], default=-1.0):
                best = {"model": cpu_state(model), "objective": objective.state_dict()}
                history["selected_epoch"] = epoch + 1
        else:
            history["selected_epoch"] = epoch + 1
        checkpoints.save(paths.TRAINING_STATE, {
            "model": cpu_state(model), "optimizer": optimizer.state_dict(),
            "objective": objective.state_dict(), "history": history, "best": best}, spec)
    if best is not None:
        model.load_state_dict(best["model"])
        objective.load_state_dict(best["objective"])
    return model.eval(), objective, history


def cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
