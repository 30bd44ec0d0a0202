"""The `urnn` command line: argument errors, the benchmark path, the demo's MLflow output."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from urnn_forecast import cli
from urnn_forecast.settings import Settings


def parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv, settings=Settings())
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_model_choices_match_the_models_package() -> None:
    from models import MODEL_KINDS
    from urnn_forecast.benchmark_commands import MODEL_CHOICES

    assert MODEL_CHOICES == MODEL_KINDS


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["benchmark", "paper", "copy", "--seq-len", "0"], "argument --seq-len: must be"),
        (["benchmark", "paper", "copy", "--seq-len", "ten"], "argument --seq-len: expected an"),
        (["benchmark", "paper", "adding", "--seq-len", "1"], "adding task needs T >= 2"),
        (["benchmark", "paper", "copy", "--iterations", "-3"], "argument --iterations"),
        (["benchmark", "paper", "copy", "--model", "urnn,transformer"], "unknown model"),
        (["benchmark", "paper", "copy", "--device", "tpu"], "argument --device: invalid choice"),
        (["benchmark", "paper", "mnist"], "invalid choice: 'mnist'"),
        (["demo", "--epochs", "0"], "argument --epochs"),
        (["serve", "--port", "99999"], "argument --port: must be a TCP port, 1 to 65535"),
        # the port's and the workers' own bounds whatever is wrong: 0, -1 and text were told
        # "an integer from 1 to 4,294,967,295" or "an integer >= 1"
        (["serve", "--port", "0"], "argument --port: must be a TCP port, 1 to 65535, got 0"),
        (["serve", "--port", "-1"], "argument --port: must be a TCP port, 1 to 65535, got -1"),
        (["serve", "--port", "web"], "argument --port: must be a TCP port, 1 to 65535, got 'web'"),
        (
            ["serve", "--workers", "0"],
            "argument --workers: must be an integer from 1 to 256 (as URNN_SERVE_WORKERS), got 0",
        ),
        (
            ["serve", "--workers", "two"],
            "argument --workers: must be an integer from 1 to 256 (as URNN_SERVE_WORKERS), "
            "got 'two'",
        ),
        # numpy takes seeds 0 .. 2**32 - 1: refused here, not after a run was created
        *(
            (
                [*command, "--seed", seed],
                f"argument --seed: must be an integer from 0 to 2**32 - 1 (4294967295), got {seed}",
            )
            for command in (
                ["benchmark", "paper", "copy"],
                ["benchmark", "ett"],
                ["benchmark", "pjm"],
                ["train", "--data", "x.csv", "--target", "y"],
            )
            for seed in ("-1", str(2**32))
        ),
    ],
)
def test_bad_arguments_are_argparse_errors_naming_the_option(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expected in parse_error(argv, capsys)


def test_unknown_model_error_lists_the_allowed_values(capsys: pytest.CaptureFixture[str]) -> None:
    err = parse_error(["benchmark", "paper", "copy", "--model", "transformer"], capsys)
    assert "argument --model: unknown model 'transformer'" in err
    assert "urnn, urnn-full, lstm, gru, rnn" in err


def test_models_are_repeatable_and_comma_separated() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["benchmark", "paper", "copy", "--model", "urnn,lstm", "--model", "gru"]
    )
    assert args.models == ["urnn", "lstm", "gru"]
    assert parser.parse_args(["benchmark", "paper", "copy"]).models is None  # -> urnn, lstm


@pytest.mark.parametrize("suite", [["paper", "copy"], ["ett"], ["pjm"]])
def test_every_benchmark_takes_its_models_as_models(suite: list[str]) -> None:
    """`urnn benchmark ett` and `pjm` take `--models KIND[,KIND...]`; `paper` took only
    `--model` and refused `--models urnn` as an unrecognized argument, so a script moving
    between the suites broke on the spelling. Every suite takes `--models` (paper keeps
    `--model`, which argparse's prefix matching also lets ett and pjm take)."""
    args = cli.build_parser().parse_args(["benchmark", *suite, "--models", "urnn,lstm"])
    assert args.models == ["urnn", "lstm"]


def test_paper_models_and_model_add_up(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["benchmark", "paper", "copy", "--model", "urnn", "--models", "gru"])
    assert args.models == ["urnn", "gru"]
    err = parse_error(["benchmark", "paper", "copy", "--models", "transformer"], capsys)
    assert "argument --models: unknown model 'transformer'" in err  # the option typed


@pytest.mark.parametrize("action", [["list"], ["promote", "3"]])
def test_models_takes_the_registered_name_as_train_spells_it(
    action: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn train --registered-name NAME` registers under NAME; `urnn models` took the same
    name only as `--name`, and refused `--registered-name NAME` copied from the train
    command. Both spellings name it; an empty one is refused under the spelling typed."""
    parser = cli.build_parser()
    for option in ("--name", "--registered-name"):
        args = parser.parse_args(["models", *action, option, "pumps"])
        assert args.name == "pumps"
    err = parse_error(["models", *action, "--registered-name", " "], capsys)
    assert "argument --registered-name: must not be empty" in err


@pytest.mark.parametrize("command", [["train", "--target", "OT"], ["backtest"]])
@pytest.mark.parametrize(
    ("given", "got"), [("2", "2.0"), ("0", "0.0"), ("nan", "nan"), ("half", "'half'")]
)
def test_max_filled_fraction_is_refused_naming_the_option_and_its_range(
    command: list[str], given: str, got: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-filled-fraction 2 was refused as "max_filled_fraction must lie in (0, 1]" (the
    config field, not the option; urnn backtest only once the model was loaded) and 'half'
    as "invalid float value" without the range; the other shares (--train-fraction,
    --min-improvement) are argument errors naming the option and its range."""
    argv = [command[0], "--data", "history.csv", *command[1:], "--max-filled-fraction", given]
    err = parse_error(argv, capsys)
    assert f"argument --max-filled-fraction: must lie in (0, 1] (1 accepts any), got {got}" in err


@pytest.mark.parametrize("suite", ["ett", "pjm"])
def test_benchmark_output_the_system_refuses_is_said_before_the_work(
    suite: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`urnn benchmark ett --output /proc/x/y` ran the whole benchmark (hours for the full
    protocol), then ended in a FileNotFoundError traceback, exit 1, with the results lost:
    the check before the work asks whether the folder could be made, and /proc (or a
    read-only mount for root) says yes. The folder is made before the work, as
    `urnn backtest --output` does."""
    import training.ett_benchmark as ett
    import training.pjm_benchmark as pjm

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(ett, "run_ett_benchmark", never)
    monkeypatch.setattr(pjm, "run_pjm_benchmark", never)
    monkeypatch.setattr(pjm, "resolve_data_dir", lambda data_dir: tmp_path)
    monkeypatch.setattr(pjm, "load_pjm", lambda data_dir, regions: None)
    bundled = Path(cli.__file__).resolve().parents[1] / "data" / "ETT-small"
    data = ["--data-dir", str(bundled)] if suite == "ett" else []
    argv = ["benchmark", suite, *data, "--output", "/proc/no-such/out", "--device", "cpu"]
    assert cli.main(argv, settings=Settings(var_dir=tmp_path / "var")) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"urnn benchmark {suite}: error: --output /proc/no-such/out: cannot be made as a folder"
    ), err


def test_an_option_shared_by_commands_shows_one_metavar() -> None:
    """--help showed `--epochs N` in train and the benchmarks but `--epochs EPOCHS` in demo,
    `--batch-size BATCH_SIZE` and `--hidden-size HIDDEN_SIZE` in benchmark paper against N
    in train: one option, one placeholder, and none of argparse's made from a two-word
    option (it says the name again, not what to give). Only --model (a kind in train, a URI
    in backtest) and --split (each command's own choices) mean different things in different
    commands. --train-fraction and --val-fraction keep theirs for now: their help's wording
    is held by test_backtest_help_says_its_defaults_are_the_models_own."""
    from collections import defaultdict

    kept = {"--train-fraction", "--val-fraction"}
    shown: dict[str, set[str]] = defaultdict(set)
    stack = [cli.build_parser()]
    while stack:
        parser = stack.pop()
        for action in parser._actions:
            if isinstance(action.choices, dict):
                stack.extend(action.choices.values())
            elif action.option_strings and action.nargs != 0 and action.choices is None:
                (option,) = [o for o in action.option_strings if o.startswith("--")][:1]
                metavar = str(action.metavar or action.dest.upper())
                assert action.metavar or "_" not in action.dest or option in kept, option
                shown[option].add(metavar)
    assert {o: m for o, m in shown.items() if len(m) > 1 and o != "--model"} == {}


def test_version_prints_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stopped:
        cli.build_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"urnn-forecast {version('urnn-forecast')}\n"


def test_every_option_has_help() -> None:
    parser = cli.build_parser()
    stack = [parser]
    seen = 0
    while stack:
        current = stack.pop()
        for action in current._actions:
            if action.choices is not None and isinstance(action.choices, dict):
                stack.extend(action.choices.values())  # subcommand parsers
            assert action.help, f"{current.prog}: {action.dest} has no help"
            seen += 1
    assert seen > 20


def test_backtest_help_says_its_defaults_are_the_models_own() -> None:
    """`urnn backtest` reads the file with the load settings and split fractions the model was
    trained with (config.json); its --help named urnn train's defaults (--max-gap 24,
    --train-fraction 0.7) for a model trained with --max-gap 36 or --train-fraction 0.5."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a.choices, dict))
    assert isinstance(commands.choices, dict)
    backtest = " ".join(commands.choices["backtest"].format_help().split())
    assert "an option not given takes the value the model was trained with" in backtest
    assert "--train-fraction TRAIN_FRACTION default the model's own, else 0.7" in backtest
    assert "--val-fraction VAL_FRACTION default the model's own, else 0.1" in backtest
    # --decimal sits with the other loading options, under the same note
    loading = backtest.split("data loading (training.data.LoadConfig):")[1]
    assert "--decimal {.,,} the decimal mark" in loading
    assert "'.' where --sep is given as the model's decimal mark" in loading
    train = " ".join(commands.choices["train"].format_help().split())
    assert "an option not given takes" not in train
    assert "--train-fraction TRAIN_FRACTION default 0.7" in train


def test_benchmark_runs_and_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = "benchmark paper adding --seq-len 6 --iterations 3 --model lstm,gru --hidden-size 4"
    assert cli.main([*argv.split(), "--no-mlflow", "--device", "cpu"], settings=Settings()) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["task", "T", "model"]
    assert [line.split()[2] for line in lines[2:4]] == ["lstm", "gru"]
    assert all(line.split()[:2] == ["adding", "6"] for line in lines[2:4])
    assert "0.1667" in lines[2], "the adding baseline"
    assert "MLflow" not in out


def test_benchmark_draws_no_progress_bar_into_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    """stderr redirected (a file, CI; capsys is not a terminal): no tqdm bar there, whose
    carriage-return refreshes fill a log with one line each, as `urnn train` does."""
    argv = "benchmark paper copy --seq-len 3 --iterations 4 --model lstm --hidden-size 4"
    assert cli.main([*argv.split(), "--no-mlflow", "--device", "cpu"], settings=Settings()) == 0
    captured = capsys.readouterr()
    assert "copy T=3 lstm" not in captured.err, captured.err
    assert captured.out.splitlines()[2].split()[:3] == ["copy", "3", "lstm"]


def test_demo_trains_registers_serves_and_forecasts(
    mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn demo` end to end on the bundled ETTh1 (one epoch): a run in MLflow, version 1
    registered and promoted (no champion yet), the real service answering POST /forecast."""
    from mlflow.tracking import MlflowClient

    assert cli.main(["demo", "--epochs", "1", "--device", "cpu"], settings=mlflow_settings) == 0
    out = capsys.readouterr().out
    uri = mlflow_settings.resolved_tracking_uri()
    assert f"mlflow ui --backend-store-uri {uri}" in out
    assert "promoted to champion: no champion yet" in out
    assert "POST /forecast -> urnn-forecaster version 1; next 24 hours of OT:" in out
    assert "seasonal naive (24 h) on the same windows" in out

    client = MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias("urnn-forecaster", "champion").version) == "1"
    experiment = client.get_experiment_by_name("demo")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["kind"] == "urnn"
    assert run.data.metrics["backtest_mase"] > 0


def test_demo_reads_the_data_file_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--data: an installed wheel or sdist carries no data/ (the bundled ETTh1 is the
    repository's), so `urnn demo` stopped at "the bundled data file ... is missing" with no
    way to point it at a copy."""
    from urnn_forecast import demo

    seen: list[demo.DemoConfig] = []
    monkeypatch.setattr(demo, "run_demo", lambda settings, config: seen.append(config))
    copy = tmp_path / "ETTh1.csv"
    argv = ["demo", "--data", str(copy), "--epochs", "2", "--no-stay"]
    assert cli.main(argv, settings=Settings(var_dir=tmp_path / "var")) == 0
    assert [(c.data, c.max_epochs) for c in seen] == [(copy, 2)]


def test_demo_stay_with_a_tracking_server_shows_its_ui_and_starts_no_mlflow_ui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn demo --stay` with URNN_MLFLOW_TRACKING_URI naming a team's tracking server started
    `mlflow ui --backend-store-uri http://...`, which MLflow refuses at once (no model registry
    on an http store): the banner printed a UI nobody served, and the child's exit stopped
    the whole stack ("a demo process stopped on its own (['mlflow-ui'])"). The server is its
    own UI: shown (password hidden) and no UI child started."""
    from types import SimpleNamespace

    from urnn_forecast import demo

    started: list[list[str]] = []

    class Child:
        pid = 0

        def __init__(self, argv: list[str], **kwargs: object) -> None:
            started.append(argv)

        def poll(self) -> None:
            return None

        def wait(self, timeout: float) -> int:
            return 0

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    done = SimpleNamespace(returncode=0, stderr="")
    monkeypatch.setattr("urnn_forecast.demo.subprocess.run", lambda *a, **k: done)
    monkeypatch.setattr("urnn_forecast.demo.subprocess.Popen", Child)
    monkeypatch.setattr("urnn_forecast.demo.time.sleep", ctrl_c)
    monkeypatch.setattr("urnn_forecast.demo.os.killpg", lambda pid, sig: None)
    settings = Settings(
        var_dir=tmp_path / "var", mlflow_tracking_uri="http://ops:s3cret@127.0.0.1:8160"
    )
    server = SimpleNamespace(base="http://127.0.0.1:8000")
    demo._stay_up(settings, server, demo.DemoConfig(), {"series": []})  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert not [argv for argv in started if "mlflow" in argv], started
    assert [argv[-1] for argv in started] == ["worker"]
    assert "MLflow UI         http://ops:***@127.0.0.1:8160" in out
    assert "s3cret" not in out


def test_demo_without_its_data_says_how_to_give_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from urnn_forecast.demo import BUNDLED_ETTH1, missing_data

    absent = tmp_path / "absent.csv"
    assert cli.main(["demo", "--data", str(absent), "--no-stay"], settings=Settings()) == 2
    assert f"urnn demo: error: the data file {absent} is missing" in capsys.readouterr().err
    said = missing_data(BUNDLED_ETTH1)  # what an installed package says with no --data
    assert "not with an installed package; pass --data PATH" in said
    assert "ETT-small/ETTh1.csv" in said


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("folder", "a folder, not a file; give a copy of ETTh1.csv"),
        ("null", "not a regular file; give a copy of ETTh1.csv"),
    ],
)
def test_demo_data_that_is_no_file_is_bad_input_said_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, said: str
) -> None:
    """`urnn demo --data` naming a folder or a device said "the data file ... is missing"
    (it is there) and exited 1, the code of a demo step that failed at run time; every other
    command exits 2 on bad input and names a folder as one (README: exit codes)."""
    data = tmp_path / "ETT-small" if name == "folder" else Path(os.devnull)
    if name == "folder":
        data.mkdir()
    settings = Settings(var_dir=tmp_path / "var")
    assert cli.main(["demo", "--data", str(data), "--no-stay"], settings=settings) == 2
    assert capsys.readouterr().err == f"urnn demo: error: --data {data}: {said}\n"
    assert not (tmp_path / "var").exists()  # refused before anything trains


def test_demo_step_that_fails_at_run_time_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A demo step that failed with good input (the service never became ready, the forecast
    request answered an error) keeps exit 1, apart from bad input's 2."""
    from urnn_forecast import demo

    def fails(settings: Settings, config: demo.DemoConfig) -> None:
        raise demo.DemoError("the service did not become ready within 60 s: refused")

    monkeypatch.setattr(demo, "run_demo", fails)
    assert cli.main(["demo", "--no-stay"], settings=Settings()) == 1
    assert "urnn demo: error: the service did not become ready" in capsys.readouterr().err


def test_importing_the_cli_loads_neither_torch_nor_mlflow() -> None:
    """`urnn --help` should be instant; the heavy imports happen inside the handlers."""
    code = (
        "import sys, urnn_forecast.cli, urnn_forecast.tracking;"
        "print(sorted({'torch', 'mlflow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def serve_from_environment(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`urnn serve` with settings read from the URNN_* variables: (exit code, stderr)."""
    from urnn_forecast.settings import get_settings

    get_settings.cache_clear()
    try:
        code = cli.main(["serve"])
    finally:
        get_settings.cache_clear()
    return code, capsys.readouterr().err


def test_bad_settings_are_one_line_naming_the_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("URNN_DEVICE", "gpu")
    monkeypatch.setenv("URNN_BATCH_MAX_SERIES", "0")
    code, err = serve_from_environment(capsys)
    assert code == 2
    assert err.startswith("urnn serve: error: invalid settings: ")
    assert "URNN_DEVICE='gpu': Input should be 'auto', 'cpu' or 'cuda'" in err
    assert "URNN_BATCH_MAX_SERIES='0': Input should be greater than or equal to 1" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("URNN_SERVE_WORKERS", "0", "must be from 1 to 256"),
        ("URNN_SERVE_WORKERS", "1000", "must be from 1 to 256"),
        ("URNN_SERVE_PORT", "70000", "must be from 1 to 65535"),
        ("URNN_SHUTDOWN_DRAIN_SECONDS", "-1", "must be from 0 to 3600"),
        ("URNN_MAX_BODY_BYTES", "100", "must be from 1024 to 1073741824"),
    ],
)
def test_a_setting_out_of_its_range_says_the_whole_range(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    said: str,
) -> None:
    """URNN_SERVE_WORKERS=0 said only "greater than or equal to 1", and 1000 only "less than
    or equal to 256": each answer named one bound, where `--workers 0` names both."""
    monkeypatch.setenv(variable, value)
    code, err = serve_from_environment(capsys)
    assert code == 2
    assert f"{variable}={value!r}: Input should be " in err
    assert f"; it {said}" in err


