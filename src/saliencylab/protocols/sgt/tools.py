"""`saliencylab train` (one model, one objective) and `saliencylab sgt-analysis` (the SMOOT
paper's motivating analysis); their arguments are defined in cli.py."""

from __future__ import annotations

from pathlib import Path

import torch

from ... import data
from ...core.checks import check, check_choice
from ...core.device import prepare
from ...core.errors import UserError
from ...data.batches import prepare_batch
from ...models.files import load_sgt_model
from ...removal import count_removed
from ...runs import paths, runner
from ...runs.config import apply_sets, from_dict, load_preset, preset_names
from ...runs.jobs import ExecOptions
from ...runs.report import save_figure, write_csv
from ...training.objectives import OBJECTIVES, SGT, ObjectiveConfig
from .config import SaliencyTrainingConfig
from .protocol import SALIENCY_TRAINING
from .training import load_model


def train_config(objective: str, dataset: str, preset: str | None, seed: int,
                 epochs: int | None, precision: str | None, sets: list[str]) -> SaliencyTrainingConfig:
    check_choice(objective, OBJECTIVES, "objective")
    data.check_dataset(dataset)
    name = f"smoot-{dataset}"
    preset = preset or (name if name in preset_names(SALIENCY_TRAINING.name) else "smoot-quick")
    config = load_preset(SALIENCY_TRAINING.name, preset, SaliencyTrainingConfig())
    extra = [f"dataset={dataset}", f"objectives={objective}", f"seeds={seed}"]
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    if precision is not None:
        extra.append(f"train.precision={precision}")
    return apply_sets(config, extra + sets)


def train_one(config: SaliencyTrainingConfig, out: str, data_dir: str | None,
              options: ExecOptions) -> Path:
    objective, seed = config.objectives[0], config.seeds[0]
    name = f"train-{objective}-{data.run_label(config.dataset)}"
    run_dir = runner.run(SALIENCY_TRAINING, config, out, name,
                         data_dir=data_dir, options=options)
    print(paths.report_file(run_dir).read_text())
    print(f"model (with its K): {paths.artifact(run_dir, paths.sgt_model(objective, seed))}")
    return run_dir


def confidence_curves(model, x, y, spec, objective_cfg: ObjectiveConfig, percents, seed: int = 0,
                      batch_size: int = 500) -> torch.Tensor:
    """Confidence [N, len(percents)]: the softmax probability of the class predicted on the
    unmasked image, after masking the k% lowest-saliency pixels as SGT training does (with the
    objective's saliency and fill)."""
    masker = SGT(objective_cfg, seed)
    pixels = x.shape[2] * x.shape[3]
    curves = []
    model.eval()
    for i in range(0, len(x), batch_size):
        xb = prepare_batch(x[i:i + batch_size], spec)
        logits, s = masker.saliency(model, xb, y[i:i + batch_size])
        pred = logits.argmax(1)
        rows = []
        with torch.no_grad():
            for percent in percents:
                counts = int(count_removed(percent, pixels))
                xm = masker.masked_input(xb, s, counts)
                rows.append(model(xm).softmax(1).gather(1, pred[:, None])[:, 0])
        curves.append(torch.stack(rows, 1))
    return torch.cat(curves).cpu()


def rises_then_falls(curves: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """True where the confidence peaks strictly inside the masking range: its maximum exceeds
    both the unmasked and the most-masked confidence by more than `tolerance`."""
    peak, where = curves.max(1)
    return ((where > 0) & (where < curves.shape[1] - 1) & (peak > curves[:, 0] + tolerance)
            & (peak > curves[:, -1] + tolerance))


def parse_percents(text: str) -> list[float]:
    try:
        if not text.isascii():
            raise ValueError(text)
        percents = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--percents {text!r} must be comma-separated numbers") from None
    check(len(percents) >= 3 and all(0 <= p <= 100 for p in percents),
          "--percents needs at least three values in [0, 100]")
    return percents


def analyse(model_file: str, percents_text: str, n_test: int | None, tolerance: float,
            data_dir: str | None, out: str | None, device: str | None) -> int:
    import matplotlib.pyplot as plt

    percents = parse_percents(percents_text)
    check(n_test is None or n_test >= 1, "--n-test must be at least 1")
    check(0 <= tolerance < 1, f"--tolerance must be a confidence difference in [0, 1), got "
          f"{tolerance:g}")  # nan fails the comparison too
    state = load_sgt_model(model_file)
    config = from_dict(SaliencyTrainingConfig(), state["config"])
    if device is not None:
        config = apply_sets(config, [f"device={device}"])
    torch_device = prepare(config)
    ds = data.load_dataset(config.dataset, data_dir, options=config.data)
    ds = ds.subset(None, n_test).to(torch_device)
    model = load_model(config, ds.spec, state).to(torch_device)
    curves = confidence_curves(model, ds.x_test, ds.y_test, ds.spec, config.objective, percents)
    flag = rises_then_falls(curves, tolerance)
    path = Path(model_file)
    folder = Path(out) if out else path.parent / f"analysis-{path.stem}"
    folder.mkdir(parents=True, exist_ok=True)
    labels = ds.y_test.cpu()
    rows = [{"image": i, "label": int(labels[i]), "rises_then_falls": bool(flag[i]),
             **{f"conf_{p:g}": float(c) for p, c in zip(percents, curves[i])}}
            for i in range(len(curves))]
    write_csv(folder / "curves.csv", rows, list(rows[0]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i in torch.nonzero(flag)[:20, 0].tolist():
        left.plot(percents, curves[i].numpy(), alpha=0.6)
    left.set_title("confidence of images that rise then fall (up to 20)")
    left.set_xlabel("% lowest-saliency pixels masked")
    left.set_ylabel("confidence")
    right.plot(percents, curves.mean(0).numpy(), marker="o", label="all images")
    if flag.any():
        right.plot(percents, curves[flag].mean(0).numpy(), marker="o", label="rise then fall")
    right.set_xlabel("% lowest-saliency pixels masked")
    right.set_ylabel("mean confidence")
    right.legend()
    save_figure(fig, folder / "confidence.png")
    print(f"{state['objective_name']} model on {config.dataset}, {len(curves)} test images: "
          f"{100 * flag.float().mean().item():.1f}% have a confidence that first rises and then "
          f"falls as the masked share grows over {percents[0]:g}..{percents[-1]:g}% (tolerance "
          f"{tolerance:g}; the SMOOT paper reports 16% on CIFAR-10)")
    print(f"curves: {folder / 'curves.csv'}, plot: {folder / 'confidence.png'}")
    return 0
