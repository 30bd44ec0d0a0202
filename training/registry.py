"""Log a trained forecaster as an MLflow pyfunc model, register it, and decide promotion.

    info = log_forecaster(model, meta, example, registered_name="urnn-forecaster")
    decision = promote_if_better(client, "urnn-forecaster", info.version, score, champion_score)

Rules (ARCHITECTURE.md, Flow): every new version gets the alias `challenger`; it takes the alias
`champion` only if there is no champion or its backtest score is strictly lower (better) than the
champion's score on the same backtest. Both scores, the metric and the decision are recorded as
tags on the new version (`backtest.*`, `promotion.*`), whatever the decision.

Loading a registered model for evaluation (`load_registered`) downloads its artifacts and reads
them with `models.forecaster.load_checkpoint`: JSON plus `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from models.forecaster import (
    CHECKPOINT_CONFIG,
    CHECKPOINT_WEIGHTS,
    Forecaster,
    ModelConfigError,
    save_checkpoint,
)
from training.mlflow_model import ForecastPredictor, signature_for
from training.run_notes import registered_model_description, replaced_line, with_first_line
from urnn_forecast.field_types import shown
from urnn_forecast.tracking import registry_client, shown_uri

logger = logging.getLogger(__name__)

DEFAULT_REGISTERED_NAME = "urnn-forecaster"
CHAMPION = "champion"
CHALLENGER = "challenger"
# The tag every finished registration carries (promoted, kept or skipped): a version without
# it was left by a run that died while registering (jobs.worker.remove_half_registered).
DECISION_TAG = "promotion.decision"
REASON_TAG = "promotion.reason"
ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str  # models:/<model id> of the logged model
    registered_name: str | None
    version: str | None  # registered version, None when not registered


@dataclass(frozen=True)
class Comparison:
    """The champion and the challenger scored on the same forecasts. When the two models'
    backtests differ (another look-back shifts a held-out unit's first origin; a champion with
    a shorter horizon forecasts fewer steps), both scores are taken on the (series, origin,
    step) rows both made, and `basis` says so. `refusal`: why the champion cannot be replaced
    whatever the scores (a challenger that forecasts fewer steps than requests may ask for);
    the scores are still taken where the champion can read the data, as the evidence for a
    promotion by hand (a covariate added on purpose: does it help?).
    `why`: with `champion` None, why the two cannot be compared (trained at another frequency,
    no quantile level in common for a pinball metric), said in the decision's reason."""

    champion: float | None  # None: the champion cannot be scored on this data
    challenger: float | None = None  # on `basis`; None: its own backtest's score (same rows)
    basis: str = ""  # "" when the two backtests are the same forecasts
    refusal: str | None = None
    why: str = ""
    # the champion's forecasts on this backtest (the rows scored), logged as evidence
    forecasts: pd.DataFrame | None = field(default=None, compare=False, repr=False)


# The champion (by version) scored on the challenger's backtest; None when it cannot read the
# data.
ChampionScore = Callable[[str], Comparison | None]


@dataclass(frozen=True)
class PromotionDecision:
    name: str
    version: str
    metric: str
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    promoted: bool
    reason: str
    decision: str = "kept"  # the version's promotion.decision tag: promoted, kept or skipped


# The third-party packages the pyfunc's code imports (`models`, `training`, `urnn_forecast`,
# logged with the model as code: this project is not on PyPI, so naming it as a requirement
# made `mlflow models serve`'s default virtualenv fail to install). tzdata: zoneinfo's zones
# where the system has none.
PYFUNC_REQUIREMENTS = ("torch", "numpy", "pandas", "pyarrow", "tzdata", "mlflow")
# The project's packages the pyfunc imports, copied into the model (MLflow's `code/`, put on
# sys.path when the model loads): the model runs with the code it was trained with.
PYFUNC_CODE_PACKAGES = ("models", "training", "urnn_forecast")


