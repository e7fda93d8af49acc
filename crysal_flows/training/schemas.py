"""Output documents of ensemble training."""

from __future__ import annotations

from pydantic import BaseModel, Field

from crysal_flows.config import PriorConfig

__all__ = ["EnsembleDocument", "MemberDocument"]


class MemberDocument(BaseModel):
    """One trained MACE member. ``checkpoint`` goes to the ``data`` store."""

    cycle: int = Field(..., description="Cycle it was trained in.")
    member: int = Field(..., description="Index within the ensemble.")
    seed: int = Field(..., description="Seed of its initialisation, split and data order.")
    warm_started: bool = Field(..., description="Whether it started from the previous member.")
    checkpoint: str = Field(..., description="base64 of the torch checkpoint (hyper + weights).")
    sha256: str = Field(..., description="SHA-256 of the checkpoint bytes.")
    n_parameters: int = Field(..., description="Trainable parameters.")
    n_train: int = Field(..., description="Training structures.")
    n_validation: int = Field(..., description="Held-out structures.")
    epochs: int = Field(..., description="Epochs trained.")
    seconds: float = Field(..., description="Training wall time, s.")
    train_rmse_energy: float = Field(..., description="Training RMSE of E/atom, eV/atom.")
    train_rmse_forces: float = Field(..., description="Training RMSE of force components, eV/A.")
    validation_rmse_energy: float | None = Field(None, description="Held-out RMSE of E/atom.")
    validation_rmse_forces: float | None = Field(None, description="Held-out force RMSE, eV/A.")
    lowest_label_energy_per_atom: float | None = Field(
        None, description="Lowest energy per atom among its training labels, eV/atom."
    )


class EnsembleDocument(BaseModel):
    """The ensemble of one cycle."""

    cycle: int = Field(..., description="Cycle it was trained in.")
    members: list[MemberDocument] = Field(..., description="Members that trained successfully.")
    n_requested: int = Field(..., description="Members asked for.")
    prior: PriorConfig | None = Field(
        None, description="The prior under the members (their predictions are corrections to it)."
    )

    @property
    def lowest_label_energy_per_atom(self) -> float | None:
        """Return the lowest label energy per atom the members were trained on (eV/atom)."""
        values = [
            m.lowest_label_energy_per_atom
            for m in self.members
            if m.lowest_label_energy_per_atom is not None
        ]
        return min(values) if values else None
