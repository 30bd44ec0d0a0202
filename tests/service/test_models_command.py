"""`urnn models list` / `urnn models promote`: an operator rolls the champion back to an
earlier version from the command line; a version that does not load is refused."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.service.conftest import Registry
from urnn_forecast.cli import main
from urnn_forecast.field_types import shown_names
from urnn_forecast.model_uri import ModelUriError
from urnn_forecast.models_command import served_name

if TYPE_CHECKING:
    import mlflow

NAME = "models-command"


def test_list_and_roll_back_the_champion(
    registry: Registry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import mlflow

    first = registry.register(NAME, seed=1)
    second = registry.register(NAME, seed=2)  # champion now
    broken = registry.register(NAME, seed=3, corrupt=True, alias=None)
    nan = registry.register(NAME, seed=4, nan_weights=True, alias=None)
    # MLflow's process-wide store elsewhere (as other tests leave it): the command reads the
    # settings' store only (a models:/ URI resolved against the global one failed in CI)
    from mlflow.tracking._tracking_service import utils as tracking_utils

    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", elsewhere)
    settings = registry.settings
    client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())

    assert main(["models", "list", "--name", NAME], settings=settings) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == NAME and listed[1].split()[:2] == ["version", "aliases"]
    assert [line.split()[0] for line in listed[2:]] == [nan, broken, second, first]
    assert listed[2].split()[1] == "challenger" and listed[4].split()[1] == "champion"

    reason = "v2 over-forecasts weekends"
    assert main(["models", "promote", first, "--name", NAME, "--reason", reason],
                settings=settings) == 0  # fmt: skip
    assert f"champion -> version {first} (was {second})" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == first
    tags = client.get_model_version(NAME, first).tags
    assert tags["promotion.manual_reason"] == reason
    assert tags["promotion.manual_previous_champion"] == second
    assert main(["models", "list", "--name", NAME], settings=settings) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows[first].endswith(reason)
    # the version that lost the alias says so; its own tags still say how it got it
    assert f"replaced by {first}" in rows[second]
    assert client.get_model_version(NAME, second).tags["promotion.superseded_by"] == first
    # the descriptions say it first, above the tags the version page folds away (where the
    # automatic "kept" read as the state of a version made champion by hand)
    moved = client.get_model_version(NAME, first).description or ""
    assert moved.startswith("Made champion by hand on ")
    assert f"(was version {second}): {reason}" in moved.splitlines()[0]
    replaced = client.get_model_version(NAME, second).description or ""
    assert replaced.startswith(f"Replaced as champion by version {first} on ")

    for same in (first, f"0{first}"):  # "01" is version 1
        assert main(["models", "promote", same, "--name", NAME], settings=settings) == 0
        assert "already is the champion; nothing moved" in capsys.readouterr().out

    for argv, said in (
        (["promote", broken], f"version {broken} does not load"),
        # loads, but the service's warm-up refuses it: the alias must not move there
        (
            ["promote", nan],
            f"version {nan} does not load (warm-up forward gave 36 of 36 values NaN or "
            "infinite for a finite history: its weights are not finite",
        ),
        (
            ["promote", "9"],
            f"has no version '9' (its versions: {first}, {second}, {broken}, {nan})",
        ),
        (["promote", "v2"], "argument version: a version number such as 3, got 'v2'"),
    ):
        assert main(["models", *argv, "--name", NAME], settings=settings) == 2
        assert said in capsys.readouterr().err
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == first  # unchanged

    # a rollback to the replaced version: it no longer reads as replaced, the other one does
    assert main(["models", "promote", second, "--name", NAME], settings=settings) == 0
    capsys.readouterr()
    assert main(["models", "list", "--name", NAME], settings=settings) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "replaced by" not in rows[second] and f"replaced by {second}" in rows[first]
    assert "promotion.superseded_by" not in client.get_model_version(NAME, second).tags

    assert main(["models", "list", "--name", "nope"], settings=settings) == 2
    error = capsys.readouterr().err
    # the store is shared by the service tests: the first ten names, whichever they are
    names = sorted(m.name for m in client.search_registered_models())
    assert NAME in names
    assert f"no registered model 'nope' (registered: {shown_names(names)[1:-1]})" in error
    assert error.rstrip().endswith(f"(in the registry at {settings.resolved_tracking_uri()})")


@pytest.mark.parametrize("how", ["random", "truncated"])
def test_promoting_a_version_with_damaged_weights_says_so_in_one_line(
    registry: Registry, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """The refusal quoted torch's multi-line text, which advises re-running torch.load with
    weights_only=False ("...arbitrary code execution... Please file an issue")."""
    name = f"promote-damaged-{how}"
    registry.register(name, seed=1)
    bad = registry.register(name, seed=2, corrupt=how, alias=None)
    capsys.readouterr()
    assert main(["models", "promote", bad, "--name", name], settings=registry.settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"urnn models promote: error: {name} version {bad} does not load (weights.pt in "
    )
    assert " is not a readable state dict of tensors (" in err
    assert "; register a new version (urnn train) or move the alias to one that loads " in err
    assert err.count("\n") == 1 and "weights_only" not in err and "issue" not in err


def test_the_default_name_is_the_served_one() -> None:
    assert served_name("models:/urnn-forecaster@champion") == "urnn-forecaster"
    assert served_name("models:/plant-7/3") == "plant-7"
    # a URI the service would not follow names no model: not the default name
    with pytest.raises(ModelUriError, match="models:/<name>@<alias>"):
        served_name("runs:/abc/model")


def test_a_model_uri_settings_did_not_check_is_refused_not_defaulted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`URNN_MODEL_URI=bogus urnn models list` listed urnn-forecaster with exit code 0; a
    Settings copied without validation reaches the command the same way."""
    from urnn_forecast.settings import Settings

    settings = Settings().model_copy(update={"model_uri": "bogus"})
    assert main(["models", "list"], settings=settings) == 2
    assert capsys.readouterr().err == (
        "urnn models list: error: URNN_MODEL_URI: model URI 'bogus' is not "
        "models:/<name>@<alias> or models:/<name>/<version>; or give --name\n"
    )


