"""Saliency-guided training: Traditional vs SGT vs SMOOT, with accuracy-drop evaluation
(DESIGN.md §2; Ismail et al. 2021 for SGT, the SMOOT paper for SMOOT).

Jobs are objective x seed. Each job trains one model epoch by epoch, saving a checkpoint
(model, optimizer, SMOOT's K, median K so far) after every epoch, so a killed job resumes
at the next epoch with the same K; then it measures test accuracy and the accuracy-drop
curve (remove the top-x% most salient test features, x = 0, 10, ..., 100) and its AUC.

Also here, used by the CLI: `saliencylab train` (one model, one objective) and
`saliencylab sgt-analysis` (the SMOOT paper's motivating analysis).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

from .. import attribution, data, models
from ..config import (RunOptions, TrainConfig, apply_sets, check, check_choice, check_count,
                      check_unique, from_dict, load_preset, preset_names, to_dict)
from ..errors import UserError
from ..executor import Job, run_jobs
from ..masking import fill_mean, fill_uniform_in_range, rank_pixels, removal_mask
from ..metrics import drop_curve_auc, mean_std
from ..objectives import OBJECTIVES, SGT, ObjectiveConfig, k_stats_of, make_objective
from ..report import fmt_mean_std, markdown_table, save_figure, write_csv
from ..store import RunStore, atomic_write, atomic_write_text
from ..training import lr_at, make_optimizer, predict, prepare_batch, train
from ..vit import VitConfig, build_deit

PROTOCOL = "sgt"


@dataclass(frozen=True)
class EvalConfig:
    """The accuracy-drop evaluation."""

    method: str = "gradient"  # attribution method ranking the test features (by |a|)
    target: str = "label"  # label | predicted: the class the saliency explains
    order: str = "most"  # most: remove the most salient first | least: the reverse
    fill: str = "uniform"  # uniform: random within [min, max] of the remaining pixels | mean
    percents: tuple[float, ...] = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    seed: int = 0  # fill noise
    grid_images: int = 6  # test images in the saliency-map grid
    batch_size: int = 500

    def validate(self) -> None:
        check_choice(self.method, attribution.METHODS, "eval.method")
        check(self.target in ("label", "predicted"), "eval.target must be label or predicted")
        check(self.order in ("most", "least"), "eval.order must be most or least")
        check(self.fill in ("uniform", "mean"), "eval.fill must be uniform or mean")
        check(len(self.percents) >= 2 and all(0 <= p <= 100 for p in self.percents)
              and list(self.percents) == sorted(self.percents),
              "eval.percents must be at least two increasing values in [0, 100]")
        check(self.grid_images >= 1 and self.batch_size >= 1,
              "eval.grid_images and eval.batch_size must be >= 1")


@dataclass(frozen=True)
class SaliencyTrainingConfig(RunOptions):
    dataset: str = "mnist"
    model: str = "sgt_cnn"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=100, batch_size=256, optimizer="adadelta", lr=1.0))
    objectives: tuple[str, ...] = OBJECTIVES
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    vit: VitConfig = field(default_factory=VitConfig)  # used when model = deit_tiny
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int | None = None  # use only the first n images (quick runs); None = all
    n_test: int | None = None

    def validate(self) -> None:
        check_choice(self.dataset, data.DATASETS, "dataset")
        check_choice(self.model, models.MODELS, "model")
        check(len(self.objectives) > 0, "objectives must name at least one objective")
        for name in self.objectives:
            check_choice(name, OBJECTIVES, "objective")
        check_unique(self.objectives, "objectives")
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.seeds, "seeds")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        self.validate_run_options()
        self.train.validate()
        self.objective.validate()
        self.eval.validate()
        if self.model == "deit_tiny":
            self.vit.validate()
            check(bool(self.vit.pretrained) or self.vit.allow_random_init,
                  "deit_tiny needs pretrained weights: --set vit.pretrained=PATH (a local "
                  "timm deit_tiny_patch16_224 state_dict), or --set vit.allow_random_init=true")


def job_key(objective: str, seed: int) -> str:
    return f"{objective}-s{seed}"


@lru_cache(maxsize=2)
def load_data(config: SaliencyTrainingConfig, data_dir: str | None) -> data.Dataset:
    return data.load_dataset(config.dataset, data_dir).subset(config.n_train, config.n_test)


def build_model(config: SaliencyTrainingConfig, spec, pretrained: bool = True) -> torch.nn.Module:
    if config.model == "deit_tiny":
        vit = config.vit if pretrained else dataclasses.replace(config.vit, pretrained="",
                                                                allow_random_init=True)
        return build_deit(spec.shape, len(spec.classes), vit)
    return models.build_model(config.model, spec.shape, len(spec.classes))


# training ------------------------------------------------------------------------------------
def train_model(config: SaliencyTrainingConfig, ds, name: str, seed: int,
                checkpoint: Path | None = None, progress: bool = True):
    """Train one model with objective `name`, one epoch at a time. After every epoch the
    model, optimizer, objective state (SMOOT's K) and history go to `checkpoint`; a run that
    finds it continues from the next epoch. Epoch e uses seed (seed, e) for shuffling, dropout
    and fill noise, so a resumed run gives the same result as an uninterrupted one.
    Returns (model, objective, history)."""
    torch.manual_seed(seed)
    model = build_model(config, ds.spec)
    optimizer = make_optimizer(model, config.train)
    objective = make_objective(name, config.objective, len(ds.x_train), len(ds.spec.classes), seed)
    history = {"epoch": 0, "k_median": [], "seconds": 0.0}
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        objective.load_state_dict(state["objective"])
        history = state["history"]
    for epoch in range(history["epoch"], config.train.epochs):
        started = time.perf_counter()
        epoch_seed = seed * 100003 + epoch
        objective.reseed(epoch_seed)
        cfg = dataclasses.replace(config.train, epochs=1, lr=lr_at(config.train, epoch),
                                  lr_milestones=())
        train(model, ds.x_train, ds.y_train, ds.spec, cfg, epoch_seed, objective=objective,
              optimizer=optimizer, progress=progress,
              desc=f"{job_key(name, seed)} epoch {epoch + 1}/{config.train.epochs}")
        history = {"epoch": epoch + 1, "seconds": history["seconds"] + time.perf_counter() - started,
                   "k_median": history["k_median"] + [k_stats_of(objective, config.objective)["k_median"]]}
        if checkpoint is not None:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "objective": objective.state_dict(), "history": history}
            atomic_write(checkpoint, lambda tmp: torch.save(state, tmp))
    return model.eval(), objective, history


# evaluation ----------------------------------------------------------------------------------
def test_saliency(config: SaliencyTrainingConfig, model, x, y, spec, progress: bool = False):
    """Attribution maps [N,1,H,W] of uint8 test images under `model` (eval.method)."""
    method = attribution.make_method(config.eval.method, baseline=spec.black(),
                                     seed=config.eval.seed)
    target = y if config.eval.target == "label" else predict(model, x, spec).argmax(1)
    return attribution.attribute_dataset(method, model, x, target, spec,
                                         batch_size=config.eval.batch_size, progress=progress,
                                         desc="test saliency")


def remove_features(config: SaliencyTrainingConfig, x, order, percent: float, spec,
                    generator: torch.Generator):
    """Raw-pixel float images with the top-`percent`% ranked pixels replaced by eval.fill."""
    mask = removal_mask(order, percent, spec.shape[1:], keep=config.eval.order == "least")
    x = x.float()
    if config.eval.fill == "mean":
        return fill_mean(x, mask, spec.mean_pixel().float())
    return fill_uniform_in_range(x, mask, generator)


@torch.no_grad()
def drop_curve(config: SaliencyTrainingConfig, model, x, y, spec, a) -> list[float]:
    """Test accuracy (%) after removing the top-x% salient features, x in eval.percents."""
    order = rank_pixels(a)
    generator = torch.Generator().manual_seed(config.eval.seed)
    accuracies = []
    for percent in config.eval.percents:
        correct = 0
        for i in range(0, len(x), config.eval.batch_size):
            xb = remove_features(config, x[i:i + config.eval.batch_size],
                                 order[i:i + config.eval.batch_size], percent, spec, generator)
            logits = model(spec.normalize(xb).contiguous(memory_format=torch.channels_last))
            correct += (logits.argmax(1) == y[i:i + config.eval.batch_size]).sum().item()
        accuracies.append(100.0 * correct / len(x))
    return accuracies


def evaluate_model(config: SaliencyTrainingConfig, model, ds, progress: bool = False) -> dict:
    model.eval()
    accuracy = (predict(model, ds.x_test, ds.spec).argmax(1) == ds.y_test).float().mean().item()
    a = test_saliency(config, model, ds.x_test, ds.y_test, ds.spec, progress)
    curve = drop_curve(config, model, ds.x_test, ds.y_test, ds.spec, a)
    auc = drop_curve_auc([p / 100 for p in config.eval.percents], curve)
    record = {"accuracy": accuracy, "auc": auc}
    record.update({f"drop_{p:g}": acc for p, acc in zip(config.eval.percents, curve)})
    return record


def model_artifact(name: str, seed: int) -> str:
    return f"model-{job_key(name, seed)}.pt"


def sgt_job(config: SaliencyTrainingConfig, run_dir: str, data_dir: str | None, name: str,
            seed: int, progress: bool = True) -> dict:
    """Train one (objective, seed) model, store it with its K, and evaluate it."""
    ds = load_data(config, data_dir)
    artifacts = Path(run_dir) / "artifacts"
    final = artifacts / model_artifact(name, seed)
    if final.exists():  # trained before the run was stopped during the evaluation
        model, state = load_model(config, ds.spec, final)
        objective = make_objective(name, config.objective, len(ds.x_train), len(ds.spec.classes))
        objective.load_state_dict(state["objective"])
        history = state["history"]
    else:
        checkpoint = artifacts / f"checkpoint-{job_key(name, seed)}.pt"
        model, objective, history = train_model(config, ds, name, seed, checkpoint, progress)
        state = {"model": model.state_dict(), "objective": objective.state_dict(),
                 "history": history, "config": to_dict(config), "objective_name": name,
                 "seed": seed}
        atomic_write(final, lambda tmp: torch.save(state, tmp))
        checkpoint.unlink(missing_ok=True)  # the model file (with its K) supersedes it
    record = {"objective": name, "seed": seed, "epochs": history["epoch"],
              "train_seconds": history["seconds"], "n_test": len(ds.x_test),
              **k_stats_of(objective, config.objective), "k_median_per_epoch": history["k_median"]}
    record.update(evaluate_model(config, model, ds))
    return record


def plan_jobs(config: SaliencyTrainingConfig, store: RunStore, data_dir: str | None) -> list[Job]:
    return [Job(job_key(o, s), sgt_job, (config, str(store.dir), data_dir, o, s))
            for o in config.objectives for s in config.seeds]


def run(config: SaliencyTrainingConfig, out: str, name: str, data_dir: str | None = None,
        workers: int = 1) -> Path:
    """Run (or resume) the protocol and write its report; returns the run directory."""
    config.validate()
    started = time.time()
    load_data(config, data_dir)  # fail early on missing data
    store = RunStore(out, name, config)
    run_jobs(store, plan_jobs(config, store, data_dir), workers=workers, desc=name,
             describe=lambda r: f"accuracy {r['accuracy']:.4f}, AUC {r['auc']:.2f}")
    write_report(config, store, load_data(config, data_dir), time.time() - started)
    return store.dir


# report --------------------------------------------------------------------------------------
LABELS = {"traditional": "Traditional", "sgt": "SGT", "smoot": "SMOOT"}


def load_model(config: SaliencyTrainingConfig, spec, path: Path):
    state = torch.load(path, weights_only=True)
    torch.manual_seed(0)
    model = build_model(config, spec, pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), state


def write_report(config: SaliencyTrainingConfig, store: RunStore, ds, seconds: float) -> None:
    import matplotlib.pyplot as plt

    order = {o: i for i, o in enumerate(config.objectives)}
    records = sorted((r for r in store.records() if r["objective"] in order),
                     key=lambda r: (order[r["objective"]], r["seed"]))
    drops = [f"drop_{p:g}" for p in config.eval.percents]
    write_csv(store.dir / "results.csv", records,
              ["objective", "seed", "epochs", "accuracy", "auc", "k_min", "k_median", "k_max",
               "n_test", "train_seconds"] + drops)
    by = {o: [r for r in records if r["objective"] == o] for o in config.objectives}

    def k_cells(o: str) -> list[str]:
        if o == "traditional":
            return ["–", "–", "–"]
        if o == "sgt":
            return [f"{config.objective.k:g}"] * 3
        ks = [load_model_k(store, o, r["seed"]) for r in by[o]]
        k = torch.cat([t for t in ks if t is not None]).float() if any(t is not None for t in ks) \
            else torch.tensor([math.nan])
        return [f"{k.min():g}", f"{k.median():g}", f"{k.max():g}"]

    rows = [[LABELS[o], by[o][0]["n_test"], *k_cells(o),
             fmt_mean_std([r["accuracy"] for r in by[o]], 100),
             fmt_mean_std([r["auc"] for r in by[o]])] for o in config.objectives if by[o]]
    epochs = sorted({r["epochs"] for r in records})
    minutes = sum(r["train_seconds"] for r in records) / 60
    o = config.objective
    text = [f"# Saliency-guided training: {data._DISPLAY.get(config.dataset, config.dataset)}, "
            f"{config.model}\n",
            f"**Budget actually run:** {', '.join(map(str, epochs))} epoch(s) per model "
            f"(the papers: up to 100), seeds {', '.join(map(str, config.seeds))}, "
            f"{len(ds.x_train)} train / {len(ds.x_test)} test images, "
            f"{config.train.optimizer} lr {config.train.lr:g}, batch {config.train.batch_size}, "
            f"precision {config.train.precision}. Training took {minutes:.1f} CPU-job minutes in "
            f"total; this invocation {seconds / 60:.1f} min.\n",
            f"SGT: k = {o.k:g}%. SMOOT: α = {o.alpha:g}, μ = {o.mu:g}, n = {o.n}, K in "
            f"[{o.k_min}, {o.k_max}], initial K = {o.k_init}. Both: λ = {o.lam:g}, {o.saliency} "
            f"gradient of the {o.target} logit, saliency pass {o.saliency_pass}; masked "
            f"features get random values within [min, max] of the remaining pixels. SMOOT masks "
            f"with the K from the previous visit of an image, so in the first epoch (every K = "
            f"{o.k_init}) it trains exactly like SGT with k = {o.k_init}%.\n",
            "## Results (accuracy and AUC: mean ± std over seeds)\n",
            "K is the percentage of features masked during training, over the training images at "
            "the end of training (SMOOT: pooled over seeds). AUC: area under the accuracy-drop "
            "curve, accuracy in %, x as a fraction; lower means more faithful saliency.\n",
            markdown_table(["model", "# test", "Min(K)", "Median(K)", "Max(K)", "accuracy (%)",
                            "AUC"], rows),
            f"## Accuracy-drop curves\n\nSaliency `{config.eval.method}` on the clean test images "
            f"(explaining the {config.eval.target} class), features ranked by |saliency|, the "
            f"{'most' if config.eval.order == 'most' else 'least'} salient removed first, filled "
            f"with {'random values within the remaining range' if config.eval.fill == 'uniform' else 'the mean pixel'}.\n",
            "![accuracy drop](accuracy_drop.png)\n",
            markdown_table(["model"] + [f"{p:g}%" for p in config.eval.percents],
                           [[LABELS[o]] + [fmt_mean_std([r[d] for r in by[o]]) for d in drops]
                            for o in config.objectives if by[o]]),
            "## Saliency maps\n\nThe same test images under each model (seed "
            f"{config.seeds[0]}), |{config.eval.method}| per pixel.\n",
            "![saliency maps](saliency_maps.png)\n"]

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for obj in config.objectives:
        if by[obj]:
            stats = [mean_std([r[d] for r in by[obj]]) for d in drops]
            ax.errorbar(config.eval.percents, [m for m, _ in stats], yerr=[s for _, s in stats],
                        marker="o", capsize=3, label=LABELS[obj])
    ax.set_xlabel(f"% of features removed ({config.eval.order} salient first)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy drop: {config.dataset}, {config.model}")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, store.dir / "accuracy_drop.png")
    saliency_grid(config, store, ds)

    if "smoot" in by and by["smoot"]:
        text += ["## SMOOT K\n\nLeft: K over the training images at the end of training. "
                 "Right: median K after each epoch.\n", "![SMOOT K](smoot_k.png)\n"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
        for r in by["smoot"]:
            k = load_model_k(store, "smoot", r["seed"])
            if k is not None:
                left.hist(k.float().numpy(), bins=range(o.k_min, o.k_max + 2), alpha=0.5,
                          label=f"seed {r['seed']}")
            right.plot(range(1, len(r["k_median_per_epoch"]) + 1), r["k_median_per_epoch"],
                       marker="o", label=f"seed {r['seed']}")
        left.set_xlabel("K (%)")
        left.set_ylabel("training images")
        right.set_xlabel("epoch")
        right.set_ylabel("median K (%)")
        for a in (left, right):
            a.grid(alpha=0.3)
            a.legend()
        save_figure(fig, store.dir / "smoot_k.png")
    atomic_write_text(store.dir / "report.md", "\n".join(text))


def load_model_k(store: RunStore, name: str, seed: int):
    path = store.artifact(model_artifact(name, seed))
    if not path.exists():
        return None
    return torch.load(path, weights_only=True)["objective"].get("K")


def saliency_grid(config: SaliencyTrainingConfig, store: RunStore, ds) -> None:
    import matplotlib.pyplot as plt

    n = min(config.eval.grid_images, len(ds.x_test))
    x, y = ds.x_test[:n], ds.y_test[:n]
    names = [o for o in config.objectives
             if store.artifact(model_artifact(o, config.seeds[0])).exists()]
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.8 * (len(names) + 1), 1.8 * n),
                             squeeze=False)
    image = (x.float().permute(0, 2, 3, 1) / 255).numpy()
    for i in range(n):
        axes[i, 0].imshow(image[i][..., 0] if image.shape[-1] == 1 else image[i],
                          cmap="gray" if image.shape[-1] == 1 else None)
        axes[i, 0].set_ylabel(ds.spec.classes[int(y[i])], fontsize=8)
    axes[0, 0].set_title("input", fontsize=9)
    for j, name in enumerate(names, 1):
        model, _ = load_model(config, ds.spec, store.artifact(model_artifact(name, config.seeds[0])))
        a = test_saliency(config, model, x, y, ds.spec).abs()
        for i in range(n):
            axes[i, j].imshow(a[i, 0].numpy(), cmap="hot")
        axes[0, j].set_title(LABELS[name], fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, store.dir / "saliency_maps.png")


# `saliencylab train` and `saliencylab sgt-analysis` ------------------------------------------
@dataclass(frozen=True)
class Tool:
    """A CLI command with its own arguments: add_arguments(parser); handle(args) -> exit code."""

    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handle: Callable[[argparse.Namespace], int]


def _preset_for(dataset: str) -> str:
    name = f"smoot-{dataset}"
    return name if name in preset_names(PROTOCOL) else "smoot-quick"


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--objective", default="smoot", help="traditional | sgt | smoot (default smoot)")
    p.add_argument("--dataset", default="mnist", help=f"one of {', '.join(data.DATASETS)}")
    p.add_argument("--preset", default=None, help="sgt preset to start from (default "
                   "smoot-DATASET if it exists, else smoot-quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--precision", default=None, help="fp32 | bf16 (CPU autocast)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of the sgt protocol (repeatable)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs", help="where run directories go (default ./runs)")


def _train_config(args) -> SaliencyTrainingConfig:
    check_choice(args.objective, OBJECTIVES, "objective")
    check_choice(args.dataset, data.DATASETS, "dataset")
    config = load_preset(PROTOCOL, args.preset or _preset_for(args.dataset), SaliencyTrainingConfig())
    sets = [f"dataset={args.dataset}", f"objectives={args.objective}", f"seeds={args.seed}"]
    if args.epochs is not None:
        sets.append(f"train.epochs={args.epochs}")
    if args.precision is not None:
        sets.append(f"train.precision={args.precision}")
    config = apply_sets(config, sets + args.sets)
    config.validate()
    return config


def _train(args) -> int:
    config = _train_config(args)
    run_dir = run(config, args.out, f"train-{args.objective}-{args.dataset}", data_dir=args.data_dir)
    print((run_dir / "report.md").read_text())
    print(f"model (with its K): {run_dir / 'artifacts' / model_artifact(args.objective, args.seed)}")
    return 0


TRAIN_TOOL = Tool("Train one model with an objective (traditional, sgt or smoot), evaluate its "
                  "accuracy and accuracy-drop AUC, and save it with its K.",
                  _add_train_arguments, _train)


def confidence_curves(model, x, y, spec, objective_cfg: ObjectiveConfig, percents, seed: int = 0,
                      batch_size: int = 500) -> torch.Tensor:
    """Confidence [N, len(percents)]: the softmax probability of the class predicted on the
    unmasked image, after masking the k% lowest-saliency features as SGT training does (signed
    or absolute gradient of the label or predicted logit; random fill within the range of the
    remaining pixels)."""
    masker = SGT(objective_cfg, seed)  # the saliency and the masking of SGT training
    curves = []
    model.eval()
    for i in range(0, len(x), batch_size):
        xb = prepare_batch(x[i:i + batch_size], spec)
        logits, s = masker.saliency(model, xb, y[i:i + batch_size])
        pred = logits.argmax(1)
        rows = []
        with torch.no_grad():
            for percent in percents:
                xm = masker.masked_input(xb, s, percent)
                rows.append(model(xm).softmax(1).gather(1, pred[:, None])[:, 0])
        curves.append(torch.stack(rows, 1))
    return torch.cat(curves)


def rises_then_falls(curves: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """True where the confidence peaks strictly inside the masking range: its maximum exceeds
    both the unmasked and the most-masked confidence by more than `tolerance`."""
    peak, where = curves.max(1)
    return ((where > 0) & (where < curves.shape[1] - 1) & (peak > curves[:, 0] + tolerance)
            & (peak > curves[:, -1] + tolerance))


def _add_analysis_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-file", required=True,
                   help="a model saved by `saliencylab train` or `saliencylab sgt` "
                        "(RUN/artifacts/model-OBJECTIVE-sSEED.pt)")
    p.add_argument("--percents", default="0,10,20,30,40,50,60,70,80,90",
                   help="masking percentages (default 0,10,...,90)")
    p.add_argument("--n-test", type=int, default=None, help="use only the first n test images")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="a rise/fall must exceed this confidence difference (default 0)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="folder for curves.csv and the plot "
                   "(default: next to the model file)")


def _analysis(args) -> int:
    import matplotlib.pyplot as plt

    path = Path(args.model_file)
    if not path.exists():
        raise UserError(f"model file {path} not found: train one with `saliencylab train`")
    try:
        percents = [float(p) for p in args.percents.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--percents {args.percents!r} must be comma-separated numbers") from None
    check(len(percents) >= 3 and all(0 <= p <= 100 for p in percents),
          "--percents needs at least three values in [0, 100]")
    state = torch.load(path, weights_only=True)
    config = from_dict(SaliencyTrainingConfig(), state["config"])
    ds = data.load_dataset(config.dataset, args.data_dir).subset(None, args.n_test)
    model, _ = load_model(config, ds.spec, path)
    curves = confidence_curves(model, ds.x_test, ds.y_test, ds.spec, config.objective, percents)
    flag = rises_then_falls(curves, args.tolerance)
    fraction = flag.float().mean().item()
    out = Path(args.out) if args.out else path.parent / f"analysis-{path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"image": i, "label": int(ds.y_test[i]), "rises_then_falls": bool(flag[i]),
             **{f"conf_{p:g}": float(c) for p, c in zip(percents, curves[i])}}
            for i in range(len(curves))]
    write_csv(out / "curves.csv", rows, list(rows[0]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i in torch.nonzero(flag)[:20, 0].tolist():
        left.plot(percents, curves[i].numpy(), alpha=0.6)
    left.set_title("confidence of images that rise then fall (up to 20)")
    left.set_xlabel("% lowest-saliency features masked")
    left.set_ylabel("confidence")
    right.plot(percents, curves.mean(0).numpy(), marker="o", label="all images")
    if flag.any():
        right.plot(percents, curves[flag].mean(0).numpy(), marker="o", label="rise then fall")
    right.set_xlabel("% lowest-saliency features masked")
    right.set_ylabel("mean confidence")
    right.legend()
    save_figure(fig, out / "confidence.png")
    print(f"{state['objective_name']} model on {config.dataset}, {len(curves)} test images: "
          f"{100 * fraction:.1f}% have a confidence that first rises and then falls as the "
          f"masked share grows over {percents[0]:g}..{percents[-1]:g}% (tolerance "
          f"{args.tolerance:g}; the SMOOT paper reports 16% on CIFAR-10)")
    print(f"curves: {out / 'curves.csv'}, plot: {out / 'confidence.png'}")
    return 0


ANALYSIS_TOOL = Tool("The SMOOT paper's motivating analysis: per-image confidence as the share "
                     "of masked low-saliency features grows, and the fraction of test images "
                     "whose confidence first rises and then falls.",
                     _add_analysis_arguments, _analysis)

__all__ = ["SaliencyTrainingConfig", "EvalConfig", "run", "write_report", "TRAIN_TOOL",
           "ANALYSIS_TOOL"]
