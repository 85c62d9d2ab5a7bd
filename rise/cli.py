"""`rise <command>`: the entry points that Snakemake rules and DVC stages call.

Every command takes --params (default params.yaml) and --preset (default: the file's `preset`).
Each command is one function `<name>_command(settings, args)`, its options added by an `..._arguments`
function, both listed in `COMMANDS` at the end of this file (rise/fingerprints.py reads that table:
a stage's code is its entry's functions and what they import). Errors a user can fix print as one
line naming the file or setting, with exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("rise")


# The commands that load models through transformers (`launch` starts one of them in a new process).
MODEL_COMMANDS = {"train", "predict", "build-models", "pretrain"}


def _setup_logging(log_file: str | None, models: bool = False) -> None:
    """The project's own lines (`rise.*`) on the console and in the job log; other libraries' INFO
    lines and Python warnings (FutureWarning, ...) in the job log only, and their errors on both.
    SAM2 and open_clip log through the root logger, SAM2 twice per image: those INFO lines are
    dropped (each stage logs its own summary). With `models`, transformers' records take the same
    way and its progress bars (weight loading) are off; other commands do not import it (half a
    second of a table's or a check's run)."""
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(lambda r: r.name == "rise" or r.name.startswith("rise.") or r.levelno >= logging.ERROR)
    handlers: list[logging.Handler] = [console]
    if log_file:
        os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.addFilter(lambda r: r.name != "root" or r.levelno >= logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    logging.captureWarnings(True)  # warnings.warn -> the `py.warnings` logger: the job log
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if models:  # transformers keeps a console handler of its own: send its records through the ones above
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        hf_logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------- options

def _eval_sets(settings, asked: list[str] | None) -> list[str]:
    """The datasets a predict/evaluate run covers (default: every one a table uses), each checked
    against the preset's datasets before any work starts."""
    for name in asked or []:
        _known(settings.datasets, name, f"presets.{settings.preset}.datasets")
    return asked or settings.eval_sets


def _run_args(p, checkpoint: bool = True) -> None:
    """The options naming one run of a variant: --variant, --seed and (where read) --checkpoint."""
    p.add_argument("--variant", required=True)
    p.add_argument("--seed", type=int, help="one of train.seeds (default: the first)")
    if checkpoint:
        p.add_argument("--checkpoint", default="final", help="final (default) or step<N>, a saved checkpoint")


def _run_seed(settings, args) -> int:
    """The run's seed, checked against the variant's seeds before any work starts."""
    from rise.errors import ConfigError

    _known(settings.variants, args.variant, "variants")
    seeds = settings.seeds(args.variant)
    if args.seed is None:
        return seeds[0]
    if args.seed not in seeds:
        raise ConfigError(f"--seed {args.seed}: {args.variant} is run with seeds {seeds} (train.seeds)")
    return args.seed


def _checkpoint(settings, args) -> str:
    from rise.errors import ConfigError

    if args.checkpoint not in settings.checkpoints(args.variant):
        raise ConfigError(f"--checkpoint {args.checkpoint}: {args.variant} keeps {settings.checkpoints(args.variant)} "
                          "(every train.save_steps, then final)")
    return args.checkpoint


def _parse_overrides(text: str | None) -> dict | None:
    import json

    from rise.errors import ConfigError

    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--overrides: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ConfigError("--overrides: expected a JSON mapping of settings, e.g. '{\"seed\": 1}'")
    return value


def _known(mapping, key, where):
    from rise.errors import ConfigError

    if key not in mapping:
        raise ConfigError(f"'{key}' is not defined under {where} in params.yaml (known: {sorted(mapping)})")


# --------------------------------------------------------------------------------------- commands