@pytest.mark.parametrize(
    "variable",
    ["URNN_SERVE_ACCESS_LOG", "URNN_API_KEY_FOR_READS", "URNN_TRACE_MODEL", "URNN_CUDA_GRAPHS"],
)
def test_a_yes_no_setting_that_does_not_read_says_the_values_it_takes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str
) -> None:
    """`URNN_SERVE_ACCESS_LOG=maybe` answered "Input should be a valid boolean, unable to
    interpret input": what it accepts, which every other bad setting says, was left out."""
    monkeypatch.setenv(variable, "enabled")
    code, err = serve_from_environment(capsys)
    assert code == 2
    assert f"{variable}='enabled': must be true or false (also 1/0, yes/no, on/off" in err
    assert "unable to interpret" not in err


@pytest.mark.parametrize(
    "command",
    [["serve"], ["models", "list"], ["models", "promote", "3"]],
    ids=["serve", "models-list", "models-promote"],
)
@pytest.mark.parametrize("uri", ["bogus", "runs:/abc/model", "models:/x/latest", "models:/"])
def test_a_model_uri_the_service_cannot_follow_stops_every_command(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: list[str],
    uri: str,
) -> None:
    """URNN_MODEL_URI=bogus let `urnn serve` start (/readyz 503 "cannot resolve bogus" for
    good) and `urnn models list` list urnn-forecaster with exit code 0."""
    import uvicorn

    from urnn_forecast.settings import get_settings

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("urnn serve started with URNN_MODEL_URI=" + uri)

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.setenv("URNN_MODEL_URI", uri)
    monkeypatch.chdir(tmp_path)  # a command that did run would leave ./var/ there
    get_settings.cache_clear()
    try:
        code = cli.main(command)
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"urnn {command[0]}: error: invalid settings: URNN_MODEL_URI={uri!r}: "
        "must be models:/<name>@<alias> or models:/<name>/<version>, e.g. "
        "models:/urnn-forecaster@champion (followed) or models:/urnn-forecaster/3 (pinned)\n"
    )


