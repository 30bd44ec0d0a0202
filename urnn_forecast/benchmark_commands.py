"""`urnn benchmark paper | ett | pjm`: the parsers and handlers of the benchmark suites.

The published-result comparisons (the uRNN paper's synthetic tasks, the ETT long-horizon
protocol, PJM demand) are run from here; `urnn_forecast.cli` adds them to the command line.
Heavy imports (torch, the training modules) happen inside the handlers.
"""

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from urnn_forecast.cli_support import (
    DECODER_CHOICES,
    SEED_MAX,
    UsageError,
    add_device_option,
    check_output_folder,
    choice_list,
    command_failed,
    input_errors,
    int_list,
    positive_float,
    positive_int,
    print_mlflow_location,
    probe_output_folder,
    seed_number,
)
from urnn_forecast.settings import Settings

if TYPE_CHECKING:
    from training.paper_benchmark import PaperRunConfig, PaperRunResult

# Kept here rather than imported from `models` so that parsing arguments does not import torch;
# tests/test_cli.py checks that it stays equal to models.MODEL_KINDS.
MODEL_CHOICES: tuple[str, ...] = ("urnn", "urnn-full", "lstm", "gru", "rnn")
DEFAULT_MODELS: tuple[str, ...] = ("urnn", "lstm")
TASK_CHOICES: tuple[str, ...] = ("copy", "adding")