def pyfunc_requirements() -> list[str]:
    """`PYFUNC_REQUIREMENTS` pinned to the versions installed here, without a local version
    label: `torch==2.13.0+cpu` names a build only PyTorch's own index holds, while
    `torch==2.13.0` is found on PyPI (and still matches the +cpu build where that is
    installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in PYFUNC_REQUIREMENTS:
        try:
            out.append(f"{package}=={version(package).split('+', 1)[0]}")
        except PackageNotFoundError:
            out.append(package)
    return out


def stage_pyfunc_code(into: Path) -> list[str]:
    """Copies of `PYFUNC_CODE_PACKAGES` (sources only, no bytecode caches) under `into`, as
    paths for `log_model(code_paths=...)`."""
    import importlib
    import shutil

    paths = []
    for name in PYFUNC_CODE_PACKAGES:
        source = Path(importlib.import_module(name).__file__ or "").parent
        target = into / name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        paths.append(str(target))
    return paths


def log_forecaster(
    model: Forecaster,
    meta: Mapping[str, Any],
    example: pd.DataFrame,
    *,
    registered_name: str | None = DEFAULT_REGISTERED_NAME,
    name: str = "model",
) -> LoggedModel:
    """Log `model` into the active run as a pyfunc (models-from-code, see module docstring)
    with `config.json` (model config + `meta`) and `weights.pt` artifacts, a signature and an
    input example; register it as `registered_name` (None: do not register) and alias the
    version `challenger`."""
    import mlflow

    covariates = [str(c) for c in meta.get("covariates", [])]
    if not (model.SUPPORTS_PAST_COVARIATES and model.config.n_past_covariates):
        # a kind that reads only the target: its example carries no covariate either (MLflow
        # warned twice per run that the example's extra columns would be ignored)
        example = example.drop(columns=[c for c in covariates if c in example.columns])
        covariates = []
    with tempfile.TemporaryDirectory(prefix="urnn-model-") as tmp:
        directory = save_checkpoint(model.cpu(), tmp, dict(meta))
        ForecastPredictor.from_directory(directory).predict_frame(example)  # fail before logging
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(ENTRY_POINT),
            artifacts={
                "config": str(directory / CHECKPOINT_CONFIG),
                "weights": str(directory / CHECKPOINT_WEIGHTS),
            },
            signature=signature_for(covariates, model.config.quantiles, model.config.horizon),
            input_example=example,
            pip_requirements=pyfunc_requirements(),
            code_paths=stage_pyfunc_code(Path(tmp) / "code"),
            registered_model_name=registered_name,
        )
    version = info.registered_model_version
    if registered_name is not None and version is not None:
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(registered_name, CHALLENGER, str(version))
        describe_registered_model(client, registered_name)
    return LoggedModel(
        model_uri=str(info.model_uri),
        registered_name=registered_name,
        version=None if version is None else str(version),
    )


def describe_registered_model(client: Any, name: str) -> None:
    """The registered model's description, where it has none (best effort): what its
    versions and aliases are. One a person wrote, or an earlier release's, is left as it is."""
    with best_effort(f"the description of registered model {name}"):
        if not client.get_registered_model(name).description:
            client.update_registered_model(name, description=registered_model_description(name))


def champion_version(client: Any, name: str, *, tries: int = 3) -> str | None:
    """The version holding the `champion` alias; None if there is none, or no such registered
    model. Read from the registered model's aliases, where a missing alias is no error; any
    other store error is retried briefly, then raised: read as "no champion", one failed read
    let a challenger be promoted with no comparison, and a failed read-back after a promotion
    was taken for a lost race (a promoted model tagged "kept")."""
    import time

    from mlflow.exceptions import MlflowException

    for attempt in range(tries):
        try:
            aliases = client.get_registered_model(name).aliases or {}
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
            continue
        held = aliases.get(CHAMPION)
        return None if held is None else str(held)
    return None  # not reached: the last attempt returns or raises


