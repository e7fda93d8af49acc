"""Output documents of the cycle analysis."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pymatgen.core import Structure

from crysal_flows.mson import MSONModel
from crysal_flows.schemas import SearchState

__all__ = ["ClusterDocument", "CycleSummary", "DeepLabelDocument", "ResumePoint"]


class ClusterDocument(BaseModel):
    """One low-energy cluster of the pool."""

    rank: int = Field(..., description="1 for the lowest-energy cluster.")
    representative: int = Field(..., description="Pool index of its lowest-energy member.")
    energy_per_atom: float = Field(..., description="Ensemble-mean energy of it, eV/atom.")
    size: int = Field(..., description="Candidates in the cluster.")
    reliable: bool = Field(
        ...,
        description="Representative converged with low uncertainty, this cycle or in an earlier "
        "one without moving since.",
    )
    stuck: bool = Field(
        False,
        description="Representative stopped as uncertain before its first step: this cycle's "
        "ensemble does not trust it where it lies.",
    )
    space_group: str = Field(..., description="Space group of the representative (tol 0.1 A).")
    label_distance: float | None = Field(
        None,
        description="Novel clusters: fingerprint distance of the representative from the "
        "nearest label.",
    )


class DeepLabelDocument(BaseModel):
    """A labelled structure well below the best the relaxed pool reaches (validation.n_labels)."""

    key: str = Field(..., description="The label's key.")
    cycle: int = Field(..., description="Cycle that selected it.")
    reason: str = Field("", description="Why it was selected.")
    energy_per_atom: float = Field(..., description="Its oracle energy, eV/atom.")
    below_best: float = Field(
        ..., description="How far it lies below the best cluster's predicted energy, eV/atom."
    )
    structure: Structure = Field(..., description="The labelled structure.")


MAX_STORED_ENERGIES = 1000


class ResumePoint(MSONModel):
    """Where the search goes on after a finished cycle: the next cycle, or validation."""

    pool: str = Field(..., description="UUID of the job whose output is the cycle's pool.")
    training_set: str = Field(..., description="UUID of the job of the cycle's training set.")
    ensemble: str = Field(..., description="UUID of the job of the cycle's ensemble.")
    n_members: int = Field(..., description="Members of that ensemble.")
    next_state: SearchState = Field(..., description="The state the next cycle starts from.")


class CycleSummary(BaseModel):
    """What one active-learning cycle did and found."""

    run_id: str = Field(..., description="Identifier of the search run.")
    name: str = Field(..., description="Run name.")
    cycle: int = Field(..., description="Cycle index.")
    oracle_single_points: int = Field(..., description="Oracle single points so far (all cycles).")
    failed_labels: int = Field(..., description="Failed oracle single points so far.")
    training_set_size: int = Field(..., description="Labels the ensemble was trained on.")
    prediction_mae: float | None = Field(
        None, description="Previous ensemble's MAE on this cycle's low-energy labels, eV/atom."
    )
    validation_rmse_energy: float | None = Field(
        None, description="Mean held-out RMSE of E/atom over members, eV/atom."
    )
    best_energy_per_atom: float | None = Field(None, description="Lowest pool energy, eV/atom.")
    status_counts: dict[str, int] = Field(..., description="Candidates per relaxation stop status.")
    sigma_force_median: float | None = Field(None, description="Median force spread, eV/A.")
    sigma_force_p90: float | None = Field(None, description="90th percentile force spread, eV/A.")
    sigma_force_quantiles: dict[str, float] = Field(
        default_factory=dict,
        description="Force spread over the pool at the 0, 5, 25, 50, 75, 95 and 100th "
        "percentiles, eV/A.",
    )
    energies: list[float] = Field(
        ...,
        description=f"The lowest {MAX_STORED_ENERGIES} pool energies per atom (finite ones), "
        "sorted; the summary stays small whatever the pool size.",
    )
    energy_quantiles: dict[str, float] = Field(
        default_factory=dict,
        description="Pool energy per atom at the 0, 5, 25, 50, 75, 95 and 100th "
        "percentiles, eV/atom.",
    )
    n_finite: int = Field(0, description="Candidates with a finite energy.")
    clusters: list[ClusterDocument] = Field(..., description="Low-energy clusters, best first.")
    novel_clusters: list[ClusterDocument] = Field(
        default_factory=list,
        description="The clusters validation takes beside the lowest (validation.n_novel), "
        "farthest from every label first.",
    )
    deep_labels: list[DeepLabelDocument] = Field(
        default_factory=list,
        description="Labels validation relaxes too (validation.n_labels): more than "
        "validation.label_margin below the best cluster's predicted energy, lowest first.",
    )
    top_energy_change: float | None = Field(
        None, description="Largest change of the top clusters' energies since the last cycle."
    )
    best_held_cycles: int = Field(
        0,
        description="Cycles in a row, this one included, whose best cluster's structure was "
        "already among the previous cycle's top clusters (analysis.best_held_cycles).",
    )
    converged: bool = Field(..., description="Whether the stopping criterion was met.")
    decision: str = Field(..., description="Why the search goes on or stops.")
    criterion: dict[str, float] = Field(
        default_factory=dict,
        description="The stopping rule's settings: energy_tolerance, max_prediction_error and "
        "held_max_prediction_error (eV/atom; the last left out when off), n_top_clusters, "
        "best_held_cycles, max_uncertain_fraction, min_cycles, max_cycles.",
    )
    stop: bool = Field(
        False,
        description="Whether the search stops after this cycle (converged or "
        "max_cycles) and goes on to validation.",
    )
    resume: ResumePoint | None = Field(
        None, description="What follows this cycle, and what a resumed run needs to go on after it."
    )
