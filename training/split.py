"""Stages 2 and 3 of the training pipeline: split each series by time, then scale on train only.

    splits = split_data(data, SplitConfig(method="ett", lookback=96))  # data: LoadedData
    scaler = StandardScaler.fit(splits)              # reads splits[...].train and nothing else
    scaled = scaler.transform_splits(splits)
    json.dumps(scaler.to_dict())                     # into the model's config.json

Leakage is ruled out by construction rather than by care:

- A split is a `SplitPlan` of row spans, checked when it is built: train, val and test own
  disjoint spans in time order. Val and test frames also carry the `lookback` rows just before
  their span as input context (the ETT papers' convention), so their first windows have a full
  input; those rows come from the past, and no window of val or test has a target outside its
  own span.
- `StandardScaler.fit` takes `SeriesSplit`s and reads only their `.train` frames. There is no
  way to fit it on a frame, so no way to fit it on one that holds validation or test rows.

One look-ahead is left to the loader's fill policy: a value filled by interpolation
(`LoadedData.filled`) in the last steps of the train span was computed from the next observed
value, which may lie in the val span (and likewise val from test). The training report names
each such run, per series and column (training.pipeline.lookahead_fill_lines: the loader cannot,
as it knows no borders). `fill="ffill"` never looks ahead.

A series cut at a long gap (`on_long_gap="split"`: segments `<id>#1`, `<id>#2`...) is split by
time as the one series it is (`plan_cut_series`): the borders are drawn once, over its
segments' rows together, and each segment gets the rows of each part that fall inside it.
Drawn per segment, a later segment's training rows would come after an earlier one's test rows
(the model would learn the series' future). A segment may so hold train rows only, or straddle
val and test; its windows stay inside it (none spans the gap), and its val and test rows read
their `lookback` rows of context from the same segment (the first `lookback` rows of a segment
that opens on val or test rows are context only). A segment's share of a part too short for
one window of that part (`SplitConfig.horizon`) is left unused.

Presets (`SplitConfig.method`):

- "ett": the protocol of Informer (Zhou et al., AAAI 2021) and the ETT papers after it: the first
  12 months train, the next 4 val, the next 4 test, a month being 30 days: 8,640 / 2,880 / 2,880
  rows hourly, four times that at 15 minutes. Rows after the 20 months are left unused, as there.
- "fractions": the first `train_fraction` of the rows train, the next `val_fraction` val, the
  rest test (defaults 0.7 / 0.1 / 0.2, Informer's split for custom data). With several series
  each is split at its own fractions, so their borders may fall on different dates.
- "series": whole series held out, for fleets of units (engines, pumps, stores) where the
  question is how the model does on a unit it never saw: the first `train_fraction` of the
  series in id order (digits compared as numbers) train on their whole history, the next
  `val_fraction` early-stop the fit, the rest are the test units, every origin after their
  first `lookback` rows scored. A split by time would instead leave every unit's last rows (an
  engine's wear before failure) to the test span only. A held-out unit's MASE is scaled by its
  own first `lookback` rows, the only history it has before its first forecast.
  `test_series` (and optionally `val_series`) name the held-out units instead of id order.
  The segments of a series cut at a long gap (`on_long_gap="split"`) are one unit here: they
  are held out together.
- "unseen": every series is a test unit, scored as under "series": for backtesting a trained
  model on a file of new units (C-MAPSS's test engines); nothing can be trained on it.
- "tail": counted back from the end of each series: test = the last `test_rows` rows, val = the
  `val_rows` rows before them, train = everything earlier, or only its last `max_train_rows`
  rows when that is set (older rows are left unused). For long histories of different lengths
  that end together (PJM demand: test = the last 365 days of every region): the test span is a
  fixed stretch of calendar time per series, whatever the series' length.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pandas as pd

from training.data import LoadedData
from training.validation import (
    DataValidationError,
    InvalidOptionError,
    NonFiniteValueError,
    fixed_step,
    natural_key,
    plural,
    series_id_text,
    series_named,
)
from urnn_forecast.field_types import not_one_of, shown

SplitMethod = Literal["ett", "fractions", "tail", "series", "unseen"]
SPLIT_METHODS: tuple[SplitMethod, ...] = ("ett", "fractions", "tail", "series", "unseen")
HELD_OUT_METHODS: tuple[SplitMethod, ...] = ("series", "unseen")  # whole series, not spans
# What one series is for: "all" = cut by time into train, val and test (every method but
# "series"); "segment" = one segment of a series cut at a long gap, holding the rows of each
# part that fall inside it (any of its spans may be empty: plan_cut_series); otherwise the one
# part its whole history belongs to (the "series" split).
SeriesRole = Literal["all", "train", "val", "test", "segment"]
PART_NAMES: tuple[str, ...] = ("train", "val", "test")
TAIL_FIELDS: tuple[str, ...] = ("val_rows", "test_rows", "max_train_rows")
ETT_MONTH = pd.Timedelta(days=30)  # the ETT code counts a month as 30 days
ETT_MONTHS = (12, 4, 4)  # train, val, test


def _comma_ids_hint(name: str, unknown: Sequence[str], series_ids: Sequence[str]) -> str:
    """Where the unknown names are the pieces of ids that hold a comma ('FE, north' typed as
    `--test-series "FE, north"`, which the option splits at its commas): how such an id is
    named instead. "" otherwise."""
    pieces = {piece.strip() for piece in unknown}
    cut = [
        sid
        for sid in series_ids
        if "," in sid and {piece.strip() for piece in sid.split(",")} <= pieces
    ]
    if not cut:
        return ""
    example = json.dumps({"train": {name: cut[:5]}}, ensure_ascii=False)
    return (
        f"; {', '.join(map(shown, cut[:5]))} {'holds' if len(cut) == 1 else 'hold'} a comma, "
        f"at which --{name.replace('_', '-')} splits its names: name "
        f"{'it' if len(cut) == 1 else 'them'} in a --config file, {example}"
    )


class SplitError(DataValidationError):
    """A split that cannot be made (series too short) or that would break time order."""


class NamedSeriesError(SplitError):
    """test_series / val_series (`option`) name series the data does not hold, or hold out
    every series: the option is wrong for this file, which callers can say (a job's 422 names
    the field)."""

    def __init__(self, message: str, *, option: str) -> None:
        super().__init__(message)
        self.option = option


class CutSeriesError(SplitError):
    """Series cut at long gaps (on_long_gap="split") that this split or model kind cannot
    use as cut: the way out is the gap's (fill it, or cut the file), which callers can say (a
    job's 422 names `config.load.on_long_gap`)."""