@contextlib.contextmanager
def best_effort(what: str) -> Iterator[None]:
    """Words for the MLflow UI (descriptions) are not worth a training or a promotion: the
    model is registered, maybe promoted, by the time they are written, and a store that
    refused them (a remote server's hiccup, a column limit) failed the run after its version
    had landed. Logged instead; the tags say the same."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as error:
        logger.warning("%s not written: %s", what, error)


def edit_description(
    client: Any, name: str, version: str, edit: Callable[[str | None], str]
) -> None:
    """The version's description as `edit` makes it from what it says now (best effort)."""
    with best_effort(f"the description of {name} version {version}"):
        said = client.get_model_version(name, version).description
        client.update_model_version(name, version, description=edit(said))


def add_to_description(client: Any, name: str, version: str, line: str) -> None:
    """`line` first in the version's description (the UI shows it above the tags, which it
    folds away)."""
    edit_description(client, name, version, lambda said: with_first_line(said, line))


SUPERSEDED_BY = "promotion.superseded_by"
SUPERSEDED_AT = "promotion.superseded_at"


def record_handover(client: Any, name: str, previous: str | None, new: str) -> None:
    """After `champion` moved from `previous` to `new`: `previous` is tagged with who took the
    alias and when, so that its own promotion tags (which say it was promoted) are not read as
    it still serving; `new` loses such tags from an earlier time it was replaced (a rollback).
    The versions' training runs get the same tags: the run list shows `promotion.decision` of
    each run (run_notes.outcome_tags), and a replaced champion's run read "promoted" there with
    nothing beside it to say it no longer serves."""
    from datetime import UTC, datetime

    from mlflow.exceptions import MlflowException

    if previous is not None and previous != new:
        now = datetime.now(UTC)
        at = now.isoformat(timespec="seconds")
        client.set_model_version_tag(name, previous, SUPERSEDED_BY, new)
        client.set_model_version_tag(name, previous, SUPERSEDED_AT, at)
        add_to_description(client, name, previous, replaced_line(new, now))
        run_id = client.get_model_version(name, previous).run_id
        if run_id:
            with contextlib.suppress(MlflowException):  # the run deleted: the version says it
                client.set_tag(run_id, SUPERSEDED_BY, f"{name} version {new}")
                client.set_tag(run_id, SUPERSEDED_AT, at)
    champion = client.get_model_version(name, new)
    tags = champion.tags or {}
    for key in (SUPERSEDED_BY, SUPERSEDED_AT):
        if key in tags:
            with contextlib.suppress(MlflowException):  # gone already (another handover)
                client.delete_model_version_tag(name, new, key)
        if champion.run_id:
            with contextlib.suppress(MlflowException):  # never set on it, or the run deleted
                client.delete_tag(champion.run_id, key)


