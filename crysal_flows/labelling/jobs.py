"""Oracle labelling: one single-point job per selected structure, gathered into the training set."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jobflow import Flow, Maker, Response
from pymatgen.core import Structure

from crysal_flows.config import OracleConfig, PriorConfig
from crysal_flows.jobs import Step, crysal_job, stored_output, tag
from crysal_flows.labelling.schemas import LabelDocument, TrainingSetDocument
from crysal_flows.oracles import get_oracle
from crysal_flows.progress import Progress
from crysal_flows.routing import route
from crysal_flows.selection.schemas import SelectionDocument
from crysal_flows.settings import WorkersConfig
from crysal_flows.utils import structure_key, structure_to_atoms

logger = logging.getLogger(__name__)

__all__ = [
    "OracleStaticMaker",
    "checked_label",
    "collect_labels",
    "gather_labels",
    "label_structures",
    "single_point",
]


def label_key(structure: Structure, identity: str, max_force: float) -> str:
    """Hash of a single point: the structure (to 1e-6 A), the oracle identity and the force cap."""
    return structure_key(structure, f"{identity}|{max_force}")


def _cached_label(key: str) -> LabelDocument | None:
    """Return a successful label of this key that the same run made earlier, if any."""
    return stored_output(key, {"output.success": True})


def single_point(
    structure: Structure, oracle: OracleConfig, max_force: float = 50.0, reuse: bool = True, **meta
) -> LabelDocument:
    """Run one oracle single point; any failure is recorded in the document, never raised.

    With ``reuse``, a successful label of the same key already in the store (a run resumed after
    a crash) is returned instead of calling the oracle again; failed labels are tried again.
    """
    runner = get_oracle(oracle)
    identity = runner.identity
    key = label_key(structure, identity, max_force)
    meta["key"] = key
    if reuse and (cached := _cached_label(key)) is not None:
        logger.info("label %s reused from the store (same structure and oracle)", key[:8])
        return cached.model_copy(update={**meta, "reused": True})
    t0 = time.perf_counter()
    try:
        result = runner.single_point(structure)
        energy, forces, stress = result.energy, result.forces, result.stress
    except Exception as exc:  # an oracle may fail in any way; the cycle goes on
        error = f"{type(exc).__name__}: {exc}"[:500]
        _log_label(
            runner.is_dft, oracle.kind, meta, error, None, len(structure), time.perf_counter() - t0
        )
        return LabelDocument(
            structure=structure,
            oracle=identity,
            success=False,
            error=error,
            seconds=time.perf_counter() - t0,
            **meta,
        )
    doc = checked_label(
        structure, identity, energy, forces, stress, max_force, time.perf_counter() - t0, **meta
    )
    _log_label(runner.is_dft, oracle.kind, meta, doc.error, energy, len(structure), doc.seconds)
    return doc


def checked_label(
    structure: Structure,
    identity: str,
    energy: float,
    forces: np.ndarray,
    stress: np.ndarray,
    max_force: float,
    seconds: float = 0.0,
    **meta: Any,
) -> LabelDocument:
    """Return the label of an oracle result (ASE units).

    Failed if anything is not finite. Forces above ``max_force`` (atoms pressed together) are not
    trained on, but the energy is: the label becomes a lower bound on it (``energy_only``), so
    the oracle call still tells the models that this region lies high.
    """
    forces, stress = np.asarray(forces, dtype=float), np.asarray(stress, dtype=float)
    error = None
    if not (math.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
        error = "oracle returned non-finite energy, forces or stress"
    absurd = error is None and np.abs(forces).max() > max_force
    return LabelDocument(
        structure=structure,
        oracle=identity,
        success=error is None,
        error=error,
        energy=energy if math.isfinite(energy) else None,
        forces=forces.tolist() if error is None and not absurd else None,
        stress=stress.tolist() if error is None and not absurd else None,
        energy_only=bool(absurd),
        note=f"max |F| = {np.abs(forces).max():.3g} eV/A > {max_force}: trained as a lower "
        "bound on the energy only"
        if absurd
        else None,
        seconds=seconds,
        **meta,
    )


def _log_label(
    is_dft: bool,
    kind: str,
    meta: dict,
    error: str | None,
    energy: float | None,
    n_atoms: int,
    seconds: float,
) -> None:
    """One line per DFT label (they take minutes on a cluster; cheap oracles stay quiet)."""
    if not is_dft:
        return
    what = f"cycle {meta.get('cycle', '?')}: {kind} label ({meta.get('reason') or 'label'})"
    if error is None:
        logger.info("%s: %.4f eV/atom in %.0f s", what, energy / n_atoms, seconds)
    else:
        logger.warning("%s failed after %.0f s: %s", what, seconds, error[:200])


@dataclass
class OracleStaticMaker(Maker):
    """Label one structure with an oracle single point (energy, forces, stress).

    Runs on a DFT worker (``_category: dft``) when submitted to FireWorks.
    """

    name: str = "oracle single point"
    oracle: OracleConfig = field(default_factory=OracleConfig)
    max_force: float = 50.0

    @crysal_job(schema=LabelDocument)
    def make(
        self,
        structure: Structure,
        cycle: int = 0,
        source_index: int | None = None,
        reason: str = "",
        predicted_energy_per_atom: float | None = None,
        predicted_sigma_energy: float | None = None,
    ) -> LabelDocument:
        """Label ``structure``; failures come back as ``success=False``, never as an exception."""
        label = single_point(
            structure,
            self.oracle,
            self.max_force,
            cycle=cycle,
            source_index=source_index,
            reason=reason,
            predicted_energy_per_atom=predicted_energy_per_atom,
            predicted_sigma_energy=predicted_sigma_energy,
        )
        _label_progress(cycle)
        return label


_TRACKERS: dict[tuple[str, int], Progress] = {}


def _label_progress(cycle: int) -> None:
    """Log a periodic line over the labels of a cycle that this process runs in turn."""
    from jobflow import CURRENT_JOB

    meta = (CURRENT_JOB.job.metadata or {}) if CURRENT_JOB.job else {}
    index, total = meta.get("crysal_index"), meta.get("crysal_total")
    if not index or not total:
        return
    key = (str(meta.get("crysal_run")), cycle)
    if index == 1:
        _TRACKERS[key] = Progress(f"cycle {cycle}: oracle labels", total, "labels")
    if key in _TRACKERS:  # this process ran the cycle's first label (not so under FireWorks)
        _TRACKERS[key].update(index)
        if index >= total:
            del _TRACKERS[key]


def with_prior(labels: list[LabelDocument], prior: PriorConfig) -> list[LabelDocument]:
    """Return ``labels`` with the prior's values on their structures (computed where missing)."""
    from crysal_flows.models.prior import get_prior
    from crysal_flows.settings import SETTINGS

    model = get_prior(prior, SETTINGS.device)
    todo = [k for k, lab in enumerate(labels) if lab.prior != model.identity]
    if not todo:
        return labels
    out = list(labels)
    pred = model.predict([structure_to_atoms(labels[k].structure) for k in todo])
    for j, k in enumerate(todo):
        out[k] = labels[k].model_copy(
            update={
                "prior": model.identity,
                "prior_energy": float(pred.energy[j]),
                "prior_forces": pred.forces[j].tolist(),
                "prior_stress": pred.stress[j].tolist(),
            }
        )
    return out


