"""Selection: random picks in cycle 0, then low-energy and uncertain candidates with diversity."""

from __future__ import annotations

import logging
import math

import numpy as np

from crysal_flows.config import SelectionConfig
from crysal_flows.generation.schemas import PoolDocument
from crysal_flows.jobs import crysal_job
from crysal_flows.labelling.schemas import TrainingSetDocument
from crysal_flows.models.ensemble import load_ensemble
from crysal_flows.schemas import Candidate, CandidateStatus
from crysal_flows.selection.schemas import SelectedStructure, SelectionDocument
from crysal_flows.utils import atoms_to_structure, fingerprint, structure_to_atoms

logger = logging.getLogger(__name__)

__all__ = ["perturb", "select_structures"]


def perturb(candidate_atoms, rng: np.random.Generator, rattle: float, strain: float):
    """Rattle positions (uniform in a ball of radius ``rattle``) and strain the cell randomly."""
    atoms = candidate_atoms.copy()
    if strain > 0:
        eps = rng.uniform(-strain, strain, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    if rattle > 0:
        direction = rng.normal(size=(len(atoms), 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = rattle * rng.random(len(atoms)) ** (1 / 3)
        atoms.positions += direction * radius[:, None]
    atoms.wrap()
    return atoms


def _label_source(c: Candidate):
    # The last frame the ensemble trusted (for an uncertain stop, the one before it disagreed): the
    # frame that stopped it may already have atoms pulled together by an extrapolating model.
    return c.structure


def _pick(
    pool: PoolDocument,
    config: SelectionConfig,
    cycle: int,
    rng: np.random.Generator,
    n: int,
    labelled: set[int] | None = None,
    label_prints: np.ndarray | None = None,
) -> list[tuple[Candidate, str, float | None]]:
    cands = pool.candidates
    # random picks while the pool was never relaxed (cycle 0, unless a prior relaxed it)
    if all(c.energy_per_atom is None for c in cands):
        idx = rng.choice(len(cands), size=n, replace=False)
        return [(cands[i], "random", None) for i in idx]
    usable = [
        c
        for c in cands
        if c.status != CandidateStatus.FAILED
        and c.energy_per_atom is not None
        and math.isfinite(c.energy_per_atom)
    ]
    n_random = round(config.random_fraction * n)
    n_stuck = round(config.stuck_fraction * n)
    n_minima = round(config.minima_fraction * n)
    n_novel = (
        round(config.novelty_fraction * n) if label_prints is not None and len(label_prints) else 0
    )
    fingerprints: dict[int, np.ndarray] = {}

    def print_of(c: Candidate) -> np.ndarray:
        """Return the fingerprint of what would be labelled, computed once per candidate."""
        if c.index not in fingerprints:
            fingerprints[c.index] = fingerprint(structure_to_atoms(_label_source(c)))
        return fingerprints[c.index]

    def score(c: Candidate) -> float:
        return c.energy_per_atom - config.kappa * min(c.sigma_force or 0.0, config.max_sigma)

    scored = sorted(usable, key=score)
    chosen: list[tuple[Candidate, str, float | None]] = []
    prints: list[np.ndarray] = []
    taken: set[int] = set()

    def take(ranked: list[Candidate], limit: int, why: str | None = None) -> None:
        """Add the best of ``ranked`` until ``chosen`` holds ``limit``, skipping near-duplicates."""
        for c in ranked:
            if len(chosen) >= limit:
                return
            if c.index in taken:
                continue
            fp = print_of(c)
            near = min((np.linalg.norm(fp - p) for p in prints), default=np.inf)
            if near < config.min_fingerprint_distance:
                continue  # near-duplicate of a better-scored pick
            prints.append(fp)
            taken.add(c.index)
            if why is not None:
                reason = why
            elif c.status == CandidateStatus.UNCERTAIN:
                reason = "stuck" if c.stuck else "uncertain"
            else:
                reason = "score"
            chosen.append((c, reason, score(c)))

    # stuck candidates first, best scored first: each once, and none of the crushed or exploded
    best = min((c.energy_per_atom for c in usable), default=math.inf)
    stuck = [
        c
        for c in scored
        if c.stuck
        and c.index not in (labelled or set())
        and c.energy_per_atom <= best + config.stuck_window
    ]
    take(stuck, n_stuck)
    # the lowest minima, one per structure: where validation looks, labelled every cycle
    lowest = sorted(usable, key=lambda c: c.energy_per_atom)
    take(lowest, min(len(chosen) + n_minima, n - n_random), why="minimum")
    # novel minima: converged (or moved, then uncertain) near the low-energy end, farthest from
    # every label so far
    if n_novel:
        near_best = [
            c
            for c in usable
            if c.may_be_novel(config.novelty_uncertain)
            and c.energy_per_atom <= best + config.novelty_window
            and c.index not in taken
        ]
        distance = {
            c.index: float(np.linalg.norm(label_prints - print_of(c), axis=1).min())
            for c in near_best
        }
        # a label within min_fingerprint_distance is the same structure: nothing new there
        novel = sorted(
            (c for c in near_best if distance[c.index] > config.min_fingerprint_distance),
            key=lambda c: -distance[c.index],
        )
        take(novel, min(len(chosen) + n_novel, n - n_random), why="novel")
    take(scored, n - n_random)
    rest = [c for c in cands if c.index not in taken]
    n_more = min(n - len(chosen), len(rest))
    for i in rng.choice(len(rest), size=n_more, replace=False):
        chosen.append((rest[i], "random", None))
    return chosen


@crysal_job(schema=SelectionDocument)
def select_structures(
    pool: PoolDocument,
    ensemble,
    cycle: int,
    config: SelectionConfig,
    seed: int,
    training_set: TrainingSetDocument | None = None,
) -> SelectionDocument:
    """Pick, perturb and (if an ensemble exists) predict the structures to label this cycle.

    The ensemble's prediction on each perturbed structure is stored so that, once labelled, the
    ensemble's error on exactly these structures feeds the stopping criterion. ``training_set``
    says which candidates were labelled before.
    """
    rng = np.random.default_rng([seed, cycle, 7])
    n = config.n_labels if cycle > 0 else (config.n_labels_first or config.n_labels)
    labelled = {lab.source_index for lab in training_set.labels} if training_set else set()
    label_prints = (
        np.array([fingerprint(structure_to_atoms(lab.structure)) for lab in training_set.labels])
        if training_set and training_set.labels and config.novelty_fraction > 0
        else None
    )
    picks = _pick(pool, config, cycle, rng, n, labelled, label_prints)
    rattle = config.rattle * config.rattle_decay**cycle
    atoms = [
        perturb(structure_to_atoms(_label_source(c)), rng, rattle, config.strain)
        for c, _, _ in picks
    ]
    pred_e = pred_s = [None] * len(atoms)
    if ensemble is not None and atoms:
        pred = load_ensemble(ensemble).predict(atoms)
        n_at = len(atoms[0])
        pred_e = [float(x) / n_at for x in pred.mean_energy]
        pred_s = [float(x) / n_at for x in pred.sigma_energy]
    structures = [
        SelectedStructure(
            structure=atoms_to_structure(a),
            source_index=c.index,
            reason=reason,
            score=score,
            predicted_energy_per_atom=pe,
            predicted_sigma_energy=ps,
        )
        for a, (c, reason, score), pe, ps in zip(atoms, picks, pred_e, pred_s, strict=True)
    ]
    counts = {
        r: sum(s.reason == r for s in structures)
        for r in ("minimum", "novel", "score", "uncertain", "stuck", "random")
    }
    logger.info(
        "cycle %d: selected %d structures to label %s (rattle %.3f A)",
        cycle,
        len(structures),
        counts,
        rattle,
    )
    return SelectionDocument(cycle=cycle, rattle=rattle, structures=structures)
