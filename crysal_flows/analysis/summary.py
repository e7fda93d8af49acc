"""What a cycle found: clusters, statistics, the stopping decision, and what follows.

``analyse_cycle`` is the whole decision of one cycle's analysis job; the job itself (in
:mod:`crysal_flows.flows`) only adds what follows to the flow.
"""

from __future__ import annotations

import math

import numpy as np

from crysal_flows.analysis.clustering import Cluster, cluster_low_energy
from crysal_flows.analysis.schemas import (
    MAX_STORED_ENERGIES,
    ClusterDocument,
    CycleSummary,
    DeepLabelDocument,
    ResumePoint,
)
from crysal_flows.analysis.stopping import StoppingRule
from crysal_flows.config import SearchConfig
from crysal_flows.generation.schemas import PoolDocument
from crysal_flows.labelling.schemas import TrainingSetDocument
from crysal_flows.schemas import CandidateStatus, SearchState
from crysal_flows.training.schemas import EnsembleDocument
from crysal_flows.utils import fingerprint, space_group, structure_to_atoms

__all__ = ["analyse_cycle", "cluster_documents", "cycle_line", "deep_labels", "novel_clusters"]

N_HELD_TOP = 10  # a best structure among the previous cycle's top 10 is not new; summaries
# keep at least these clusters, so a replay sees what the rule saw


QUANTILES = (0, 5, 25, 50, 75, 95, 100)


def _quantiles(values: list[float]) -> dict[str, float]:
    """Return the ``QUANTILES`` percentiles of ``values`` by name; empty for no values."""
    if not values:
        return {}
    return {str(q): float(np.percentile(values, q)) for q in QUANTILES}


def _document(
    by_index: dict, cl: Cluster, rank: int, label_distance: float | None = None
) -> ClusterDocument:
    """Return the document of cluster ``cl`` at ``rank``, with its representative's space group."""
    return ClusterDocument(
        rank=rank,
        representative=cl.representative,
        energy_per_atom=cl.energy_per_atom,
        size=len(cl.members),
        reliable=cl.reliable,
        stuck=cl.stuck,
        space_group=space_group(by_index[cl.representative].structure)[0],
        label_distance=label_distance,
    )


def cluster_documents(pool: PoolDocument, clusters: list[Cluster], n: int) -> list[ClusterDocument]:
    """Documents of the ``n`` lowest clusters, with their representatives' space groups."""
    by_index = {cand.index: cand for cand in pool.candidates}
    return [_document(by_index, cl, r) for r, cl in enumerate(clusters[:n], start=1)]


def novel_clusters(
    pool: PoolDocument,
    clusters: list[Cluster],
    training_set: TrainingSetDocument,
    config: SearchConfig,
) -> list[ClusterDocument]:
    """Return the clusters validation takes beside the lowest ones (``validation.n_novel``).

    Beyond the ``n_structures - n_novel`` lowest clusters, within ``selection.novelty_window``
    of the best: those whose representative may be a novel minimum (``Candidate.may_be_novel``)
    and lies farther than ``selection.min_fingerprint_distance`` from every label, farthest first.
    """
    n_val = config.validation.n_structures
    k = min(config.validation.n_novel, n_val - 1)
    sel = config.selection
    if k <= 0 or not clusters or not training_set.labels:
        return []
    by_index = {cand.index: cand for cand in pool.candidates}
    best = clusters[0].energy_per_atom
    labels = np.array(
        [fingerprint(structure_to_atoms(lab.structure)) for lab in training_set.labels]
    )
    ranked = []
    for rank, cl in enumerate(clusters, start=1):
        if rank <= n_val - k or cl.energy_per_atom > best + sel.novelty_window:
            continue
        if not by_index[cl.representative].may_be_novel(sel.novelty_uncertain):
            continue
        distance = float(np.linalg.norm(labels - cl.fingerprint, axis=1).min())
        if distance > sel.min_fingerprint_distance:
            ranked.append((distance, rank, cl))
    ranked.sort(key=lambda t: (-t[0], t[1]))
    return [_document(by_index, cl, rank, distance) for distance, rank, cl in ranked[:k]]