#: labels picked by their candidates' scores, the low-energy end of the pool (not random picks,
#: nor candidates labelled because they were stuck): the stopping rule's prediction error is theirs
SCORE_RANKED = ("minimum", "novel", "score", "uncertain")


@crysal_job(data="labels", schema=TrainingSetDocument)
def gather_labels(
    new_labels: list[LabelDocument | None],
    previous: TrainingSetDocument | None,
    cycle: int,
    prior: PriorConfig | None = None,
) -> TrainingSetDocument:
    """Add this cycle's successful labels to the training set.

    A label job that fizzled (killed, out of walltime) arrives as ``None`` and counts as a failure.
    Labels of another oracle than the training set's are refused, never mixed. With a ``prior``,
    its values on each new label's structure are computed once, here, and kept with the label.
    """
    labels = list(previous.labels) if previous else []
    oracle = previous.oracle if previous else None
    failures: list[str] = []
    predicted: list[tuple[float, float, bool]] = []  # (ML, oracle) per atom, score-ranked
    keys = {lab.key for lab in labels if lab.key}
    for label in new_labels:
        if label is None:
            failures.append("label job did not complete")
            continue
        if not label.success:
            failures.append(label.error or "unknown error")
            continue
        if oracle is not None and label.oracle != oracle:
            failures.append(
                f"label from oracle {label.oracle!r} refused: training set is {oracle!r}"
            )
            continue
        if label.key and label.key in keys:
            failures.append("duplicate of a label already in the training set")
            continue
        oracle = label.oracle
        labels.append(label)
        keys.add(label.key)
        if label.predicted_energy_per_atom is not None and label.energy_per_atom is not None:
            predicted.append(
                (
                    label.predicted_energy_per_atom,
                    label.energy_per_atom,
                    label.reason in SCORE_RANKED,
                )
            )
    if prior is not None:
        labels = with_prior(labels, prior)
    # cycle 0 on a prior: its predictions are the prior's own, whose energy zero is not the
    # oracle's (CHGNet's silicon lies ~1 eV/atom below Stillinger-Weber's); within one composition
    # that constant says nothing about the prior's potential energy surface, so it is removed
    offset = None
    if prior is not None and cycle == 0 and predicted:
        offset = float(np.mean([e - p for p, e, _ in predicted]))
        logger.info(
            "cycle 0: the prior's energies lie %+.4f eV/atom off the oracle's on average; "
            "removed before its prediction error",
            -offset,
        )
    errors_pred = [abs(p + (offset or 0.0) - e) for p, e, ranked in predicted if ranked]
    n_new = len(new_labels)
    doc = TrainingSetDocument(
        cycle=cycle,
        oracle=oracle,
        labels=labels,
        n_new=n_new,
        n_new_failed=len(failures),
        failures=failures,
        n_attempted_total=(previous.n_attempted_total if previous else 0) + n_new,
        n_failed_total=(previous.n_failed_total if previous else 0) + len(failures),
        prediction_mae=float(np.mean(errors_pred)) if errors_pred else None,
        prediction_offset=offset,
    )
    if failures:
        logger.warning(
            "cycle %d: %d of %d labels failed: %s",
            cycle,
            len(failures),
            n_new,
            "; ".join(sorted(set(failures)))[:300],
        )
    return doc


