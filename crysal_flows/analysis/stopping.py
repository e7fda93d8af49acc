"""The stopping rule of the search, used by each cycle's analysis and by a resumed run.

A search is converged after a cycle, once at least ``min_cycles`` cycles ran, when either

- the energies of the top ``n_top_clusters`` clusters moved less than ``energy_tolerance`` since
  the previous cycle, the previous ensemble predicted this cycle's low-energy labels within
  ``max_prediction_error`` before it was retrained on them, and the best cluster's
  representative sits at a minimum that an ensemble converged it to with low uncertainty (this
  cycle, or an earlier one if it has not moved since: a retrained ensemble that stops it as
  uncertain before its first step leaves it there); or
- its best structure *held*: for ``best_held_cycles`` cycles in a row, the best cluster's
  structure was already among the previous cycle's top clusters (by fingerprint; cycle 0 of a
  search on a prior looks at the pool as the prior alone relaxed it), and this
  cycle's ensemble was not uncertain where the best representative lies: it converged it, or
  moved it at least one step before it stopped it as uncertain; or an ensemble of the cycles
  the structure held through converged it there. The ensemble's energies move
  with every retraining by about its error, tens of meV/atom at a few hundred labels, even
  where its ranking of the structures no longer changes; the structures are what the search is
  for. A best structure that the newest ensemble stops where it starts (*stuck*) is a guess in
  a region it does not know, whatever an ensemble before the streak thought of it
  (docs/benchmarks.md, "Stopping rules, replayed on finished searches" and "The held rule asks
  the newest ensemble").

The held structure does not converge a search whose previous ensemble predicted this cycle's
low-energy labels with a mean error above ``held_max_prediction_error``: the ensemble that ranks
the structure best is still far from the oracle where it matters (two Si16 searches stopped at 82
and 85 meV/atom and missed diamond; docs/benchmarks.md, "The twelve at the current search").

Neither converges a search while more than ``max_uncertain_fraction`` of the pool ended the cycle
uncertain: an ensemble that trusts almost none of the pool has not learnt it (docs/benchmarks.md,
"Al4O6 with the oxide anions kept 2.2 A apart").

It stops when converged or after ``max_cycles`` cycles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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

    def held(
        self,
        best: np.ndarray | None,
        previous_top: Sequence[Sequence[float]],
        held_before: int,
    ) -> int:
        """Cycles in a row, this one included, whose best structure was not new.

        ``best`` is the fingerprint of this cycle's best cluster, ``previous_top`` those of the
        previous cycle's top clusters, ``held_before`` the count after the previous cycle. A
        best structure farther than ``cluster_fingerprint_tolerance`` from each of them is new
        and starts the count again (at 0); so does a cycle without clusters or predecessors.
        """
        if best is None or not len(previous_top):
            return 0
        tol = self.config.cluster_fingerprint_tolerance
        known = any(
            len(p) == len(best) and float(np.linalg.norm(best - np.asarray(p))) < tol
            for p in previous_top
        )
        return held_before + 1 if known else 0

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
        held: int = 0,
        best_trusted: bool | None = None,
        uncertain_fraction: float | None = None,
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
        held
            Cycles in a row, this one included, whose best structure was not new (``held``).
        best_trusted
            Whether this cycle's ensemble converged the best cluster's representative or moved
            it before it stopped it as uncertain (not ``Candidate.stuck``), or an ensemble of the
            held cycles converged it there; None: as ``best_reliable``.
        uncertain_fraction
            The fraction of the pool that ended this cycle uncertain (None: not known).
        """
        cfg = self.config
        change = self.energy_change(previous_top, top)
        stable = change is not None and change <= cfg.energy_tolerance
        accurate = prediction_mae is not None and prediction_mae <= cfg.max_prediction_error
        best_held = cfg.best_held_cycles > 0 and held >= cfg.best_held_cycles
        if best_trusted is None:
            best = "best cluster converged" if best_reliable else "best cluster uncertain"
            best_trusted = best_reliable
        elif best_trusted:
            best = "best cluster converged" if best_reliable else "best cluster uncertain, moved"
        else:
            best = "best cluster stuck where it started" + (
                " (converged in an earlier cycle)" if best_reliable else ""
            )
        unlearnt = (
            uncertain_fraction is not None and uncertain_fraction > cfg.max_uncertain_fraction
        )
        mispredicted = (
            cfg.held_max_prediction_error is not None
            and prediction_mae is not None
            and prediction_mae > cfg.held_max_prediction_error
        )
        converged = (
            cycles_done >= cfg.min_cycles
            and not unlearnt
            and (
                (stable and accurate and best_reliable)
                or (best_held and best_trusted and not mispredicted)
            )
        )
        parts = [
            f"top-{cfg.n_top_clusters} energies moved "
            + ("n/a" if change is None else f"{change * 1000:.1f} meV/atom"),
            "prediction MAE "
            + ("n/a" if prediction_mae is None else f"{prediction_mae * 1000:.1f} meV/atom"),
        ]
        if cfg.best_held_cycles > 0:
            parts.append(
                f"best structure held {min(held, cfg.best_held_cycles)}/"
                f"{cfg.best_held_cycles} cycles"
            )
        parts.append(best)
        if best_held and best_trusted and mispredicted:
            parts.append(
                "held, but prediction MAE above held_max_prediction_error "
                f"{cfg.held_max_prediction_error * 1000:g} meV/atom"
            )
        if unlearnt:
            parts.append(
                f"{uncertain_fraction:.1%} of the pool uncertain "
                f"(> max_uncertain_fraction {cfg.max_uncertain_fraction:g})"
            )
        reasons = ", ".join(parts)
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