@pytest.mark.parametrize(
    "uri", ["models:/urnn-forecaster@champion", "models:/plant-7/3", "models:/a.b@challenger/"]
)
def test_the_model_uri_forms_the_service_follows_are_accepted(uri: str) -> None:
    assert Settings(model_uri=uri).model_uri == uri


@pytest.mark.parametrize("key", ["clé", "two words", "tab\there"])
def test_an_api_key_http_cannot_carry_as_is_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    """A non-ASCII key was compared as UTF-8 bytes on some routes and as latin-1 text on
    others: it opened POST /series/{id}/observations and not POST /model/reload."""
    monkeypatch.setenv("URNN_API_KEY", key)
    code, err = serve_from_environment(capsys)
    assert code == 2
    assert "URNN_API_KEY: must be printable ASCII without spaces" in err
    assert key not in err  # a secret, even a refused one, is not echoed to the logs


def test_cuda_asked_for_by_the_setting_is_said_to_come_from_urnn_device(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`URNN_DEVICE=cuda urnn train` on a CPU machine blamed `--device`, never given."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["train", "--data", "x.csv", "--target", "y"]
    assert cli.main(argv, settings=Settings(device="cuda")) == 2
    err = capsys.readouterr().err
    assert err == (
        "urnn train: error: URNN_DEVICE=cuda: cuda is not available here; set URNN_DEVICE to "
        "auto or cpu (or give --device auto or cpu)\n"
    )
    # backtest forecasts (and refits) on the device too: the same line
    assert cli.main(["backtest", "--data", "x.csv"], settings=Settings(device="cuda")) == 2
    assert capsys.readouterr().err == (
        "urnn backtest: error: URNN_DEVICE=cuda: cuda is not available here; set URNN_DEVICE "
        "to auto or cpu (or give --device auto or cpu)\n"
    )
    assert cli.main(["serve"], settings=Settings(device="cuda")) == 2
    assert capsys.readouterr().err == (
        "urnn serve: error: URNN_DEVICE=cuda: cuda is not available here; set URNN_DEVICE to "
        "auto or cpu\n"
    )
    # the option, when given, is still the one named
    assert "argument --device: cuda is not available here" in parse_error(
        [*argv, "--device", "cuda"], capsys
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["db", "current"], "no database file yet"),
        (["models", "list"], "urnn models list: error: no MLflow store at"),
    ],
)
def test_commands_that_run_no_model_ignore_urnn_device(
    argv: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`urnn db upgrade` and `urnn models` run no model, yet URNN_DEVICE=cuda on a machine
    without one stopped them ("cuda is not available here"): docker-compose.yml passes the
    same URNN_DEVICE to every container, so `URNN_DEVICE=cuda docker compose up` failed the
    migrate container (no GPU reserved) and with it the whole stack, and an operator with
    the GPU hosts' environment could not list or roll back versions from a laptop."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = Settings(device="cuda", var_dir=tmp_path / "var")
    cli.main(argv, settings=settings)
    out, err = capsys.readouterr()
    assert "cuda" not in err
    assert said in out + err


LONG = "x" * 5_000


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["train", "--data", "d.csv", "--target", "y", "--horizon", str(2**63 - 1)], "from 1 to"),
        (["train", "--data", "d.csv", "--target", "y", "--train-stride", "9" * 20], "from 1 to"),
        (["train", "--data", "d.csv", "--target", "y", "--lr", "inf"], "a finite number > 0"),
        (["train", "--data", "d.csv", "--target", "y", "--epochs", LONG], "(5,000 characters)"),
        (["train", "--data", "d.csv", "--target", "y", "--model", LONG], "(5,000 characters)"),
        (["train", "--data", "d.csv", "--target", "y", LONG], "(5,000 characters)"),
    ],
    ids=["horizon 2**63", "stride 1e20", "lr inf", "epochs", "model", "extra"],
)
def test_fuzzed_arguments_are_one_short_line_naming_the_option(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """From a fuzzing run of the CLI (464 commands): each was a traceback after the run
    started (OverflowError in numpy, MlflowException, a diverged fit) or a 5,000-character
    echo of the value."""
    err = parse_error(argv, capsys)
    assert said in err and len(err.splitlines()[-1]) < 300, err[-400:]


def test_a_data_path_the_system_refuses_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    argv = ["train", "--data", f"/tmp/{LONG}.csv", "--target", "OT"]
    assert cli.main(argv, settings=settings) == 2
    err = capsys.readouterr().err
    assert "cannot be used as a path (File name too long)" in err and len(err) < 300


def test_a_config_nested_too_deeply_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "deep.json"
    config.write_text("[" * 100_000)
    data = tmp_path / "d.csv"
    data.write_text("date,OT\n2020-01-01,1\n")
    argv = ["train", "--data", str(data), "--target", "OT", "--config", str(config)]
    assert cli.main(argv, settings=Settings(var_dir=tmp_path / "var")) == 2
    assert "its JSON is nested too deeply to read" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["a" * 64, "ex..com"])
