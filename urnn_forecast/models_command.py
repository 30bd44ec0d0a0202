"""`urnn models list` and `urnn models promote VERSION`: the registry's versions of the served
forecaster, and moving its `champion` alias by hand (a rollback), without the MLflow UI or a
Python prompt. The registry work is training.registry_admin's; this module parses and prints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from urnn_forecast.model_uri import ModelUriError, parse_models_uri
from urnn_forecast.settings import Settings

DEFAULT_REASON = "set by hand (urnn models promote)"
# training.registry_admin.CONTRACT_CHANGE_TAG, spelt here so the parser imports no MLflow
CONTRACT_CHANGE_TAG = "promotion.manual_contract_change"
# A reason is a sentence or two, read in `urnn models list` and the MLflow UI. The registry
# refuses a tag value over its limit (100,000 characters in MLflow 3) only when the tag is
# written, which is after the alias has moved: the command then said "cannot use the
# registry" (exit 1) while the champion had changed, with no tag saying by whom or why.
REASON_MAX = 5_000


def given_text(text: str) -> str:
    """An option's text that must say something: '' fell back to the default without a word
    (`serve --host ""` served on 127.0.0.1)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def reason_text(text: str) -> str:
    """--reason: said (not blank), and short enough for the registry's tags (REASON_MAX)."""
    given_text(text)
    if len(text) > REASON_MAX:
        raise argparse.ArgumentTypeError(
            f"must be at most {REASON_MAX:,} characters; got {len(text):,}"
        )
    return text


def add_models_parser(commands: Any) -> None:
    models = commands.add_parser(
        "models",
        help="list registered versions; move the champion alias (roll back)",
        description=(
            "The versions of a registered forecaster in the MLflow registry "
            "(URNN_MLFLOW_TRACKING_URI) with their aliases, backtest scores and promotion "
            "decisions, and `promote` to move the alias `champion` to a version by hand: the "
            "service follows it within URNN_MODEL_POLL_SECONDS. See docs/runbook.md."
        ),
    )
    actions = models.add_subparsers(
        dest="models_action", metavar="ACTION", required=True, help="list or promote"
    )
    listing = actions.add_parser("list", help="versions, newest first")
    promote = actions.add_parser(
        "promote",
        help="move champion to VERSION once it loads (e.g. roll back to an earlier one)",
    )
    promote.add_argument("version", help="the version number, as `urnn models list` shows it")
    promote.add_argument(
        "--reason",
        type=reason_text,
        default=DEFAULT_REASON,
        help=(
            f"why, recorded on the version as the tag promotion.manual_reason (at most "
            f"{REASON_MAX:,} characters)"
        ),
    )
    promote.add_argument(
        "--allow-contract-change",
        action="store_true",
        help=(
            "move champion even to a version that forecasts another target, at another "
            "frequency or with other covariates than the champion (refused without it: the "
            f"clients of the alias would get another quantity); recorded as the tag "
            f"{CONTRACT_CHANGE_TAG}"
        ),
    )
    for action in (listing, promote):
        action.add_argument(
            "--name",
            type=given_text,
            default=None,
            help="registered model name; default: the one in URNN_MODEL_URI (urnn-forecaster)",
        )
        # urnn train's spelling of the same name: a second option rather than an alias, so
        # that an error names the spelling typed
        action.add_argument(
            "--registered-name",
            dest="name",
            type=given_text,
            default=None,
            metavar="NAME",
            help="the same as --name, as urnn train spells it",
        )
    # runs_model: `promote` builds a version on the CPU to check it, whatever URNN_DEVICE
    models.set_defaults(handler=run_models, subparser=models, device=None, runs_model=False)


