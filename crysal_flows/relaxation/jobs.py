"""ML relaxation of the pool in shards, one job each, merged into the next pool."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from jobflow import Maker

from crysal_flows.config import RelaxationConfig
from crysal_flows.generation.schemas import PoolDocument
from crysal_flows.jobs import crysal_job
from crysal_flows.models.ensemble import load_ensemble
from crysal_flows.progress import Progress
from crysal_flows.relaxation.relax import RelaxOutcome, relax_batched
from crysal_flows.relaxation.schemas import ShardDocument
from crysal_flows.schemas import Candidate, CandidateStatus
from crysal_flows.settings import apply_torch_settings
from crysal_flows.training.schemas import EnsembleDocument
from crysal_flows.utils import atoms_to_structure, structure_to_atoms

logger = logging.getLogger(__name__)

__all__ = ["RelaxShardMaker", "merge_shards", "relaxed_candidate", "shard_indices"]


def shard_indices(n: int, n_shards: int) -> list[np.ndarray]:
    """Contiguous, nearly equal index ranges of ``n`` candidates over ``n_shards`` shards."""
    return [a for a in np.array_split(np.arange(n), min(n_shards, n)) if len(a)]


def _stage(cycle: int) -> str:
    """Name a relaxation's stage for people: ``cycle 2``, or ``prior`` before cycle 0 (-1)."""
    return "prior" if cycle < 0 else f"cycle {cycle}"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def relaxed_candidate(c: Candidate, o: RelaxOutcome, cycle: int, n_atoms: int) -> Candidate:
    """Return candidate ``c`` after a relaxation in ``cycle`` that ended in ``o``.

    ``converged_cycle`` becomes ``cycle`` where it converged, stays where it did not move (an
    uncertain stop before its first step keeps the structure that an earlier cycle converged)
    and is cleared where it moved without converging.
    """
    if o.status == CandidateStatus.CONVERGED:
        converged_cycle = cycle
    elif o.steps == 0:
        converged_cycle = c.converged_cycle
    else:
        converged_cycle = None
    return c.model_copy(
        update={
            "structure": atoms_to_structure(o.best_atoms),
            "final_structure": atoms_to_structure(o.final_atoms),
            "energy_per_atom": _finite(o.energy / n_atoms),
            "sigma_energy": _finite(o.sigma_energy / n_atoms),
            "sigma_force": _finite(o.sigma_force),
            "max_force": _finite(o.max_force),
            "status": o.status,
            "steps": o.steps,
            "total_steps": c.total_steps + o.steps,
            "converged_cycle": converged_cycle,
        }
    )


@dataclass
class RelaxShardMaker(Maker):
    """Relax one shard of the pool with the ensemble mean (a GPU job on a cluster)."""

    name: str = "relax shard"
    config: RelaxationConfig = field(default_factory=RelaxationConfig)

    @crysal_job(data="candidates", schema=ShardDocument)
    def make(
        self, pool: PoolDocument, ensemble: EnsembleDocument, cycle: int, shard: int, n_shards: int
    ) -> ShardDocument:
        """Relax candidates ``shard_indices(len(pool), n_shards)[shard]``, batched."""
        apply_torch_settings()
        idx = shard_indices(len(pool.candidates), n_shards)[shard]
        cands = [pool.candidates[i] for i in idx]
        ens = load_ensemble(ensemble)
        t0 = time.perf_counter()
        tracker = Progress(
            f"{_stage(cycle)}: relax shard {shard + 1}/{n_shards}", len(cands), "candidates"
        )

        def progress(done: int, total: int) -> None:
            tracker.update(done)

        outcomes = relax_batched(
            [structure_to_atoms(c.structure) for c in cands],
            ens,
            self.config,
            pool.reference_volume,
            progress=progress,
            lowest_label=ensemble.lowest_label_energy_per_atom,
        )
        new = [
            relaxed_candidate(c, o, cycle, pool.n_atoms)
            for c, o in zip(cands, outcomes, strict=True)
        ]
        counts = Counter(o.status.value for o in outcomes)
        return ShardDocument(
            cycle=cycle,
            shard=shard,
            n_shards=n_shards,
            candidates=new,
            seconds=time.perf_counter() - t0,
            steps=sum(o.steps for o in outcomes),
            status_counts=dict(counts),
        )


@crysal_job(data="candidates", schema=PoolDocument, gather=True)
def merge_shards(
    shards: list[ShardDocument | None], pool: PoolDocument, cycle: int
) -> PoolDocument:
    """Merge relaxed shards into the pool.

    A shard whose job did not complete (it raised, or its worker was lost) arrives as ``None``: its
    candidates keep their previous structures and energies, with status ``not_relaxed``, and the
    search goes on with the other shards.
    """
    relaxed: dict[int, Candidate] = {}
    missing = 0
    for shard in shards:
        if shard is None:
            missing += 1
            continue
        relaxed.update((c.index, c) for c in shard.candidates)
    candidates = [
        relaxed.get(c.index)
        or c.model_copy(update={"status": CandidateStatus.NOT_RELAXED, "steps": 0})
        for c in pool.candidates
    ]
    if missing:
        n_kept = len(pool.candidates) - len(relaxed)
        logger.warning(
            "%s: %d of %d relaxation shards did not complete; their %d candidates "
            "keep their previous structures (status not_relaxed)",
            _stage(cycle),
            missing,
            len(shards),
            n_kept,
        )
    return pool.model_copy(update={"cycle": cycle, "candidates": candidates})