def test_a_host_idna_cannot_encode_is_a_usage_error(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli._address_problem(host, 8000) is not None
    assert "cannot resolve it" in str(cli._address_problem(host, 8000))


def test_a_config_integer_beyond_any_size_is_refused_naming_the_field() -> None:
    from models.forecaster import ForecasterConfig
    from urnn_forecast.field_types import check_fields

    problem = check_fields(ForecasterConfig, {"hidden_size": 10**23})
    assert problem is not None and problem.startswith("field 'hidden_size' must be an integer of")


def test_a_config_files_fit_device_is_read_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """URNN_DEVICE's default overwrote a --config file's fit.device: 'tpu' went unnoticed
    (exit 0); --device given on the command line still wins over the file."""
    config = tmp_path / "c.json"
    config.write_text('{"fit": {"device": "tpu"}}')
    data = tmp_path / "d.csv"
    data.write_text("date,OT\n2020-01-01,1\n")
    argv = ["train", "--data", str(data), "--target", "OT", "--config", str(config)]
    assert cli.main(argv, settings=Settings(var_dir=tmp_path / "var")) == 2
    assert "device must be one of 'auto', 'cpu', 'cuda'; got 'tpu'" in capsys.readouterr().err
    args = cli.build_parser().parse_args([*argv, "--device", "cpu"])
    args.device_given = True
    assert cli._train_config(args).fit.device == "cpu"


@pytest.mark.parametrize(
    "command", [["benchmark", "ett"], ["benchmark", "pjm"], ["backtest", "--model", "m"]]
)
def test_an_output_that_is_a_file_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """It failed with FileExistsError or NotADirectoryError after the whole run."""
    taken = tmp_path / "taken.csv"
    taken.write_text("date,OT\n2020-01-01,1\n")
    argv = [*command, "--output", str(taken)]
    if command[0] == "backtest":
        argv += ["--data", str(taken)]
    assert cli.main(argv, settings=Settings(var_dir=tmp_path / "var")) == 2
    assert f"--output {taken}: is a file; give a folder" in capsys.readouterr().err
    # a folder below a file cannot be made either: it failed after the whole run
    below = taken / "results"
    argv = [*command, "--output", str(below)]
    if command[0] == "backtest":
        argv += ["--data", str(taken)]
    assert cli.main(argv, settings=Settings(var_dir=tmp_path / "var")) == 2
    said = f"--output {below}: cannot be made as a folder ({taken} is a file)"
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--host", ""],
        ["worker", "--worker-id", " "],
        ["models", "list", "--name", ""],
        ["train", "--data", "d.csv", "--target", "y", "--result-json", ""],
        ["train", "--data", "d.csv", "--target", "y", "--started-json", ""],
    ],
    ids=["host", "worker id", "model name", "result json", "started json"],
)
def test_an_empty_text_option_is_refused_not_read_as_the_default(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --host ""` served on 127.0.0.1; the others fell back or failed on Path('')."""
    assert "must not be empty" in parse_error(argv, capsys)


def test_a_worker_id_longer_than_the_job_table_holds_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """PostgreSQL refused it at the first claim, with a traceback (SQLite stored it)."""
    err = parse_error(["worker", "--worker-id", "w" * 250], capsys)
    assert "argument --worker-id: must be at most 200 characters; got 250" in err


def test_the_default_worker_id_fits_the_job_table_whatever_the_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from jobs.worker import default_worker_id

    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 253)  # a DNS name's longest
    worker_id = default_worker_id()
    assert len(worker_id) == 200 and worker_id.startswith("hhh")
    assert worker_id.split(":")[1] == str(os.getpid())


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        # inf passed every `ge` bound: after the first batch every /forecast hung
        ("URNN_BATCH_MAX_WAIT_MS", "inf", "URNN_BATCH_MAX_WAIT_MS='inf': Input should be a finite"),
        ("URNN_BATCH_MAX_WAIT_MS", "nan", "URNN_BATCH_MAX_WAIT_MS='nan': Input should be a finite"),
        ("URNN_BATCH_MAX_WAIT_MS", "1e30", "less than or equal to 1000"),
        ("URNN_JOB_LEASE_SECONDS", "inf", "URNN_JOB_LEASE_SECONDS='inf': Input should be a finite"),
        # no maximum: uvicorn spawned workers without end and ignored SIGTERM
        ("URNN_SERVE_WORKERS", "99999999999999999999", "less than or equal to 256"),
        # torch.set_num_threads overflowed in a traceback
        ("URNN_TORCH_THREADS", "3000000000", "less than or equal to 1024"),
        # a ring of that many slots per input column was allocated when a model loaded
        ("URNN_DRIFT_WINDOW", "1000000000000", "less than or equal to 10000000"),
        ("URNN_VAR_DIR", "", "URNN_VAR_DIR='': must name a folder"),
        ("URNN_VAR_DIR", " ", "URNN_VAR_DIR=' ': must name a folder"),
        ("URNN_DATABASE_URL", "sqlite:///", "in-memory SQLite database"),
        ("URNN_DATABASE_URL", "sqlite://", "in-memory SQLite database"),
        ("URNN_DATABASE_URL", "sqlite:///:memory:", "in-memory SQLite database"),
        ("URNN_DATABASE_URL", "not a url", "is not a SQLAlchemy database URL"),
        ("URNN_MODEL_POLL_SECONDS", "0.000001", "must be 0 (no poll) or at least 0.1"),
        ("URNN_WORKER_POLL_SECONDS", "1e-9", "greater than or equal to 0.01"),
        ("URNN_JOB_HEARTBEAT_SECONDS", "60", "must be at most half of URNN_JOB_LEASE_SECONDS=60"),
        ("URNN_API_KY", "k", "URNN_API_KY: no such setting (did you mean URNN_API_KEY?)"),
        ("URNN_JOB_DATA_DIR", "/d", "URNN_JOB_DATA_DIR: no such setting (did you mean URNN_JOB_"),
        ("urnn_devise", "cpu", "urnn_devise: no such setting (did you mean URNN_DEVICE?)"),
    ],
)
def test_settings_a_service_cannot_run_on_stop_every_command_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variable: str,
    value: str,
    said: str,
) -> None:
    """A settings fuzz round: each of these started a command that then hung, spawned
    processes without end, crashed in a traceback, silently lost its jobs (an in-memory job
    database: "upgraded to None") or ignored a mistyped name (URNN_JOB_DATA_DIR left every
    file readable to job submitters)."""
    import uvicorn

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"urnn serve started with {variable}={value}")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.chdir(tmp_path)  # a command that did run would leave ./var/ there
    monkeypatch.setenv(variable, value)
    for command in (["serve"], ["db", "upgrade"]):
        code, err = run_with_environment(command, capsys)
        assert code == 2, err
        assert err.startswith(f"urnn {command[0]}: error: invalid settings: "), err
        assert said in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def run_with_environment(command: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from urnn_forecast.settings import get_settings

    get_settings.cache_clear()
    try:
        code = cli.main(command)
    finally:
        get_settings.cache_clear()
    return code, capsys.readouterr().err


def test_a_var_dir_that_is_a_file_is_refused_before_the_job_database_is_made(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`urnn db upgrade` with URNN_VAR_DIR naming a file ended in a FileExistsError traceback."""
    taken = tmp_path / "taken"
    taken.write_text("kept")
    monkeypatch.setenv("URNN_VAR_DIR", str(taken))
    code, err = run_with_environment(["db", "upgrade"], capsys)
    assert code == 2
    assert err.startswith(f"urnn db: error: invalid settings: URNN_VAR_DIR='{taken}': is a file")
    assert taken.read_text() == "kept"


def test_a_password_in_a_refused_database_url_is_not_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("URNN_DATABASE_URL", "postgresql://jobs:s3cret@db:5432/urnn")
    monkeypatch.setenv("URNN_SERVE_WORKERS", "0")
    code, err = run_with_environment(["db", "current"], capsys)
    assert code == 2 and "URNN_SERVE_WORKERS" in err and "s3cret" not in err
    monkeypatch.setenv("URNN_SERVE_WORKERS", "1")
    for url in (
        "postgresql://jobs:s3c/ret@db:54x2/urnn",  # a '/', '?', '#' or '@' in the password
        "postgresql://jobs:s3c?r#et@db:54x2/urnn",
        "postgresql://jobs:s3c@ret@db:1/urnn",
        "postgresql://jobs:s3c?@ret@db:1/urnn",
        "postgresql://jobs:s3c@r/et@db:1/urnn",
        "postgresql://jobs:s3c@r:et@db/urnn",
    ):
        monkeypatch.setenv("URNN_DATABASE_URL", url)
        code, err = run_with_environment(["db", "current"], capsys)
        assert code == 2 and "s3c" not in err and "ret@" not in err and "jobs:***@" in err, err
    monkeypatch.setenv("URNN_DATABASE_URL", "sqlite://jobs:s3cret@/")
    code, err = run_with_environment(["db", "current"], capsys)
    assert code == 2 and "in-memory" in err and "s3cret" not in err and "jobs:***@" in err


@pytest.mark.parametrize(
    "url",
    [
        "jobs:s3cret@db:5432/urnn",  # the scheme left out
        "postgresql//jobs:s3cret@db:5432/urnn",  # its ':' left out
        "postgresql:/jobs:s3cret@db:5432/urnn",  # a '/' left out
        "jobs:s3c@ret@db/urnn",
    ],
)
def test_a_password_in_a_database_url_without_its_scheme_is_not_shown(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL mistyped before its '://' was echoed whole in the refusal, password included
    (the masking looked for `scheme://user:` only): on the terminal and in the service's log."""
    monkeypatch.setenv("URNN_DATABASE_URL", url)
    code, err = run_with_environment(["db", "current"], capsys)
    assert code == 2 and "URNN_DATABASE_URL" in err, err
    assert "s3c" not in err and "***@db" in err, err


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("mlflow_tracking_uri", "https://mlflow.example.com/users/a@b.com/runs@2"),
        ("mlflow_tracking_uri", "https://user:tok@host/api/@team/x"),
        ("database_url", "sqlite+pysqlite:////srv/a@b/c@d.db"),
        ("database_url", "postgresql+psycopg://u:pw@db/urnn?sslrootcert=/etc/ssl/a@b.pem"),
    ],
)
def test_an_at_sign_outside_the_user_part_is_no_error(field: str, url: str) -> None:
    assert getattr(Settings.model_validate({field: url}), field) == url


