"""Command line: `saliencylab <protocol> --preset NAME --set key=value ...`.

Bad input ends in one line on stderr (exit 2) naming the problem and the fix; Ctrl-C keeps
every finished job, and the same command resumes the run. A run in which some jobs failed
(e.g. a diverged training) writes its report, lists them, and exits with status 3.
"""

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable

from . import __version__, data
from .core import progress
from .core.errors import UserError
from .protocols import evaluate, prune, roar, sgt
from .protocols.sgt import tools as sgt_tools
from .runs import config as cfg
from .runs import paths, runner
from .runs.jobs import EXECUTORS, options_from
from .runs.store import read_failures


@dataclass(frozen=True)
class Shortcut:
    """A command-line flag that sets one config key: `--kar` sets removal=lerf (its `value`),
    `--method X` sets method=X."""

    flag: str
    key: str
    help: str
    value: str | None = None  # a flag without an argument sets the key to this


@dataclass(frozen=True)
class Command:
    protocol: runner.Protocol
    default: object  # the protocol's default config
    preset: str  # default preset
    description: str
    shortcuts: tuple[Shortcut, ...] = ()


DATASET_HELP = (f"one of {', '.join(data.DATASETS)}, or your files: folder:PATH (PATH/<class>/* "
                f"or PATH/train/<class>/* and PATH/test/<class>/*) or npz:FILE (x_train, "
                f"y_train, x_test, y_test); the data.* keys say how they are read")
DATASET = Shortcut("--dataset", "dataset", DATASET_HELP)

COMMANDS = {
    "roar": Command(roar.ROAR, roar.RoarConfig(), "roar-quick",
                    "ROAR/KAR: rank pixels by each attribution method, remove the top t%, retrain, test.",
                    (Shortcut("--kar", "removal", "keep and retrain: remove the least important pixels "
                              "first (removal=lerf) instead of the most important", "lerf"),
                     DATASET)),
    "sgt": Command(sgt.SALIENCY_TRAINING, sgt.SaliencyTrainingConfig(), "smoot-quick",
                   "Saliency-guided training: Traditional vs SGT vs SMOOT over seeds, accuracy-drop AUC.",
                   (DATASET,)),
    "prune": Command(prune.PRUNING, prune.PruneConfig(), "prune-quick",
                     "Pruning vs explanation quality: iterative magnitude pruning with rewinding, "
                     "heatmap soft IoU per level.",
                     (Shortcut("--method", "method", "attribution method for the heatmaps "
                               "(default gradcam++)"), DATASET)),
    "evaluate": Command(evaluate.EVALUATE, evaluate.EvaluateConfig(), "evaluate-quick",
                        "Every faithfulness test (ROAD, deletion/insertion, model randomisation, "
                        "accuracy drop, ROAR) of every method on one model, in one report.",
                        (Shortcut("--model", "model", "your model: package.module:function or "
                                  "path/to/file.py:function (called with (shape, classes) if it "
                                  "takes two arguments)"),
                         Shortcut("--model-file", "model_file", "your model's weights (a "
                                  "state_dict), loaded with weights_only=True"), DATASET)),
}

def integer(text: str) -> int:
    """argparse type: an int written in ASCII digits (int() alone reads '٣' as 3)."""
    if not text.isascii():
        raise ValueError(text)
    return int(text)