# `urnn benchmark ett`: mirrors of training.ett_benchmark (checked by its tests), so that
# parsing does not import torch.
ETT_DATASETS: tuple[str, ...] = ("ETTh1", "ETTh2", "ETTm1", "ETTm2")
ETT_MODELS: tuple[str, ...] = (
    "urnn",
    "lstm",
    "linear",
    "seasonal_naive",
    "repeat_last",
    "urnn-stream",
)
ETT_HORIZONS: tuple[int, ...] = (96, 192, 336, 720)
MIN_SEQ_LEN = {"copy": 1, "adding": 2}  # mirrors PaperTask.min_seq_len, checked before torch loads


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
    """The options of `urnn benchmark paper` (the task's length, budget and models)."""
    seq_help = "sequence length T (copy: the delay, sequences are T + 20 long)"
    parser.add_argument(
        "--seq-len",
        metavar="T",
        type=positive_int,
        default=seq_len,
        help=f"{seq_help}; default {seq_len}",
    )
    parser.add_argument(
        "--iterations",
        metavar="N",
        type=positive_int,
        default=iterations,
        help=f"training iterations (one fresh batch each); default {iterations}",
    )
    parser.add_argument(
        "--batch-size",
        metavar="N",
        type=positive_int,
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
    # urnn benchmark ett and pjm spell the list --models: a second option rather than an
    # alias, so that an error names the spelling typed ("argument --models: ...")
    parser.add_argument(
        "--models",
        dest="models",
        action="extend",
        type=_model_list,
        default=None,
        metavar="KIND[,KIND...]",
        help="the same as --model, as urnn benchmark ett and pjm spell it",
    )
    parser.add_argument(
        "--hidden-size",
        metavar="N",
        type=positive_int,
        default=None,
        help="hidden units for every model run; default: the paper's size per task and model",
    )
    parser.add_argument(
        "--seed",
        type=seed_number,
        default=0,
        help="seed for initialisation and the data stream; default 0",
    )
    parser.add_argument(
        "--eval-every",
        metavar="N",
        type=positive_int,
        default=eval_every,
        help=f"log the running training cost every N iterations; default {eval_every}",
    )
    add_device_option(parser)
    parser.add_argument(
        "--no-mlflow",
        action="store_true",
        help="do not log to MLflow (by default runs go to the store configured by URNN_*)",
    )


def _add_ett_parser(suites: Any) -> None:
    ett = suites.add_parser(
        "ett",
        help="the ETT long-horizon benchmark, our models beside the published rows",
        description=(
            "Train and score forecasters on ETTh1/ETTh2/ETTm1/ETTm2 with the standard protocol "
            "(12/4/4-month split, train-only StandardScaler, stride-1 test windows, MSE and MAE "
            "on the z-normalised scale, early stopping on validation); writes results.json and "
            "results.md and prints the markdown table beside the published rows."
        ),
    )
    ett.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder with ETT*.csv; default ../shared/data/ETT-small if present, else the "
        "bundled data/ETT-small (ETTh1 only)",
    )
    ett.add_argument(
        "--datasets",
        action="extend",
        type=choice_list(ETT_DATASETS, "dataset"),
        default=None,
        metavar="NAME[,NAME...]",
        help=f"from {', '.join(ETT_DATASETS)}; default ETTh1",
    )
    ett.add_argument(
        "--setting",
        choices=("S", "M"),
        default="S",
        help="S: target OT only; M: all 7 channels, channel-independent; default S",
    )
    ett.add_argument(
        "--horizons",
        action="extend",
        type=int_list,
        default=None,
        metavar="H[,H...]",
        help=f"default {','.join(map(str, ETT_HORIZONS))}",
    )
    ett.add_argument(
        "--lookback",
        type=positive_int,
        default=None,
        metavar="L",
        help="input rows per window (a multiple of --segment-length for urnn/lstm); default 336 "
        "for S, 720 for M",
    )
    ett.add_argument(
        "--segment-length",
        type=positive_int,
        default=None,
        metavar="N",
        help="rows per recurrent step of urnn/lstm/urnn-stream (must divide --lookback: 16 or "
        "32 for a look-back of 4096); default 24 in S, 48 in M",
    )
    ett.add_argument(
        "--models",
        action="extend",
        type=choice_list(ETT_MODELS, "model"),
        default=None,
        metavar="KIND[,KIND...]",
        help=f"from {', '.join(ETT_MODELS)}; default all but urnn-stream",
    )
    ett.add_argument(
        "--epochs",
        type=positive_int,
        default=20,
        metavar="N",
        help="maximum training epochs (early stopping, patience 3, may end sooner); default 20",
    )
    ett.add_argument("--seed", type=seed_number, default=0, help="random seed; default 0")
    ett.add_argument(
        "--ensemble",
        type=positive_int,
        default=1,
        metavar="K",
        help="members per trained model (urnn, lstm, linear): K seeds from --seed, quantiles "
        "averaged (K times the training time); default 1",
    )
    ett.add_argument(
        "--repeats",
        type=positive_int,
        default=1,
        metavar="R",
        help="fit and score each trained model R times (repeat r: seed --seed + r x "
        "--ensemble); the table shows the mean and the range of the test MSE; default 1",
    )
    ett.add_argument(
        "--decoder",
        choices=DECODER_CHOICES,
        default=None,
        help="decoder of the recurrent models (urnn, lstm): direct, pmf (SegRNN's parallel "
        "decoder) or auto (train both, keep the better on the validation split); default: auto "
        "for urnn, direct for lstm (docs/benchmarks.md)",
    )
    ett.add_argument(
        "--calendar",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="feed urnn and lstm calendar features (hour of day, day of week, day of year) for "
        "the look-back and the horizon; default: on in S, off in M (chosen on the validation "
        "splits: docs/benchmarks.md)",
    )
    ett.add_argument(
        "--split",
        choices=("ett", "fractions"),
        default="ett",
        help="ett: 12/4/4 months (the protocol); fractions: 60/20/20 %% of the rows, for files "
        "shorter than 20 months (not comparable to the published rows); default ett",
    )
    ett.add_argument(
        "--output",
        default="runs/ett",
        metavar="DIR",
        help="where results.json and results.md go; default runs/ett",
    )
    add_device_option(ett)
    ett.set_defaults(handler=_run_ett, subparser=ett)


