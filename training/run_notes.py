"""What the MLflow UI says about a training run and the version it registered, in words.

The run list showed random names (masked-moose-334) and no description, so a uRNN, an LSTM and
a seasonal naive run on one file looked alike; the per-epoch `val_mae` (on the scaled windows)
sat above `backtest_mae` (in the target's units) ten times larger; and why a version was or
was not promoted was in tags below the fold of the version page. So a run gets a name that
says what it fitted, a description (MLflow's `mlflow.note.content`) that says on what, how its
metrics read and, at the end, what became of the model; a registered version gets a
description with the same summary and its promotion decision, kept current when a person moves
the champion by hand or another version replaces it (newest line first).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from models.forecaster import ForecasterConfig

# MLflow's tag for a run's description (the UI's "Description" box).
NOTE_TAG = "mlflow.note.content"

# Per-epoch metric keys as logged: the fit's errors are on the scaled windows, named so; an
# epoch's duration was `seconds`, read beside `fit_seconds` as another total.
EPOCH_METRIC_KEYS: Mapping[str, str] = {
    "val_mae": "val_mae_scaled",
    "val_mse": "val_mse_scaled",
    "seconds": "epoch_seconds",
}


def best_val_key(monitor: str) -> str:
    """The key of the kept model's monitored val score (`best_val_loss`): the run list shows
    each metric's last value, which is the last epoch's, up to `patience` epochs past the
    weights kept, so runs compared on `val_loss` there were compared on models not kept."""
    epoch_key = f"val_{monitor}"
    return f"best_{EPOCH_METRIC_KEYS.get(epoch_key, epoch_key)}"


# MLflow's SQL registry stores a version's description in 5,000 characters (PostgreSQL
# enforces it) and a run's name in 250.
DESCRIPTION_MAX = 4900
RUN_NAME_TARGET_MAX = 200
SHOWN_NAMES_MAX = 10


def metrics_note(
    *,
    trains: bool,
    scope: str,
    monitor: str = "loss",
    mse_weight: float = 0.0,
    ensemble: int = 1,
    decoder_search: bool = False,
) -> str:
    """How the run's metrics read: per-epoch ones on the scaled windows (the kept model's in
    `best_val_*`; the loss with its MSE term where `mse_weight` (FitConfig) adds one: the
    demo's fit does), `backtest_*` on the target's original scale, each in its own unit; and
    under which names an ensemble's members and a decoder search's candidates log their
    curves, which such a run has in place of `train_loss` and `val_loss`."""
    scaled = (
        "each series' values minus its training mean, over its training std"
        if scope == "series"
        else "values minus the training mean, over the training std, one set for all series"
    )
    plus = f" plus {mse_weight:g} x the median's MSE (mse_weight)" if mse_weight else ""
    epochs = (
        f"Per-epoch `train_loss` and `val_loss` are the pinball loss over the quantiles{plus}, "
        "and "
        f"`val_mae_scaled` / `val_mse_scaled` the median's errors, on the scaled windows "
        f"({scaled}: unitless; before 2026-12-06 logged as `val_mae` / `val_mse`, and "
        "`epoch_seconds` as `seconds`); the run "
        f"list shows their last epoch's, `{best_val_key(monitor)}` the model kept (epoch "
        "`best_epoch`); "
        if trains
        else "A parameter-free baseline: no per-epoch metrics; "
    )
    curves = _curve_names(best_val_key(monitor), ensemble, decoder_search) if trains else ""
    return (
        f"{epochs}`backtest_*` are on the target's original scale, over the test span (MAE, "
        "RMSE and pinball in its units, MSE in its units squared; sMAPE in percent, MASE, "
        "coverage_* and below_q* unitless; `metrics/` has them by series and by horizon step)."
        f"{curves}"
    )


def _curve_names(best: str, ensemble: int, decoder_search: bool) -> str:
    """Where an ensemble's or a decoder search's per-epoch curves are (training.fit tags each
    member's and candidate's records, "member1/pmf"), and what `best` and `best_epoch` are of
    then; "" for a single model without a search."""
    if ensemble > 1:
        first = (
            "`member1/direct/val_loss` and `member1/pmf/val_loss` for the decoders member 1 "
            "chose between, the others using its choice"
            if decoder_search
            else "`member1/train_loss`, `member1/val_loss`, ..."
        )
        others = "`member2/val_loss`" + (
            f", ... `member{ensemble}/val_loss`" if ensemble > 2 else ""
        )
        return (
            f" This run trained an ensemble of {ensemble}: each member's curves are their own "
            f"({first}; {others}); `{best}` is the "
            "averaged ensemble's on the validation windows, before the interval calibration, "
            "and `best_epoch` member 1's."
        )
    if decoder_search:
        return (
            " This run trained one model per decoder: each candidate's curves are their own "
            "(`direct/val_loss`, `pmf/val_loss`, ...), `decoder_score_<decoder>` each one's best; "
            f"`{best}` and `best_epoch` are the chosen decoder's (tag `decoder`)."
        )
    return ""


def run_name(model: ForecasterConfig, target: str) -> str:
    """`urnn-OT-L336-H96`: what was fitted, for the run list (MLflow names runs at random);
    a very long target name is cut to stay within MLflow's 250 characters."""
    if len(target) > RUN_NAME_TARGET_MAX:
        target = target[: RUN_NAME_TARGET_MAX - 3] + "..."
    return f"{model.kind}-{target}-L{model.lookback}-H{model.horizon}"