def test_names_that_are_not_settings_but_are_read_elsewhere_are_let_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docker-compose.yml's own URNN_* variables (a user exports them for compose and runs
    `urnn` in the same shell), the recurrence's build switch and the tests' switches."""
    import re

    from urnn_forecast.settings import OTHER_URNN_VARIABLES, Settings, unknown_variables

    root = Path(__file__).resolve().parents[1]
    compose = (root / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(URNN_[A-Z_]+)", compose))
    fields = {f"URNN_{name.upper()}" for name in Settings.model_fields}
    assert used - fields <= OTHER_URNN_VARIABLES, used - fields - OTHER_URNN_VARIABLES
    # what the containers themselves get must be settings: anything else stops `urnn` there
    given = set(re.findall(r"^\s*(URNN_[A-Z_]+):", compose, flags=re.MULTILINE))
    given |= set(re.findall(r"\b(URNN_[A-Z_]+)=", (root / "Dockerfile").read_text()))
    assert given and given <= fields, given - fields
    kubernetes = {  # service links of Services named "urnn" and "urnn-mlflow" in the namespace
        "URNN_PORT": "tcp://10.0.0.7:8000",
        "URNN_MLFLOW_PORT": "tcp://10.0.0.8:5000",
        "URNN_SERVICE_HOST": "10.0.0.7",
        "URNN_PORT_8000_TCP_ADDR": "10.0.0.7",
        "URNN_MLFLOW_SERVICE_PORT_HTTP": "5000",
        "URNN_MLFLOW_PORT_5000_TCP": "tcp://10.0.0.8:5000",
    }
    known = [*OTHER_URNN_VARIABLES, *fields, "URNN_TEST_ANYTHING"]
    environ = {name: "1" for name in known} | kubernetes
    assert unknown_variables(environ) == []
    # a port given to a name no setting has is a typo, not a service link
    typos = {"URNN_WORKERS": "2", "URNN_PORT": "8080", "URNN_SERVER_PORT": "8080"}
    assert unknown_variables({**environ, **typos}) == [
        "URNN_PORT: no such setting (did you mean URNN_SERVE_PORT?)",
        "URNN_SERVER_PORT: no such setting (did you mean URNN_SERVE_PORT?)",
        "URNN_WORKERS: no such setting (did you mean URNN_SERVE_WORKERS?)",
    ]


def test_mlflows_own_tracking_variable_is_said_to_be_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow's tools read MLFLOW_TRACKING_URI, urnn URNN_MLFLOW_TRACKING_URI: a user who set
    the first had runs and models go to the embedded store without a word (a long-look-back
    walk's runs went to another store than the one its `mlflow ui` showed)."""
    from urnn_forecast.settings import Settings, mlflow_variable_note

    settings = Settings(var_dir=tmp_path / "var")
    theirs = "postgresql://ml:s3cret@db.example/mlflow"
    note = mlflow_variable_note(settings, {"MLFLOW_TRACKING_URI": theirs})
    assert note is not None
    assert note.startswith("MLFLOW_TRACKING_URI=postgresql://ml:***@db.example/mlflow is set, ")
    assert "URNN_MLFLOW_TRACKING_URI (unset: the embedded store)" in note
    assert settings.resolved_tracking_uri() in note and "s3cret" not in note
    same = {"MLFLOW_TRACKING_URI": settings.resolved_tracking_uri()}
    assert mlflow_variable_note(settings, same) is None
    assert mlflow_variable_note(settings, {}) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", theirs)
    monkeypatch.setattr(sys, "argv", ["urnn", "models", "list"])  # as the console script runs
    cli.main(settings=settings)  # no store yet: its error after the note
    err = capsys.readouterr().err
    assert err.startswith("urnn models: note: MLFLOW_TRACKING_URI=postgresql://ml:***@"), err


