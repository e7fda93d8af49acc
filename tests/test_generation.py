import numpy as np

from crysal_flows.config import PoolConfig
from crysal_flows.generation.jobs import generate_pool
from crysal_flows.generation.pool import min_distance_ok
from crysal_flows.utils import structure_to_atoms


def test_pool_is_deterministic_valid_and_mixed():
    cfg = PoolConfig(size=12, symmetric_fraction=0.6)
    a = generate_pool("Na4Cl4", cfg, seed=3)
    b = generate_pool("Na4Cl4", cfg, seed=3)
    c = generate_pool("Na4Cl4", cfg, seed=4)
    assert [x.structure for x in a.candidates] == [x.structure for x in b.candidates]
    assert [x.structure for x in a.candidates] != [x.structure for x in c.candidates]
    assert a.n_random > 0 and a.n_symmetric > 0
    for cand in a.candidates:
        assert cand.structure.composition.reduced_formula == "NaCl"
        assert len(cand.structure) == 8
        assert min_distance_ok(structure_to_atoms(cand.structure), cfg.min_distance_factor)
        v = cand.structure.volume
        assert (1 - cfg.volume_spread) * a.reference_volume - 1e-6 <= v
        assert v <= (1 + cfg.volume_spread) * a.reference_volume + 1e-6
    assert np.all([x.index == i for i, x in enumerate(a.candidates)])
