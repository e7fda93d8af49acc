"""Clustering the low-energy region of the pool with model-independent fingerprints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crysal_flows.schemas import Candidate, CandidateStatus
from crysal_flows.utils import fingerprint, structure_to_atoms

__all__ = ["Cluster", "cluster_low_energy"]


@dataclass
class Cluster:
    """Candidates that relaxed into one minimum."""

    representative: int  # pool index of the lowest-energy member
    energy_per_atom: float
    members: list[int]
    reliable: bool  # representative at a minimum an ensemble converged it to (Candidate)
    stuck: bool  # representative stopped as uncertain before its first step (Candidate.stuck)
    fingerprint: np.ndarray  # of the representative (crysal_flows.utils.fingerprint)


def cluster_low_energy(
    candidates: Sequence[Candidate], energy_window: float, energy_tol: float, fingerprint_tol: float
) -> list[Cluster]:
    """Leader clustering by energy, lowest first, within ``energy_window`` eV/atom of the best.

    A candidate joins the first cluster whose representative is within ``energy_tol`` eV/atom and
    ``fingerprint_tol`` in fingerprint distance; otherwise it starts a new cluster. Deterministic,
    and independent of the models, so clusters can be compared from one cycle to the next.
    """
    usable = [
        c
        for c in candidates
        if c.status != CandidateStatus.FAILED
        and c.energy_per_atom is not None
        and math.isfinite(c.energy_per_atom)
    ]
    if not usable:
        return []
    usable.sort(key=lambda c: c.energy_per_atom)
    best = usable[0].energy_per_atom
    region = [c for c in usable if c.energy_per_atom <= best + energy_window]
    clusters: list[Cluster] = []
    prints: list[np.ndarray] = []
    for c in region:
        fp = fingerprint(structure_to_atoms(c.structure))
        for cl, p in zip(clusters, prints, strict=True):
            if (
                abs(c.energy_per_atom - cl.energy_per_atom) < energy_tol
                and np.linalg.norm(fp - p) < fingerprint_tol
            ):
                cl.members.append(c.index)
                break
        else:
            clusters.append(
                Cluster(
                    representative=c.index,
                    energy_per_atom=c.energy_per_atom,
                    members=[c.index],
                    reliable=c.at_confirmed_minimum,
                    stuck=c.stuck,
                    fingerprint=fp,
                )
            )
            prints.append(fp)
    return clusters
