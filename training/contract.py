"""What a registered forecaster promises the clients of the alias it holds: the quantity it
forecasts (its target), the steps it forecasts in (its frequency) and the covariates it was
trained with. Two versions of one contract answer the same requests with the same quantity;
a version of another one answers them with something else (bike counts where oil temperature
was asked for), whatever its score.

    changes = ForecastContract.of(champion).changes(ForecastContract.of(candidate))

The automatic promotion (`training.pipeline.compare_registered`) does not compare a champion
of another target or frequency with the new model, and keeps a champion whose covariates
differ (`served_requests_refused`); `urnn models promote` (training.registry_admin) refuses a
move across contracts unless told it is intended; the service (service.manager) says when the
alias it follows has moved to another one. One rule for all three, kept here.

Quantile levels, look-back, horizon and calendar features are not part of it: a version that
differs there forecasts the same quantity, and what it would refuse is said by
`served_requests_refused`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.validation import same_frequency, week_anchor


def same_steps(freq: str, other: str) -> bool:
    """Whether two frequencies step the same instants, as the service pairs a request's freq
    with the model's: one offset in two spellings ('h' and '60min'), or weeks anchored on a day
    and as many times 7 days ('W-SUN' and '7D', `week_anchor`)."""
    return same_frequency(freq, other) or week_anchor(freq, other) is not None


def _names(covariates: tuple[str, ...]) -> str:
    return f"[{', '.join(map(repr, covariates))}]" if covariates else "none"


@dataclass(frozen=True)
class ForecastContract:
    target: str
    freq: str  # a pandas offset alias
    covariates: tuple[str, ...]  # the ones the model knows (its data's), in its order

    @classmethod
    def of(cls, predictor: Any) -> ForecastContract:
        """A loaded ForecastPredictor's contract (its config.json's target, freq, covariates)."""
        return cls(
            target=str(predictor.target),
            freq=str(predictor.meta.get("freq")),
            covariates=tuple(str(c) for c in predictor.covariates),
        )

    def describe(self) -> str:
        """forecasts 'OT' at frequency 'h' with covariates ['HUFL', 'HULL']"""
        said = f"covariates {_names(self.covariates)}" if self.covariates else "no covariate"
        return f"forecasts {self.target!r} at frequency {self.freq!r} with {said}"

    def changes(self, new: ForecastContract) -> list[str]:
        """Each way `new` is another contract than this one, as "target 'OT' -> 'cnt'"; empty
        when it is the same. Covariates are compared by name: a request gives them by name,
        so their order is no change for a client."""
        found = []
        if new.target != self.target:
            found.append(f"target {self.target!r} -> {new.target!r}")
        if not same_steps(self.freq, new.freq):
            found.append(f"frequency {self.freq!r} -> {new.freq!r}")
        if set(new.covariates) != set(self.covariates):
            found.append(f"covariates {_names(self.covariates)} -> {_names(new.covariates)}")
        return found
