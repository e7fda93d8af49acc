"""The stopping rule of the search, used by each cycle's analysis and by a resumed run.

A search is converged after a cycle when the energies of the top ``n_top_clusters`` clusters moved
less than ``energy_tolerance`` since the previous cycle, the previous ensemble predicted this
cycle's low-energy labels within ``max_prediction_error`` before it was retrained on them, the
best cluster's representative sits at a minimum that an ensemble converged it to with low
uncertainty (this cycle, or an earlier one if it has not moved since: a retrained ensemble that
stops it as uncertain before its first step leaves it there), and at least ``min_cycles`` cycles
ran. It stops when converged or after ``max_cycles`` cycles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crysal_flows.config import AnalysisConfig

__all__ = ["Decision", "StoppingRule"]


@dataclass
class Decision:
    """What the rule says after a cycle."""

    converged: bool
    stop: bool
    top_energy_change: float | None  # eV/atom, None in the first cycle
    reason: str  # "converged: ...", "stopped at max_cycles=...: ..." or "continue: ..."


@dataclass
class StoppingRule:
    """The stopping criterion of ``config`` (an ``analysis:`` section)."""

    config: AnalysisConfig

    @staticmethod
    def energy_change(previous: Sequence[float] | None, top: Sequence[float]) -> float | None:
        """Largest change of the top cluster energies, compared rank by rank."""
        if not previous or not top:
            return None
        n = min(len(previous), len(top))
        return float(max(abs(a - b) for a, b in zip(previous[:n], top[:n], strict=True)))

    def stops(self, converged: bool, cycles_done: int) -> bool:
        """Whether the search ends after ``cycles_done`` cycles: converged, or max_cycles."""
        return converged or cycles_done >= self.config.max_cycles

    def decide(
        self,
        top: Sequence[float],
        previous_top: Sequence[float] | None,
        prediction_mae: float | None,
        best_reliable: bool,
        cycles_done: int,
    ) -> Decision:
        """Apply the rule after a cycle.

        Parameters
        ----------
        top, previous_top
            Energies (eV/atom) of the top clusters after this cycle and after the previous one.
        prediction_mae
            The previous ensemble's error on this cycle's low-energy labels (None: no such label).
        best_reliable
            Whether the best cluster's representative sits at a minimum an ensemble converged it
            to with low uncertainty (``Candidate.at_confirmed_minimum``).
        cycles_done
            Cycles finished, this one included.
        """
        cfg = self.config
        change = self.energy_change(previous_top, top)
        stable = change is not None and change <= cfg.energy_tolerance
        accurate = prediction_mae is not None and prediction_mae <= cfg.max_prediction_error
        converged = stable and accurate and best_reliable and cycles_done >= cfg.min_cycles
        reasons = ", ".join(
            [
                f"top-{cfg.n_top_clusters} energies moved "
                + ("n/a" if change is None else f"{change * 1000:.1f} meV/atom"),
                "prediction MAE "
                + ("n/a" if prediction_mae is None else f"{prediction_mae * 1000:.1f} meV/atom"),
            ]
        )
        if converged:
            reason = f"converged: {reasons}"
        elif cycles_done >= cfg.max_cycles:
            reason = f"stopped at max_cycles={cfg.max_cycles}: {reasons}"
        else:
            reason = f"continue: {reasons}"
        return Decision(
            converged=converged,
            stop=self.stops(converged, cycles_done),
            top_energy_change=change,
            reason=reason,
        )