def test_operator_mistakes_and_unusable_stores_get_one_line_each(
    registry: Registry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """From a fuzz round of `urnn models` (2026-12-05): each was a traceback, a silent
    success, a new empty store, or a broken table."""
    import mlflow

    name = "o'quote"
    first = registry.register(name, seed=1)
    registry.register(name, seed=2)  # champion now
    settings = registry.settings
    client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    client.set_model_version_tag(name, first, "backtest.challenger_score", "n/a")
    assert main(["models", "list", "--name", name], settings=settings) == 0
    listed = capsys.readouterr().out
    assert "no versions" not in listed and " n/a " in listed  # the filter found the name
    for digit in ("\u00b2", "\u0661"):  # superscript two; Arabic-Indic one (int() took it)
        assert main(["models", "promote", digit, "--name", name], settings=settings) == 2
        assert "a version number such as 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["models", "promote", first, "--name", name, "--reason", " "], settings=settings)
    assert "must not be empty" in capsys.readouterr().err
    # over the registry's tag limit: the alias moved, then the tag write failed, and the
    # command said "cannot use the registry" (exit 1) with the champion changed
    with pytest.raises(SystemExit):
        main(["models", "promote", first, "--name", name, "--reason", "x" * 100_001],
             settings=settings)  # fmt: skip
    assert "argument --reason: must be at most 5,000 characters; got 100,001" in (
        capsys.readouterr().err
    )
    assert str(client.get_model_version_by_alias(name, "champion").version) != first
    reason = "line one\nline two\tand a tab"
    assert main(["models", "promote", first, "--name", name, "--reason", reason],
                settings=settings) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["models", "list", "--name", name], settings=settings) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 4 and rows[3].endswith("line one line two and a tab")

    missing = settings.model_copy(update={"var_dir": tmp_path / "typo" / "var"})
    assert main(["models", "list", "--name", name], settings=missing) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()  # no empty store made
    not_a_db = tmp_path / "broken"
    not_a_db.mkdir()
    (not_a_db / "mlflow.db").write_text("not a database")
    broken = settings.model_copy(update={"var_dir": not_a_db})
    # what urnn train and backtest say of the same file, and their exit code: the settings
    # name a store that cannot be read (was "cannot use the registry", exit 1)
    assert main(["models", "list", "--name", name], settings=broken) == 2
    said = capsys.readouterr().err
    assert said.startswith(
        f"urnn models list: error: URNN_VAR_DIR={not_a_db}: its MLflow store "
        f"{not_a_db / 'mlflow.db'} is not a SQLite database"
    )
    assert "Traceback" not in said and said.count("\n") == 1


