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
    """M MACE models evaluated together on batches of structures of one composition."""

    def __init__(
        self,
        models: Sequence[torch.nn.Module],
        hypers: Sequence[dict[str, Any]],
        device: str = "cpu",
    ) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.device = device
        self.models = [m.to(device).eval() for m in models]
        for m in self.models:
            for p in m.parameters():
                p.requires_grad_(False)
        self.z_table = list(hypers[0]["z_table"])
        self.r_max = float(max(h["r_max"] for h in hypers))

    @classmethod
    def from_checkpoints(
        cls, checkpoints: Sequence[tuple[str, str | None]], device: str = "cpu"
    ) -> Ensemble:
        """Load an ensemble from ``(checkpoint, sha256)`` pairs."""
        loaded = [decode(c, s) for c, s in checkpoints]
        return cls([m for m, _ in loaded], [h for _, h in loaded], device=device)

    def __len__(self) -> int:
        return len(self.models)

    def predict(self, atoms_list: Sequence[Atoms]) -> EnsemblePrediction:
        """Evaluate every member on a batch of structures with the same number of atoms."""
        batch = graph_batch(atoms_list, self.z_table, self.r_max, device=self.device)
        n_struct, n_atoms = len(atoms_list), len(atoms_list[0])
        energies, forces, stresses = [], [], []
        for model in self.models:
            data = {k: v.clone() if v.is_floating_point() else v for k, v in batch.items()}
            out = model(data, training=False, compute_force=True, compute_stress=True)
            energies.append(out["energy"].detach().cpu().numpy())
            forces.append(out["forces"].detach().cpu().numpy().reshape(n_struct, n_atoms, 3))
            stresses.append(out["stress"].detach().cpu().numpy().reshape(n_struct, 3, 3))
        return EnsemblePrediction(np.stack(energies), np.stack(forces), np.stack(stresses))


def load_ensemble(ensemble: Any, device: str | None = None) -> Ensemble:
    """Load the members of an ``EnsembleDocument`` (checksums verified)."""
    from crysal_flows.settings import SETTINGS

    return Ensemble.from_checkpoints(
        [(m.checkpoint, m.sha256) for m in ensemble.members], device=device or SETTINGS.device
    )