@crysal_job(gather=True)
def collect_labels(labels: list[LabelDocument | None]) -> list[LabelDocument | None]:
    """Pass the label jobs' outputs on as one list (fizzled jobs arrive as ``None``)."""
    return labels


@crysal_job
def label_structures(
    selection: SelectionDocument,
    label_maker: Maker,
    cycle: int,
    workers: WorkersConfig | None = None,
) -> Response:
    """Fan out: one oracle job per selected structure; replaces itself with them.

    Its output becomes the list of label documents (``None`` for a job that did not complete).
    """
    jobs = []
    n = len(selection.structures)
    for k, sel in enumerate(selection.structures):
        j = label_maker.make(
            sel.structure,
            cycle=cycle,
            source_index=sel.source_index,
            reason=sel.reason,
            predicted_energy_per_atom=sel.predicted_energy_per_atom,
            predicted_sigma_energy=sel.predicted_sigma_energy,
        )
        j.name = f"{label_maker.name} {k + 1}/{n} (cycle {cycle})"
        jobs.append(j)
    collect = collect_labels([j.output for j in jobs])
    collect.name = f"collect labels (cycle {cycle})"
    for k, j in enumerate(jobs, start=1):
        tag(j, Step.ORACLE_SINGLE_POINT, cycle, crysal_index=k, crysal_total=n)
    tag(collect, Step.COLLECT_LABELS, cycle)
    route(jobs, "oracle", workers)
    route(collect, "driver", workers)
    return Response(
        replace=Flow([*jobs, collect], output=collect.output, name=f"label cycle {cycle}")
    )
