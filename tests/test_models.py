"""The models layer: graphs equal mace's own, checkpoints round-trip, mace's E0 fit is used."""

import numpy as np
import pytest
import torch

from crysal_flows.config import PoolConfig
from crysal_flows.generation.jobs import generate_pool
from crysal_flows.models.mace import atomic_energies, average_neighbours, graph_arrays, graph_batch
from crysal_flows.utils import structure_to_atoms


def test_graphs_are_the_ones_mace_builds():
    """The numpy graph builder (fast enough for every relaxation step) gives mace's AtomicData."""
    from mace.data import AtomicData, Configuration
    from mace.tools import AtomicNumberTable, torch_geometric

    pool = generate_pool("Na4Cl4", PoolConfig(size=6), seed=3)
    atoms = [structure_to_atoms(c.structure) for c in pool.candidates]
    ours = graph_batch(atoms, [11, 17], 5.0)
    theirs = torch_geometric.Batch.from_data_list(
        [
            AtomicData.from_config(
                Configuration(
                    atomic_numbers=a.numbers,
                    positions=a.positions,
                    properties={},
                    property_weights={},
                    cell=np.asarray(a.cell.array),
                    pbc=(True, True, True),
                ),
                z_table=AtomicNumberTable([11, 17]),
                cutoff=5.0,
            )
            for a in atoms
        ]
    )

    def edges(ei, shifts):
        return sorted(map(tuple, np.c_[ei.T.numpy(), np.round(shifts.numpy(), 4)].tolist()))

    assert edges(ours["edge_index"], ours["unit_shifts"]) == edges(
        theirs.edge_index, theirs.unit_shifts
    )
    for key in ("positions", "node_attrs", "cell", "batch", "ptr"):
        assert torch.allclose(ours[key].double(), getattr(theirs, key).double(), atol=1e-5), key


def test_reference_energies_and_neighbours():
    numbers = [np.array([11, 17, 17]), np.array([11, 11, 17]), np.array([11, 17])]
    e0 = {11: -1.5, 17: -2.25}
    energies = [sum(e0[z] for z in n) for n in numbers]
    assert atomic_energies(numbers, energies, [11, 17]) == pytest.approx([-1.5, -2.25])
    pool = generate_pool("Si8", PoolConfig(size=2), seed=1)
    graphs = [graph_arrays(structure_to_atoms(c.structure), [14], 5.0) for c in pool.candidates]
    n_edges = sum(g["edge_index"].shape[1] for g in graphs)
    assert average_neighbours(graphs) == pytest.approx(n_edges / 16, rel=1e-6)
