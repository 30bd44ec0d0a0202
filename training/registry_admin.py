"""What an operator does by hand in the model registry: see the versions of a registered
forecaster with their backtest scores and promotion decisions, and move `champion` to a chosen
version (a rollback, or overruling the automatic decision).

    rows = list_versions(client, "urnn-forecaster")
    moved = set_champion(client, "urnn-forecaster", "3", reason="v5 over-forecasts weekends")

`set_champion` loads the version as the service would (config.json + weights, no pickle, and
the caller's check: the CLI runs the service's warm-up forward) before it moves the alias:
the service keeps serving the old champion when a new one fails to load, so an alias on a
broken version would leave every replica behind it without saying so anywhere but its reload
metric. A version of another forecasting contract than the champion's (another target,
frequency or covariates: training.contract) is refused unless the caller says the change is
intended (`allow_contract_change`): the clients of the alias would get another quantity than
they ask for. The move is recorded as tags on the version (`promotion.manual_*`), beside those
of the automatic decision (`promotion.decision`, `promotion.reason`: training.registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from training.contract import ForecastContract
from training.mlflow_model import ForecastPredictor
from training.registry import (
    CHAMPION,
    REASON_TAG,
    SUPERSEDED_BY,
    add_to_description,
    champion_version,
    load_registered,
    record_handover,
)
from training.run_notes import manual_line
from urnn_forecast.field_types import shown, shown_names


class RegistryError(ValueError):
    """A name or version the registry does not hold; the message lists what it does hold."""


# The tag a move across forecasting contracts leaves on the version: what changed.
CONTRACT_CHANGE_TAG = "promotion.manual_contract_change"


class ContractChangeError(RegistryError):
    """The version forecasts another quantity (target, frequency, covariates) than the
    champion: not moved unless the change is said to be intended. `changes`: each difference,
    as ForecastContract.changes says it."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


@dataclass(frozen=True)
class VersionRow:
    version: str
    aliases: tuple[str, ...]
    created: datetime
    run_id: str
    metric: str
    score: str  # the version's own backtest score, as tagged at registration
    decision: str  # promoted | kept | skipped, "" when untagged; then "manual" if moved by hand
    reason: str


