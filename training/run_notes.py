"""What the MLflow UI says about a training run and the version it registered, in words.

The run list showed random names (masked-moose-334) and no description, so a uRNN, an LSTM and
a seasonal naive run on one file looked alike; the per-epoch `val_mae` (on the scaled windows)
sat above `backtest_mae` (in the target's units) ten times larger; and why a version was or
was not promoted was in tags below the fold of the version page. So a run gets a name that
says what it trained, a description (MLflow's `mlflow.note.content`) that says on what, how
its metrics read and, at the end, what became of the model; a registered version gets a
description with the same summary and its promotion decision, kept current when a person
moves the champion by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from models.forecaster import ForecasterConfig

# MLflow's tag for a run's description (the UI's "Description" box).
NOTE_TAG = "mlflow.note.content"

# Per-epoch metric keys as logged: the fit's errors are on the scaled windows, named so.
EPOCH_METRIC_KEYS: Mapping[str, str] = {
    "val_mae": "val_mae_scaled",
    "val_mse": "val_mse_scaled",
}

METRICS_NOTE = (
    "Per-epoch `train_loss` and `val_loss` are the pinball loss over the quantiles, and "
    "`val_mae_scaled` / `val_mse_scaled` the median's errors, on the scaled windows (each "
    "value minus its series' training mean, over its training std: unitless); `backtest_*` "
    "are in the target's own units, over the test span (`metrics/` has them by series and by "
    "horizon step)."
)


def run_name(model: ForecasterConfig, target: str) -> str:
    """`urnn-OT-L336-H96`: what was trained, for the run list (MLflow names runs at random)."""
    return f"{model.kind}-{target}-L{model.lookback}-H{model.horizon}"


def summary(
    model: ForecasterConfig,
    *,
    source: str,
    target: str,
    covariates: tuple[str, ...],
    n_series: int,
    freq: str,
) -> str:
    """One sentence: the kind, the data, the target and covariates, the window."""
    files = ", ".join(Path(part).name for part in source.split(", "))
    read = f" with covariates {', '.join(covariates)}" if covariates else ""
    series = f"{n_series:,} series" if n_series != 1 else "1 series"
    return (
        f"{model.kind} forecaster of `{target}`{read}, trained on {files} ({series} at "
        f"'{freq}'); look-back {model.lookback}, horizon {model.horizon}, quantiles "
        f"{', '.join(f'{q:g}' for q in model.quantiles)}."
    )


def run_description(what: str, *, outcome: str | None = None) -> str:
    """The run's description: what it trained, how its metrics read, and (once decided) what
    became of the model."""
    parts = [what, METRICS_NOTE]
    if outcome:
        parts.append(outcome)
    return "\n\n".join(parts)


def decision_line(*, name: str, version: str, decision: str, reason: str, promoted: bool) -> str:
    """What became of the registered version, as one line."""
    status = "promoted to champion" if promoted else f"{decision}, not promoted"
    return f"Registered as {name} version {version}: {status} ({reason})."


def version_description(what: str, decided: str) -> str:
    return f"{what}\n\n{decided}"


def manual_line(*, previous: str | None, reason: str, at: datetime | None = None) -> str:
    """The line a move by hand (`urnn models promote`) puts first in the version's
    description: the tag `promotion.decision` keeps the automatic decision ("kept"), which the
    version page showed as the version's state while it was the champion."""
    when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
    was = f"version {previous}" if previous else "no champion"
    return f"Made champion by hand on {when} (was {was}): {reason}"


def replaced_line(new: str, at: datetime | None = None) -> str:
    when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
    return f"Replaced as champion by version {new} on {when}."


def with_first_line(description: str | None, line: str) -> str:
    """`line` above what the description said (the history stays below it)."""
    return line if not description else f"{line}\n\n{description}"