def test_a_promote_overwritten_by_another_at_the_same_time_says_so(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow moves an alias without a compare: of two promotes at once, both printed
    "champion -> version N" and the later write won. The one that lost now reads it back."""
    import mlflow

    from training.registry_admin import set_champion

    name = "raced"
    first = registry.register(name, seed=1)
    second = registry.register(name, seed=2)
    third = registry.register(name, seed=3)  # champion
    uri = registry.settings.resolved_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    real = client.set_registered_model_alias

    def and_another_promote(model: str, alias: str, version: str) -> None:
        real(model, alias, version)
        real(model, alias, second)  # the other operator's move lands just after

    monkeypatch.setattr(client, "set_registered_model_alias", and_another_promote)
    moved = set_champion(client, name, first, reason="roll back", tracking_uri=uri)
    assert moved.lost and (moved.previous, moved.lost_to) == (third, second)
    # the move that lost leaves no tags saying it took the alias or replaced the champion
    assert "promotion.manual_reason" not in client.get_model_version(name, first).tags
    assert "promotion.superseded_by" not in client.get_model_version(name, third).tags

    def and_a_removal(model: str, alias: str, version: str) -> None:
        real(model, alias, version)
        client.delete_registered_model_alias(model, alias)  # removed just after

    monkeypatch.setattr(client, "set_registered_model_alias", and_a_removal)
    moved = set_champion(client, name, first, reason="roll back", tracking_uri=uri)
    assert moved.lost and moved.lost_to is None  # reported as lost, not as a success


def test_promoting_a_version_that_refuses_served_requests_warns_and_moves(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn train` keeps a champion whose requests the new version would refuse; a person may
    move it anyway, but moved it without a word. Now told, on stderr; the move is made."""
    plain = registry.register(NAME, seed=1)  # champion: reads no calendar
    dated = registry.register(NAME, seed=2, calendar=True, alias=None)
    settings = registry.settings
    assert main(["models", "promote", dated, "--name", NAME, "--reason", "try the calendar"],
                settings=settings) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert f"champion -> version {dated} (was {plain})" in captured.out
    assert "warning: this model reads calendar features" in captured.err
    assert f"(the champion: version {plain}; this model: version {dated}); moved as asked" in (
        captured.err
    )
    # back to the plain one: it serves every request the calendar one serves, no warning
    assert main(["models", "promote", plain, "--name", NAME], settings=settings) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_manual_promote_names_the_schedules_that_would_move_the_champion_again(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    """A production week: a nightly schedule with promote true moved the champion again hours
    after a rollback made by hand, and the promote command had said nothing. It now names each
    unpaused schedule that retrains this name with promote true, and how to pause it."""
    from jobs.db import Database, upgrade
    from jobs.schedules import create

    first = registry.register(NAME, seed=1)
    registry.register(NAME, seed=2)  # champion now
    settings = registry.settings
    url = settings.resolved_database_url()
    upgrade(url)
    db = Database.from_url(url)
    spec = {"data": "/data/demand.csv", "target": "y"}
    with db.session() as session:
        nightly = create(
            session,
            cron="0 3 * * *",
            timezone="Europe/Paris",
            spec={**spec, "config": {"train": {"registered_name": NAME}}},
        ).id
        create(
            session,
            cron="0 4 * * *",
            timezone="UTC",
            paused=True,
            spec={**spec, "config": {"train": {"registered_name": NAME}}},
        )
        create(
            session,
            cron="0 5 * * *",
            timezone="UTC",
            spec={**spec, "promote": False, "config": {"train": {"registered_name": NAME}}},
        )
        create(session, cron="0 6 * * *", timezone="UTC", spec=spec)  # another name
    db.dispose()  # fmt: skip
    assert main(["models", "promote", first, "--name", NAME], settings=settings) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "schedule" in line]
    assert len(warned) == 1, warned
    assert warned[0].startswith(f"urnn models promote: warning: schedule {nightly} ('0 3 * * *'")
    assert f'PATCH /schedules/{nightly} with {{"paused": true}}' in warned[0]


def test_a_move_whose_record_fails_says_the_champion_moved(
    registry: Registry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alias is moved before the move is recorded (tags on both versions). A store that
    refused a tag then (a server's hiccup, a value over its limit) made the command say
    "cannot use the registry" with exit 1, and the operator read that nothing had moved,
    while the champion was the new version. Now it says the champion moved and what was not
    recorded (still exit 1)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = "record-fails"
    first = registry.register(name, seed=1)
    second = registry.register(name, seed=2)  # champion now
    settings = registry.settings
    client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    writes = mlflow.MlflowClient.set_model_version_tag

    def refuse_manual(self: object, model: str, version: str, key: str, value: str) -> None:
        if key.startswith("promotion.manual_"):
            raise MlflowException("the server is restarting")
        writes(self, model, version, key, value)  # type: ignore[arg-type]

    monkeypatch.setattr(mlflow.MlflowClient, "set_model_version_tag", refuse_manual)
    capsys.readouterr()  # the registrations' log lines
    assert main(["models", "promote", first, "--name", name], settings=settings) == 1
    captured = capsys.readouterr()
    assert f"{name}: champion -> version {first} (was {second})" in captured.out
    assert captured.err.startswith(
        "urnn models promote: error: the move was not recorded (the server is restarting): "
        f"version {first} may lack its promotion.manual_* tags"
    )
    assert "cannot use the registry" not in captured.err
    assert str(client.get_model_version_by_alias(name, "champion").version) == first


def test_a_move_says_when_this_settings_service_does_not_follow_champion(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    """`promote` moves champion and said "services following models:/NAME@champion switch at
    their next poll"; with URNN_MODEL_URI pinned to a version or following another alias, the
    service of these settings went on serving the old model while the rollback read done."""
    name = "pinned-service"
    first = registry.register(name, seed=1)
    second = registry.register(name, seed=2)  # champion now
    for uri, said in (
        (f"models:/{name}/{second}", f"(version {second}, pinned)"),
        (f"models:/{name}@prod", "(the alias 'prod')"),
    ):
        settings = registry.settings.model_copy(update={"model_uri": uri})
        capsys.readouterr()
        target = first if said.startswith("(version") else second
        assert main(["models", "promote", target, "--name", name], settings=settings) == 0
        assert (
            f"urnn models promote: warning: URNN_MODEL_URI here is {uri} {said}: a service "
            "with this setting does not follow champion and keeps serving what it serves; set "
            f"it to models:/{name}@champion to serve the champion"
        ) in capsys.readouterr().err
    for uri, target in ((f"models:/{name}@champion", first), ("models:/other@prod", second)):
        settings = registry.settings.model_copy(update={"model_uri": uri})
        capsys.readouterr()
        assert main(["models", "promote", target, "--name", name], settings=settings) == 0
        captured = capsys.readouterr()
        assert f"champion -> version {target}" in captured.out
        assert "URNN_MODEL_URI here" not in captured.err


def _filed_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, mlflow.MlflowClient]:
    """A file store (MLFLOW_ALLOW_FILE_STORE) in tmp_path holding model 'filed' version 1, and
    its client; MLflow's process-wide URI unset, as a fresh process has it. The file registry
    makes its version through a client of the process-wide store, whose default is
    ./mlflow.db: made in a scratch folder, not the repository root (the conftest guard) nor
    the folder a test's commands run in."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    store = tmp_path / "mlruns"
    scratch = tmp_path / "setup"
    scratch.mkdir()
    monkeypatch.chdir(scratch)
    client = mlflow.MlflowClient(tracking_uri=str(store), registry_uri=str(store))
    client.create_registered_model("filed")
    client.create_model_version("filed", source=(tmp_path / "nowhere").as_uri())
    return store, client


def test_a_file_store_is_read_without_making_a_database_in_the_working_folder(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With MLFLOW_ALLOW_FILE_STORE, MLflow's file registry reads each version through a
    client of the process-wide store: `urnn models list`, and the service's loader, made
    MLflow's default ./mlflow.db in the working folder (a command that makes no empty store
    where none is)."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from urnn_forecast.settings import Settings

    store, _ = _filed_store(tmp_path, monkeypatch)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)  # as a fresh process has it
    working = tmp_path / "here"
    working.mkdir()
    monkeypatch.chdir(working)
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=str(store))
    assert main(["models", "list", "--name", "filed"], settings=settings) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[0] == "1"
    assert list(working.iterdir()) == []
    from service.loader import MlflowLoader  # the service's loader, in a fresh process too

    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    assert MlflowLoader(str(store)).resolve("models:/filed/1").version == "1"
    assert list(working.iterdir()) == []


@pytest.mark.parametrize(
    ("damaged", "how"),
    [
        ("models/filed/meta.yaml", "garbled"),  # a registered model's record
        ("models/filed/version-1/meta.yaml", "empty"),  # a version's
        ("EXPERIMENT/meta.yaml", "truncated"),  # an experiment's: valid YAML, keys missing
    ],
)
def test_a_damaged_file_store_is_one_line_and_exit_2_for_every_command_that_reads_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    damaged: str,
    how: str,
) -> None:
    """QA, 2026-12-07: with a meta.yaml of the store garbled or cut short, `urnn models list`
    and `promote` ended in a yaml traceback (exit 1), and so did `urnn train` and `urnn
    backtest --model models:/...`. Each now names the damaged file in one line, exit 2 (the
    store the settings name cannot be read: README's exit codes), before any work."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from urnn_forecast.settings import Settings

    store, client = _filed_store(tmp_path, monkeypatch)
    experiment = client.create_experiment("forecast")
    path = store / damaged.replace("EXPERIMENT", experiment)
    text = path.read_text()
    path.write_text(
        {"garbled": "name: fil\x00ed\n  x: [", "empty": "", "truncated": text[:40]}[how]
    )
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=str(store))
    data = tmp_path / "series.csv"
    data.write_text("t,y\n" + "".join(f"2024-01-01 {h:02d}:00,{h % 5}\n" for h in range(24)))
    capsys.readouterr()  # the setup's own log (MLflow making the scratch folder's database)
    for argv in (
        ["models", "list", "--name", "filed"],
        ["models", "list"],
        ["models", "promote", "1", "--name", "filed"],
        ["backtest", "--model", "models:/filed/1", "--data", str(data)],
        ["train", "--data", str(data), "--target", "y", "--model", "linear", "--epochs", "1",
         "--lookback", "4", "--horizon", "2"],
    ):  # fmt: skip
        assert main(argv, settings=settings) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)
        assert f"the file store's {path} cannot be read" in err, (argv, err)
    # the service serves one model: another's damaged record does not keep it from starting
    from urnn_forecast.tracking import check_tracking_store

    check_tracking_store(settings, records=False)
    path.write_text(text)  # repaired: read as before
    assert main(["models", "list", "--name", "filed"], settings=settings) == 0
    # a folder without a record (artifacts a SQLite store's runs left there): MLflow skips
    # such an experiment with a warning, and so it stays readable
    (store / "7" / "artifacts").mkdir(parents=True)
    (store / "8").mkdir()
    (store / "8" / "meta.yaml").write_text("")
    assert main(["models", "list", "--name", "filed"], settings=settings) == 0


def test_promoting_a_version_of_another_forecasting_contract_needs_the_override(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    """A docs walk: `urnn models promote 2` made a bike-count model (target cnt) champion over
    an oil-temperature one (OT), warning only of look-back and horizon, and the clients of
    models:/NAME@champion got bike counts for oil temperature. `urnn train` never compares such
    versions (`training.contract`); by hand the move now takes --allow-contract-change."""
    import mlflow

    name = "promote-contract"
    settings = registry.settings
    client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    oil = registry.register(name, seed=1)  # champion: 'y' hourly, covariate 'x'
    bikes = registry.register(
        name, seed=2, alias=None, covariates=False, meta=registry.other_quantity()
    )
    capsys.readouterr()
    assert main(["models", "promote", bikes, "--name", name], settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn models promote: error: champion v{oil} forecasts 'y' ")
    assert f"champion v{oil} forecasts 'y' at frequency 'h' with covariates ['x']" in err
    assert f"v{bikes} forecasts 'cnt' at frequency 'h' with no covariate" in err
    assert "target 'y' -> 'cnt'" in err and "covariates ['x'] -> none" in err
    assert "--allow-contract-change" in err and err.count("\n") == 1
    # nothing in the registry changed
    assert str(client.get_model_version_by_alias(name, "champion").version) == oil
    assert "promotion.manual_at" not in client.get_model_version(name, bikes).tags
    assert "promotion.superseded_by" not in client.get_model_version(name, oil).tags

    argv = ["models", "promote", bikes, "--name", name, "--allow-contract-change"]
    assert main([*argv, "--reason", "the service now forecasts rentals"], settings=settings) == 0
    captured = capsys.readouterr()
    assert f"champion -> version {bikes} (was {oil})" in captured.out
    assert "warning: the forecasting contract changed: target 'y' -> 'cnt'" in captured.err
    tags = client.get_model_version(name, bikes).tags
    assert tags["promotion.manual_reason"] == "the service now forecasts rentals"
    assert tags["promotion.manual_contract_change"] == (
        "target 'y' -> 'cnt'; covariates ['x'] -> none"
    )
    assert str(client.get_model_version_by_alias(name, "champion").version) == bikes
    # `models list` says it in the decision column (the tag and the description say what)
    assert main(["models", "list", "--name", name], settings=settings) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "manual, contract changed  the service now forecasts rentals" in rows[bikes]

    # back again: the check reads the version holding the alias now (bikes)
    assert main(["models", "promote", oil, "--name", name], settings=settings) == 2
    assert "target 'cnt' -> 'y'" in capsys.readouterr().err
    # a version of the same contract moves as before, without the flag and without a word
    same = registry.register(
        name, seed=3, alias=None, covariates=False, meta=registry.other_quantity()
    )
    assert main(["models", "promote", same, "--name", name], settings=settings) == 0
    captured = capsys.readouterr()
    assert "forecasting contract" not in captured.err
    assert "promotion.manual_contract_change" not in client.get_model_version(name, same).tags


def test_a_promote_with_no_champion_checks_no_contract(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "promote-contract-first"
    only = registry.register(
        name, seed=1, alias=None, covariates=False, meta=registry.other_quantity()
    )
    assert main(["models", "promote", only, "--name", name], settings=registry.settings) == 0
    assert f"champion -> version {only} (was none)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("before", "after", "said"),
    [
        (("y", "h", ("x",)), ("y", "60min", ("x",)), []),  # one step, two spellings
        (("y", "7D", ("x",)), ("y", "W-SUN", ("x",)), []),  # weeks, as the service pairs them
        (("y", "h", ("x", "z")), ("y", "h", ("z", "x")), []),  # covariates by name
        (("y", "h", ("x",)), ("y", "D", ("x",)), ["frequency 'h' -> 'D'"]),
        (
            ("OT", "h", ("HUFL",)),
            ("cnt", "h", ("temp", "hum")),
            ["target 'OT' -> 'cnt'", "covariates ['HUFL'] -> ['temp', 'hum']"],
        ),
    ],
)
def test_the_forecasting_contract_compares_target_frequency_and_covariates(
    before: tuple[str, str, tuple[str, ...]],
    after: tuple[str, str, tuple[str, ...]],
    said: list[str],
) -> None:
    from training.contract import ForecastContract

    assert ForecastContract(*before).changes(ForecastContract(*after)) == said
