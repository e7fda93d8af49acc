"""Output documents of selection."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pymatgen.core import Structure

__all__ = ["SelectedStructure", "SelectionDocument"]


class SelectedStructure(BaseModel):
    """A perturbed structure to label."""

    structure: Structure = Field(..., description="Perturbed structure sent to the oracle.")
    source_index: int = Field(..., description="Pool index of the candidate it came from.")
    reason: str = Field(
        ...,
        description="random, minimum (one of the pool's lowest minima), novel (a low-energy "
        "minimum unlike every label so far), score (low LAQA score), uncertain, or stuck "
        "(stopped as uncertain before its first step).",
    )
    score: float | None = Field(None, description="LAQA-like score of the candidate, eV/atom.")
    predicted_energy_per_atom: float | None = Field(
        None, description="Ensemble-mean energy per atom of the perturbed structure."
    )
    predicted_sigma_energy: float | None = Field(None, description="Its ensemble spread, eV/atom.")


class SelectionDocument(BaseModel):
    """The structures picked for labelling in one cycle."""

    cycle: int = Field(..., description="Cycle index.")
    rattle: float = Field(..., description="Rattle amplitude used, A.")
    structures: list[SelectedStructure] = Field(..., description="Structures to label.")
