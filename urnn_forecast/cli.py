"""The `urnn` command line.

    urnn benchmark paper copy --seq-len 100 --iterations 1000 --model urnn,lstm
    urnn benchmark paper adding --seq-len 200 --model urnn --model lstm
    urnn demo

Heavy imports (torch, the models, mlflow) happen inside the handlers so `urnn --help` is quick;
argument errors are argparse errors that name the option and its allowed values.
"""

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from urnn_forecast.settings import Settings, get_settings

if TYPE_CHECKING:
    from training.paper_benchmark import PaperRunConfig, PaperRunResult

# Kept here rather than imported from `models` so that parsing arguments does not import torch;
# tests/test_cli.py checks that it stays equal to models.MODEL_KINDS.
MODEL_CHOICES: tuple[str, ...] = ("urnn", "urnn-full", "lstm", "gru", "rnn")
DEFAULT_MODELS: tuple[str, ...] = ("urnn", "lstm")
TASK_CHOICES: tuple[str, ...] = ("copy", "adding")
MIN_SEQ_LEN = {"copy": 1, "adding": 2}  # mirrors PaperTask.min_seq_len, checked before torch loads

# `urnn demo`: the copying-memory task at a delay long enough that only a model with memory can
# beat the baseline, sized to finish in about a minute and a half on two CPU cores. Measured
# (seed 0): the uRNN is at ~0 cost by iteration ~300; the LSTM needs ~1300 iterations just to
# reach the memoryless baseline and then stays there, which is the paper's Figure 1 in small.
DEMO_SEQ_LEN = 200
DEMO_ITERATIONS = 1500
DEMO_EVAL_EVERY = 50


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _model_list(text: str) -> list[str]:
    """`urnn,lstm` -> ["urnn", "lstm"]; with action="extend" the option is also repeatable."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected model names, choose from {_choices()}")
    for name in names:
        if name not in MODEL_CHOICES:
            raise argparse.ArgumentTypeError(f"unknown model {name!r}; choose from {_choices()}")
    return names


def _choices() -> str:
    return ", ".join(MODEL_CHOICES)


def _add_run_options(
    parser: argparse.ArgumentParser, *, seq_len: int, iterations: int, eval_every: int
) -> None:
    """Options shared by `benchmark paper` and `demo`; only the defaults differ."""
    seq_help = "sequence length T (copy: the delay, sequences are T + 20 long)"
    parser.add_argument(
        "--seq-len",
        type=_positive_int,
        default=seq_len,
        help=f"{seq_help}; default {seq_len}",
    )
    parser.add_argument(
        "--iterations",
        type=_positive_int,
        default=iterations,
        help=f"training iterations (one fresh batch each); default {iterations}",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=20,
        help="sequences per batch; default 20 (the paper's)",
    )
    parser.add_argument(
        "--model",
        dest="models",
        action="extend",
        type=_model_list,
        default=None,
        metavar="KIND[,KIND...]",
        help=(
            f"model(s) to train, repeatable or comma separated, from: {_choices()}; "
            f"default {','.join(DEFAULT_MODELS)}"
        ),
    )
    parser.add_argument(
        "--hidden-size",
        type=_positive_int,
        default=None,
        help="hidden units for every model run; default: the paper's size per task and model",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for initialisation and the data stream; default 0",
    )
    parser.add_argument(
        "--eval-every",
        type=_positive_int,
        default=eval_every,
        help=f"log the running training cost every N iterations; default {eval_every}",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where to train: auto picks cuda when available; default: URNN_DEVICE or auto",
    )
    parser.add_argument(
        "--no-mlflow",
        action="store_true",
        help="do not log to MLflow (by default runs go to the store configured by URNN_*)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urnn", description="Unitary Evolution RNNs: benchmarks and demos."
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to run"
    )

    benchmark = commands.add_parser(
        "benchmark", help="reproduce published benchmarks", description="Benchmarks."
    )
    suites = benchmark.add_subparsers(
        dest="suite", required=True, metavar="SUITE", help="which benchmark suite"
    )
    paper = suites.add_parser(
        "paper",
        help="the uRNN paper's synthetic tasks (copying memory, adding problem)",
        description=(
            "Train models on a task of Arjovsky, Shah & Bengio (2016) with the paper's protocol "
            "(batch 20, RMSProp lr 1e-3 decay 0.9, LSTM/GRU/RNN clipped at gradient norm 1) "
            "and print the cost beside the memoryless baseline and the paper's figure."
        ),
    )
    paper.add_argument(
        "task", choices=TASK_CHOICES, help="copy: copying memory; adding: the adding problem"
    )
    _add_run_options(paper, seq_len=100, iterations=1000, eval_every=50)
    paper.set_defaults(handler=_run_paper, subparser=paper)

    demo = commands.add_parser(
        "demo",
        help="copying memory, uRNN vs LSTM, in about 1.5 minutes on two CPU cores",
        description=(
            f"Copying-memory task at T={DEMO_SEQ_LEN} for {DEMO_ITERATIONS} iterations, uRNN "
            "against LSTM, logged to MLflow; prints the result table and how to open the UI."
        ),
    )
    demo.set_defaults(task="copy")
    _add_run_options(
        demo, seq_len=DEMO_SEQ_LEN, iterations=DEMO_ITERATIONS, eval_every=DEMO_EVAL_EVERY
    )
    demo.set_defaults(handler=_run_demo, subparser=demo)
    return parser


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    """Entry point of the `urnn` script; `settings` lets tests point MLflow at a temp store."""
    parser = build_parser()
    args = parser.parse_args(argv)
    subparser: argparse.ArgumentParser = args.subparser
    if args.seq_len < MIN_SEQ_LEN[args.task]:
        subparser.error(
            f"argument --seq-len: the {args.task} task needs T >= {MIN_SEQ_LEN[args.task]}, "
            f"got {args.seq_len}"
        )
    settings = settings or get_settings()
    if args.device is None:
        args.device = settings.device
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            subparser.error("argument --device: cuda is not available here; use auto or cpu")
    exit_code: int = args.handler(args, settings)
    return exit_code


def _configs(args: argparse.Namespace) -> list["PaperRunConfig"]:
    from training.paper_benchmark import PaperRunConfig

    models = list(dict.fromkeys(args.models or DEFAULT_MODELS))  # dedupe, keep order
    return [
        PaperRunConfig(
            task=args.task,
            seq_len=args.seq_len,
            iterations=args.iterations,
            model=model,
            hidden_size=args.hidden_size,
            batch_size=args.batch_size,
            seed=args.seed,
            eval_every=args.eval_every,
            device=args.device,
        )
        for model in models
    ]


def _train_all(
    configs: Sequence["PaperRunConfig"], settings: Settings, *, mlflow: bool
) -> list["PaperRunResult"]:
    from training.paper_benchmark import run_paper_task

    results = []
    for config in configs:
        if not mlflow:
            results.append(run_paper_task(config))
            continue
        from urnn_forecast.tracking import MlflowTracker, start_run

        with start_run(
            f"paper-{config.task}",
            settings,
            run_name=f"{config.model}-T{config.seq_len}",
            tags={"suite": "paper", "task": config.task, "model": config.model},
        ) as run:
            results.append(run_paper_task(config, tracker=MlflowTracker(run.info.run_id)))
    return results


def _print_mlflow_location(settings: Settings, experiment: str) -> None:
    uri = settings.resolved_tracking_uri()
    print(f"\nMLflow: runs logged to experiment {experiment!r} in {uri}")
    print(f"  artifacts under {settings.resolved_artifact_root()}")
    print(f"  open the UI:  mlflow ui --backend-store-uri {uri}")


def _run_paper(args: argparse.Namespace, settings: Settings) -> int:
    from training.paper_benchmark import format_table

    results = _train_all(_configs(args), settings, mlflow=not args.no_mlflow)
    print(format_table(results))
    if not args.no_mlflow:
        _print_mlflow_location(settings, f"paper-{args.task}")
    return 0


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from training.paper_benchmark import format_table
    from training.paper_tasks import copy_baseline

    configs = _configs(args)
    models = ", ".join(f"{c.model} (hidden {c.resolved_hidden_size})" for c in configs)
    print(
        f"Copying memory: remember 10 symbols across a delay of T={args.seq_len} steps "
        f"(sequences of {args.seq_len + 20}), {args.iterations} iterations of batch "
        f"{args.batch_size}.\nModels: {models}. A model without memory cannot beat the "
        f"baseline cost {copy_baseline(args.seq_len):.4f}.\n",
        flush=True,
    )
    results = _train_all(configs, settings, mlflow=not args.no_mlflow)
    print(format_table(results))
    if not args.no_mlflow:
        _print_mlflow_location(settings, "paper-copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