def number(text: str) -> float:
    """argparse type: a float written in ASCII."""
    if not text.isascii():
        raise ValueError(text)
    return float(text)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Where the work runs: shared by the protocols and `train`."""
    parser.add_argument("--data-dir", default=None,
                        help="directory holding the data set files (else $SALIENCYLAB_DATA, "
                             "~/.cache/saliencylab, or a download)")
    parser.add_argument("--out", default="runs",
                        help="where run directories go (default ./runs); a run is named "
                             "PRESET-HASH and a re-run of the same config resumes it")
    parser.add_argument("--device", default=None,
                        help="auto (default: the first GPU if present, else the CPU), cpu, cuda "
                             "or cuda:N; the config key `device`")
    parser.add_argument("--workers", type=integer, default=os.cpu_count() or 1,
                        help="parallel worker processes for independent jobs (default: one per "
                             "core); with a CUDA device they share the GPU")
    parser.add_argument("--executor", default="local", choices=EXECUTORS,
                        help="local (default): this machine's processes; ray: Ray tasks on a "
                             "cluster (pip install 'saliencylab[ray]')")
    parser.add_argument("--ray-address", default=None,
                        help="the Ray cluster to join (default: $RAY_ADDRESS, else a local Ray "
                             "started for this run)")
    parser.add_argument("--debug", action="store_true",
                        help="run the jobs one by one in this process and stop at the first "
                             "that fails, with its whole traceback (every failure's traceback "
                             "is also kept in RUN/failed.json)")


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--objective", default="smoot", help="traditional | sgt | smoot (default smoot)")
    p.add_argument("--dataset", default="mnist", help=DATASET_HELP)
    p.add_argument("--preset", default=None, help="sgt preset to start from (default "
                   "smoot-DATASET if it exists, else smoot-quick)")
    p.add_argument("--seed", type=integer, default=0)
    p.add_argument("--epochs", type=integer, default=None, help="override train.epochs")
    p.add_argument("--precision", default=None, help="fp32 | bf16 (autocast, CPU or CUDA)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of the sgt protocol (repeatable)")
    _add_run_options(p)


def _train(args) -> int:
    config = sgt_tools.train_config(args.objective, args.dataset, args.preset, args.seed,
                                    args.epochs, args.precision,
                                    ([f"device={args.device}"] if args.device else []) + args.sets)
    run_dir = sgt_tools.train_one(config, args.out, args.data_dir, _options(config, args))
    return failed_status(run_dir)


def _analysis_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-file", required=True,
                   help="a model saved by `saliencylab train` or `saliencylab sgt` "
                        "(RUN/artifacts/model-OBJECTIVE-sSEED.pt)")
    p.add_argument("--percents", default="0,10,20,30,40,50,60,70,80,90",
                   help="masking percentages (default 0,10,...,90)")
    p.add_argument("--n-test", type=integer, default=None, help="use only the first n test images")
    p.add_argument("--tolerance", type=number, default=0.0,
                   help="a rise/fall must exceed this confidence difference, in [0, 1) "
                        "(default 0)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default=None, help="folder for curves.csv and the plot "
                   "(default: next to the model file)")


def _analysis(args) -> int:
    return sgt_tools.analyse(args.model_file, args.percents, args.n_test, args.tolerance,
                             args.data_dir, args.out, args.device)


@dataclass(frozen=True)
class Tool:
    """A command with its own arguments: add_arguments(parser); handle(args) -> exit code."""

    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handle: Callable[[argparse.Namespace], int]


TOOLS = {
    "train": Tool("Train one model with an objective (traditional, sgt or smoot), evaluate its "
                  "accuracy and accuracy-drop AUC, and save it with its K.",
                  _train_arguments, _train),
    "sgt-analysis": Tool("The SMOOT paper's motivating analysis: per-image confidence as the "
                         "share of masked low-saliency pixels grows, and the fraction of test "
                         "images whose confidence first rises and then falls.",
                         _analysis_arguments, _analysis),
}


def _options(config, args):
    """The run's executor options from the command line."""
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    return options_from(config, args.executor, args.workers, args.ray_address, args.debug)


def _common_options(parser: argparse.ArgumentParser, protocol: str, default_preset: str) -> None:
    presets = ", ".join(cfg.preset_names(protocol))
    parser.add_argument("--preset", default=default_preset,
                        help=f"protocol preset to start from (default {default_preset}; one of: {presets})")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.epochs=2 --set seeds=0,1 "
                             "(repeatable; `--show-config` lists every key)")
    _add_run_options(parser)
    parser.add_argument("--show-config", action="store_true",
                        help="print the resolved config (every settable key) and exit")


def _help(text: str) -> str:
    """`text` as an argparse help string, which argparse %-formats: a literal % is doubled."""
    return text.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saliencylab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"saliencylab {__version__}")
    sub = parser.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=_help(command.description), description=command.description)
        _common_options(p, name, command.preset)
        for shortcut in command.shortcuts:
            if shortcut.value is not None:
                p.add_argument(shortcut.flag, action="store_const", const=shortcut.value,
                               help=shortcut.help)
            else:
                p.add_argument(shortcut.flag, help=shortcut.help)
    for name, tool in TOOLS.items():
        tool.add_arguments(sub.add_parser(name, help=_help(tool.description),
                                          description=tool.description))
    return parser


def resolve_config(args):
    command = COMMANDS[args.protocol]
    config = cfg.load_preset(args.protocol, args.preset, command.default)
    for shortcut in command.shortcuts:
        value = getattr(args, shortcut.flag.lstrip("-").replace("-", "_"))
        if value is not None:
            config = cfg.override(config, shortcut.key, value)
    if args.device is not None:
        config = cfg.override(config, "device", args.device)
    return cfg.apply_sets(config, args.sets)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress.log_to_stderr()
    try:
        if args.protocol in TOOLS:
            return TOOLS[args.protocol].handle(args)
        config = resolve_config(args)
        if args.show_config:
            config.validate()
            for key, value in sorted(cfg.field_paths(config).items()):
                print(f"{key} = {_get(config, key)!r}")
            return 0
        run_dir = runner.run(COMMANDS[args.protocol].protocol, config, args.out, args.preset,
                             data_dir=args.data_dir, options=_options(config, args))
    except UserError as e:
        progress.error(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        progress.error("interrupted; finished jobs are saved, run the same command to resume")
        return 130
    print(paths.report_file(run_dir).read_text())
    print(f"report: {paths.report_file(run_dir)}")
    return failed_status(run_dir)


def failed_status(run_dir) -> int:
    """3 (and one line naming them) if jobs failed in this invocation, else 0; each one's
    reason was printed when it failed."""
    failed = read_failures(run_dir)
    if failed:
        progress.error(f"{len(failed)} job(s) failed and stored no result "
                       f"({', '.join(sorted(failed))}; the reasons are above and in the report, "
                       f"the tracebacks in {paths.failures_file(run_dir)}): fix the cause and "
                       f"run the same command again (--debug stops at the first failure)")
    return 3 if failed else 0


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


if __name__ == "__main__":
    sys.exit(main())
