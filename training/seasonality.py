"""The season of a data set's frequency, in rows: the default of MASE's scale and of the
seasonal naive forecaster when the user names none.

A fixed 24 was right for hourly data only: on half-hourly demand it compared each value with the
one 12 hours earlier (Taylor's England & Wales demand: seasonal naive MASE 10 instead of ~1.5),
and on daily data with the one 24 days earlier. The table follows the conventions of the M4
competition and GluonTS's `get_seasonality`, with one change: daily data get the week (7), as
demand histories do, not 1.

| step | season | rows |
|---|---|---|
| under a minute (seconds) | one hour | 3600 at 1 s, 360 at 10 s |
| a minute up to under a day | one day | 1440 at 1 min, 96 at 15 min, 48 at 30 min, 24 at 1 h |
| one day (`D`) | one week | 7 |
| business day (`B`) | one business week | 5 |
| week (`W-...`, `7D`) | one year | 52 |
| semi-month (`SMS`, `SME`) | one year | 24 |
| month (`MS`, `ME`) | one year | 12 |
| quarter (`QS-...`, `QE-...`) | one year | 4 |
| anything else (years, multi-day steps that divide no cycle, business hours) | none | 1 |

A multiple of a step divides the season when it can (`2h` -> 12, `2MS` -> 6) and has none
(1) when it cannot (`7h`). Season 1 is the non-seasonal case: the seasonal naive forecast is
then the last value, and MASE is scaled by the one-step naive forecast.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from models.forecaster import ForecasterConfigError
from training.validation import fixed_step, plural, series_named

_MINUTE = pd.Timedelta(minutes=1)
_HOUR = pd.Timedelta(hours=1)
_DAY = pd.Timedelta(days=1)
_WEEK = pd.Timedelta(days=7)

# Calendar frequencies (steps of varying length): pandas' rule code, without the anchor.
_CALENDAR_SEASONS = {
    "B": 5,
    "C": 5,
    "W": 52,
    "SMS": 24,
    "SME": 24,
    "SM": 24,
    "MS": 12,
    "ME": 12,
    "M": 12,
    "BMS": 12,
    "BME": 12,
    "BM": 12,
    "QS": 4,
    "QE": 4,
    "Q": 4,
    "BQS": 4,
    "BQE": 4,
    "BQ": 4,
}


class SeasonError(ForecasterConfigError):
    """A season that cannot be used where it was asked for (names the field and the limit): a
    model config error, reported as the others are."""


def frequency_season(freq: str) -> int:
    """Rows in one natural season of `freq` (the module's table); 1 where it has none."""
    step = fixed_step(freq)
    if step is not None:
        if step <= pd.Timedelta(0):
            return 1
        if step < _MINUTE:
            cycle = _HOUR
        elif step < _DAY:
            cycle = _DAY
        elif step == _DAY:
            return 7
        elif step == _WEEK:
            return 52
        else:
            return 1
        rows, rest = divmod(cycle, step)
        return int(rows) if not rest and rows >= 1 else 1
    offset = pd.tseries.frequencies.to_offset(freq)
    code = offset.rule_code.split("-", 1)[0]
    base = _CALENDAR_SEASONS.get(code)
    n = abs(offset.n) or 1
    if base is None or base % n:
        return 1
    return base // n


@dataclass(frozen=True)
class Season:
    """A resolved season and, for the run's report, where it came from."""

    rows: int
    reason: str

    def describe(self) -> str:
        """ "48 rows (one season of ...)": for the run's tag, report and printout."""
        return f"{plural(self.rows, 'row')} ({self.reason})"


STEPS_REASON = "the time column counts steps (step_origin), which carry no calendar season"


def mase_season(
    explicit: int | None,
    freq: str,
    shortest_train: int,
    *,
    steps: bool = False,
    shortest_series: str | None = None,
    explicit_from: str = "set by the user",
) -> Season:
    """MASE's seasonal naive scale: the user's season (`explicit_from` says whose: `urnn
    backtest` passes on the one a model was trained with), refused here (before any fit) when the
    shortest training span is not longer than it, else the frequency's, or 1 where the
    shortest training span is not longer than that (a scale needs at least one pair of values
    a season apart). `steps`: the timestamps were made from step numbers
    (LoadConfig.step_origin), so their calendar means nothing and the default is 1."""
    if explicit is not None:
        if explicit >= shortest_train:
            whose = f", {series_named(shortest_series)}" if shortest_series is not None else ""
            raise SeasonError(
                f"season_length: MASE's scale compares training values one season apart, and "
                f"the season ({explicit:,} rows, {explicit_from}) is not shorter than the "
                f"shortest training span ({shortest_train:,} rows{whose}); set season_length "
                f"(--season-length) to at most {shortest_train - 1:,}"
            )
        return Season(explicit, explicit_from)
    if steps:
        return Season(1, STEPS_REASON)
    rows = frequency_season(freq)
    if rows < shortest_train:
        return Season(rows, f"one season of the data's frequency {freq!r}")
    return Season(
        1,
        f"one season of {freq!r} is {rows} rows, not shorter than the shortest training span "
        f"({shortest_train} rows): the one-step naive scale instead",
    )


def model_season(explicit: int | None, freq: str, lookback: int, *, steps: bool = False) -> Season:
    """The seasonal naive forecaster's season: the user's, else the frequency's (1 for step
    numbers, as in mase_season); it must fit in the look-back (the forecast repeats the
    look-back's last season)."""
    if explicit is not None:
        rows, reason = explicit, "set by the user"
    elif steps:
        rows, reason = 1, STEPS_REASON
    else:
        rows, reason = frequency_season(freq), f"one season of the data's frequency {freq!r}"
    if rows > lookback:
        raise SeasonError(
            f"season_length: the seasonal naive forecaster repeats the last season of its "
            f"look-back, and the season ({rows} rows, {reason}) is longer than lookback="
            f"{lookback}; set season_length (--season-length) to at most {lookback}, or "
            f"lookback (--lookback) to at least {rows}"
        )
    return Season(rows, reason)
