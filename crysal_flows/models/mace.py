"""MACE models for the ensemble: construction from hyper-parameters, neighbour graphs, torch setup.

Graphs are built here in numpy, not with ``mace.data.AtomicData``: the batched relaxation builds
one batch per step, and ``AtomicData.from_config`` takes 14 times as long for the same edges
(0.80 s against 0.058 s for 64 Si16 cells, measured on this project's 2-core machine), longer
than the models' own evaluation. ``tests/test_models.py`` checks that both give the same graph.
Reference energies and the average neighbour count use mace's own functions.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import mace
import numpy as np
import torch
from ase import Atoms

with contextlib.redirect_stdout(io.StringIO()):  # mace prints a notice about cuequivariance
    import mace.modules  # noqa: F401

__all__ = [
    "DTYPE",
    "atomic_energies",
    "average_neighbours",
    "build_model",
    "collate",
    "graph_arrays",
    "graph_batch",
    "torch_setup",
]

DTYPE = torch.float32


def torch_setup(threads: int = 1) -> None:
    """Set torch's thread count and default dtype for this process (MACE changes the dtype)."""
    torch.set_num_threads(max(1, threads))
    torch.set_default_dtype(DTYPE)


def build_model(hyper: dict[str, Any]) -> torch.nn.Module:
    """Build a ScaleShiftMACE model from a hyper-parameter dictionary (see ``train_member``)."""
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


def _one_hot(numbers: np.ndarray, z_table: Sequence[int]) -> np.ndarray:
    index = {z: k for k, z in enumerate(z_table)}
    try:
        idx = np.array([index[int(z)] for z in numbers])
    except KeyError as exc:
        raise ValueError(
            f"element Z={exc.args[0]} is not known to the model (z_table {list(z_table)})"
        ) from None
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


def collate(
    graphs: Sequence[dict[str, np.ndarray]], device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """Concatenate per-structure graphs into one MACE batch."""
    counts = [len(g["positions"]) for g in graphs]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    edge_index = np.concatenate(
        [g["edge_index"] + off for g, off in zip(graphs, offsets, strict=False)], axis=1
    )

    def cat(key: str) -> torch.Tensor:
        return torch.tensor(np.concatenate([g[key] for g in graphs]), dtype=DTYPE, device=device)

    return {
        "positions": cat("positions"),
        "edge_index": torch.tensor(edge_index, dtype=torch.long, device=device),
        "shifts": cat("shifts"),
        "unit_shifts": cat("unit_shifts"),
        "cell": cat("cell"),
        "node_attrs": cat("node_attrs"),
        "batch": torch.tensor(
            np.repeat(np.arange(len(graphs)), counts), dtype=torch.long, device=device
        ),
        "ptr": torch.tensor(offsets, dtype=torch.long, device=device),
    }


def graph_batch(
    atoms_list: Sequence[Atoms], z_table: Sequence[int], r_max: float, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """One MACE batch of several periodic structures."""
    return collate([graph_arrays(a, z_table, r_max) for a in atoms_list], device=device)


def atomic_energies(
    numbers: Sequence[np.ndarray], energies: Sequence[float], z_table: Sequence[int]
) -> list[float]:
    """Per-element reference energies by least squares on the compositions (mace's E0 fit)."""
    from mace.data.utils import Configuration, compute_average_E0s
    from mace.tools import AtomicNumberTable

    configs = [
        Configuration(
            atomic_numbers=np.asarray(z),
            positions=np.zeros((len(z), 3)),
            properties={"energy": float(e)},
            property_weights={"energy": 1.0},
        )
        for z, e in zip(numbers, energies, strict=True)
    ]
    e0 = compute_average_E0s(configs, AtomicNumberTable(list(z_table)))
    return [float(e0[z]) for z in z_table]


class _Edges:
    """What ``mace.modules.utils.compute_avg_num_neighbors`` reads of a batch."""

    def __init__(self, graph: dict[str, np.ndarray]) -> None:
        self.edge_index = torch.as_tensor(graph["edge_index"])


def average_neighbours(graphs: Sequence[dict[str, np.ndarray]]) -> float:
    """Average number of neighbours per atom (mace's own count), at least 1."""
    from mace.modules.utils import compute_avg_num_neighbors

    with_edges = [_Edges(g) for g in graphs if g["edge_index"].shape[1]]
    return max(float(compute_avg_num_neighbors(with_edges)), 1.0) if with_edges else 1.0
