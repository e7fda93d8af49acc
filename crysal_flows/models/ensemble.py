"""The ensemble: M MACE members evaluated together on batches of structures of one composition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms

from crysal_flows.models.checkpoint import decode
from crysal_flows.models.mace import graph_batch
from crysal_flows.models.prior import Prior

__all__ = ["Ensemble", "EnsemblePrediction", "load_ensemble"]


@dataclass
class EnsemblePrediction:
    """Ensemble predictions for a batch of structures (numpy, per member along axis 0)."""

    energy: np.ndarray  # (M, B) eV
    forces: np.ndarray  # (M, B, N, 3) eV/A  (all structures of one batch have N atoms)
    stress: np.ndarray  # (M, B, 3, 3) eV/A^3, ASE sign convention

    @property
    def mean_energy(self) -> np.ndarray:
        """Ensemble-mean energy per structure, eV."""
        return self.energy.mean(0)

    @property
    def mean_forces(self) -> np.ndarray:
        """Ensemble-mean forces, eV/A."""
        return self.forces.mean(0)

    @property
    def mean_stress(self) -> np.ndarray:
        """Ensemble-mean stress, eV/A^3."""
        return self.stress.mean(0)

    @property
    def sigma_energy(self) -> np.ndarray:
        """Standard deviation of the energy over members, eV."""
        return self.energy.std(0)

    @property
    def sigma_force(self) -> np.ndarray:
        """Largest standard deviation of a force component over members, per structure, eV/A."""
        return self.forces.std(0).reshape(self.forces.shape[1], -1).max(1)

    def sigma_generalised_force(self, volumes: np.ndarray) -> np.ndarray:
        """Largest member spread of the generalised forces that a cell relaxation follows, eV/A.

        The larger of ``sigma_force`` and the spread of the cell's force (``volume * stress /
        n_atoms``, the virial per atom, as in ASE's ``UnitCellFilter``). In a symmetric cell the
        atomic forces vanish by symmetry in every member, so only the cell term can show that
        the members disagree there.
        """
        n_atoms = self.forces.shape[2]
        cell = self.stress * np.asarray(volumes, dtype=float)[None, :, None, None] / n_atoms
        sigma_cell = cell.std(0).reshape(cell.shape[1], -1).max(1)
        return np.maximum(self.sigma_force, sigma_cell)


class Ensemble:
    """M MACE members evaluated together on batches of structures of one composition.

    With a ``prior``, every member's prediction is the prior's plus the member's own (the
    members learned the difference); the prior is evaluated once per batch for all of them.
    Without members, the ensemble is the prior alone and its spread is zero.
    """

    def __init__(
        self,
        models: Sequence[torch.nn.Module],
        hypers: Sequence[dict[str, Any]],
        device: str = "cpu",
        prior: Prior | None = None,
    ) -> None:
        if not models and prior is None:
            raise ValueError("an ensemble needs at least one model, or a prior")
        self.device = device
        self.prior = prior
        self.models = [m.to(device).eval() for m in models]
        for m in self.models:
            for p in m.parameters():
                p.requires_grad_(False)
        self.z_table = list(hypers[0]["z_table"]) if hypers else []
        self.r_max = float(max(h["r_max"] for h in hypers)) if hypers else 0.0
        trained_on = {h.get("prior") for h in hypers}
        if models and trained_on != {prior.identity if prior else None}:
            raise ValueError(
                f"members trained on the prior {sorted(map(str, trained_on))} "
                f"cannot be used with {prior.identity if prior else 'no prior'}"
            )

    @classmethod
    def from_checkpoints(
        cls,
        checkpoints: Sequence[tuple[str, str | None]],
        device: str = "cpu",
        prior: Prior | None = None,
    ) -> Ensemble:
        """Load an ensemble from ``(checkpoint, sha256)`` pairs."""
        loaded = [decode(c, s) for c, s in checkpoints]
        return cls([m for m, _ in loaded], [h for _, h in loaded], device=device, prior=prior)

    def __len__(self) -> int:
        return len(self.models)

    def predict(self, atoms_list: Sequence[Atoms]) -> EnsemblePrediction:
        """Evaluate every member on a batch of structures with the same number of atoms."""
        n_struct, n_atoms = len(atoms_list), len(atoms_list[0])
        base = self.prior.predict(atoms_list) if self.prior is not None else None
        energies, forces, stresses = [], [], []
        if self.models:
            batch = graph_batch(atoms_list, self.z_table, self.r_max, device=self.device)
        for model in self.models:
            data = {k: v.clone() if v.is_floating_point() else v for k, v in batch.items()}
            out = model(data, training=False, compute_force=True, compute_stress=True)
            energies.append(out["energy"].detach().cpu().numpy())
            forces.append(out["forces"].detach().cpu().numpy().reshape(n_struct, n_atoms, 3))
            stresses.append(out["stress"].detach().cpu().numpy().reshape(n_struct, 3, 3))
        if base is None:
            return EnsemblePrediction(np.stack(energies), np.stack(forces), np.stack(stresses))
        if not self.models:  # the prior alone
            return EnsemblePrediction(base.energy[None], base.forces[None], base.stress[None])
        return EnsemblePrediction(
            np.stack(energies) + base.energy[None],
            np.stack(forces) + base.forces[None],
            np.stack(stresses) + base.stress[None],
        )


def load_ensemble(ensemble: Any, device: str | None = None) -> Ensemble:
    """Load the members of an ``EnsembleDocument`` (checksums verified), on its prior if any."""
    from crysal_flows.models.prior import get_prior
    from crysal_flows.settings import SETTINGS

    device = device or SETTINGS.device
    prior = get_prior(ensemble.prior, device) if getattr(ensemble, "prior", None) else None
    return Ensemble.from_checkpoints(
        [(m.checkpoint, m.sha256) for m in ensemble.members], device=device, prior=prior
    )