class ScalerError(ValueError):
    """A scaler asked for columns it does not know, or a malformed serialised scaler."""


class UnknownSeriesError(ScalerError):
    """A per-series scaler asked to scale a series it was not fitted on."""


@dataclass(frozen=True)
class SplitConfig:
    """How to split every series of a `LoadedData`; JSON-serialisable for the run's config."""

    lookback: int  # input length of the model; val/test frames reach back this many rows
    method: SplitMethod = "fractions"
    train_fraction: float = 0.7  # "fractions": of each series' rows; "series": of the series
    val_fraction: float = 0.1  # "fractions" and "series"; test gets the rest
    val_rows: int | None = None  # "tail" only (required): rows of val, just before test
    test_rows: int | None = None  # "tail" only (required): the last rows of each series
    max_train_rows: int | None = None  # "tail" only: train = at most the last this many rows
    # "series" only: the units to hold out for test / for validation, by id, instead of the
    # last ones in id order (a fleet's newest units are not always its highest numbers).
    test_series: tuple[str, ...] = ()
    val_series: tuple[str, ...] = ()
    # Rows a window forecasts. Read only for a series cut at a long gap under a split by time:
    # a segment's share of a part is kept when it holds one window of lookback + horizon rows
    # (1: any share with a row to forecast).
    horizon: int = 1

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise InvalidOptionError(not_one_of("split method", self.method, SPLIT_METHODS))
        if self.lookback < 1:
            raise InvalidOptionError(f"lookback must be an integer >= 1, got {self.lookback}")
        if not isinstance(self.horizon, int) or isinstance(self.horizon, bool) or self.horizon < 1:
            raise InvalidOptionError(f"horizon must be an integer >= 1, got {self.horizon!r}")
        self._check_tail_fields()
        self._check_named_series()
        ok = 0 < self.train_fraction < 1 and 0 < self.val_fraction < 1
        if not ok or self.train_fraction + self.val_fraction >= 1:
            raise InvalidOptionError(
                "train_fraction and val_fraction must each lie in (0, 1) and leave a test share "
                f"(sum < 1), got {self.train_fraction} and {self.val_fraction}"
            )

    def _check_named_series(self) -> None:
        """test_series / val_series: lists of distinct non-empty ids, for "series" only (JSON
        gives lists; they are kept as tuples so the config stays hashable)."""
        for name in ("test_series", "val_series"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise InvalidOptionError(f"{name} must be a list of series ids, got {value!r}")
            bad = [v for v in value if not isinstance(v, str) or not v.strip()]
            if bad:
                raise InvalidOptionError(
                    f"{name} must hold non-empty series ids (strings), got {bad[0]!r}"
                )
            # read as the loader reads ids: 1.0 names the series of a float id column, '1'
            value = [series_id_text(v) for v in value]
            repeated = sorted({v for v in value if value.count(v) > 1})
            if repeated:
                raise InvalidOptionError(f"{name} names {repeated[0]!r} more than once")
            object.__setattr__(self, name, tuple(value))
            if value and self.method != "series":
                raise InvalidOptionError(
                    f"{name} applies to split method 'series' only; got method {self.method!r}"
                )
        both = sorted(set(self.test_series) & set(self.val_series), key=natural_key)
        if both:
            raise InvalidOptionError(
                f"series {both[0]!r} is in both test_series and val_series; a unit is held out "
                "for one of them"
            )
        if self.val_series and not self.test_series:
            raise InvalidOptionError(
                "val_series needs test_series: name the test units too (or neither, to hold "
                "out the last ones in id order)"
            )

    def _check_tail_fields(self) -> None:
        """val_rows / test_rows / max_train_rows: required (the first two) and integers >= 1
        for "tail"; absent for the other methods, which would silently ignore them."""
        if self.method != "tail":
            given = [name for name in TAIL_FIELDS if getattr(self, name) is not None]
            if given:
                raise InvalidOptionError(
                    f"{', '.join(given)} applies to split method 'tail' only; "
                    f"got method {self.method!r}"
                )
            return
        for name in TAIL_FIELDS:
            value = getattr(self, name)
            if value is None and name != "max_train_rows":
                raise InvalidOptionError(
                    f"{name} is required for split method 'tail' (an integer >= 1)"
                )
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise InvalidOptionError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class Span:
    """Rows [start, stop) that a split owns, plus `context` rows before them read as input only."""

    start: int
    stop: int
    context: int = 0

    @property
    def input_start(self) -> int:
        return self.start - self.context

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SplitPlan:
    """Train, val and test spans of one series of `n_rows` rows; the invariants that rule out
    leakage are checked here, so every plan that exists is a valid one."""

    n_rows: int
    lookback: int
    train: Span
    val: Span
    test: Span
    role: SeriesRole = "all"  # a whole series held out ("series" split): its one non-empty span

    def __post_init__(self) -> None:
        train, val, test = self.train, self.val, self.test
        problems = []
        if train.start < 0 or train.context != 0:
            problems.append("train must start at row 0 or later, with no context")
        spans = {"train": train, "val": val, "test": test}
        if self.role == "all" and min(len(train), len(val), len(test)) < 1:
            problems.append("every span must hold at least one row")
        held_out = self.role not in ("all", "segment")
        if held_out and [n for n, sp in spans.items() if len(sp)] != [self.role]:
            problems.append(f"a series held out for {self.role} fills that span and no other")
        if not (train.stop <= val.start and val.stop <= test.start and test.stop <= self.n_rows):
            problems.append("spans must be disjoint, in time order, and inside the series")
        if val.context != self.lookback or test.context != self.lookback:
            problems.append("val and test must carry exactly `lookback` rows of context")
        if self.role == "segment":
            # a segment's context rows come from the segment itself (the gap is not crossed),
            # whatever part they belong to: all of them lie before the span they precede
            if any(len(sp) and sp.input_start < 0 for sp in (val, test)):
                problems.append("val and test context must lie inside the segment")
        elif val.input_start < train.start:
            rows = plural(len(train), "row")
            problems.append(f"the train span ({rows}) is shorter than the lookback")
        if problems:
            raise SplitError(f"invalid split {self.to_dict()}: {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        spans = {"train": self.train, "val": self.val, "test": self.test}
        return {
            "n_rows": self.n_rows,
            "lookback": self.lookback,
            "role": self.role,
            **{
                k: {"start": s.start, "stop": s.stop, "context": s.context}
                for k, s in spans.items()
            },
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> "SplitPlan":
        return cls(
            n_rows=int(state["n_rows"]),
            lookback=int(state["lookback"]),
            **{k: Span(**state[k]) for k in ("train", "val", "test")},
            role=state.get("role", "all"),
        )


def plan_split(n_rows: int, freq: str, config: SplitConfig) -> SplitPlan:
    """Row spans for one series of `n_rows` rows at `freq` (a split by time; the "series"
    split decides per series from the whole file: `series_roles`, `plan_held_out`)."""
    if config.method in HELD_OUT_METHODS:
        raise SplitError(f"the {config.method!r} split assigns whole series: use split_data")
    if config.method == "tail":
        return _plan_tail(n_rows, config)
    if config.method == "ett":
        n_train, n_val, n_test = (m * _rows_per_ett_month(freq) for m in ETT_MONTHS)
        if n_rows < n_train + n_val + n_test:
            raise SplitError(
                f"the ETT split needs {n_train + n_val + n_test:,} rows "
                f"({n_train:,} + {n_val:,} + {n_test:,}) at {freq!r}, the series has {n_rows:,}"
            )
        need = config.lookback + config.horizon
        if n_train < need:
            # a long look-back (a year of hours) meets the 12 train months first: say what
            # fits, not the plan's spans (SplitPlan's own check) or a window count later
            fits = n_train - config.horizon
            advice = f"--lookback {fits:,} or less at this horizon, " if fits >= 1 else ""
            raise SplitError(
                f"the 'ett' split trains on its first {ETT_MONTHS[0]} months, {n_train:,} rows "
                f"at {freq!r}, which must hold one window of --lookback {config.lookback:,} + "
                f"--horizon {config.horizon:,} = {need:,} rows: give {advice}"
                "or --split fractions (whose train part is a share of the whole series)"
            )
    else:
        n_train, n_val, n_test = fraction_rows(n_rows, config)
        if min(n_train, n_val, n_test) < 1 or n_train < config.lookback:
            raise SplitError(
                f"{n_rows:,} rows split {n_train:,} / {n_val:,} / {n_test:,}: every part needs a "
                f"row and train at least lookback={config.lookback} rows"
            )
    val_start, test_start = n_train, n_train + n_val
    return SplitPlan(
        n_rows=n_rows,
        lookback=config.lookback,
        train=Span(0, n_train),
        val=Span(val_start, test_start, context=config.lookback),
        test=Span(test_start, test_start + n_test, context=config.lookback),
    )


def fraction_rows(n_rows: int, config: SplitConfig) -> tuple[int, int, int]:
    """The rows of train, val and test that a "fractions" split gives a series of `n_rows`
    rows: whole rows of each share, the rest to test (a too-short message quotes them)."""
    n_train = int(n_rows * config.train_fraction)
    n_val = int(n_rows * config.val_fraction)
    return n_train, n_val, n_rows - n_train - n_val


# Beyond this many rows the split is not planned row by row (its indices overflow): a bound
# that large is read as "no series is that long" (a fraction below about 1e-17).
_ROWS_PLANNED_MAX = 2**53


def _share_bounds(config: SplitConfig, horizon: int, *, slack: int = 0) -> dict[str, Fraction]:
    """The rows a "fractions" split needs for each part's share to hold its own rows of one
    window: all of it for train, the horizon for val and test (their look-back is context
    from the part before). Exact: `need / 5e-324` is infinite as a float. `slack`: rows the
    test part may get beyond its share (whole-row rounding of train and val gives it up to
    2), for a bound that is never above the answer."""
    train, val = Fraction(config.train_fraction), Fraction(config.val_fraction)
    need = config.lookback + horizon
    test = max(horizon - slack, 0) / (1 - train - val)
    return {"train": need / train, "val": horizon / val, "test": test}


# Rows counted up one at a time before jumping to where every share surely holds its rows.
_STEPS_MAX = 1_000


def rows_for_one_window_each(config: SplitConfig, horizon: int) -> int:
    """The fewest rows a series needs so that each of its parts holds one window of
    lookback + horizon rows (val and test read `lookback` rows of context before their
    span): for "fractions", the val share is usually what decides (with 0.1 of the rows as
    val, a 96-step horizon needs 960 rows). Loaded with this as min_length, a series that
    could not be split into windows is refused, or left out with on_short="drop", by the
    loader, naming it, instead of failing later at the windows. Other methods: one window."""
    need = config.lookback + horizon
    if config.method != "fractions":
        return need
    # Each part's share of the rows must hold its own span (val and test read `lookback` rows
    # of context): a bound a few rows below the answer; whole-row rounding decides the rest.
    # The test share counts too: left out, train_fraction 0.7 and val_fraction 0.2999999
    # were counted up to from ~500 rows one row at a time, for hours (51 s at 0.29999).
    lowest = _share_bounds(config, horizon, slack=2).values()
    rows = max(need, *(math.floor(bound) for bound in lowest))
    rows = max(rows - 2, need)
    if rows > _ROWS_PLANNED_MAX:  # no file holds them: the bound is the answer
        return rows
    # a sliver of a share (a test share of 1e-7) leaves 2 / share rows between the lowest
    # bound and the rows that surely hold a window: past _STEPS_MAX, go to the latter
    surely = math.ceil(max(_share_bounds(config, horizon).values()))
    steps = 0
    while True:
        try:
            plan = plan_split(rows, "h", config)
        except SplitError:
            plan = None
        if plan is not None and all(
            span.stop - span.input_start >= need for span in (plan.train, plan.val, plan.test)
        ):
            return rows
        rows += 1
        steps += 1
        if steps == _STEPS_MAX and rows < surely:
            rows = surely


def deciding_parts(config: SplitConfig, horizon: int) -> tuple[str, ...]:
    """The parts of a "fractions" split ("train", "val", "test") whose share of the rows sets
    `rows_for_one_window_each`: those that hold no window at one row fewer. () when one window
    (lookback + horizon) is the floor, or for the other methods."""
    need = config.lookback + horizon
    rows = rows_for_one_window_each(config, horizon) - 1
    if config.method != "fractions" or rows < need:
        return ()
    if rows >= _ROWS_PLANNED_MAX:  # not planned row by row: the share that set the bound
        bounds = _share_bounds(config, horizon)
        return tuple(part for part, bound in bounds.items() if bound == max(bounds.values()))
    n_train = int(rows * config.train_fraction)
    n_val = int(rows * config.val_fraction)
    held = {"train": n_train, "val": n_val + config.lookback}
    held["test"] = rows - n_train - n_val + config.lookback
    return tuple(part for part, n in held.items() if n < need)


def series_roles(
    series_ids: list[str], config: SplitConfig, *, dropped: frozenset[str] = frozenset()
) -> dict[str, SeriesRole]:
    """The "series" split: the first train_fraction of the series in id order train, the next
    val_fraction validate, the rest are the test units. Ids compare with their digits as
    numbers (unit 9 before unit 10), so numbered units are held out from the highest numbers:
    the newest units of a fleet numbered as it grew. Named `test_series` (and `val_series`)
    replace that order: the named units are held out, and without `val_series` the last
    val_fraction of the others in id order validate."""
    series_ids = sorted(series_ids, key=natural_key)
    if config.method == "unseen":
        return dict.fromkeys(series_ids, "test")
    if config.test_series:
        return _named_roles(series_ids, config, dropped)
    n = len(series_ids)
    n_train = int(n * config.train_fraction)
    n_val = int(n * config.val_fraction)
    n_test = n - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise SplitError(
            f"the 'series' split holds out whole series: {n:,} series split {n_train:,} / "
            f"{n_val:,} / {n_test:,} (train_fraction={config.train_fraction}, val_fraction="
            f"{config.val_fraction}); every part needs a series, so give it at least "
            f"{_fewest_series(config):,} series or split by time ('fractions')"
        )
    counts: tuple[tuple[SeriesRole, int], ...] = (("train", n_train), ("val", n_val))
    roles: list[SeriesRole] = [role for role, k in counts for _ in range(k)]
    roles += ["test"] * n_test
    return dict(zip(series_ids, roles, strict=True))


def _named_roles(
    series_ids: list[str], config: SplitConfig, dropped: frozenset[str]
) -> dict[str, SeriesRole]:
    known = set(series_ids)
    for name in ("test_series", "val_series"):
        unknown = [sid for sid in getattr(config, name) if sid not in known]
        if unknown:
            held = ", ".join(map(repr, series_ids[:10])) + (" ..." if len(series_ids) > 10 else "")
            gone = [sid for sid in unknown if sid in dropped]
            why = (  # in the file, but left out by the loader: not a typo
                f"; {', '.join(map(shown, gone[:5]))} left out by the loader as too short "
                "(on_short='drop')"
                if gone
                else ""
            )
            spaced = [sid for sid in series_ids if sid != sid.strip() and sid.strip() in unknown]
            if spaced:  # the command line strips the names of its lists: --config does not
                why += (
                    f"; {', '.join(map(repr, spaced[:5]))} begins or ends with a space: name it "
                    f"with the space (--{name.replace('_', '-')} strips each name; a --config "
                    f'file, {{"train": {{"{name}": [...]}}}}, keeps it)'
                )
            why += _comma_ids_hint(name, unknown, series_ids)
            raise NamedSeriesError(
                f"{name} names {len(unknown):,} series the data does not hold "
                f"({', '.join(map(shown, unknown[:5]))}{' ...' if len(unknown) > 5 else ''}){why}; "
                f"its {len(series_ids):,} series are {held}",
                option=name,
            )
    roles: dict[str, SeriesRole] = dict.fromkeys(series_ids, "train")
    roles.update(dict.fromkeys(config.test_series, "test"))
    if config.val_series:
        roles.update(dict.fromkeys(config.val_series, "val"))
    else:
        rest = [sid for sid in series_ids if roles[sid] == "train"]
        n_val = max(1, int(len(series_ids) * config.val_fraction))
        roles.update(dict.fromkeys(rest[len(rest) - n_val :], "val"))
    n_train = sum(role == "train" for role in roles.values())
    if n_train < 1:
        raise NamedSeriesError(
            f"test_series and val_series hold out all {len(series_ids):,} series; at least one "
            "must be left to train on",
            option="test_series",
        )
    return roles


def _fewest_series(config: SplitConfig) -> int:
    n = 3
    while min(int(n * config.train_fraction), int(n * config.val_fraction)) < 1 or (
        n - int(n * config.train_fraction) - int(n * config.val_fraction) < 1
    ):
        n += 1
    return n


def plan_held_out(n_rows: int, lookback: int, role: SeriesRole) -> SplitPlan:
    """A whole series in one part. Val and test units keep their first `lookback` rows as the
    input context of their first window, as a time split's val and test spans do."""
    if role == "all":
        raise SplitError("plan_held_out places a series in one part: train, val or test")
    if n_rows <= lookback:
        raise SplitError(
            f"a held-out series needs more than lookback={lookback:,} rows, it has {n_rows:,}"
        )
    ctx = lookback
    if role == "train":
        train, val, test = Span(0, n_rows), Span(n_rows, n_rows, ctx), Span(n_rows, n_rows, ctx)
    elif role == "val":
        train, val, test = Span(0, 0), Span(ctx, n_rows, ctx), Span(n_rows, n_rows, ctx)
    else:
        train, val, test = Span(0, 0), Span(ctx, ctx, ctx), Span(ctx, n_rows, ctx)
    return SplitPlan(n_rows, lookback, train, val, test, role=role)


def _plan_tail(n_rows: int, config: SplitConfig) -> SplitPlan:
    assert config.val_rows is not None and config.test_rows is not None  # SplitConfig checks
    n_val, n_test = config.val_rows, config.test_rows
    available = n_rows - n_val - n_test
    if available < config.lookback:
        raise SplitError(
            f"the tail split needs at least test_rows + val_rows + lookback = {n_test:,} + "
            f"{n_val:,} + {config.lookback:,} rows (train must hold at least lookback rows); "
            f"the series has {n_rows:,}"
        )
    cap = config.max_train_rows
    n_train = available if cap is None else min(available, cap)
    if n_train < config.lookback:
        raise SplitError(
            f"max_train_rows={cap:,} leaves a train span shorter than lookback={config.lookback:,}"
        )
    val_start, test_start = available, available + n_val
    return SplitPlan(
        n_rows=n_rows,
        lookback=config.lookback,
        train=Span(available - n_train, available),
        val=Span(val_start, test_start, context=config.lookback),
        test=Span(test_start, n_rows, context=config.lookback),
    )


def _rows_per_ett_month(freq: str) -> int:
    step = fixed_step(freq)
    rows = ETT_MONTH / step if step is not None else math.nan
    if not float(rows).is_integer():
        raise SplitError(
            f"the ETT split counts months as 30 days and needs a fixed step that divides them "
            f"(e.g. 'h', '15min'), got freq {freq!r}"
        )
    return int(rows)


@dataclass(frozen=True)
class SeriesSplit:
    """One series cut by a plan. `val` and `test` begin with `plan.lookback` context rows (input
    only); their own rows follow."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    plan: SplitPlan


def split_series(frame: pd.DataFrame, plan: SplitPlan) -> SeriesSplit:
    if len(frame) != plan.n_rows:
        raise SplitError(f"the plan is for {plan.n_rows:,} rows, the frame has {len(frame):,}")

    def part(span: Span) -> pd.DataFrame:
        # an empty span (a series held out for another part) is an empty frame, context and all
        return frame.iloc[span.input_start : span.stop] if len(span) else frame.iloc[0:0]

    return SeriesSplit(
        train=frame.iloc[plan.train.start : plan.train.stop],
        val=part(plan.val),
        test=part(plan.test),
        plan=plan,
    )


def split_data(data: LoadedData, config: SplitConfig) -> dict[str, SeriesSplit]:
    """Every series of `data` split by `config` (a plan per series, from its own length; under
    the "series" split, from its place among the series; a series cut at a long gap, from its
    segments' rows together: `plan_cut_series`)."""
    return {series_id: split_series(frame, plan) for series_id, frame, plan in _plans(data, config)}


def cut_series(data: LoadedData) -> dict[str, list[str]]:
    """The series cut at a long gap (on_long_gap="split") into several segments that were
    kept -> their ids, in time order. One kept segment is one stretch of its series, as an
    uncut series is (the loader holds it to min_length), and is not listed."""
    out: dict[str, list[str]] = {}
    for sid in data.series:
        if data.unit_of(sid) != sid:
            out.setdefault(data.unit_of(sid), []).append(sid)
    return {
        unit: sorted(ids, key=lambda sid: data.series[sid].index[0])
        for unit, ids in out.items()
        if len(ids) > 1
    }


def plan_cut_series(
    sizes: list[int], freq: str, config: SplitConfig
) -> tuple[SplitPlan, list[SplitPlan]]:
    """A split by time of a series cut at a long gap into segments of `sizes` rows (in time
    order): the plan of their rows together, and each segment's plan (role "segment").

    The borders are drawn once for the whole series, as `plan_split` draws them for a series
    of sum(sizes) rows: the same fractions (or ETT months, tail rows) of its observed rows,
    the gap's missing rows not counted. Shared borders are what keep time order across the
    gap: split segment by segment, a later segment's training rows would come after an
    earlier one's test rows, and the model (and the train-only scaler) would read the
    series' future. Each segment then holds the rows of each part that fall inside it:

    - train: its share of the train rows, kept if it holds one window (lookback + horizon
      rows), since train windows read train rows only;
    - val, test: its share, read with the `lookback` rows before it in the same segment as
      context (the gap is never crossed); where the share begins less than `lookback` rows
      into the segment, its first rows up to row `lookback` become context only. Kept if
      `horizon` rows are left to forecast.

    A share too short for a window is left unused (an empty span): so every part's targets
    come after the previous part's in time, and no window spans the gap."""
    whole = plan_split(sum(sizes), freq, config)
    plans = []
    offset = 0
    for n_rows in sizes:
        plans.append(_segment_plan(whole, offset, n_rows, config))
        offset += n_rows
    return whole, plans


def _segment_plan(whole: SplitPlan, offset: int, n_rows: int, config: SplitConfig) -> SplitPlan:
    lookback, horizon = config.lookback, config.horizon

    def inside(span: Span) -> tuple[int, int]:  # the span's rows in this segment, its positions
        return (min(max(span.start - offset, 0), n_rows), min(max(span.stop - offset, 0), n_rows))

    start, stop = inside(whole.train)
    train = Span(start, stop) if stop - start >= lookback + horizon else Span(0, 0)
    evaluated: list[Span] = []
    placed = train.stop  # where an empty span goes: after what came before it, in order
    for span in (whole.val, whole.test):
        start, stop = inside(span)
        start = max(start, lookback)  # the context comes from this segment
        if stop - start >= horizon:
            evaluated.append(Span(start, stop, context=lookback))
        else:
            at = min(max(placed, lookback), n_rows)
            evaluated.append(Span(at, at, context=lookback))
        placed = evaluated[-1].stop
    val, test = evaluated
    return SplitPlan(n_rows, lookback, train, val, test, role="segment")


def _plans(data: LoadedData, config: SplitConfig) -> list[tuple[str, pd.DataFrame, SplitPlan]]:
    if config.method in HELD_OUT_METHODS:
        # roles go to units: the segments of a series cut at a long gap stay together
        dropped = frozenset(d.subject for d in data.report if d.step == "drop")
        roles = series_roles(
            sorted({data.unit_of(sid) for sid in data.series}), config, dropped=dropped
        )
        return [
            (sid, frame, plan_held_out(len(frame), config.lookback, roles[data.unit_of(sid)]))
            for sid, frame in data.series.items()
        ]
    plans: dict[str, SplitPlan] = {}
    wholes: dict[str, SplitPlan] = {}
    cut = cut_series(data)
    for unit, ids in cut.items():
        sizes = [len(data.series[sid]) for sid in ids]
        try:
            wholes[unit], pieces = plan_cut_series(sizes, data.freq, config)
        except SplitError as error:
            raise SplitError(
                f"{series_named(unit)}, cut at a long gap into {len(ids)} segments "
                f"({_segments_shown(data, ids)}), is split by time as one series of their "
                f"{sum(sizes):,} rows together: {error}"
            ) from None
        plans.update(zip(ids, pieces, strict=True))
    for sid, frame in data.series.items():
        if sid not in plans:
            plans[sid] = plan_split(len(frame), data.freq, config)
    for part in PART_NAMES:
        # plan_split gives every part of a whole series rows: only cut series can leave a
        # part empty everywhere
        if not any(len(getattr(plan, part)) for plan in plans.values()):
            unit, ids = next(iter(cut.items()))
            raise CutSeriesError(_no_window_message(data, config, part, unit, ids, wholes[unit]))
    return [(sid, frame, plans[sid]) for sid, frame in data.series.items()]


def _segments_shown(data: LoadedData, ids: list[str]) -> str:
    shown = [
        f"{sid!r} {len(data.series[sid]):,} rows from {data.series[sid].index[0]} to "
        f"{data.series[sid].index[-1]}"
        for sid in ids[:4]
    ]
    return ", ".join(shown) + (f" and {len(ids) - 4:,} more" if len(ids) > 4 else "")


def _no_window_message(
    data: LoadedData, config: SplitConfig, part: str, unit: str, ids: list[str], whole: SplitPlan
) -> str:
    """Why a split by time of series cut at long gaps has no window of `part`, and the ways
    out (of the first such series; every series of the data is cut, or it would have one)."""
    lookback, horizon = config.lookback, config.horizon
    span: Span = getattr(whole, part)
    stamps = pd.DatetimeIndex(np.concatenate([data.series[sid].index.to_numpy() for sid in ids]))
    holders, offset = [], 0
    for sid in ids:
        n_rows = len(data.series[sid])
        shared = min(span.stop, offset + n_rows) - max(span.start, offset)
        if shared > 0:
            holders.append(f"{sid!r} ({shared:,} of them)")
        offset += n_rows
    if part == "train":
        need = f"{lookback + horizon:,} rows (lookback + horizon = {lookback:,} + {horizon:,})"
    else:
        need = f"{plural(horizon, 'row')} (horizon) after {plural(lookback, 'row')} of context"
    ways = [
        "fill the gap (max_gap, --max-gap, at least its length; the data report names it), "
        "so that the series stays whole",
        "a shorter lookback or horizon (--lookback, --horizon)",
    ]
    if config.method == "fractions":
        if part == "test":
            ways.append("smaller train and val fractions (--train-fraction, --val-fraction)")
        else:
            ways.append(f"a larger {part}_fraction (--{part}-fraction)")
    elif config.method == "tail" and part != "train":
        ways.append(f"more {part}_rows")
    units = len({data.unit_of(sid) for sid in data.series})
    more = f" (and {units - 1:,} more series, all cut at long gaps)" if units > 1 else ""
    return (
        f"the split by time ({config.method!r}) leaves no {part} window in the data: series "
        f"{unit!r}{more} was cut at a long gap into {len(ids)} segments (on_long_gap='split': "
        f"{_segments_shown(data, ids)}) and is split as one series over their "
        f"{len(stamps):,} rows together; its {len(span):,} {part} rows, {stamps[span.start]} "
        f"to {stamps[span.stop - 1]}, lie in {', '.join(holders)}, and a {part} window needs "
        f"{need} inside one segment (no window spans a gap). Ways out: {'; '.join(ways)}"
    )


def cut_series_lines(
    data: LoadedData, splits: Mapping[str, SeriesSplit], config: SplitConfig
) -> list[str]:
    """For the data report: under a split by time, what each segment of a series cut at a long
    gap holds (plan_cut_series, with `config`, the split `splits` were made with), and why
    rows of it are unused: they lie outside the split's span (the ETT split's 20 months end
    before a longer series does), or its share of a part is too short for a window. Empty
    when no series was cut or the split holds out units."""
    lines = []
    for unit, ids in cut_series(data).items():
        if any(splits[sid].plan.role != "segment" for sid in ids if sid in splits):
            return []  # the "series" split: a cut series is held out whole (held_out_lines)
        sizes = [len(data.series[sid]) for sid in ids]
        whole, _ = plan_cut_series(sizes, data.freq, config)
        held, outside, offset = [], False, 0
        for sid, n_rows in zip(ids, sizes, strict=True):
            plan = splits[sid].plan
            kept = [p for p in PART_NAMES if len(getattr(plan, p))]
            stop = offset + n_rows
            # the rows of each part of the whole plan that fall in this segment
            shares = {
                p: max(0, min(getattr(whole, p).stop, stop) - max(getattr(whole, p).start, offset))
                for p in PART_NAMES
            }
            short = [f"{shares[p]:,} {p}" for p in PART_NAMES if shares[p] and p not in kept]
            before = max(0, min(whole.train.start, stop) - offset)
            after = max(0, stop - max(whole.test.stop, offset))
            outside = outside or bool(before or after)
            why = []
            if short:
                why.append(f"its {' and '.join(short)} rows too short for a window")
            for n, where in ((before, "before"), (after, "after")):
                if n:
                    every = "all its" if n == n_rows else f"{n:,}"
                    why.append(f"{every} rows {where} the split's span")
            if kept:
                text = ", ".join(f"{len(getattr(plan, p)):,} {p}" for p in kept)
                text += f" (unused: {'; '.join(why)})" if why else ""
            else:
                text = f"none ({'; '.join(why) or 'too short for a window'})"
            held.append(f"{shown(sid)} {text}")
            offset = stop
        span = f"; the split's span: {_span_shown(config, whole)}" if outside else ""
        lines.append(
            f"{series_named(unit)}, cut at a long gap into {len(ids)} segments, is split by "
            f"time as one series (borders drawn over their rows together; no window spans a gap); "
            f"rows per segment: {'; '.join(held)}{span}"
        )
    return lines


def _span_shown(config: SplitConfig, whole: SplitPlan) -> str:
    """The rows of a series (cut or not) that a split by time draws its parts from."""
    first, last, n_rows = whole.train.start, whole.test.stop, whole.n_rows
    if config.method == "ett":
        months = " + ".join(str(m) for m in ETT_MONTHS)
        return (
            f"the 'ett' split's {sum(ETT_MONTHS)} months ({months}), the first {last:,} of "
            f"the {n_rows:,} rows"
        )
    return f"rows {first + 1:,} to {last:,} of the {n_rows:,}"


def shortest_train_rows(data: LoadedData, config: SplitConfig) -> int:
    """Rows of the shortest history an in-sample MASE scale is taken from (from the plans
    alone): a training span, or a held-out unit's first `lookback` rows."""
    return shortest_train_span(data, config)[0]


def shortest_train_span(data: LoadedData, config: SplitConfig) -> tuple[int, str]:
    """`shortest_train_rows`, and the series it belongs to. A series cut at a long gap counts
    its longest training segment (a seasonal difference never spans the gap); one whose
    training rows hold no window, the first `lookback` rows it forecasts from, as a held-out
    unit."""
    spans: list[tuple[int, str]] = []
    segments: dict[str, list[tuple[int, str]]] = {}
    for sid, _, plan in _plans(data, config):
        if plan.role == "segment":
            segments.setdefault(data.unit_of(sid), []).append((len(plan.train), sid))
        else:
            spans.append((len(plan.train) if len(plan.train) else plan.lookback, sid))
    for pieces in segments.values():
        rows, sid = max(pieces)
        spans.append((rows, sid) if rows else (config.lookback, pieces[0][1]))
    return min(spans)


# --- scaling ---------------------------------------------------------------------------------

ScalerScope = Literal["series", "global"]
SCALER_SCOPES: tuple[ScalerScope, ...] = ("series", "global")
GLOBAL = "*"  # the key of the one set of statistics of a "global" scaler
# A train std this small relative to the mean is a constant column: dividing by it would blow
# rounding noise up to huge values, so such a column is only centred (scale 1), as sklearn does.
# Relative to the values' own size only (no floor at 1): a current logged in amperes (27 pA as
# 2.7e-11, varying by 7e-12) is a moving series, not rounding noise, and with an absolute floor
# it was left unscaled, every window then flat to the model (a level-only forecast) and the
# report calling the target constant. The rounding noise of one repeated value is below 1e-15
# of it (float64's std of up to 2 million copies: 5.6e-16 at worst), so 1e-12 leaves a wide
# margin, and a meter reading on a large level moves: ETTh1 OT + 1e12 (std 8e-12 of the level,
# still held to 1e-4 by float64) was called constant at 1e-10.
CONSTANT_TOLERANCE = 1e-12


@dataclass(frozen=True)
class ColumnScale:
    mean: float
    scale: float  # the divisor: the train standard deviation (ddof=0), or 1.0 if constant


@dataclass(frozen=True)
class StandardScaler:
    """z = (x - mean) / scale per column; per series (`scope="series"`) or one set for all
    series (`scope="global"`, which can also scale series it never saw, e.g. at serving time)."""

    columns: tuple[str, ...]
    scope: ScalerScope
    stats: Mapping[str, Mapping[str, ColumnScale]]  # series id (or GLOBAL) -> column -> scale

    @classmethod
    def fit(
        cls,
        splits: Mapping[str, SeriesSplit],
        *,
        scope: ScalerScope = "series",
        units: Mapping[str, str] | None = None,
    ) -> "StandardScaler":
        """Statistics from the train frames only: the one place they are computed. `units`
        (LoadedData.units): the segments of a series cut at a long gap share the statistics
        of their train frames together, under each segment's id (a segment may hold no train
        rows of its own: training.split.plan_cut_series)."""
        if scope not in SCALER_SCOPES:
            raise InvalidOptionError(not_one_of("scope", scope, SCALER_SCOPES))
        if not splits:
            raise ScalerError("no series to fit on")
        trains = {series_id: split.train for series_id, split in splits.items()}
        unit_of = {sid: (units or {}).get(sid, sid) for sid in trains}
        by_unit: dict[str, list[pd.DataFrame]] = {}
        for series_id, train in trains.items():
            by_unit.setdefault(unit_of[series_id], [])
            if not train.empty:
                by_unit[unit_of[series_id]].append(train)
        held_out = [unit for unit, frames in by_unit.items() if not frames]
        if held_out and scope == "series":
            segments = [sid for sid in splits if unit_of[sid] == held_out[0]]
            cut = any(splits[sid].plan.role == "segment" for sid in segments)
            why = "in any of its segments" if cut else "(held out by the 'series' split)"
            raise ScalerError(
                f"series {held_out[0]!r} has no training rows {why}, so no statistics of its "
                "own; use scope 'global'"
            )
        columns = tuple(str(c) for c in next(iter(trains.values())).columns)
        for series_id, train in trains.items():
            if tuple(str(c) for c in train.columns) != columns:
                raise ScalerError(
                    f"{series_named(series_id)} has columns {list(train.columns)}, "
                    f"the first series {list(columns)}"
                )
        if scope == "series":
            scales = {unit: _column_scales(pd.concat(frames)) for unit, frames in by_unit.items()}
            for unit, by_column in scales.items():
                _check_finite_scales(
                    by_column, {s: t for s, t in trains.items() if unit_of[s] == unit}
                )
            stats = {series_id: scales[unit_of[series_id]] for series_id in trains}
        else:
            stats = {GLOBAL: _column_scales(pd.concat([t for t in trains.values() if not t.empty]))}
            _check_finite_scales(stats[GLOBAL], trains)
        return cls(columns=columns, scope=scope, stats=stats)

    def transform(self, series_id: str, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            self.transform_values(series_id, frame), index=frame.index, columns=frame.columns
        )

    def transform_values(self, series_id: str, frame: pd.DataFrame) -> np.ndarray:
        """`transform(series_id, frame)`'s values (T, C) without the frame around them: the
        windows read only these, and a DataFrame per part of each series was a fifth of the
        preparation of a fleet of short series."""
        mean, scale = self._arrays(series_id, frame.columns)
        values: np.ndarray = (frame.to_numpy(dtype=np.float64) - mean) / scale  # (T, C)
        return values

    def inverse_transform(self, series_id: str, frame: pd.DataFrame) -> pd.DataFrame:
        mean, scale = self._arrays(series_id, frame.columns)
        values = frame.to_numpy(dtype=np.float64) * scale + mean  # (T, C)
        return pd.DataFrame(values, index=frame.index, columns=frame.columns)

    def inverse_values(self, series_id: str, column: str, values: np.ndarray) -> np.ndarray:
        """Un-scale a bare array of one column (e.g. a forecast of the target)."""
        mean, scale = self.column_stats(series_id, column)
        return np.asarray(values, dtype=np.float64) * scale + mean

    def column_stats(self, series_id: str, column: str) -> tuple[float, float]:
        """(mean, scale) of one column of a series: what `inverse_values` un-scales with."""
        mean, scale = self._arrays(series_id, [column])
        return float(mean[0]), float(scale[0])

    def transform_splits(self, splits: Mapping[str, SeriesSplit]) -> dict[str, SeriesSplit]:
        return {
            series_id: SeriesSplit(
                train=self.transform(series_id, split.train),
                val=self.transform(series_id, split.val),
                test=self.transform(series_id, split.test),
                plan=split.plan,
            )
            for series_id, split in splits.items()
        }

    def _arrays(self, series_id: str, columns: Any) -> tuple[np.ndarray, np.ndarray]:
        key = GLOBAL if self.scope == "global" else series_id
        if key not in self.stats:
            known = sorted(self.stats)
            shown = ", ".join(map(repr, known[:10])) + (" ..." if len(known) > 10 else "")
            raise UnknownSeriesError(
                f"no scaling statistics for {series_named(series_id)}; this per-series scaler was "
                f"fitted on {len(known)} series: {shown}"
            )
        by_column = self.stats[key]
        unknown = [str(c) for c in columns if str(c) not in by_column]
        if unknown:
            raise ScalerError(f"unknown column(s) {unknown}; the scaler has {list(self.columns)}")
        mean = np.array([by_column[str(c)].mean for c in columns])
        scale = np.array([by_column[str(c)].scale for c in columns])
        return mean, scale

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, for the model's config.json (loading it needs no pickle)."""
        return {
            "kind": "standard",
            "scope": self.scope,
            "columns": list(self.columns),
            "stats": {
                series_id: {c: {"mean": s.mean, "scale": s.scale} for c, s in by_column.items()}
                for series_id, by_column in self.stats.items()
            },
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> "StandardScaler":
        kind, scope = state.get("kind"), state.get("scope")
        if kind != "standard" or scope not in SCALER_SCOPES:
            raise ScalerError(
                f"expected kind 'standard' and scope one of {', '.join(map(repr, SCALER_SCOPES))}, "
                f"got {kind!r} and {scope!r}"
            )
        try:
            columns = tuple(str(c) for c in state["columns"])
            stats = {
                str(series_id): {
                    c: ColumnScale(float(by_column[c]["mean"]), float(by_column[c]["scale"]))
                    for c in columns
                }
                for series_id, by_column in state["stats"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ScalerError(f"malformed scaler state: {error!r}") from error
        for by_column in stats.values():
            for c, s in by_column.items():
                if not (math.isfinite(s.mean) and math.isfinite(s.scale) and s.scale > 0):
                    raise ScalerError(f"column {c!r}: mean and scale must be finite, scale > 0")
        return cls(columns=columns, scope=scope, stats=stats)


def _column_scales(train: pd.DataFrame) -> dict[str, ColumnScale]:
    values = train.to_numpy(dtype=np.float64)  # (T, C)
    with np.errstate(over="ignore", invalid="ignore"):  # refused by _check_finite_scales
        mean = values.mean(axis=0)
        std = values.std(axis=0)  # ddof=0, as sklearn's StandardScaler
    out = {}
    for c, column in enumerate(train.columns):
        constant = _is_constant(float(std[c]), float(mean[c]))
        out[str(column)] = ColumnScale(float(mean[c]), 1.0 if constant else float(std[c]))
    return out


def _check_finite_scales(
    by_column: Mapping[str, ColumnScale], trains: Mapping[str, pd.DataFrame]
) -> None:
    """NonFiniteValueError for a column whose training mean or std overflows float64: each
    cell is finite (the loader refuses inf), but one of 1e200 squares past 1.8e308. Such a
    std scaled every value to 0, the fit trained on flat windows (loss 0.0000), the flat-window
    line counted more windows than there were, and the run failed only once the model was
    saved ("mean and scale must be finite"), after the fit and its MLflow run."""
    for column, scale in by_column.items():
        if math.isfinite(scale.mean) and math.isfinite(scale.scale):
            continue
        largest, where = 0.0, ""
        for series_id, train in trains.items():
            if train.empty or column not in train.columns:
                continue
            values = train[column].to_numpy(dtype=np.float64)
            sizes = np.abs(values)
            at = int(np.nanargmax(sizes)) if not np.isnan(sizes).all() else -1
            if at >= 0 and sizes[at] >= abs(largest):
                largest = float(values[at])
                where = f"{series_named(series_id)} at {train.index[at]}"
        raise NonFiniteValueError(
            f"column {column!r}: its training values are too large for their mean and standard "
            "deviation to be computed in float64 (the largest in size, "
            f"{largest:.4g}, in {where}); "
            "values this large (a glitch, an error code, a unit error) cannot be trained on: "
            "leave such a cell empty (missing values are filled) or rescale the column"
        )


def _is_constant(std: float, mean: float) -> bool:
    return std <= CONSTANT_TOLERANCE * abs(mean)


def constant_in_training(
    splits: Mapping[str, SeriesSplit], *, pooled: bool = False
) -> dict[str, list[str]]:
    """Column -> the series whose training span holds one value in it (by the scaler's own
    test): a stuck sensor, or a target that never moves. `pooled`: the columns that hold one
    value over all training spans together, as a global scaler sees them (-> every series)."""
    trains = {sid: s.train for sid, s in splits.items() if not s.train.empty}
    groups: dict[str, tuple[pd.Index, np.ndarray]] = {
        sid: (train.columns, train.to_numpy(dtype=np.float64)) for sid, train in trains.items()
    }
    if pooled and trains:
        groups = {"*": _pooled(list(trains.values()))}
    out: dict[str, list[str]] = {}
    for key, (columns, values) in groups.items():
        mean, std = values.mean(axis=0), values.std(axis=0)
        for c, column in enumerate(columns):
            if _is_constant(float(std[c]), float(mean[c])):
                out[str(column)] = list(trains) if pooled else [*out.get(str(column), []), key]
    return out


def _pooled(frames: list[pd.DataFrame]) -> tuple[pd.Index, np.ndarray]:
    """The columns and float64 values of `frames` one after the other: their arrays joined
    where every frame has the same columns (a fleet: pd.concat of 2,000 short frames took a
    quarter of a second for the same values), pd.concat's alignment by name otherwise."""
    columns = frames[0].columns
    if all(frame.columns.equals(columns) for frame in frames):
        return columns, np.concatenate([frame.to_numpy(dtype=np.float64) for frame in frames])
    joined = pd.concat(frames)
    return joined.columns, joined.to_numpy(dtype=np.float64)