def check_command(settings, args) -> int | None:
    from rise.checks import preflight
    from rise.memory import launch_report
    from rise.tables import protocol_lines

    for line in protocol_lines(settings) + launch_report(settings):  # before what this machine lacks
        print(line)
    problems = preflight(settings)
    if problems:
        print(f"preset '{settings.preset}' is not ready on this machine:", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 2
    print(f"preset '{settings.preset}' is ready: {settings.description}")
    return None


def build_models_command(settings, args) -> None:
    from rise.build import build_models
    from rise.checks import preflight
    from rise.errors import RiseError

    # checking or building models needs no GPU: on a cluster this job runs on the CPU partition
    problems = preflight(settings, need_models=False, check_gpu=False)
    if problems:
        raise RiseError("; ".join(problems))
    build_models(settings)


def pretrain_arguments(p) -> None:
    p.add_argument("--model", required=True, choices=("clip", "sam2", "policy"))


def pretrain_command(settings, args) -> None:
    from rise.toy.pipeline import pretrain

    log.info("pretrain %s -> %s", args.model, pretrain(settings, args.model))


def prepare_data_arguments(p) -> None:
    p.add_argument("--dataset", action="append")


def prepare_data_command(settings, args) -> None:
    from rise.data import prepare_dataset

    for name in args.dataset or list(settings.datasets):
        prepare_dataset(settings, name)


def sample_train_arguments(p) -> None:
    p.add_argument("--train-set", action="append")


def sample_train_command(settings, args) -> None:
    from rise.sampling import sample_train_set

    for name in args.train_set or list(settings.train_sets):
        sample_train_set(settings, name)


def train_arguments(p) -> None:
    _run_args(p, checkpoint=False)


def train_command(settings, args) -> None:
    from rise.train import train_variant

    train_variant(settings, args.variant, seed=_run_seed(settings, args))


def scored_run_arguments(p) -> None:
    """predict and evaluate: one run of a variant at a checkpoint, on some datasets (default: all a table reads)."""
    _run_args(p)
    p.add_argument("--eval-set", action="append")


def predict_command(settings, args) -> None:
    from rise.predict import predict

    _each_eval_set(settings, args, predict)


def evaluate_command(settings, args) -> None:
    from rise.evaluate import evaluate

    _each_eval_set(settings, args, evaluate)


def _each_eval_set(settings, args, stage) -> None:
    seed, checkpoint = _run_seed(settings, args), _checkpoint(settings, args)
    for name in _eval_sets(settings, args.eval_set):
        stage(settings, args.variant, name, seed=seed, checkpoint=checkpoint)


def sweep_arguments(p) -> None:
    p.add_argument("--variant", required=True)


def sweep_command(settings, args) -> None:
    from rise.sweep import write_sweep

    _known(settings.variants, args.variant, "variants")
    log.info("sweep %s -> %s", args.variant, write_sweep(settings, args.variant))


def sweep_figure_command(settings, args) -> None:
    from rise.sweep import compare_figure

    compare_figure(settings, settings.sweeps, settings.layout.figure("sweeps"))


def table_arguments(p) -> None:
    p.add_argument("--name", action="append")


def table_command(settings, args) -> None:
    from rise.tables import build_table

    for name in args.name or list(settings.tables):
        _known(settings.tables, name, "tables")
        build_table(settings, name)


def launch_arguments(p) -> None:
    p.add_argument("stage", choices=("train", "predict"))
    scored_run_arguments(p)


def launch_command(settings, args) -> int | None:
    from rise.launch import launch

    stage_args = ["--variant", args.variant, "--seed", str(_run_seed(settings, args))]
    stage_args += ["--checkpoint", _checkpoint(settings, args)] if args.stage == "predict" else []
    stage_args += [a for e in args.eval_set or [] for a in ("--eval-set", e)]
    cli_args = ["--params", args.params, "--preset", settings.preset]
    cli_args += ["--overrides", args.overrides] if args.overrides else []
    cli_args += ["--log", args.log] if args.log else []
    return launch(settings, args.stage, stage_args, cli_args) or None  # a failed stage has said why, in its log


def show_arguments(p) -> None:
    p.add_argument("--name", action="append")
    p.add_argument("--write", action="store_true", help="write results/<preset>/<table>.md instead of printing")


def show_command(settings, args) -> None:
    from rise.report import SHOW_WIDTH, table_markdown, write_markdown

    for name in args.name or list(settings.tables):
        _known(settings.tables, name, "tables")
        if args.write:
            log.info("%s -> %s", name, write_markdown(settings, name))
        else:
            print(table_markdown(settings, name, width=SHOW_WIDTH))


def figure_command(settings, args) -> None:
    from rise.figures import qualitative_figure

    q = settings.figures["qualitative"]
    qualitative_figure(settings, q["variants"], q["dataset"], q["samples"],
                       settings.layout.figure("qualitative"), q.get("sample_ids"), q.get("pick", "random"))


def dvc_yaml_arguments(p) -> None:
    p.add_argument("--check", action="store_true", help="only say whether they are up to date (exit 2 if not)")


def dvc_yaml_command(settings, args) -> int | None:
    from rise.dvc_pipeline import write_or_check

    stale = write_or_check(args.params, Path(args.params).parent, check=args.check)
    if not stale:
        print("every preset's dvc.yaml is up to date")
    elif args.check:
        print(f"out of date with {args.params}: {', '.join(map(str, stale))}; run `rise dvc-yaml`", file=sys.stderr)
        return 2
    else:
        print(f"written from {args.params}: {', '.join(map(str, stale))}")
    return None


def check_data_command(settings, args) -> int | None:
    """One line per dataset: what was found, or what is missing. Exit 2 if anything is missing."""
    from rise.data import describe_dataset
    from rise.errors import RiseError

    missing = 0
    for name in settings.datasets:
        try:
            info = describe_dataset(settings, name)
            print(f"ok       {name}: " + ", ".join(f"{k}={v}" for k, v in info.items()))
        except RiseError as exc:
            missing += 1
            print(f"MISSING  {name}: {exc}")
    total = len(settings.datasets)
    print(f"{total - missing} of {total} datasets of preset '{settings.preset}' found, {missing} missing"
          + ("; where to get each and how to point params.yaml at it: docs/data.md" if missing else ""))
    return 2 if missing else None


def contracts_command(settings, args) -> None:
    import rise.contracts

    print(rise.contracts.__doc__)


def cost_arguments(p) -> None:
    p.add_argument("targets", nargs="+", metavar="TARGET", help="table names, or all_tables")


def cost_command(settings, args) -> None:
    from rise.cost import report

    print(report(settings, args.targets))


def code_arguments(p) -> None:
    p.add_argument("commands", nargs="*", metavar="COMMAND", help="commands of this CLI (default: the stages')")
    p.add_argument("--write", metavar="DIR", help="write DIR/<command>.json instead of printing (DVC's code_fingerprints)")


def code_command(settings, args) -> None:
    from rise.fingerprints import STAGE_COMMANDS, code_fingerprint, project_library, write_code_fingerprints

    library = project_library(Path.cwd())
    commands = args.commands or list(STAGE_COMMANDS)
    if args.write:
        write_code_fingerprints(args.write, commands, library)
    else:
        for command in commands:
            fp = code_fingerprint([command], library)
            print(f"{command:14s} {fp['fingerprint']}  " + " ".join(fp["modules"]))


def claim_arguments(p) -> None:
    p.add_argument("table", help="a toy table the workflow wrote, e.g. results/toy/table4.csv")
    p.add_argument("--metric", default="gIoU", choices=["gIoU", "cIoU"])
    p.add_argument("--margin", type=float, default=2.0, help="in seed standard deviations")
    p.add_argument("--resamples", type=int, default=2000,
                   help="bootstrap resamples of the interval beside each comparison (0: none)")


def claim_command(settings, args) -> int | None:
    from rise.toy.claim import check_claim, report, with_intervals

    records = check_claim(args.table, settings.variants, args.metric, args.margin)
    if args.resamples:
        records = with_intervals(settings, records, args.metric, args.resamples)
    print(report(records, args.metric, args.margin))
    return None if all(r["met"] for r in records if not r.get("family")) else 1


def draws_arguments(p) -> None:
    p.add_argument("--name", required=True, help="a table of the preset's `draws.tables`, e.g. table4")
    p.add_argument("--metric", default="gIoU", choices=["gIoU", "cIoU"])
    p.add_argument("--margin", type=float, default=2.0, help="in seed standard deviations")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of each interval")


def draws_command(settings, args) -> int | None:
    from rise.toy.draws import draws_table

    paths = draws_table(settings, args.name, args.metric, args.margin, args.resamples)
    print(paths["markdown"].read_text().split("## Per draw")[0].strip())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


def judges_arguments(p) -> None:
    p.add_argument("--metric", default="gIoU", choices=["gIoU", "cIoU"])
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of each interval")


def judges_command(settings, args) -> int | None:
    from rise.toy.judges import judges_table

    paths = judges_table(settings, args.metric, args.resamples)
    print(paths["markdown"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


# ------------------------------------------------------------------------------------------- table

@dataclass(frozen=True)
class Command:
    """One `rise` command: its function, its options and its one-line help."""

    run: Callable  # (settings, args) -> exit code, None for 0
    help: str
    arguments: Callable | None = None  # (subparser) -> None
    reads_settings: bool = True  # False: runs without a params file


COMMANDS: dict[str, Command] = {
    "check": Command(check_command, "validate params.yaml and check that the preset's models, data and GPU exist"),
    "build-models": Command(build_models_command,
                            "build the demo models offline, or check the preset's models are available"),
    "pretrain": Command(pretrain_command, "pretrain one of the toy world's models from scratch "
                        "(presets.<preset>.pretrain)", pretrain_arguments),
    "prepare-data": Command(prepare_data_command, "write the evaluation manifest of datasets (default: all)",
                            prepare_data_arguments),
    "sample-train": Command(sample_train_command, "sample training pairs into a manifest (default: all train sets)",
                            sample_train_arguments),
    "train": Command(train_command, "GRPO-train one run of a variant (resumes from its latest checkpoint)",
                     train_arguments),
    "predict": Command(predict_command, "policy + SAM2 predictions of a variant (default: all evaluated datasets)",
                       scored_run_arguments),
    "evaluate": Command(evaluate_command, "gIoU/cIoU of a variant's predictions", scored_run_arguments),
    "sweep": Command(sweep_command, "gIoU/cIoU against training step for every saved checkpoint (CSV + PNG)",
                     sweep_arguments),
    "sweep-figure": Command(sweep_figure_command, "the sweeps listed under `sweeps` on shared axes (figures/sweeps.png)"),
    "table": Command(table_command, "write paper tables (default: all)", table_arguments),
    "launch": Command(launch_command, "run a GPU stage on reserved GPUs (CUDA_VISIBLE_DEVICES), under accelerate "
                      "launch when it trains on several; what Snakemake and DVC call", launch_arguments),
    "show": Command(show_command, "print paper tables (paper / ours / difference) from their CSVs (default: all)",
                    show_arguments),
    "figure": Command(figure_command, "the qualitative figure (figures.qualitative in params.yaml)"),
    "dvc-yaml": Command(dvc_yaml_command, "write each preset's dvc.yaml from params.yaml (DVC's stages = Snakemake's "
                        "jobs)", dvc_yaml_arguments),
    "check-data": Command(check_data_command, "say per dataset what was found on disk, or exactly what is missing"),
    "contracts": Command(contracts_command, "print the schemas of the files passed between stages",
                         reads_settings=False),
    "cost": Command(cost_command, "projected GPU hours of tables, from the planned jobs and "
                    "benchmarks/measurements.yaml", cost_arguments),
    "code": Command(code_command, "the code fingerprint of each command: what a stage reruns for "
                    "(rise/fingerprints.py)", code_arguments),
    "draws": Command(draws_command, "the claim over a preset's pretraining draws: per draw, the share that "
                     "holds, and intervals across draws (rise/toy/draws.py)", draws_arguments),
    "judges": Command(judges_command, "the rows that read R_sem against the judge's quality: each weaker toy "
                      "CLIP's table against the preset's Format-only and base (rise/toy/judges.py)", judges_arguments),
    "claim": Command(claim_command, "do a toy table's R_sem rows beat Format-only and the base by more than "
                     "--margin seed standard deviations? (exit 1 if not; rise/toy/claim.py)", claim_arguments),
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rise", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="settings file (default: params.yaml)")
    parser.add_argument("--preset", default=None, help="preset to use (default: the file's `preset`)")
    parser.add_argument("--log", default=None, help="also write the log to this file")
    parser.add_argument("--overrides", default=None, metavar="JSON",
                        help="settings merged over the params file, as a JSON mapping (Snakemake passes its "
                             "--config values here)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help)
        if command.arguments:
            command.arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    _setup_logging(args.log, models=args.command in MODEL_COMMANDS)

    from rise.config import load_settings
    from rise.errors import RiseError

    command = COMMANDS[args.command]
    started = time.perf_counter()
    try:
        settings = None
        if command.reads_settings:
            settings = load_settings(args.params, args.preset, overrides=_parse_overrides(args.overrides))
            from rise.kernels import pin_cpu_kernels

            pin_cpu_kernels(settings.cpu_kernels)  # before any stage imports torch
        code = command.run(settings, args)
    except RiseError as exc:
        print(f"rise {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"rise {args.command}: error: {exc} (run the stage that makes it first)", file=sys.stderr)
        return 2
    if code:
        return code
    if command.reads_settings:
        log.info("rise %s done in %.1fs", args.command, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