def test_a_list_written_with_spaces_is_told_how_lists_are_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ARCHITECTURE.md's usage `[--covariates ...]` reads as space-separated words, and
    `--covariates HUFL HULL` was answered "unrecognized arguments: HULL"."""
    argv = ["train", "--data", "x.csv", "--target", "OT", "--covariates", "HUFL", "HULL", "MUFL"]
    with pytest.raises(SystemExit) as stopped:
        cli.main([*argv, "--epochs", "2"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "urnn train: error: argument --covariates: takes one value, COL[,COL...]: write " in err
    assert "--covariates HUFL,HULL,MUFL (or give --covariates once per value)" in err
    with pytest.raises(SystemExit):  # a stray word after an option of one value: as before
        cli.main(["train", "--data", "x.csv", "--target", "OT", "stray"])
    assert "urnn train: error: unrecognized arguments: stray" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the stray word also given earlier, as the target
        cli.main(["train", "--data", "x.csv", "--target", "HULL", "--covariates", "HUFL", "HULL"])
    assert "write --covariates HUFL,HULL (or give" in capsys.readouterr().err


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """`urnn models list | head -1` exited 1 saying the registry could not be used ("[Errno
    32] Broken pipe"); other commands printed a BrokenPipeError trace. Now: nothing said, exit
    141, as a tool killed by SIGPIPE."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "urnn_forecast.cli", "db", "current"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "URNN_VAR_DIR": str(tmp_path / "var")},
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def test_sigterm_to_a_distributed_train_reaches_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`urnn train --nproc N` waits on torchrun; SIGTERM made subprocess.run SIGKILL it, and
    its ranks trained on, orphaned (a review). torchrun now gets the SIGTERM to pass on."""
    import os
    import signal
    import sys
    import textwrap
    import threading
    import time
    from types import SimpleNamespace

    import training.distributed

    started, heard = tmp_path / "started", tmp_path / "heard"
    child = textwrap.dedent(f"""
        import pathlib, signal, sys, time
        def heard(*_):
            pathlib.Path({str(heard)!r}).write_text("SIGTERM")
            sys.exit(0)
        signal.signal(signal.SIGTERM, heard)
        pathlib.Path({str(started)!r}).write_text("")
        time.sleep(60)
    """)
    monkeypatch.setattr(
        training.distributed, "launch_command", lambda nproc, argv: [sys.executable, "-c", child]
    )

    def terminate_once_started() -> None:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_started, daemon=True).start()
    sigterm = cli._SigtermAsInterrupt(True)
    args = SimpleNamespace(nproc=2, argv=["train"])
    with pytest.raises(KeyboardInterrupt), sigterm:
        cli._launch_distributed(args, Settings(var_dir=tmp_path / "var"))  # type: ignore[arg-type]
    assert sigterm.received and heard.read_text() == "SIGTERM"


def test_mlflows_download_bars_stay_out_of_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow drew its "Downloading artifacts" bars (up to 51 updates) into redirected output
    and job logs, where urnn's own bars are off (a README walk-through); a user's own setting
    of the variable stands."""
    import os

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    argv = ["train", "--data", str(tmp_path / "none.csv"), "--target", "y"]
    assert cli.main(argv, settings=Settings(var_dir=tmp_path / "var")) == 2  # stderr: no tty
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    assert cli.main(argv, settings=Settings(var_dir=tmp_path / "var")) == 2
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"