def run_models(args: argparse.Namespace, settings: Settings) -> int:
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a clean stdout

    from training.registry_admin import (
        ContractChangeError,
        RegistryError,
        list_versions,
        set_champion,
    )
    from urnn_forecast.tracking import (
        TrackingServerError,
        check_tracking_server,
        check_tracking_store,
        follow_file_store,
        missing_store,
        shown_uri,
    )

    command = f"urnn models {args.models_action}"
    try:
        name = args.name or served_name(settings.model_uri)
    except ModelUriError as error:  # settings built without validation (model_copy)
        print(f"{command}: error: URNN_MODEL_URI: {error}; or give --name", file=sys.stderr)
        return 2
    uri = settings.resolved_tracking_uri()
    if (missing := missing_store(settings)) is not None:  # MLflow would make an empty store
        print(f"{command}: error: {missing}", file=sys.stderr)
        return 2
    try:
        check_tracking_store(settings, create=False)  # reading a registry makes no folder
        check_tracking_server(settings)
        follow_file_store(uri)  # else a file store's registry made ./mlflow.db here
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        if args.models_action == "list":
            print(format_versions(name, list_versions(client, name)))
            return 0
        if not (args.version.isascii() and args.version.isdigit()):  # no superscript digits
            print(
                f"{command}: error: argument version: a version number such as 3, got "
                f"{args.version!r}",
                file=sys.stderr,
            )
            return 2
        moved = set_champion(
            client,
            name,
            args.version,
            reason=args.reason,
            tracking_uri=uri,
            check=serves,
            allow_contract_change=args.allow_contract_change,
        )
    except ContractChangeError as error:
        print(
            f"{command}: error: {error}; if the change is intended (the clients of "
            f"models:/{name}@champion are to get the new forecasts), run again with "
            "--allow-contract-change",
            file=sys.stderr,
        )
        return 2
    except RegistryError as error:  # which store was read: a relative ./var/ is per folder
        print(f"{command}: error: {error} (in the registry at {shown_uri(uri)})", file=sys.stderr)
        return 2
    except TrackingServerError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a store that is read-only, locked, or not reachable
        if not _store_failure(error):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(
            f"{command}: error: cannot use the registry at {shown_uri(uri)}: {first[:300]}",
            file=sys.stderr,
        )
        return 1
    if moved.lost:
        holder = f"is version {moved.lost_to}" if moved.lost_to else "is no version (removed)"
        print(
            f"{command}: error: champion of {name} {holder}, not {moved.version}: another "
            "change moved it at the same time; see `urnn models list` and promote again if "
            "needed",
            file=sys.stderr,
        )
        return 1
    if moved.previous == moved.version:
        print(f"{name} version {moved.version} already is the champion; nothing moved")
    else:
        print(
            f"{name}: champion -> version {moved.version} (was {moved.previous or 'none'}); "
            f"services following models:/{name}@champion switch at their next poll, or at "
            "once with POST /model/reload (the worker that takes it: with several workers, "
            "the others at their poll)"
        )
        if (followed := _not_following_champion(settings.model_uri, name)) is not None:
            print(
                f"{command}: warning: URNN_MODEL_URI here is {settings.model_uri} ({followed}): "
                "a service with this setting does not follow champion and keeps serving what "
                f"it serves; set it to models:/{name}@champion to serve the champion",
                file=sys.stderr,
            )
        if moved.unrecorded:
            print(
                f"{command}: error: the move was not recorded ({moved.unrecorded}): version "
                f"{moved.version} may lack its promotion.manual_* tags (reason, previous "
                f"champion, time) and version {moved.previous or 'none'} its "
                "promotion.superseded_* ones, so `urnn models list` may not show this move",
                file=sys.stderr,
            )
        if moved.contract_changes:
            print(
                f"{command}: warning: the forecasting contract changed: "
                f"{'; '.join(moved.contract_changes)} (version {moved.previous} -> "
                f"{moved.version}), as allowed by --allow-contract-change: clients of "
                f"models:/{name}@champion get the new forecasts from their service's next "
                f"reload; recorded as the tag {CONTRACT_CHANGE_TAG}",
                file=sys.stderr,
            )
        if moved.refuses:
            print(
                f"{command}: warning: {moved.refuses} (the champion: version "
                f"{moved.previous}; this model: version {moved.version}); moved as asked, so "
                "clients sending those requests get 422 from now on",
                file=sys.stderr,
            )
        for schedule_id, cron, zone, due in promoting_schedules(settings, name):
            print(
                f"{command}: warning: schedule {schedule_id} ({cron!r}, {zone}) retrains "
                f"{name} with promote: true: its next run (due {due}) moves champion again if "
                f"it beats version {moved.version}; to keep this choice, pause it: PATCH "
                f'/schedules/{schedule_id} with {{"paused": true}}',
                file=sys.stderr,
            )
    return 1 if moved.unrecorded else 0