def _run_ett(args: argparse.Namespace, settings: Settings) -> int:
    errors = input_errors()
    start = time.perf_counter()
    try:
        check_output_folder(args.output)
        from training.ett_benchmark import (
            MODELS,
            EttBenchmarkConfig,
            EttBenchmarkError,
            EttRow,
            markdown_report,
            run_ett_benchmark,
            write_results,
        )

        last_seed = args.seed + args.repeats * args.ensemble - 1
        if last_seed > SEED_MAX:
            raise UsageError(
                f"--seed {args.seed} with --repeats {args.repeats} x --ensemble {args.ensemble} "
                f"fits seeds up to {last_seed}, past 2**32 - 1 ({SEED_MAX}); give a --seed up "
                f"to {SEED_MAX - args.repeats * args.ensemble + 1}"
            )
        try:
            config = EttBenchmarkConfig(
                datasets=tuple(args.datasets or ("ETTh1",)),
                setting=args.setting,
                horizons=tuple(args.horizons or ETT_HORIZONS),
                models=tuple(args.models or MODELS),
                lookback=args.lookback,
                segment_length=args.segment_length,
                data_dir=args.data_dir,
                max_epochs=args.epochs,
                seed=args.seed,
                device=args.device,
                split=args.split,
                decoder=args.decoder,
                calendar=args.calendar,
                ensemble=args.ensemble,
                repeats=args.repeats,
            )
        except EttBenchmarkError as error:
            raise UsageError(str(error)) from None
        probe_output_folder(args.output)  # not after the work: /proc/x passes the check

        def report(row: EttRow) -> None:
            seed = f" seed {row.seed}" if config.repeats > 1 else ""
            print(
                f"{row.dataset} {row.setting} H={row.horizon} {row.model}{seed}: mse "
                f"{row.mse:.4f} mae {row.mae:.4f} ({row.epochs} epoch(s), "
                f"{row.wall_seconds:.1f} s)",
                flush=True,
            )

        print(
            f"ETT benchmark: {', '.join(config.datasets)}, setting {config.setting}, look-back "
            f"{config.resolved_lookback}, horizons {list(config.horizons)}, models "
            f"{', '.join(config.models)}",
            flush=True,
        )
        try:
            rows = run_ett_benchmark(config, on_row=report)
        except EttBenchmarkError as error:
            raise UsageError(str(error)) from None
    except errors as error:
        return command_failed("benchmark ett", error)
    json_path, md_path = write_results(rows, config, args.output)
    print()
    print(markdown_report(rows, config))
    print(f"written {json_path} and {md_path}")
    print(f"wall time {time.perf_counter() - start:.1f} s")
    return 0


# `urnn benchmark pjm`: mirrors of training.pjm_benchmark (checked by its tests), so that
# parsing does not import torch.
PJM_REGIONS: tuple[str, ...] = ("PJME", "PJMW", "DAYTON", "COMED", "FE", "DEOK")
PJM_MODELS: tuple[str, ...] = (
    "urnn",
    "lstm",
    "linear",
    "seasonal_naive_168",
    "seasonal_naive_24",
    "repeat_last",
)
PJM_HORIZONS: tuple[int, ...] = (24, 168)


def _add_pjm_parser(suites: Any) -> None:
    pjm = suites.add_parser(
        "pjm",
        help="PJM hourly demand: one global model over six regions, MASE vs weekly naive",
        description=(
            "Train one global forecaster per model kind and horizon over the PJM regions "
            "(per region: test = the last 365 days, val = the 365 days before, train = the "
            "--train-years before that; train-only scaler per region; one test origin per day) "
            "and score MASE (scale: in-sample weekly seasonal naive, m=168), MSE, MAE and sMAPE "
            "on the original scale, per region and overall; writes results.json, results.md "
            "and data_report.txt and prints the table with the verdict against weekly seasonal "
            "naive."
        ),
    )
    pjm.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder with <REGION>_hourly.csv; default ../shared/data/PJM_hourly (relative to "
        "the repository root)",
    )
    pjm.add_argument(
        "--regions",
        action="extend",
        type=choice_list(PJM_REGIONS, "region"),
        default=None,
        metavar="NAME[,NAME...]",
        help=f"from {', '.join(PJM_REGIONS)}; default all",
    )
    pjm.add_argument(
        "--horizons",
        action="extend",
        type=int_list,
        default=None,
        metavar="H[,H...]",
        help=f"hours ahead; default {','.join(map(str, PJM_HORIZONS))}",
    )
    pjm.add_argument(
        "--models",
        action="extend",
        type=choice_list(PJM_MODELS, "model"),
        default=None,
        metavar="KIND[,KIND...]",
        help=f"from {', '.join(PJM_MODELS)}; default all",
    )
    pjm.add_argument(
        "--lookback",
        type=positive_int,
        default=336,
        metavar="L",
        help="input hours per window (a multiple of 24 for urnn/lstm, >= 168); default 336",
    )
    pjm.add_argument(
        "--epochs",
        type=positive_int,
        default=20,
        metavar="N",
        help="maximum training epochs (early stopping, patience 3, may end sooner); default 20",
    )
    pjm.add_argument(
        "--train-years",
        type=positive_float,
        default=4.0,
        metavar="Y",
        help="train on at most the last Y years before the val span; default 4",
    )
    pjm.add_argument(
        "--all-history",
        action="store_true",
        help="train on every row before the val span (ignores --train-years; slower)",
    )
    pjm.add_argument(
        "--train-stride",
        type=positive_int,
        default=2,
        metavar="N",
        help="hours between training windows; default 2",
    )
    pjm.add_argument("--seed", type=seed_number, default=0, help="random seed; default 0")
    pjm.add_argument(
        "--output",
        default="runs/pjm",
        metavar="DIR",
        help="where results.json, results.md and data_report.txt go; default runs/pjm",
    )
    add_device_option(pjm)
    pjm.set_defaults(handler=_run_pjm, subparser=pjm)