def promote_if_better(
    client: Any,
    name: str,
    version: str,
    challenger_score: float,
    champion_score: ChampionScore | None,
    *,
    metric: str = "mae",
    promote: bool = True,
    min_improvement: float = 0.0,
) -> PromotionDecision:
    """Give `version` the `champion` alias if there is no champion, or if its score is strictly
    lower than the champion's on the same backtest (`champion_score(champion version)`: None or
    NaN from it counts as "cannot be compared", and the challenger is promoted only if there is
    no champion; a champion that cannot be compared is kept, with `Comparison.why` in the
    reason: the registry never swaps in a model on a score it could not compare, and a person
    can still move the alias, `urnn models promote`). `promote=False` records the scores but
    never moves the alias. `min_improvement` (a share of the champion's score, in [0, 1)):
    the challenger must score at most (1 - min_improvement) x the champion's, and strictly
    less, to replace it.
    Tags on the version: backtest.metric, backtest.challenger_score, backtest.champion_score,
    backtest.champion_version, backtest.basis (when the scores are on the rows both models
    forecast), promotion.decision (promoted|kept|skipped), promotion.reason.

    MLflow has no compare-and-set on aliases: if another run moved the champion while this one
    was being compared, or wrote the alias just after this one did (read back after the
    write), the comparison is made again against the version that holds it (a few times), so
    a slower worker cannot demote a better model that landed in the meantime. This narrows
    the race, it cannot close it: a write landing after this one's read-back goes unseen."""
    current: str | None = None
    decision: _Decided | None = None
    for _ in range(MAX_COMPARISONS):
        current = champion_version(client, name)
        decision = _decide(
            current,
            version,
            challenger_score,
            champion_score,
            metric=metric,
            promote=promote,
            min_improvement=min_improvement,
        )
        if not decision.promoted:
            break
        if champion_version(client, name) != current:
            continue  # the champion changed under us: compare with the new one
        client.set_registered_model_alias(name, CHAMPION, version)
        if champion_version(client, name) == version:  # read back: another may have written
            record_handover(client, name, current, version)
            break
        # another promotion wrote the alias after ours: compare with the one that holds it
    else:
        assert decision is not None
        held = champion_version(client, name)
        reason = (
            f"the champion alias was moved by other promotions {MAX_COMPARISONS} times during "
            f"this one (v{held} holds it); not promoted (`urnn models list` shows both, "
            "`urnn models promote` moves it by hand)"
        )
        current = held
        decision = _Decided(False, reason, "kept", None)
    assert decision is not None
    promoted, reason, compared = decision.promoted, decision.reason, decision.compared
    if current is None and reason == NO_CHAMPION_YET:
        reason = _no_champion_reason(client, name, version)
    score = None if compared is None else compared.champion
    tags = {
        "backtest.metric": metric,
        "backtest.challenger_score": repr(float(challenger_score)),
        "backtest.champion_score": "none" if score is None else repr(float(score)),
        "backtest.champion_version": current or "none",
        DECISION_TAG: decision.tag,
        REASON_TAG: reason,
    }
    if min_improvement:
        tags["promotion.min_improvement"] = repr(float(min_improvement))
    if compared is not None and compared.basis and compared.challenger is not None:
        tags["backtest.basis"] = compared.basis
        tags["backtest.challenger_score_on_basis"] = repr(float(compared.challenger))
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return PromotionDecision(
        name=name,
        version=version,
        metric=metric,
        challenger_score=float(challenger_score),
        champion_version=current,
        champion_score=score,
        promoted=promoted,
        reason=reason,
        decision=decision.tag,
    )


MAX_COMPARISONS = 3
NO_CHAMPION_YET = "no champion yet"


def _no_champion_reason(client: Any, name: str, version: str) -> str:
    """Why a version was promoted with no champion to compare: "no champion yet" for the
    first version; for a later one, that no version holds the alias, and which earlier ones
    are left. A champion deleted in the UI (MLflow drops its aliases with it), or its alias
    removed, let the next version be recorded "no champion yet", as if there never was one."""
    from mlflow.exceptions import MlflowException

    from training.registry_admin import search_versions

    if not (version.isdigit() and int(version) > 1):
        return NO_CHAMPION_YET
    try:
        rows = search_versions(client, name, max_results=1000)
    except MlflowException:  # the decision stands; only its words are the plainer ones
        return NO_CHAMPION_YET
    earlier = sorted((int(v.version) for v in rows if int(v.version) < int(version)), reverse=True)
    if not earlier:
        return (
            f"no version holds the champion alias (none before version {version} is left: deleted)"
        )
    return f"no version holds the champion alias (earlier versions {first_few(earlier)} hold none)"


def first_few(items: Sequence[object], limit: int = 10) -> str:
    """`items` for a message, comma-separated, `limit` of them and "..." for the rest."""
    return ", ".join(map(str, items[:limit])) + (", ..." if len(items) > limit else "")