def list_versions(client: Any, name: str) -> list[VersionRow]:
    """Every version of `name`, newest first."""
    model = _registered(client, name)
    # search_model_versions leaves each version's aliases empty; the model holds them all
    aliases: dict[str, list[str]] = {}
    for alias, version in (getattr(model, "aliases", None) or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    versions = search_versions(client, name)
    rows = [
        VersionRow(
            version=str(v.version),
            aliases=tuple(sorted(aliases.get(str(v.version), ()))),
            created=datetime.fromtimestamp(v.creation_timestamp / 1000, tz=UTC),
            run_id=v.run_id or "",
            metric=v.tags.get("backtest.metric", ""),
            score=v.tags.get("backtest.challenger_score", ""),
            decision=_decision(v.tags, CHAMPION in aliases.get(str(v.version), ())),
            reason=_reason(v.tags),
        )
        for v in versions
    ]
    return sorted(rows, key=lambda row: int(row.version), reverse=True)


def search_versions(client: Any, name: str, max_results: int = 10_000) -> list[Any]:
    """The versions of `name` MLflow's search finds (up to `max_results`), whatever quotes the
    name holds: written between single quotes, a name such as o'brien was refused by MLflow's
    filter parser."""
    if "'" in name and '"' in name:  # no literal of the filter syntax holds both quotes:
        # LIKE with each quote as the one-character wildcard, then the exact name here
        like = name.replace("'", "_").replace('"', "_")
        found = client.search_model_versions(f"name LIKE '{like}'", max_results=max_results)
        return [v for v in found if v.name == name]
    return list(client.search_model_versions(f"name = {_quoted(name)}", max_results=max_results))


@dataclass(frozen=True)
class ChampionMove:
    name: str
    version: str
    previous: str | None  # the champion before the move, None if there was none
    lost: bool = False  # another move overwrote this one (or removed the alias) at once
    lost_to: str | None = None  # the champion read back then; None: no version holds it
    # requests the previous champion serves that this version refuses (the check that keeps
    # an automatic promotion from taking place), said but not stopping a deliberate move
    refuses: str | None = None
    # the moved alias could not be recorded (the handover and promotion.manual_* tags): why
    unrecorded: str | None = None
    # the forecasting contract changed, as allowed (allow_contract_change): each difference
    contract_changes: tuple[str, ...] = ()


def set_champion(
    client: Any,
    name: str,
    version: str,
    *,
    reason: str,
    tracking_uri: str,
    check: Callable[[ForecastPredictor], None] | None = None,
    allow_contract_change: bool = False,
) -> ChampionMove:
    """Move `champion` to `version` once it loads and passes `check` (the service's own
    warm-up, from the CLI: a version it would refuse must not take the alias), and tag the
    version with the move beside the automatic decision's tags. A version that already is
    the champion is left as it is (`previous == version`). A version of another forecasting
    contract than the champion's is ContractChangeError, nothing moved, unless
    `allow_contract_change` (then tagged `promotion.manual_contract_change`); no champion, or
    one that does not load (it serves nothing): no check."""
    from mlflow.exceptions import MlflowException

    _registered(client, name)
    if version.isascii() and version.isdigit():  # int() refuses superscript digits
        version = str(int(version))  # "02" is version 2
    try:
        client.get_model_version(name, version)
    except MlflowException:
        held = ", ".join(row.version for row in reversed(list_versions(client, name)))
        raise RegistryError(
            f"{name!r} has no version {version!r} (its versions: {held or 'none'})"
        ) from None
    try:
        # the version's storage location, read through this client: a models:/ URI would be
        # resolved by MLflow against its process-wide tracking store, whatever is given here
        source = client.get_model_version_download_uri(name, version)
        predictor = load_registered(source, tracking_uri=tracking_uri)
        if check is not None:
            check(predictor)
    except Exception as error:
        raise RegistryError(
            f"{name} version {version} does not load ({error}); champion not moved"
        ) from None
    previous = champion_version(client, name)
    if previous == version:
        return ChampionMove(name=name, version=version, previous=previous)  # nothing to move
    champion = _champion(client, name, previous, tracking_uri)
    changes = _contract_changes(champion, predictor)
    if changes and not allow_contract_change:
        assert champion is not None  # the changes were read from it
        raise ContractChangeError(
            f"champion v{previous} {ForecastContract.of(champion).describe()}; v{version} "
            f"{ForecastContract.of(predictor).describe()} ({'; '.join(changes)}): as champion "
            "it would answer the alias's clients with other forecasts than they ask for; "
            "champion not moved",
            changes,
        )
    refuses = _refused_by(champion, predictor)
    client.set_registered_model_alias(name, CHAMPION, version)
    # MLflow moves an alias without a compare: two moves at once both "succeed", and the
    # later write wins. Read it back before tagging, so that the one that lost says so and
    # leaves no tags saying it took the alias (nor the previous champion "replaced by" it).
    now = champion_version(client, name)
    if now != version:
        return ChampionMove(name, version, previous, lost=True, lost_to=now)
    moved = ChampionMove(
        name=name,
        version=version,
        previous=previous,
        refuses=refuses,
        contract_changes=tuple(changes),
    )
    try:
        record_handover(client, name, previous, version)
        moved_at = datetime.now(UTC)
        tags = {  # beside promotion.decision / promotion.reason, the registration's decision
            "promotion.manual_reason": reason,
            "promotion.manual_previous_champion": previous or "none",
            "promotion.manual_at": moved_at.isoformat(timespec="seconds"),
        }
        if changes:  # the override, said where the move is: what the clients now get
            tags[CONTRACT_CHANGE_TAG] = "; ".join(changes)
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
    except Exception as error:  # the alias has moved: raised, it read "cannot use the
        # registry" and the operator took it that nothing had moved
        text = str(error).strip()
        first = text.splitlines()[0][:300] if text else type(error).__name__
        return replace(moved, unrecorded=first)
    if changes:
        reason = f"{reason} (forecasting contract changed: {'; '.join(changes)})"
    said = manual_line(previous=previous, reason=reason, at=moved_at)
    add_to_description(client, name, version, said)
    return moved


def _champion(
    client: Any, name: str, previous: str | None, tracking_uri: str
) -> ForecastPredictor | None:
    """The champion `previous` as loaded; None where there is none, or it does not load (a
    champion that does not load serves nothing to break or to change)."""
    if previous is None:
        return None
    try:
        source = client.get_model_version_download_uri(name, previous)
        return load_registered(source, tracking_uri=tracking_uri)
    except Exception:
        return None


def _contract_changes(champion: ForecastPredictor | None, new: ForecastPredictor) -> list[str]:
    """How `new` forecasts another quantity than the champion (training.contract, the rule
    `urnn train` compares by); empty where it is the same, or there is no champion to read."""
    if champion is None:
        return []
    return ForecastContract.of(champion).changes(ForecastContract.of(new))


def _refused_by(champion: ForecastPredictor | None, new: ForecastPredictor) -> str | None:
    """Why `new` would refuse requests the champion serves (`urnn train` keeps the champion
    for these; a person may move it anyway, and is told); None where it serves them all, or
    there is no champion that loads (nothing is served from it)."""
    from training.mlflow_model import calendar_clock
    from training.pipeline import served_requests_refused

    if champion is None:
        return None
    return served_requests_refused(
        champion, new.model.config, new.covariates, calendar_clock(new.meta), new.meta.get("freq")
    )


def _decision(tags: dict[str, str], champion: bool) -> str:
    """What moved the alias to the version, then, for a version that no longer holds it,
    which one took it: "promoted, then manual, replaced by 5"."""
    parts = [tags.get("promotion.decision", "")]
    if "promotion.manual_at" in tags:
        parts.append("then manual" if parts[0] else "manual")
        if CONTRACT_CHANGE_TAG in tags:  # --allow-contract-change: its tag holds what changed
            parts.append("contract changed")
    if not champion and SUPERSEDED_BY in tags:
        parts.append(f"replaced by {tags[SUPERSEDED_BY]}")
    return ", ".join(part for part in parts if part)


def _reason(tags: dict[str, str]) -> str:
    if "promotion.manual_at" in tags:
        return tags.get("promotion.manual_reason", "")
    return tags.get(REASON_TAG, "")


def _registered(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        listed = shown_names(names)[1:-1] if names else "none yet"  # ten, each shortened
        raise RegistryError(f"no registered model {shown(name)} (registered: {listed})") from None


def _quoted(name: str) -> str:
    """`name` as a string literal of MLflow's filter syntax, quotes included: its tokenizer
    takes no escaped quote inside a literal (a name with an escaped ' matched nothing), so a
    name holding ' is written between double quotes (one holding both: list_versions)."""
    return f'"{name}"' if "'" in name else f"'{name}'"
