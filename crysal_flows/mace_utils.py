"""MACE models for the ensemble: construction, graphs, checkpoints and batched ensemble evaluation.

``mace`` is imported before ``e3nn`` everywhere (e3nn fails to load its constants under torch>=2.6
otherwise), which this module guarantees by importing it first.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mace  # noqa: F401  (must precede e3nn)
import numpy as np
import torch
from ase import Atoms

__all__ = [
    "Ensemble",
    "EnsemblePrediction",
    "build_model",
    "checkpoint_to_model",
    "graph_batch",
    "model_to_checkpoint",
    "torch_setup",
]

DTYPE = torch.float32


def torch_setup(threads: int = 1) -> None:
    """Set torch's thread count and default dtype for this process (MACE changes the dtype)."""
    torch.set_num_threads(max(1, threads))
    torch.set_default_dtype(DTYPE)


def build_model(hyper: dict[str, Any]) -> torch.nn.Module:
    """Build a ScaleShiftMACE model from a hyper-parameter dictionary (see ``model_hyper``)."""
    from e3nn import o3
    from mace import modules

    torch.manual_seed(hyper["seed"])
    ch, max_l = hyper["channels"], hyper["max_l"]
    irreps = "+".join(f"{ch}x{ell}{'e' if ell % 2 == 0 else 'o'}" for ell in range(max_l + 1))
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=hyper["r_max"],
        num_bessel=hyper["num_bessel"],
        num_polynomial_cutoff=5,
        max_ell=hyper["max_ell"],
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=hyper["num_interactions"],
        num_elements=len(hyper["z_table"]),
        hidden_irreps=o3.Irreps(irreps),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.asarray(hyper["atomic_energies"], dtype=float),
        avg_num_neighbors=hyper["avg_num_neighbors"],
        atomic_numbers=list(hyper["z_table"]),
        correlation=hyper["correlation"],
        gate=torch.nn.functional.silu,
        radial_MLP=list(hyper["radial_mlp"]),
        atomic_inter_scale=hyper["scale"],
        atomic_inter_shift=hyper["shift"],
        pair_repulsion=bool(hyper.get("pair_repulsion", True)),
    ).to(DTYPE)


def model_to_checkpoint(model: torch.nn.Module, hyper: dict[str, Any]) -> tuple[str, str]:
    """Serialise a model into a base64 string and return it with its SHA-256 checksum."""
    buffer = io.BytesIO()
    torch.save({"hyper": hyper, "state_dict": model.state_dict()}, buffer)
    raw = buffer.getvalue()
    return base64.b64encode(raw).decode("ascii"), hashlib.sha256(raw).hexdigest()


def checkpoint_to_model(checkpoint: str, sha256: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from ``model_to_checkpoint``'s string, verifying the checksum if given."""
    raw = base64.b64decode(checkpoint.encode("ascii"))
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise ValueError("model checkpoint is corrupt: its SHA-256 does not match the stored one")
    payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
    model = build_model(payload["hyper"])
    model.load_state_dict(payload["state_dict"])
    return model, payload["hyper"]


def _one_hot(numbers: np.ndarray, z_table: Sequence[int]) -> np.ndarray:
    index = {z: k for k, z in enumerate(z_table)}
    try:
        idx = np.array([index[int(z)] for z in numbers])
    except KeyError as exc:
        raise ValueError(f"element Z={exc.args[0]} is not known to the model (z_table {z_table})") from None
    out = np.zeros((len(numbers), len(z_table)))
    out[np.arange(len(numbers)), idx] = 1.0
    return out


def graph_arrays(atoms: Atoms, z_table: Sequence[int], r_max: float) -> dict[str, np.ndarray]:
    """Neighbour graph of one periodic structure, as numpy arrays in MACE's layout."""
    from matscipy.neighbours import neighbour_list

    i, j, shifts = neighbour_list("ijS", atoms, r_max)
    cell = np.asarray(atoms.cell.array, dtype=float)
    return {
        "positions": np.asarray(atoms.positions, dtype=float),
        "edge_index": np.stack([i, j]),
        "unit_shifts": shifts.astype(float),
        "shifts": shifts @ cell,
        "cell": cell,
        "node_attrs": _one_hot(atoms.numbers, z_table),
    }


def collate(graphs: Sequence[dict[str, np.ndarray]], device: str = "cpu") -> dict[str, torch.Tensor]:
    """Concatenate per-structure graphs into one MACE batch."""
    counts = [len(g["positions"]) for g in graphs]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    edge_index = np.concatenate([g["edge_index"] + off for g, off in zip(graphs, offsets, strict=False)],
                                axis=1)

    def cat(key: str) -> torch.Tensor:
        return torch.tensor(np.concatenate([g[key] for g in graphs]), dtype=DTYPE, device=device)

    return {
        "positions": cat("positions"),
        "edge_index": torch.tensor(edge_index, dtype=torch.long, device=device),
        "shifts": cat("shifts"),
        "unit_shifts": cat("unit_shifts"),
        "cell": cat("cell"),
        "node_attrs": cat("node_attrs"),
        "batch": torch.tensor(np.repeat(np.arange(len(graphs)), counts), dtype=torch.long,
                              device=device),
        "ptr": torch.tensor(offsets, dtype=torch.long, device=device),
    }


def graph_batch(atoms_list: Sequence[Atoms], z_table: Sequence[int], r_max: float,
                device: str = "cpu") -> dict[str, torch.Tensor]:
    """Build one MACE batch of several periodic structures."""
    return collate([graph_arrays(a, z_table, r_max) for a in atoms_list], device=device)


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

    def __init__(self, models: Sequence[torch.nn.Module], hypers: Sequence[dict[str, Any]],
                 device: str = "cpu") -> None:
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
    def from_checkpoints(cls, checkpoints: Sequence[tuple[str, str | None]],
                         device: str = "cpu") -> Ensemble:
        """Load an ensemble from ``(checkpoint, sha256)`` pairs."""
        loaded = [checkpoint_to_model(c, s) for c, s in checkpoints]
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