def min_improvement_problem(value: object) -> str | None:
    """What is wrong with a promotion margin (a share in [0, 1)), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"must be a number in [0, 1) (0.02: 2 % below the champion's score); got {value!r}"
    if not 0.0 <= value < 1.0:
        return f"must lie in [0, 1) (0.02: 2 % below the champion's score); got {value!r}"
    return None


@dataclass(frozen=True)
class _Decided:
    promoted: bool
    reason: str
    tag: str  # promoted | kept | skipped
    compared: Comparison | None


def _decide(
    current: str | None,
    version: str,
    challenger_score: float,
    champion_score: ChampionScore | None,
    *,
    metric: str,
    promote: bool,
    min_improvement: float = 0.0,
) -> _Decided:
    compared: Comparison | None = None
    if current is not None and current != version and champion_score is not None:
        compared = champion_score(current)
        score = None if compared is None else compared.champion
        if compared is not None and score is not None and not math.isfinite(score):
            compared = replace(compared, champion=None)  # NaN: cannot be compared
    mine = challenger_score
    if compared is not None and compared.challenger is not None:
        mine = compared.challenger
    on = f" ({compared.basis})" if compared is not None and compared.basis else ""
    if not math.isfinite(mine):  # its score on the rows both models forecast too
        promoted, reason = False, f"challenger {metric} is not finite ({mine}){on}"
        if metric == "mase":  # an all-zero or constant training span in every series scored
            reason += (
                ": no series scored has a seasonal-naive error to scale by (a constant "
                "training span, such as a product with no sale yet); promote on --metric mae"
            )
    elif current is None:
        promoted, reason = True, NO_CHAMPION_YET
    elif compared is not None and compared.refusal is not None:
        promoted, reason = False, compared.refusal
        if compared.champion is not None:  # the scores a promotion by hand goes on
            reason += (
                f"; on this backtest {metric} {mine:.6g}, champion v{current} "
                f"{compared.champion:.6g}{on}"
            )
    elif compared is None or compared.champion is None:
        promoted = False
        why = f" ({compared.why})" if compared is not None and compared.why else ""
        reason = f"champion v{current} could not be scored on this backtest{why}; kept"
    elif not min_improvement:
        promoted = mine < compared.champion
        sign = "<" if promoted else ">="
        reason = f"{metric} {mine:.6g} {sign} champion v{current} {compared.champion:.6g}{on}"
    else:
        bar = compared.champion * (1.0 - min_improvement)
        # at the bar itself in decimals, the product's rounding lands either side of it
        # (0.7 x 0.98 = 0.6859999999999999): a challenger exactly 2 % lower was kept, its
        # reason saying "is 2 % below ...; asks for <= 0.686"
        at_bar = math.isclose(mine, bar, rel_tol=1e-9, abs_tol=0.0)
        promoted = (mine <= bar or at_bar) and mine < compared.champion
        share = f"{min_improvement * 100:.4g} %"
        below = f"{(1.0 - mine / compared.champion) * 100:.3g} %" if compared.champion else "-"
        reason = (
            f"{metric} {mine:.6g} is {below} below champion v{current} {compared.champion:.6g}"
            if mine < compared.champion
            else f"{metric} {mine:.6g} >= champion v{current} {compared.champion:.6g}"
        )
        reason += f"{on}; min_improvement {share} asks for <= {bar:.6g}"
    if promoted and not promote:
        return _Decided(False, f"promotion disabled (would promote: {reason})", "skipped", compared)
    if not promote and not promoted:
        reason = f"promotion disabled; {reason}"
        return _Decided(False, reason, "skipped", compared)
    return _Decided(promoted, reason, "promoted" if promoted else "kept", compared)


def model_artifact_dir(
    model_uri: str, destination: str | Path, *, tracking_uri: str | None = None
) -> Path:
    """The folder holding `model_uri`'s config.json + weights.pt. `model_uri` is a models:/ or
    runs:/ URI or a storage location (what the registry's get_model_version_download_uri
    answers), whose files are downloaded into `destination`; or a local folder, read where it
    lies: copying it first would copy whatever else it holds (a whole MLflow store), and a
    search below it would pick an arbitrary model of the many it may hold. `tracking_uri`:
    the store and registry to read (a models:/ URI is resolved against it), instead of
    MLflow's process-wide ones."""
    import mlflow

    local = _local_folder(model_uri)
    if local is None:
        _refuse_whole_run(model_uri)
        located = None if tracking_uri is None else _run_model_location(model_uri, tracking_uri)
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=located or model_uri,
                dst_path=str(destination),
                tracking_uri=tracking_uri,
                registry_uri=tracking_uri,
            )
        )
    found = _checkpoint_folder(local)
    if found is None:
        raise FileNotFoundError(
            f"{shown_uri(model_uri)} holds no {CHECKPOINT_CONFIG} + {CHECKPOINT_WEIGHTS}, "
            f"neither at its top (a folder saved by training) nor in its {MODEL_FILES}/ (an "
            "MLflow model folder, with its MLmodel file)"
        )
    return found


