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


def given_text(text: str) -> str:
    """An option's text that must say something: '' fell back to the default without a word
    (`serve --host ""` served on 127.0.0.1)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
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
        default=DEFAULT_REASON,
        help="why, recorded on the version as the tag promotion.manual_reason",
    )
    for action in (listing, promote):
        action.add_argument(
            "--name",
            type=given_text,
            default=None,
            help="registered model name; default: the one in URNN_MODEL_URI (urnn-forecaster)",
        )
    models.set_defaults(handler=run_models, subparser=models, device=None)


def run_models(args: argparse.Namespace, settings: Settings) -> int:
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a clean stdout

    from training.registry_admin import RegistryError, list_versions, set_champion
    from urnn_forecast.tracking import (
        TrackingServerError,
        check_tracking_server,
        check_tracking_store,
        shown_uri,
    )

    command = f"urnn models {args.models_action}"
    try:
        name = args.name or served_name(settings.model_uri)
    except ModelUriError as error:  # settings built without validation (model_copy)
        print(f"{command}: error: URNN_MODEL_URI: {error}; or give --name", file=sys.stderr)
        return 2
    uri = settings.resolved_tracking_uri()
    try:
        check_tracking_store(settings, create=False)  # reading a registry makes no folder
        check_tracking_server(settings)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        if args.models_action == "list":
            print(format_versions(name, list_versions(client, name)))
            return 0
        if not args.version.isdigit():
            print(
                f"{command}: error: argument version: a version number such as 3, got "
                f"{args.version!r}",
                file=sys.stderr,
            )
            return 2
        moved = set_champion(
            client, name, args.version, reason=args.reason, tracking_uri=uri, check=serves
        )
    except RegistryError as error:  # which store was read: a relative ./var/ is per folder
        print(f"{command}: error: {error} (in the registry at {shown_uri(uri)})", file=sys.stderr)
        return 2
    except TrackingServerError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 2
    if moved.previous == moved.version:
        print(f"{name} version {moved.version} already is the champion; nothing moved")
    else:
        print(
            f"{name}: champion -> version {moved.version} (was {moved.previous or 'none'}); "
            f"services following models:/{name}@champion switch at their next poll, or at "
            "once with POST /model/reload"
        )
    return 0


def serves(predictor: Any) -> None:
    """What the service does with a new version before it serves it (service.served): build
    it on the CPU and run its warm-up forward, which refuses non-finite outputs or a shape
    that does not match the version's config (RuntimeError saying which)."""
    import torch

    from service.served import ModelRef, ServedModel

    ref = ModelRef(name="check", version="0", run_id="", uri="")
    ServedModel.build(ref, predictor, torch.device("cpu"), trace=False)


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
            f"{row.metric} {float(row.score):.4g}" if row.score else "-",
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


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
