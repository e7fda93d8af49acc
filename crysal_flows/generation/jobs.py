"""Pool generation job."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from jobflow import Maker

from crysal_flows.config import PoolConfig
from crysal_flows.generation.pool import (
    generate_candidate,
    separation_table,
    space_groups_by_tiling,
)
from crysal_flows.generation.schemas import PoolDocument
from crysal_flows.jobs import crysal_job
from crysal_flows.schemas import Candidate
from crysal_flows.utils import atoms_to_structure, parse_composition, reference_volume

logger = logging.getLogger(__name__)

__all__ = ["PoolMaker", "generate_pool"]


def generate_pool(composition: str, config: PoolConfig, seed: int) -> PoolDocument:
    """Generate the candidate pool; candidate ``i`` depends only on ``seed`` and ``i``."""
    counts = parse_composition(composition)
    groups = space_groups_by_tiling(counts, config.supercell_fraction)
    if not groups[1] and config.symmetric_fraction > 0:
        raise ValueError(f"no space group can hold the composition {composition}")
    separations = separation_table(config.min_separation, set(counts))
    candidates, attempts = [], 0
    n_tiled = n_random = 0
    step = max(1, config.size // 10)
    for i in range(config.size):
        rng = np.random.default_rng([seed, i])
        gen = generate_candidate(
            counts,
            rng,
            groups,
            config.symmetric_fraction,
            config.supercell_fraction,
            config.volume_factor,
            config.volume_spread,
            config.min_distance_factor,
            config.max_attempts,
            separations,
        )
        attempts += gen.attempts
        n_tiled += "tiled" in gen.origin
        n_random += gen.space_group is None
        structure = atoms_to_structure(gen.atoms)
        candidates.append(
            Candidate(index=i, origin=gen.origin, space_group=gen.space_group, structure=structure)
        )
        if config.size >= 100 and (i + 1) % step == 0:
            logger.info("pool: %d/%d candidates generated", i + 1, config.size)
    return PoolDocument(
        composition=composition,
        n_atoms=sum(counts.values()),
        seed=seed,
        reference_volume=reference_volume(counts) * config.volume_factor,
        n_symmetric=config.size - n_random,
        n_tiled=n_tiled,
        n_random=n_random,
        attempts=attempts,
        candidates=candidates,
    )


@dataclass
class PoolMaker(Maker):
    """Generate the pool of random candidate structures of one composition."""

    name: str = "generate pool"
    config: PoolConfig = field(default_factory=PoolConfig)

    @crysal_job(data="candidates", schema=PoolDocument)
    def make(self, composition: str, seed: int = 0) -> PoolDocument:
        """Generate ``config.size`` candidates of ``composition``, determined by ``seed``."""
        return generate_pool(composition, self.config, seed)