# Where an MLflow model folder logged by the pipeline keeps config.json + weights.pt.
MODEL_FILES = "artifacts"


def _checkpoint_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / MODEL_FILES):
        if (candidate / CHECKPOINT_CONFIG).is_file() and (candidate / CHECKPOINT_WEIGHTS).is_file():
            return candidate
    return None


def _runs_uri(model_uri: str) -> tuple[str, str] | None:
    """(run id, path in the run) of a runs:/ URI (runs:/, runs:// and runs:/// alike); None for
    any other scheme."""
    from urllib.parse import urlsplit

    parts = urlsplit(model_uri)
    if parts.scheme != "runs":
        return None
    run_id, _, path = (parts.netloc + parts.path).strip("/").partition("/")
    return run_id, path


def _refuse_whole_run(model_uri: str) -> None:
    """`runs:/<id>` names a run, not a model in it: MLflow's own refusal ("Not a proper runs:/
    URI: runs:/.") names neither the run nor where its model is."""
    run_id, path = _runs_uri(model_uri) or ("", "")
    if run_id and not path.strip("/"):
        raise FileNotFoundError(
            f"{shown_uri(model_uri)} names a whole run, not a model in it; the pipeline logs "
            f"a run's model as runs:/{run_id}/model"
        )


def _run_model_location(model_uri: str, tracking_uri: str) -> str | None:
    """Where `runs:/<id>/<name>[/...]` lies when <name> is a model the run logged (MLflow 3
    keeps it as a LoggedModel, outside the run's artifacts), found in `tracking_uri`'s store;
    None for any other URI, or when the run is not there (MLflow then says why). MLflow's
    own resolution of such a URI reads the process-wide store, not the one passed: with
    another one set it failed ("Failed to download artifacts from path 'model'"), and with
    none it created ./mlflow.db in the working folder."""
    from mlflow.exceptions import MlflowException

    run_id, path = _runs_uri(model_uri) or ("", "")
    name, _, rest = path.partition("/")
    if not run_id or not name:
        return None
    client = registry_client(tracking_uri)
    try:
        outputs = client.get_run(run_id).outputs
        ids = [output.model_id for output in (outputs.model_outputs if outputs else ())]
        named = [m for m in map(client.get_logged_model, ids) if m.name == name]
    except MlflowException:
        return None
    if not named:
        return None
    # two models of one name in a run: the latest, as MLflow's search (newest first) finds it
    logged = max(named, key=lambda model: model.creation_timestamp or 0)
    return str(logged.artifact_location).rstrip("/") + (f"/{rest}" if rest else "")