def deep_labels(
    clusters: list[Cluster], training_set: TrainingSetDocument, config: SearchConfig
) -> list[DeepLabelDocument]:
    """Return the labels validation relaxes too (``validation.n_labels``), lowest first.

    Those more than ``validation.label_margin`` below the best cluster's predicted energy: the
    oracle found lower energies there than the ensemble reaches anywhere in the pool. Labels
    within ``analysis.cluster_fingerprint_tolerance`` of a lower one taken are left out.
    """
    val = config.validation
    if val.n_labels <= 0 or not clusters:
        return []
    best = clusters[0].energy_per_atom
    deep = sorted(
        (
            lab
            for lab in training_set.labels
            if lab.success
            and not lab.energy_only
            and lab.energy is not None
            and lab.energy_per_atom < best - val.label_margin
        ),
        key=lambda lab: lab.energy_per_atom,
    )
    tol = config.analysis.cluster_fingerprint_tolerance
    out: list[DeepLabelDocument] = []
    prints: list[np.ndarray] = []
    for lab in deep:
        fp = fingerprint(structure_to_atoms(lab.structure))
        if any(np.linalg.norm(fp - p) < tol for p in prints):
            continue
        prints.append(fp)
        out.append(
            DeepLabelDocument(
                key=lab.key,
                cycle=lab.cycle,
                reason=lab.reason,
                energy_per_atom=lab.energy_per_atom,
                below_best=best - lab.energy_per_atom,
                structure=lab.structure,
            )
        )
        if len(out) == val.n_labels:
            break
    return out


def _trusted(best: Cluster, pool: PoolDocument, cycle: int, held_cycles: int) -> bool:
    """Whether the held rule may stop on the best cluster ``best``.

    This cycle's ensemble moved its representative (converged it, or stepped before stopping it
    as uncertain), or an ensemble of the cycles its structure held through converged it there
    (on a prior: cycle 0's, the first after the prior's relaxation).
    """
    if not best.stuck:
        return True
    rep = next(cand for cand in pool.candidates if cand.index == best.representative)
    return rep.converged_cycle is not None and rep.converged_cycle >= cycle - held_cycles + 1