def test_backtest_prints_the_worst_series_of_a_fleet_not_every_one() -> None:
    import numpy as np
    import pandas as pd

    ids = [f"store-{i:04d}" for i in range(4000)]
    mase = np.linspace(0.5, 2.0, len(ids))
    mase[-3:] = np.nan  # constant training spans: no MASE, ranked last
    table = pd.DataFrame(
        {"n": 888, "mae": np.arange(len(ids), 0, -1.0), "smape": 10.0, "mase": mase},
        index=pd.Index(ids, name="series"),
    )
    heading, shown_rows = cli.series_table_shown(table, written=False)
    assert len(shown_rows) == cli.SERIES_LINES
    assert list(shown_rows.index) == [ids[i] for i in range(3996, 3976, -1)]
    assert "of 4,000" in heading and "--output DIR" in heading
    _, written = cli.series_table_shown(table, written=True)
    assert written.equals(shown_rows)

    few = table.head(cli.SERIES_LINES)
    heading, shown_rows = cli.series_table_shown(few, written=True)
    assert heading == "By series:" and shown_rows.equals(few)

    # no series has a MASE: ranked by sMAPE, and the heading says so (it said MASE)
    no_mase = table.assign(mase=np.nan, smape=np.arange(len(ids), dtype=float))
    heading, shown_rows = cli.series_table_shown(no_mase, written=True)
    assert "highest SMAPE" in heading and "MASE" not in heading.replace("SMAPE", "")
    assert list(shown_rows.index) == [ids[i] for i in range(3999, 3979, -1)]
    neither = table.assign(mase=np.nan, smape=np.nan)
    heading, shown_rows = cli.series_table_shown(neither, written=True)
    assert "first 20 of 4,000 in id order" in heading
    assert list(shown_rows.index) == ids[: cli.SERIES_LINES]