def _local_folder(model_uri: str) -> Path | None:
    """`model_uri` as a local path when it is one (a plain path or a file: URI); None for
    every other scheme (models:/, runs:/, s3://, ...), which MLflow resolves and downloads."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(model_uri)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
    elif len(parts.scheme) <= 1:  # no scheme, or a Windows drive letter
        path = Path(model_uri)
    else:
        return None
    if path.is_file():
        raise FileNotFoundError(
            f"{shown_uri(model_uri)} is a file; give the folder holding {CHECKPOINT_CONFIG} + "
            f"{CHECKPOINT_WEIGHTS} (or an MLflow model folder)"
        )
    if not path.is_dir():
        raise FileNotFoundError(f"{shown_uri(model_uri)}: no such folder")
    return path


def registered_version(client: Any, name: str, alias: str | None, version: str | None) -> Any:
    """The registry's ModelVersion a parsed models:/ URI names (`parse_models_uri`): the one
    `alias` points at now, else `version`. MLflow's error when there is none."""
    if alias is not None:
        return client.get_model_version_by_alias(name, alias)
    return client.get_model_version(name, str(version))


@dataclass(frozen=True)
class ModelSource:
    """What a model URI named when it was read: for models:/NAME@ALIAS the version the alias
    pointed at then (an alias moves; a saved backtest must say which version it scored)."""

    uri: str  # as given
    load_uri: str  # what to load: models:/NAME/VERSION for a registered model, else `uri`
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    folder: str | None = None  # a local folder, absolute

    def describe(self) -> str:
        """`version 3 of urnn-forecaster, run 5f3c...`, `run 5f3c...`, or ''."""
        said = [f"version {self.version} of {self.name}"] if self.version else []
        said += [f"run {self.run_id}"] if self.run_id else []
        return ", ".join(said)

    def as_json(self) -> dict[str, str | None]:
        said = {"uri": self.uri, "name": self.name, "version": self.version, "run_id": self.run_id}
        return {**said, "folder": self.folder} if self.folder else said


def resolve_model_source(model_uri: str) -> ModelSource:
    """`model_uri` pinned: an alias or version of the registry (the process-wide store) to its
    version and run, a runs:/ URI to its run; a folder or another scheme as given. Registry
    errors (no such alias) are raised as MLflow's."""
    import mlflow

    from urnn_forecast.model_uri import ModelUriError, parse_models_uri

    try:
        name, alias, version = parse_models_uri(model_uri)
    except ModelUriError:
        if (logged := _LOGGED_MODEL_URI.match(model_uri)) is not None:
            # MLflow 3's own name of a model (a version's Source, log_model's model_uri): its
            # run is the logged model's, where the URI was recorded with none
            found_model = mlflow.MlflowClient().get_logged_model(logged["id"])
            return ModelSource(
                uri=model_uri, load_uri=model_uri, run_id=found_model.source_run_id or None
            )
        if (newest := _newest_of_stage(model_uri)) is not None:
            name, version = newest  # models:/NAME/latest or a stage: pinned like an alias
            alias = None
        else:
            run = _runs_uri(model_uri)
            local = _local_folder(model_uri)
            return ModelSource(
                uri=model_uri,
                load_uri=model_uri,
                run_id=run[0] if run else None,
                folder=None if local is None else str(local.resolve()),
            )
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        found = registered_version(client, name, alias, version)
    except MlflowException as error:
        held = registry_holds(client, name, alias) if names_nothing(error) else None
        if held is None:
            raise
        raise MlflowException(f"{error.message}; {held}", error_code=error.error_code) from None
    return ModelSource(
        uri=model_uri,
        load_uri=f"models:/{name}/{found.version}",
        name=name,
        version=str(found.version),
        run_id=str(found.run_id) if found.run_id else None,
    )


def names_nothing(error: Any) -> bool:
    """Whether MLflow's error says the name, version or alias does not exist: MLflow answers
    a missing alias with INVALID_PARAMETER_VALUE ("Registered model alias champion not
    found."), a missing name or version with RESOURCE_DOES_NOT_EXIST."""
    code = getattr(error, "error_code", None)
    message = str(getattr(error, "message", error))
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in message
    )