def promoting_schedules(settings: Settings, name: str) -> list[tuple[str, str, str, str]]:
    """(id, cron, zone, next due) of the schedules that would move `name`'s champion on
    their own: not paused, promote true, registering under `name`. A production week showed a
    nightly schedule overriding a rollback made by hand hours before, with nothing said. Best
    effort: no job database (none made here), or one that cannot be read, lists none."""
    from sqlalchemy.exc import SQLAlchemyError

    from training.registry import DEFAULT_REGISTERED_NAME
    from urnn_forecast.tracking import sqlite_path

    url = settings.resolved_database_url()
    database = sqlite_path(url)
    if database is not None and not database.is_file():
        return []
    try:
        from sqlalchemy import select

        from jobs.db import Database
        from jobs.models import Schedule

        db = Database.from_url(url, connect_timeout=5)  # a server that is down: seconds
        try:
            with db.session() as session:
                rows = list(session.scalars(select(Schedule).where(Schedule.paused.is_(False))))
        finally:
            db.dispose()
    except (SQLAlchemyError, OSError, ImportError):  # no schema, no server, no driver
        return []
    found = []
    for row in rows:
        spec = row.spec if isinstance(row.spec, dict) else {}
        sections = spec.get("config")
        train = sections.get("train") if isinstance(sections, dict) else None
        registered = DEFAULT_REGISTERED_NAME
        if isinstance(train, dict):
            registered = train.get("registered_name", DEFAULT_REGISTERED_NAME)
        if spec.get("promote", True) is True and registered == name:
            due = row.next_due_at.isoformat(timespec="minutes") if row.next_due_at else "?"
            found.append((row.id, row.cron, row.timezone, due))
    return found


def _store_failure(error: Exception) -> bool:
    """Whether `error` says the store itself cannot be used (not a database, read-only, a
    server that does not answer), which the operator fixes in the settings, not the command."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(error, BrokenPipeError):  # `urnn models list | head -1`: the reader left
        return False
    if isinstance(error, SQLAlchemyError | OSError | MlflowException):
        return True
    return type(error).__module__.split(".")[0] in ("psycopg", "psycopg2", "sqlite3")


def serves(predictor: Any) -> None:
    """What the service does with a new version before it serves it (service.served): build
    it on the CPU and run its warm-up forward, which refuses non-finite outputs or a shape
    that does not match the version's config (RuntimeError saying which)."""
    import torch

    from service.served import ModelRef, ServedModel

    ref = ModelRef(name="check", version="0", run_id="", uri="")
    ServedModel.build(ref, predictor, torch.device("cpu"), trace=False)


def _not_following_champion(model_uri: str, name: str) -> str | None:
    """What URNN_MODEL_URI follows when it names `name` by another alias or a pinned version
    (a rollback by `promote` moved champion, and a service set so did not switch, while the
    command said services switch at their next poll); None when it follows champion, or names
    another model (the rollback is then not for this setting's service)."""
    try:
        served, alias, version = parse_models_uri(model_uri)
    except ModelUriError:
        return None
    if served != name or alias == "champion":
        return None
    return f"version {version}, pinned" if alias is None else f"the alias {alias!r}"


def served_name(model_uri: str) -> str:
    """The registered name in a models:/ URI (models:/name@alias, models:/name/3), parsed as
    the service parses it; another form is a ModelUriError, never the default name (that
    listed `urnn-forecaster` for URNN_MODEL_URI=bogus, a model the service would not serve)."""
    name, _, _ = parse_models_uri(model_uri)
    return name


def format_versions(name: str, rows: list[Any]) -> str:
    if not rows:
        return f"{name}: no versions"
    header = ("version", "aliases", "created (UTC)", "run", "backtest", "decision", "reason")
    table = [header] + [
        (
            row.version,
            ",".join(row.aliases) or "-",
            row.created.strftime("%Y-%m-%d %H:%M"),
            row.run_id[:12] or "-",
            _score(row.metric, row.score),
            row.decision or "-",
            _short(row.reason),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in table
    ]
    return f"{name}\n" + "\n".join(line.rstrip() for line in lines)


def _score(metric: str, score: str) -> str:
    """The tagged backtest score, rounded when it is a number (a tag set by hand may not be)."""
    if not score:
        return "-"
    try:
        return f"{metric} {float(score):.4g}"
    except ValueError:
        return f"{metric} {_short(score, 20)}"


def _short(text: str, limit: int = 70) -> str:
    """One line of at most `limit` characters: a reason typed over several lines, or with
    tabs, would break the table."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