def job_run_name(job_id: str, model: ForecasterConfig, target: str) -> str:
    """`job-3f0c1a2b-urnn-OT-L96-H24`: a retraining job's run, by its job (the first 8
    characters of the id, as `GET /jobs` shows it) and what it fitted. Named `job-<id>` alone,
    a nightly schedule filled the run list with names that did not say which model or target
    each run trained."""
    return f"job-{job_id[:8]}-{run_name(model, target)}"


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
    files = _names([Path(part).name for part in source.split(", ")])
    read = f" with covariates {_names(list(covariates))}" if covariates else ""
    series = f"{n_series:,} series" if n_series != 1 else "1 series"
    return (
        f"{model.kind} forecaster of `{target}`{read}, from {files} ({series} at '{freq}'); "
        f"look-back {model.lookback}, horizon {model.horizon}, quantiles "
        f"{_names([f'{q:g}' for q in model.quantiles])}."
    )


def _names(names: list[str]) -> str:
    shown = names[:SHOWN_NAMES_MAX]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


def run_description(what: str, metrics: str, *, outcome: str | None = None) -> str:
    """The run's description: what it fitted, how its metrics read, and (once decided) what
    became of the model."""
    return capped("\n\n".join(part for part in (what, metrics, outcome) if part))


def decision_line(*, name: str, version: str, reason: str, promoted: bool) -> str:
    """What became of the registered version, as one line; `reason` says why (the champion
    kept, no champion yet, --no-promote). The decision comes first: the registered model's
    list of versions shows a description's first 30 characters, which read "Registered as
    urnn-forecaster..." on every version, champion or not."""
    status = "Promoted to champion" if promoted else "Not promoted"
    return f"{status} ({reason}); registered as {name} version {version}."


def outcome_tags(name: str, version: str, decision: str) -> dict[str, str]:
    """The run's tags for what became of its model at registration, as on the version (the
    same `promotion.decision` key): the run list can show them as columns and search them
    (`tags.promotion.decision = 'promoted'`), where three runs of one command had one name
    and only the Models column (v1, v2, v3) to tell them apart. The registered name is one of
    them since runs of two names (`--registered-name`) share the experiment, and each name's
    first version is 1."""
    return {
        "registered_model": name,
        "registered_version": version,
        "promotion.decision": decision,
    }


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


def registered_model_description(name: str) -> str:
    """What the registered model's own page says: MLflow leaves it empty, so the page that
    lists the versions did not say what the model is, what its two aliases mean, where the
    promotion decision is written, nor how to load the one served."""
    return (
        f"Forecasters registered by urnn-forecast (`urnn train`, retraining jobs), one version "
        "per training run (the version's Source Run).\n\n"
        "Aliases: `champion` is the version the forecast service serves and "
        f"`models:/{name}@champion` loads; it moves to a new version only when that one scores "
        "lower on the same backtest (`--metric`, default `mae`), or by hand (`urnn models "
        "promote`). `challenger` is the version registered last, promoted or not.\n\n"
        "Each version's description says what it was fitted on and what became of it, newest "
        "line first; its tags hold the decision (`promotion.decision`: promoted, kept or "
        "skipped; `promotion.reason`) and the scores compared (`backtest.*`, in the target's "
        "units). Its run has the metrics, the backtest's tables and plots, and the data report."
    )


def capped(description: str) -> str:
    """At most DESCRIPTION_MAX characters: the newest lines come first, so the tail goes."""
    if len(description) <= DESCRIPTION_MAX:
        return description
    cut = "\n\n(cut at MLflow's 5,000-character limit)"
    return description[: DESCRIPTION_MAX - len(cut)] + cut


def with_first_line(description: str | None, line: str) -> str:
    """`line` above what the description said (the history stays below it)."""
    return capped(line if not description else f"{line}\n\n{description}")


def above_summary(description: str | None, summary: str, line: str) -> str:
    """`line` just above the version's summary: below whatever a later event wrote first in
    the meantime (a replacement landing between the registration and its decision)."""
    if not description or summary not in description:
        return with_first_line(description, line)
    return capped(description.replace(summary, f"{line}\n\n{summary}", 1))
