"""Output documents of validation and the final report."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pymatgen.core import Structure

__all__ = [
    "FailedRelaxationDocument",
    "MinimumDocument",
    "OracleRelaxDocument",
    "ReportDocument",
    "SymmetryCheckDocument",
]


class OracleRelaxDocument(BaseModel):
    """One oracle relaxation (positions and cell)."""

    source_index: int | None = Field(None, description="Pool index of the relaxed candidate.")
    cluster_rank: int | None = Field(None, description="Rank of its cluster in the last cycle.")
    reference: str | None = Field(
        None,
        description="Label of the reference structure relaxed, "
        "for the report's reference energies (not a candidate).",
    )
    oracle: str = Field(..., description="Identity of the oracle.")
    success: bool = Field(..., description="Whether the relaxation ran (converged or not).")
    error: str | None = Field(None, description="Why it failed, if it did.")
    converged: bool = Field(False, description="Whether fmax was reached.")
    oracle_calls: int = Field(0, description="Oracle energy/force evaluations (ionic steps).")
    initial_structure: Structure = Field(..., description="Structure before the relaxation.")
    structure: Structure | None = Field(None, description="Relaxed structure.")
    energy_per_atom: float | None = Field(None, description="Oracle energy per atom, eV/atom.")
    predicted_energy_per_atom: float | None = Field(
        None, description="Ensemble energy of the initial structure, eV/atom."
    )
    seconds: float = Field(0.0, description="Wall time, s.")
    ensemble_hessian: bool = Field(
        False, description="Whether the relaxation started from the ensemble's Hessian."
    )
    symmetry_check_calls: int = Field(
        0,
        description="Oracle calls of the symmetry check (validation.symmetry_rattle), "
        "included in oracle_calls.",
    )
    stationary_energy_per_atom: float | None = Field(
        None,
        description="Where the first relaxation converged to a symmetric stationary point that "
        "was not a minimum (validation.symmetry_rattle): its energy, eV/atom; the relaxation "
        "went on from a rattled copy to ``energy_per_atom``.",
    )
    key: str | None = Field(
        None,
        description="Hash of the relaxation: starting structure, oracle, fmax, max_steps, "
        "symmetry check and starting Hessian.",
    )
    reused: bool = Field(
        False,
        description="Taken from the store: the same run had finished this relaxation before it "
        "was interrupted and resumed.",
    )


class SymmetryCheckDocument(BaseModel):
    """The symmetry check of one distinct validation minimum (validation.symmetry_rattle).

    Validation results that converged to the same minimum with symmetry are checked once, from
    the lowest of them; what the check finds stands for all of them.
    """

    relaxations: list[int] = Field(
        ...,
        description="Indices of the validation relaxations that converged to this minimum; the "
        "first was checked and is charged the check's oracle calls.",
    )
    oracle: str = Field(..., description="Identity of the oracle.")
    energy_per_atom: float = Field(..., description="The checked minimum's energy, eV/atom.")
    oracle_calls: int = Field(0, description="Oracle calls of the check.")
    lower: bool = Field(
        False,
        description="Whether the minimum was a symmetric stationary point that is not one: the "
        "rattled copy relaxed on lower.",
    )
    structure: Structure | None = Field(
        None, description="Where it relaxed on to (only where lower)."
    )
    lower_energy_per_atom: float | None = Field(
        None, description="The energy there, eV/atom (only where lower)."
    )
    converged: bool = Field(
        True, description="Whether the relaxation on from the rattled copy converged."
    )
    error: str | None = Field(
        None, description="Why the check failed, if it did (the minimum then stands)."
    )
    seconds: float = Field(0.0, description="Wall time, s.")
    key: str | None = Field(
        None, description="Hash of the check: minimum, oracle, settings and starting Hessian."
    )
    reused: bool = Field(
        False, description="Taken from the store: the same run had finished it before a resume."
    )


class MinimumDocument(BaseModel):
    """A distinct minimum found by the search."""

    rank: int = Field(..., description="1 for the lowest oracle energy.")
    structure: Structure = Field(..., description="Oracle-relaxed structure.")
    energy_per_atom: float = Field(..., description="Oracle energy per atom, eV/atom.")
    energy_above_best: float = Field(..., description="Above the lowest minimum, eV/atom.")
    predicted_energy_per_atom: float | None = Field(
        None, description="Ensemble prediction, eV/atom."
    )
    space_group_symbol: str = Field(..., description="Space group symbol (tolerance 0.1 A).")
    space_group_number: int = Field(..., description="Space group number.")
    matches: list[str] = Field(default_factory=list, description="Reference structures it matches.")
    structure_matches: list[str] = Field(
        default_factory=list,
        description="References whose structure it has but not their oracle energy (further "
        "than MATCH_ENERGY_TOL): a saddle of the same symmetry, or another basin.",
    )
    source_indices: list[int] = Field(..., description="Pool candidates that relaxed into it.")
    labels: list[str] = Field(
        default_factory=list,
        description="Keys of the labels that relaxed into it (validation.n_labels): a minimum "
        "no candidate of the pool predicted.",
    )
    symmetry_checked: bool | None = Field(
        None,
        description="Whether the symmetry check (validation.symmetry_rattle) covered this "
        "minimum; False: it has symmetry and was not checked (more than "
        "validation.symmetry_window above the lowest result, or its check failed), so it may be "
        "a saddle the symmetry holds. None: nothing to check, or the check was off.",
    )


class FailedRelaxationDocument(BaseModel):
    """A validation relaxation that failed or whose job did not complete."""

    cluster_rank: int | None = Field(
        None, description="Rank of the cluster whose representative it was (None: a label)."
    )
    source_index: int | None = Field(None, description="Pool index of that representative.")
    label: str | None = Field(
        None, description="Key of the label it started from (validation.n_labels), if one."
    )
    error: str = Field(..., description="What went wrong.")


class ReportDocument(BaseModel):
    """The final report of a search run."""

    run_id: str = Field(..., description="Identifier of the search run.")
    name: str = Field(..., description="Run name.")
    composition: str = Field(..., description="Cell composition.")
    oracle: str = Field(..., description="Identity of the oracle.")
    cycles: int = Field(..., description="Active-learning cycles run.")
    converged: bool = Field(..., description="Whether the stopping criterion ended the search.")
    oracle_single_points: int = Field(..., description="Oracle single points for labels.")
    failed_labels: int = Field(..., description="Of those, failed ones.")
    validation_steps: int = Field(..., description="Oracle calls of the validation relaxations.")
    symmetry_check_steps: int = Field(
        0,
        description="Of validation_steps, those of the symmetry check "
        "(validation.symmetry_rattle).",
    )
    oracle_cost: int = Field(..., description="Single points plus validation steps.")
    minima: list[MinimumDocument] = Field(..., description="Distinct minima, lowest first.")
    failed_relaxations: list[FailedRelaxationDocument] = Field(
        default_factory=list, description="Validation relaxations that failed (not in minima)."
    )
    references: dict[str, float | None] = Field(
        default_factory=dict,
        description="Oracle energy per atom of each reference structure "
        "relaxed with the oracle (not counted in the cost).",
    )
    found: list[str] = Field(default_factory=list, description="References matched by a minimum.")
    history: list[dict] = Field(
        default_factory=list,
        description="Per cycle: labels, best energy, clusters, top-energy change.",
    )
    seconds: float | None = Field(None, description="Wall time from pool generation to report, s.")
    packages: dict[str, str] = Field(
        default_factory=dict,
        description="Releases of the packages that shape the numbers, where the report was "
        "written (utils.PACKAGES); the same configuration repeats itself exactly only with "
        "the same ones.",
    )
