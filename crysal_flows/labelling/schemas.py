"""Output documents of oracle labelling and of the accumulated training set."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pymatgen.core import Structure

__all__ = ["LabelDocument", "TrainingSetDocument"]


class LabelDocument(BaseModel):
    """One oracle single point (or its failure)."""

    structure: Structure = Field(..., description="The (perturbed) structure that was labelled.")
    oracle: str = Field(..., description="Identity of the oracle and its settings.")
    cycle: int = Field(..., description="Cycle that selected the structure.")
    source_index: int | None = Field(None, description="Pool index of the candidate it came from.")
    reason: str = Field(
        "", description="Why it was selected: random, minimum, novel, score, uncertain or stuck."
    )
    success: bool = Field(..., description="Whether the label is usable for training.")
    error: str | None = Field(None, description="Why the label failed, if it did.")
    energy_only: bool = Field(
        False,
        description="Forces above training.max_force: the energy is trained on as a lower "
        "bound (the region lies at least this high), the forces and stress are not.",
    )
    note: str | None = Field(None, description="Why a successful label is energy-only.")
    energy: float | None = Field(None, description="Total energy, eV.")
    forces: list[list[float]] | None = Field(None, description="Forces, eV/A.")
    stress: list[list[float]] | None = Field(
        None, description="Stress tensor 3x3, eV/A^3, ASE sign convention (positive is tensile)."
    )
    predicted_energy_per_atom: float | None = Field(
        None, description="Ensemble-mean prediction before labelling, eV/atom (None in cycle 0)."
    )
    predicted_sigma_energy: float | None = Field(
        None, description="Ensemble spread of that prediction, eV/atom."
    )
    seconds: float = Field(0.0, description="Wall time of the oracle call.")
    key: str = Field(
        "",
        description="Hash of structure, oracle and settings: equal keys are the "
        "same calculation, so a label is never computed or trained on twice.",
    )
    prior: str | None = Field(
        None,
        description="Identity of the prior whose values on this structure are stored below "
        "(training.prior), if any: the members learn the label's difference to them.",
    )
    prior_energy: float | None = Field(None, description="The prior's energy, eV.")
    prior_forces: list[list[float]] | None = Field(None, description="The prior's forces, eV/A.")
    prior_stress: list[list[float]] | None = Field(
        None, description="The prior's stress, eV/A^3, ASE sign convention."
    )
    reused: bool = Field(
        False,
        description="Taken from an earlier identical calculation in the "
        "store (e.g. after a resumed run) instead of calling the oracle again.",
    )

    @property
    def energy_per_atom(self) -> float | None:
        """Oracle energy per atom, eV/atom."""
        return None if self.energy is None else self.energy / len(self.structure)


class TrainingSetDocument(BaseModel):
    """All successful labels up to a cycle. ``labels`` goes to the ``data`` store."""

    cycle: int = Field(..., description="Cycle whose labels were added last.")
    oracle: str | None = Field(None, description="Identity of the oracle of every label.")
    labels: list[LabelDocument] = Field(..., description="Successful labels, oldest first.")
    n_new: int = Field(..., description="Labels attempted in this cycle.")
    n_new_failed: int = Field(..., description="Labels of this cycle that failed.")
    failures: list[str] = Field(
        default_factory=list, description="Errors of this cycle's failures."
    )
    n_attempted_total: int = Field(..., description="Oracle single points attempted in all cycles.")
    n_failed_total: int = Field(..., description="Oracle single points that failed in all cycles.")
    prediction_mae: float | None = Field(
        None,
        description="MAE (eV/atom) of the previous ensemble on this cycle's score-ranked "
        "labels (reasons minimum, novel, score and uncertain: the low-energy end, not random or "
        "stuck "
        "picks). "
        "In cycle 0 on a prior, after removing prediction_offset.",
    )
    prediction_offset: float | None = Field(
        None,
        description="Cycle 0 on a prior: the mean of oracle minus prior energy per atom over the "
        "cycle's labels (eV/atom). Within one composition a constant per atom is only another "
        "energy zero (the members' E0s absorb it), so it is removed before the prior's "
        "prediction error and before its top clusters are compared with cycle 0's.",
    )