def analyse_cycle(
    pool: PoolDocument,
    training_set: TrainingSetDocument,
    ensemble: EnsembleDocument,
    state: SearchState,
    config: SearchConfig,
    summary_uuid: str,
    uuids: dict[str, str],
    start_pool: PoolDocument | None = None,
) -> CycleSummary:
    """Cluster the pool, apply the stopping rule and summarise the cycle.

    Parameters
    ----------
    summary_uuid
        UUID of the job whose output this summary is (the next state lists it).
    uuids
        UUIDs of the jobs of this cycle's ``pool``, ``training_set`` and ``ensemble``.
    start_pool
        The pool this cycle started from, when it was relaxed before (by the prior): the first
        cycle's top clusters are compared with its, shifted by the training set's
        ``prediction_offset`` to the oracle's energy zero.

    Returns
    -------
    CycleSummary
        With ``resume``: what follows, the next cycle's state or validation (``stop``).
    """
    an = config.analysis
    c = state.cycle
    clusters = cluster_low_energy(
        pool.candidates,
        an.energy_window,
        an.cluster_energy_tolerance,
        an.cluster_fingerprint_tolerance,
    )
    top = [cl.energy_per_atom for cl in clusters[: an.n_top_clusters]]
    previous = state.history[-1] if state.history else None
    previous_prints = state.top_fingerprints
    if previous is None and start_pool is not None:
        # cycle 0 on a prior: compared with the pool as the prior alone relaxed it, its
        # energies on the oracle's energy zero (see TrainingSetDocument)
        start = cluster_low_energy(
            start_pool.candidates,
            an.energy_window,
            an.cluster_energy_tolerance,
            an.cluster_fingerprint_tolerance,
        )
        shift = training_set.prediction_offset or 0.0
        previous = [cl.energy_per_atom + shift for cl in start[: an.n_top_clusters]]
        previous_prints = [cl.fingerprint for cl in start[:N_HELD_TOP]]
    rule = StoppingRule(an)
    held = rule.held(
        clusters[0].fingerprint if clusters else None, previous_prints, state.stable_cycles
    )
    counts: dict[str, int] = {}
    for cand in pool.candidates:
        counts[cand.status.value] = counts.get(cand.status.value, 0) + 1
    decision = rule.decide(
        top,
        previous,
        training_set.prediction_mae,
        bool(clusters) and clusters[0].reliable,
        c + 1,
        held,
        best_trusted=bool(clusters) and _trusted(clusters[0], pool, c, an.best_held_cycles),
        uncertain_fraction=counts.get(CandidateStatus.UNCERTAIN.value, 0)
        / max(len(pool.candidates), 1),
    )
    energies = sorted(
        cand.energy_per_atom
        for cand in pool.candidates
        if cand.energy_per_atom is not None and math.isfinite(cand.energy_per_atom)
    )
    sig = [cand.sigma_force for cand in pool.candidates if cand.sigma_force is not None]
    val = [
        m.validation_rmse_energy for m in ensemble.members if m.validation_rmse_energy is not None
    ]
    next_state = state.model_copy(
        update={
            "cycle": c + 1,
            "n_labels": training_set.n_attempted_total,
            "n_failed_labels": training_set.n_failed_total,
            "history": [*state.history, top],
            "stable_cycles": held,
            "top_fingerprints": [
                [round(float(x), 4) for x in cl.fingerprint] for cl in clusters[:N_HELD_TOP]
            ],
            "summaries": [*state.summaries, summary_uuid],
        }
    )
    return CycleSummary(
        run_id=state.run_id,
        name=config.name,
        cycle=c,
        oracle_single_points=training_set.n_attempted_total,
        failed_labels=training_set.n_failed_total,
        training_set_size=len(training_set.labels),
        prediction_mae=training_set.prediction_mae,
        validation_rmse_energy=float(np.mean(val)) if val else None,
        best_energy_per_atom=energies[0] if energies else None,
        status_counts=counts,
        sigma_force_median=float(np.median(sig)) if sig else None,
        sigma_force_p90=float(np.percentile(sig, 90)) if sig else None,
        sigma_force_quantiles=_quantiles(sig),
        energies=energies[:MAX_STORED_ENERGIES],
        n_finite=len(energies),
        energy_quantiles=_quantiles(energies),
        clusters=cluster_documents(
            pool, clusters, max(an.n_top_clusters, config.validation.n_structures, N_HELD_TOP)
        ),
        novel_clusters=novel_clusters(pool, clusters, training_set, config),
        deep_labels=deep_labels(clusters, training_set, config),
        top_energy_change=decision.top_energy_change,
        best_held_cycles=held,
        converged=decision.converged,
        decision=decision.reason,
        criterion={
            k: float(v)
            for k, v in an.model_dump(
                include={
                    "energy_tolerance",
                    "max_prediction_error",
                    "n_top_clusters",
                    "best_held_cycles",
                    "min_cycles",
                    "max_cycles",
                    "held_max_prediction_error",
                    "max_uncertain_fraction",
                }
            ).items()
            if v is not None
        },
        stop=decision.stop,
        resume=ResumePoint(**uuids, n_members=len(ensemble.members), next_state=next_state),
    )


def cycle_line(summary: CycleSummary) -> str:
    """Return the one short line a cycle prints."""
    best = "n/a" if summary.best_energy_per_atom is None else f"{summary.best_energy_per_atom:.4f}"
    sig = "n/a" if summary.sigma_force_median is None else f"{summary.sigma_force_median:.2f}"
    n = sum(summary.status_counts.values())
    settled = sum(summary.status_counts.get(s, 0) for s in ("converged", "stalled", "max_steps"))
    verdict, _, why = summary.decision.partition(": ")
    return (
        f"cycle {summary.cycle}: {summary.oracle_single_points} labels "
        f"({summary.failed_labels} failed), best {best} eV/atom (ML), sigma_F {sig} eV/A, "
        f"{settled}/{n} settled, {summary.status_counts.get('uncertain', 0)} uncertain; "
        f"{verdict} ({why})"
    )