def _run_pjm(args: argparse.Namespace, settings: Settings) -> int:
    errors = input_errors()
    start = time.perf_counter()
    try:
        check_output_folder(args.output)
        from training.pjm_benchmark import (
            MODELS,
            PjmBenchmarkConfig,
            PjmBenchmarkError,
            PjmRow,
            load_pjm,
            markdown_report,
            protocol_text,
            resolve_data_dir,
            run_pjm_benchmark,
            write_results,
        )

        try:
            config = PjmBenchmarkConfig(
                regions=tuple(args.regions or PJM_REGIONS),
                horizons=tuple(args.horizons or PJM_HORIZONS),
                models=tuple(args.models or MODELS),
                lookback=args.lookback,
                data_dir=args.data_dir,
                train_years=None if args.all_history else args.train_years,
                train_stride=args.train_stride,
                max_epochs=args.epochs,
                seed=args.seed,
                device=args.device,
            )
            data = load_pjm(resolve_data_dir(config.data_dir), config.regions)
        except PjmBenchmarkError as error:
            raise UsageError(str(error)) from None
        probe_output_folder(args.output)  # not after the work: /proc/x passes the check

        def report(rows: Sequence[PjmRow]) -> None:
            first, overall = rows[0], rows[-1]
            regions = " ".join(f"{r.region} {r.mase:.3f}" for r in rows[:-1])
            print(
                f"H={first.horizon} {first.model}: MASE {regions} | overall {overall.mase:.3f} "
                f"(val {overall.val_mase:.3f}); {first.epochs} epoch(s), best "
                f"{first.best_epoch}, {first.wall_seconds:.1f} s",
                flush=True,
            )

        print(
            f"PJM benchmark: regions {', '.join(config.regions)}, horizons "
            f"{list(config.horizons)}, models {', '.join(config.models)}\n"
            f"{protocol_text(config)}",
            flush=True,
        )
        print("\n".join(data.report_lines()), flush=True)
        try:
            rows = run_pjm_benchmark(config, on_row=report, data=data)
        except PjmBenchmarkError as error:
            raise UsageError(str(error)) from None
    except errors as error:
        return command_failed("benchmark pjm", error)
    json_path, md_path = write_results(rows, config, args.output, data)
    print()
    print(markdown_report(rows, config))
    print(f"written {json_path}, {md_path} and the data report")
    print(f"wall time {time.perf_counter() - start:.1f} s")
    return 0


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

    # Bars on a terminal only: redirected to a file or a CI log, tqdm's carriage-return
    # updates are one line per refresh (100 KB for a 2000-iteration run), burying the table.
    progress = sys.stderr.isatty()
    results = []
    for config in configs:
        if not mlflow:
            results.append(run_paper_task(config, progress=progress))
            continue
        from urnn_forecast.tracking import PAPER_EXPERIMENT_NOTE, MlflowTracker, start_run

        with start_run(
            f"paper-{config.task}",
            settings,
            run_name=f"{config.model}-T{config.seq_len}",
            tags={"suite": "paper", "task": config.task, "model": config.model},
            experiment_description=PAPER_EXPERIMENT_NOTE,
        ) as run:
            results.append(
                run_paper_task(config, tracker=MlflowTracker(run.info.run_id), progress=progress)
            )
    return results


def _run_paper(args: argparse.Namespace, settings: Settings) -> int:
    from training.paper_benchmark import format_table

    results = _train_all(_configs(args), settings, mlflow=not args.no_mlflow)
    print(format_table(results))
    if not args.no_mlflow:
        print_mlflow_location(settings, f"paper-{args.task}")
    return 0


def add_benchmark_parser(commands: Any) -> None:
    """`urnn benchmark paper | ett | pjm`."""
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
    _add_ett_parser(suites)
    _add_pjm_parser(suites)