def _hourly_csv(
    path: Path, *, freq: str = "h", timestamp: str = "date", target: str = "OT"
) -> Path:
    import pandas as pd

    stamps = pd.date_range("2024-01-01", periods=60, freq=freq)
    frame = pd.DataFrame({timestamp: stamps.strftime("%Y-%m-%d %H:%M:%S"), target: range(60)})
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("freq", "target", "said"),
    [
        ("30min", "OT", "is at '30min', not hourly"),  # ETTm1/ETTm2 (15min): 336 rows, 3.5 days
        ("h", "load", "no column 'OT'"),  # a traceback (MissingColumnError) once it trained
    ],
)
def test_demo_refuses_a_data_file_it_cannot_run_on_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], freq: str, target: str, said: str
) -> None:
    """`urnn demo --data` on a file that is not hourly ETTh1-like data trained, registered and
    promoted a version in the user's registry, then failed on its own request (422: freq 'h'
    is not the model's '30min') after printing 'look-back 336 h'; a file without OT stopped
    in a traceback. Both are refused before anything trains or is registered."""
    data = _hourly_csv(tmp_path / "plant.csv", freq=freq, target=target)
    settings = Settings(var_dir=tmp_path / "var")
    assert cli.main(["demo", "--data", str(data), "--no-stay"], settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn demo: error: --data {data}: "), err
    assert said in err, err
    assert not (tmp_path / "var").exists()  # no MLflow store, nothing registered


def test_demo_request_reads_the_timestamp_column_the_loader_found(tmp_path: Path) -> None:
    """The forecast request was read back with pd.read_csv(parse_dates=['date']): a copy of
    ETTh1 whose time column is named 'datetime' (found by name by the loader) trained, then
    stopped the demo in a KeyError traceback."""
    from urnn_forecast.demo import DemoConfig, demo_history, request_body

    data = _hourly_csv(tmp_path / "ETTh1.csv", timestamp="datetime")
    config = DemoConfig(data=data, lookback=4, horizon=2)
    body = request_body(config, demo_history(config))
    (series,) = body["series"]
    assert (series["id"], series["start"], series["freq"]) == ("ETTh1", "2024-01-03T08:00:00", "h")
    assert series["values"] == [56.0, 57.0, 58.0, 59.0]


def test_demo_serves_its_own_version_when_the_champion_is_kept(
    mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn demo` (or `make demo`) in a folder whose registry already has a champion the demo
    does not replace (here one that reads the covariate HUFL and a shorter look-back) served
    that champion and sent it the demo's request: 422 'missing covariate(s) ['HUFL']', exit 1,
    after training and registering. It now serves the version it registered, by number."""
    from urnn_forecast.demo import BUNDLED_ETTH1

    champion = ["train", "--data", str(BUNDLED_ETTH1), "--target", "OT", "--covariates", "HUFL"]
    champion += ["--lookback", "24", "--horizon", "24", "--segment-length", "12"]
    champion += ["--hidden-size", "8", "--epochs", "1", "--train-stride", "48"]
    champion += ["--backtest-step", "500", "--device", "cpu"]
    assert cli.main(champion, settings=mlflow_settings) == 0
    capsys.readouterr()
    argv = ["demo", "--epochs", "1", "--device", "cpu", "--no-stay"]
    assert cli.main(argv, settings=mlflow_settings) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "2/3 Registered urnn-forecaster version 2" in out and "not promoted" in out
    assert "3/3 Serving models:/urnn-forecaster/2 (this run's version" in out
    assert "POST /forecast -> urnn-forecaster version 2; next 24 hours of OT:" in out


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["benchmark", "paper", "copy", "--iterations", "1", "--seq-len", "10"], "benchmark paper"),
        (["demo", "--epochs", "1", "--no-stay"], "demo"),
    ],
)
def test_a_tracking_server_that_does_not_answer_is_one_error_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], prog: str
) -> None:
    """README: a MLflow server that does not answer prints `urnn <command>: error: ...` and
    exits 2. `urnn train`, `backtest` and `models` did; `urnn benchmark paper` and `urnn demo`
    ended in a TrackingServerError traceback (exit 1)."""
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri="http://127.0.0.1:1")
    assert cli.main(argv, settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn {prog}: error: the MLflow tracking server at http://127.0.0.1:1")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["benchmark", "paper", "copy", "--iterations", "1", "--seq-len", "10"], "benchmark paper"),
        (["train", "--data", "data/ETT-small/ETTh1.csv", "--target", "OT"], "train"),
        (["backtest", "--data", "data/ETT-small/ETTh1.csv"], "backtest"),
    ],
)
def test_a_store_that_is_not_a_database_is_one_error_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], prog: str
) -> None:
    """A damaged var/mlflow.db: a sqlalchemy 'file is not a database' traceback, exit 1 (after
    the data was read, for urnn train)."""
    var = tmp_path / "var"
    var.mkdir()
    (var / "mlflow.db").write_text("not a database")
    assert cli.main(argv, settings=Settings(var_dir=var)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn {prog}: error: URNN_VAR_DIR={var}: its MLflow store"), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "experiment", "prog"),
    [
        (["demo", "--epochs", "1", "--no-stay"], "demo", "demo"),
        (
            ["benchmark", "paper", "copy", "--iterations", "1", "--seq-len", "10"],
            "paper-copy",
            "benchmark paper",
        ),
    ],
)
def test_an_experiment_deleted_in_the_ui_is_one_error_line_exit_2(
    mlflow_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    experiment: str,
    prog: str,
) -> None:
    """An experiment in MLflow's trash: `urnn train` says so in a line (b52486a); `urnn demo`
    and `urnn benchmark paper` ended in a DeletedExperimentError traceback, exit 1."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_settings.resolved_tracking_uri())
    client.delete_experiment(client.create_experiment(experiment))
    assert cli.main(argv, settings=mlflow_settings) == 2
    err = capsys.readouterr().err
    said = f"urnn {prog}: error: experiment '{experiment}' was deleted"
    assert any(line.startswith(said) for line in err.splitlines()), err
    assert "Traceback" not in err
