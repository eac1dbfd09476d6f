"""The saliency-guided training report: the SMOOT paper's table (K in pixels, accuracy, AUC),
the AUC under each fill side by side, one AUC per method, the drop curves (one panel per
fill), a saliency-map grid, SMOOT's K, and `results.csv` (one row per objective, seed, method
and fill)."""

from __future__ import annotations

import torch

from ... import data
from ...evaluation.statistics import mean_std
from ...removal import FILLS, count_removed
from ...runs import paths
from ...runs.files import atomic_write_text
from ...runs.report import failures_section, fmt_mean_std, markdown_table, save_figure, write_csv
from ...runs.runner import devices_of
from ...runs.store import RunStore
from .training import pixels_of, train_size

LABELS = {"traditional": "Traditional", "sgt": "SGT", "smoot": "SMOOT"}
SALIENT_FIRST = {"morf": "most", "lerf": "least"}


def csv_rows(config, records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        for method, by_fill in r["curves"].items():
            for fill, curve in by_fill.items():
                row = {k: r.get(k) for k in ("objective", "seed", "epochs", "selected_epoch",
                                             "accuracy", "k_min", "k_median", "k_max", "n_test",
                                             "train_seconds")}
                row.update(method=method, fill=fill, auc=r["auc"][method][fill],
                           auc_0_90=r["auc_0_90"][method][fill])
                row.update({f"drop_{p:g}": a for p, a in zip(config.eval.percents, curve)})
                rows.append(row)
    return rows


def k_pixels(store: RunStore, config, name: str, seeds, pixels: int):
    """SMOOT's K over the training images in pixels, pooled over the seeds' model files."""
    ks = []
    for seed in seeds:
        state = store.load_tensor(paths.sgt_model(name, seed))
        if state is not None and "K" in state["objective"]:
            k = state["objective"]["K"]
            unit = state["objective"].get("k_unit", config.objective.k_unit)
            ks.append(k if unit == "pixels" else count_removed(k, pixels))
    return torch.cat(ks).double() if ks else None


def write_report(config, store: RunStore, ds, seconds: float, failed: dict[str, str]) -> None:
    e, o = config.eval, config.objective
    order = {name: i for i, name in enumerate(config.objectives)}
    records = sorted((r for r in store.records() if r["objective"] in order),
                     key=lambda r: (order[r["objective"]], r["seed"]))
    rows = csv_rows(config, records)
    write_csv(paths.results_file(store.dir), rows,
              ["objective", "seed", "method", "fill", "accuracy", "auc", "auc_0_90", "k_min",
               "k_median", "k_max", "epochs", "selected_epoch", "n_test", "train_seconds"]
              + [f"drop_{p:g}" for p in e.percents])
    by = {name: [r for r in records if r["objective"] == name] for name in config.objectives}
    present = [name for name in config.objectives if by[name]]
    pixels = pixels_of(ds.spec)
    method, fill = e.methods[0], e.fills[0]

    def k_cells(name: str) -> list[str]:
        if name == "traditional":
            return ["–"] * 3
        k = k_pixels(store, config, name, config.seeds, pixels) if name == "smoot" else None
        if k is None:
            k = torch.tensor([r[f] for r in by[name] for f in ("k_min", "k_median", "k_max")])
        return [f"{v:g} ({100 * v / pixels:.0f}%)" for v in (k.min(), k.median(), k.max())]

    def aucs(name: str, key: str, m: str = method, f: str = fill) -> str:
        return fmt_mean_std([r[key][m][f] for r in by[name]])

    main = [[LABELS[n], by[n][0]["n_test"], *k_cells(n), fmt_mean_std([r["accuracy"] for r in by[n]], 100),
             aucs(n, "auc"), aucs(n, "auc_0_90")] for n in present]
    side_by_side = [[LABELS[n]] + [aucs(n, key, method, f) for f in e.fills
                                   for key in ("auc", "auc_0_90")] for n in present]
    per_method = [[m] + [aucs(n, "auc", m, fill) for n in present] for m in e.methods]
    epochs = sorted({r["epochs"] for r in records})
    minutes = sum(r["train_seconds"] for r in records) / 60
    n_train = train_size(config, ds)
    lo, hi = config.eval.percents[0], config.eval.percents[-1]
    text = [
        f"# Saliency-guided training: {data.display_name(config.dataset)}, {config.model}\n",
        f"**Budget actually run:** {', '.join(map(str, epochs))} epoch(s) per model (the papers: "
        f"up to 100), seeds {', '.join(map(str, config.seeds))}, {n_train} train / "
        f"{len(ds.x_test)} test images, {config.train.optimizer} lr {config.train.lr:g}, batch "
        f"{config.train.batch_size}, precision {config.train.precision}, device "
        f"{devices_of(store, config)}. Training took {minutes:.1f} job-minutes in total; this invocation "
        f"{seconds / 60:.1f} min.\n",
        f"**Model selection:** {selection_text(config, records)}\n",
        f"SGT: k = {o.k:g}% of the pixels. SMOOT: K in {o.k_unit}, starting at {o.k_init}% of the "
        f"pixels and bounded by {o.k_min}% and {o.k_max}% ({_px(o.k_init, pixels)}, "
        f"{_px(o.k_min, pixels)} and {_px(o.k_max, pixels)} pixels), α = {o.alpha:g}, μ = "
        f"{o.mu:g}, n = {o.n}. Both: λ = {o.lam:g}; saliency = {o.saliency} gradient of the "
        f"{o.target}'s {o.saliency_output}, {o.saliency_pass}-mode pass; masked pixels get random "
        f"values within the range of the {'remaining pixels' if o.fill == 'uniform' else 'whole image'}. "
        f"SMOOT masks with the K from the previous visit of an image, so in the first epoch it "
        f"trains like SGT with k = {o.k_init}%.\n",
        "## Results (mean ± std over seeds)\n",
        f"K: pixels masked during training at the end of training (SMOOT: over the training "
        f"images, pooled over seeds), with the share of the {pixels} pixels. AUC: area under the "
        f"accuracy-drop curve of `{method}` with the `{fill}` fill, accuracy in %, x as a "
        f"fraction, over {lo:g}–{hi:g}% and over 0–90% (lower = more faithful).\n",
        markdown_table(["model", "# test", "Min(K)", "Median(K)", "Max(K)", "accuracy (%)",
                        f"AUC {lo:g}–{hi:g}%", "AUC 0–90%"], main),
        f"## AUC under each fill (`{method}`)\n\nThe fill decides what a model sees where "
        f"pixels were removed, and it can decide which model looks more faithful.\n",
        markdown_table(["model"] + [f"{f} {rng}" for f in e.fills for rng in
                                    (f"{lo:g}–{hi:g}%", "0–90%")], side_by_side),
        f"## AUC per saliency method (`{fill}` fill, {lo:g}–{hi:g}%)\n",
        markdown_table(["method"] + [LABELS[n] for n in present], per_method),
        f"## Accuracy-drop curves (`{method}`, one panel per fill)\n\nPixels ranked by "
        f"|{method}| of the {e.target}'s {e.attribution.output} on the clean test images, the "
        f"{SALIENT_FIRST[e.removal]} salient removed first. Fills: "
        + "; ".join(f"`{f}` = {FILLS[f]}" for f in e.fills) + ".\n",
        "![accuracy drop](accuracy_drop.png)\n",
        f"## Saliency maps\n\nThe same test images under each model (seed {config.seeds[0]}), "
        f"|{method}| per pixel.\n", "![saliency maps](saliency_maps.png)\n"]
    if present:
        drop_figure(config, by, present, method, paths.figure(store.dir, "accuracy_drop"))
        saliency_grid(config, store, ds)
    if by.get("smoot"):
        text += ["## SMOOT K\n\nLeft: K over the training images at the end of training, in "
                 "pixels. Right: median K after each epoch.\n", "![SMOOT K](smoot_k.png)\n"]
        k_figure(config, store, by["smoot"], pixels)
    text += failures_section(failed)
    atomic_write_text(paths.report_file(store.dir), "\n".join(text))


def _px(percent: float, pixels: int) -> int:
    return int(count_removed(percent, pixels))


def selection_text(config, records: list[dict]) -> str:
    if config.select == "best-val":
        chosen = sorted({r["selected_epoch"] for r in records})
        return (f"best-val: the epoch with the best accuracy on {config.val_size} held-out "
                f"training images (selected epochs: {', '.join(map(str, chosen))}).")
    return ("last: the model after the final epoch (the SGT authors evaluate the epoch with the "
            "best test accuracy, which we do not copy; `--set select=best-val` holds out a "
            "validation split instead).")


def drop_figure(config, by: dict, present: list[str], method: str, path) -> None:
    import matplotlib.pyplot as plt

    e = config.eval
    fig, axes = plt.subplots(1, len(e.fills), figsize=(4.2 * len(e.fills), 3.8), squeeze=False,
                             sharey=True)
    for ax, fill in zip(axes[0], e.fills):
        for name in present:
            stats = [mean_std(values) for values in zip(*(r["curves"][method][fill] for r in by[name]))]
            ax.errorbar(e.percents, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o",
                        ms=3, capsize=3, label=LABELS[name])
        ax.set_title(f"fill: {fill}")
        ax.set_xlabel(f"% of pixels removed ({SALIENT_FIRST[e.removal]} salient first)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend()
    fig.suptitle(f"Accuracy drop ({method}): {config.dataset}, {config.model}")
    save_figure(fig, path)


def saliency_grid(config, store: RunStore, ds) -> None:
    """The first test images and each model's maps of them (seed seeds[0]), as its job stored
    them."""
    import matplotlib.pyplot as plt

    n = min(config.eval.grid_images, len(ds.x_test))
    x, y = ds.x_test[:n], ds.y_test[:n]
    stored = {name: store.load_tensor(paths.sgt_maps(name, config.seeds[0]))
              for name in config.objectives}
    names = [name for name, maps in stored.items() if maps is not None]
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.8 * (len(names) + 1), 1.8 * n),
                             squeeze=False)
    image = (x.float().permute(0, 2, 3, 1) / 255).cpu().numpy()
    for i in range(n):
        axes[i, 0].imshow(image[i][..., 0] if image.shape[-1] == 1 else image[i],
                          cmap="gray" if image.shape[-1] == 1 else None)
        axes[i, 0].set_ylabel(ds.spec.classes[int(y[i])], fontsize=8)
    axes[0, 0].set_title("input", fontsize=9)
    for j, name in enumerate(names, 1):
        for i in range(n):
            axes[i, j].imshow(stored[name][i, 0].numpy(), cmap="hot")
        axes[0, j].set_title(LABELS[name], fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, paths.figure(store.dir, "saliency_maps"))


def k_figure(config, store: RunStore, smoot_records: list[dict], pixels: int) -> None:
    import matplotlib.pyplot as plt

    o = config.objective
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in smoot_records:
        k = k_pixels(store, config, "smoot", [r["seed"]], pixels)
        if k is not None:
            left.hist(k.numpy(), bins=40, range=(_px(o.k_min, pixels), _px(o.k_max, pixels)),
                      alpha=0.5, label=f"seed {r['seed']}")
        right.plot(range(1, len(r["k_median_per_epoch"]) + 1), r["k_median_per_epoch"],
                   marker="o", label=f"seed {r['seed']}")
    left.set_xlabel("K (pixels)")
    left.set_ylabel("training images")
    right.set_xlabel("epoch")
    right.set_ylabel("median K (pixels)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, paths.figure(store.dir, "smoot_k"))