def registry_holds(client: Any, name: str, alias: str | None) -> str | None:
    """What a models:/ URI that names nothing could have named, for its error: the model's
    aliases (with their versions) for a missing alias, its versions for a missing version, the
    registered names for a missing name. MLflow's own error named none of them (`urnn backtest
    --model models:/m@Champion`: "Registered model alias Champion not found."). None where the
    registry cannot be read: this is only a hint."""
    from mlflow.exceptions import MlflowException

    from training.registry_admin import search_versions

    try:
        try:
            model = client.get_registered_model(name)
        except MlflowException:
            names = sorted(m.name for m in client.search_registered_models(max_results=1000))
            return f"registered models: {first_few([shown(n) for n in names]) or 'none yet'}"
        rows = search_versions(client, name, max_results=1000)
        versions = first_few(sorted((int(v.version) for v in rows), reverse=True))
        if alias is None:
            return f"{name} has version(s) {versions or 'none'}"
        aliases = dict(sorted((model.aliases or {}).items()))
        if not aliases:
            return f"{name} has no alias (versions {versions or 'none'})"
        held = ", ".join(f"{key} (version {value})" for key, value in aliases.items())
        return f"{name} has alias(es) {held}"
    except Exception:  # a hint only: MLflow's error is the one that matters
        return None


_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<id>m-[0-9a-f]{32})/?$")
_STAGE_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<stage>[^/@]*[^/@\d][^/@]*)/?$")


def _newest_of_stage(model_uri: str) -> tuple[str, str] | None:
    """(name, version) of models:/NAME/latest (the highest version) or models:/NAME/STAGE (the
    highest in that legacy stage), resolved as MLflow resolves them when it loads, so that the
    version scored is the version recorded; None for any other URI. MLflow's error when the
    name has no such version."""
    import warnings

    import mlflow
    from mlflow.exceptions import MlflowException

    match = _STAGE_URI.match(model_uri)
    if match is None:
        return None
    name, stage = match["name"], match["stage"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stages are deprecated since MLflow 2.9; still served
        found = mlflow.MlflowClient().get_latest_versions(
            name, None if stage.lower() == "latest" else [stage]
        )
    if not found:
        where = "" if stage.lower() == "latest" else f" in stage {stage!r}"
        raise MlflowException(f"registered model {name!r} has no version{where}")
    return name, str(max(int(v.version) for v in found))


def training_run_params(model_uri: str) -> dict[str, str] | None:
    """The MLflow params of the run that logged `model_uri` (the pipeline's `fit.*`, `model.*`,
    ...) in MLflow's current tracking store; None when it names no run the store still holds:
    a folder without an MLmodel file, a model logged outside a run, a run purged from it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run_id = mlflow.models.get_model_info(model_uri).run_id
        if not run_id:
            return None
        run = mlflow.MlflowClient().get_run(run_id)
    except (MlflowException, OSError):
        return None
    return dict(run.data.params)


def load_registered(model_uri: str, *, tracking_uri: str | None = None) -> ForecastPredictor:
    """The forecaster behind `model_uri` (e.g. models:/urnn-forecaster@champion, or a
    version's storage location), no pickle; `tracking_uri` as for `model_artifact_dir`.
    A damaged weights file or config.json is named as stored, not as the deleted temporary
    copy."""
    with tempfile.TemporaryDirectory(prefix="urnn-load-") as tmp:
        directory = model_artifact_dir(model_uri, tmp, tracking_uri=tracking_uri)
        try:
            return ForecastPredictor.from_directory(
                directory, source=f"{CHECKPOINT_WEIGHTS} in {shown_uri(model_uri)}"
            )
        except ModelConfigError as error:
            if directory.is_relative_to(tmp):  # a download: its path is gone once said
                raise ModelConfigError(
                    f"{CHECKPOINT_CONFIG} in {shown_uri(model_uri)}", error.reason
                ) from None
            raise
