"""Output documents shared by several steps of the search."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field
from pymatgen.core import Structure

from crysal_flows.mson import MSONModel

__all__ = ["Candidate", "CandidateStatus", "SearchState"]


class CandidateStatus(StrEnum):
    """Where the last ML relaxation of a candidate stopped."""

    NEW = "new"
    CONVERGED = "converged"
    UNCERTAIN = "uncertain"
    MAX_STEPS = "max_steps"
    STALLED = "stalled"
    FAILED = "failed"
    NOT_RELAXED = "not_relaxed"  # its relaxation job did not complete this cycle


class Candidate(BaseModel):
    """One member of the pool: its current structure and what the ensemble says of it."""

    index: int = Field(..., description="Position in the pool, stable over the whole search.")
    origin: str = Field(..., description="How the candidate was generated.")
    space_group: int | None = Field(None, description="Space group it was generated in, if any.")
    structure: Structure = Field(
        ..., description="Current structure: the lowest-energy frame of the last ML relaxation."
    )
    final_structure: Structure | None = Field(
        None,
        description="Frame where the last relaxation stopped (for uncertain stops: where the "
        "ensemble disagreed, a good label).",
    )
    energy_per_atom: float | None = Field(
        None, description="Ensemble-mean energy per atom of the current structure, eV/atom."
    )
    sigma_energy: float | None = Field(
        None, description="Ensemble standard deviation of the energy per atom, eV/atom."
    )
    sigma_force: float | None = Field(
        None,
        description="Largest ensemble standard deviation of a generalised force component "
        "(atoms, and the cell's virial per atom) at the last frame, eV/A.",
    )
    max_force: float | None = Field(None, description="Largest generalised force at the end, eV/A.")
    status: CandidateStatus = Field(
        CandidateStatus.NEW, description="Where the relaxation stopped."
    )
    steps: int = Field(0, description="ML relaxation steps in the last cycle.")
    total_steps: int = Field(0, description="ML relaxation steps over all cycles.")
    converged_cycle: int | None = Field(
        None,
        description="The last cycle whose ensemble relaxed this candidate to convergence with "
        "low uncertainty, kept while the candidate has not moved since (later ensembles that "
        "stop it as uncertain before its first step leave it where it converged); None once "
        "it moves, or if it never converged.",
    )

    @property
    def at_confirmed_minimum(self) -> bool:
        """Whether the candidate sits where an ensemble converged it with low uncertainty."""
        return self.status == CandidateStatus.CONVERGED or self.converged_cycle is not None

    @property
    def stuck(self) -> bool:
        """Whether it stopped as uncertain before its first step (it stays put until labelled)."""
        return self.status == CandidateStatus.UNCERTAIN and self.steps == 0

    def may_be_novel(self, uncertain_too: bool) -> bool:
        """Whether it is a minimum to look at for novelty.

        Converged, or (``uncertain_too``) moved and then stopped as uncertain, at its last
        trusted frame.
        """
        return self.status == CandidateStatus.CONVERGED or (
            uncertain_too and self.status == CandidateStatus.UNCERTAIN and not self.stuck
        )


class SearchState(MSONModel):
    """The small state carried from one cycle to the next, and the run it belongs to."""

    run_id: str = Field("", description="Identifier of the search run.")
    started: float | None = Field(None, description="When the run started (Unix time).")
    init_models: list[tuple[str, str]] = Field(
        default_factory=list,
        description="Model files that cycle 0's members start from "
        "(training.init_models), each with its SHA-256, pinned when the search was built.",
    )
    cycle: int = Field(0, ge=0, description="Index of the cycle about to run.")
    n_labels: int = Field(0, description="Oracle single points so far (failed ones included).")
    n_failed_labels: int = Field(0, description="Oracle single points that failed so far.")
    stable_cycles: int = Field(
        0,
        description="Consecutive cycles, up to the last finished one, whose best cluster's "
        "structure was already among the previous cycle's top clusters "
        "(analysis.best_held_cycles).",
    )
    top_fingerprints: list[list[float]] = Field(
        default_factory=list,
        description="Fingerprints of the last finished cycle's top 10 cluster representatives.",
    )
    history: list[list[float]] = Field(
        default_factory=list,
        description="Per finished cycle: energies (eV/atom) of the top clusters.",
    )
    summaries: list[str] = Field(
        default_factory=list, description="UUIDs of the finished cycles' summary jobs, in order."
    )
