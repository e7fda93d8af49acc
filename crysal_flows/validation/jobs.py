"""Validation: oracle relaxations of the best cluster representatives, and the final report."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from jobflow import Flow, Maker, Response
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from crysal_flows.analysis.schemas import ClusterDocument, CycleSummary
from crysal_flows.config import OracleConfig, ReferenceStructure
from crysal_flows.generation.schemas import PoolDocument
from crysal_flows.jobs import Step, crysal_job, stored_output, tag
from crysal_flows.oracles import get_oracle, oracle_identity
from crysal_flows.refs import StoredOutput
from crysal_flows.routing import route
from crysal_flows.settings import WorkersConfig
from crysal_flows.training.schemas import EnsembleDocument
from crysal_flows.utils import (
    atoms_to_structure,
    package_versions,
    space_group,
    structure_key,
    structure_to_atoms,
)
from crysal_flows.validation.schemas import (
    FailedRelaxationDocument,
    MinimumDocument,
    OracleRelaxDocument,
    ReportDocument,
    SymmetryCheckDocument,
)

logger = logging.getLogger(__name__)

REPORT_JOB_NAME = "crysal report"

__all__ = [
    "REPORT_JOB_NAME",
    "OracleRelaxMaker",
    "apply_checks",
    "build_reference",
    "check_minima",
    "group_minima",
    "make_report",
    "matches_reference",
    "minima_to_check",
    "oracle_relax",
    "symmetry_probe",
    "validate_minima",
    "validation_clusters",
    "within_window",
]


#: the symmetry check's probe: oracle steps from the rattled copy before it must lie lower ...
PROBE_STEPS = 10
#: ... by this much (eV/atom) to go on; a true minimum comes back within 0.1 meV/atom by then
PROBE_DROP = 2e-4
#: ... and a lower result that converges is checked again, up to this many checks in all
PROBE_ROUNDS = 3


def _past_symmetry(
    runner: Any,
    structure: Structure,
    energy: float,
    fmax: float,
    max_steps: int,
    rattle: float,
    hessian: Any = None,
    rounds: int = PROBE_ROUNDS,
    hessian_at: Any = None,
) -> tuple[int, Any]:
    """Whether a converged relaxation stopped at a symmetric stationary point, not a minimum.

    A relaxation keeps the symmetry it starts with: forces and stress of a symmetric structure
    are symmetric, so it can converge to a saddle that the symmetry holds it on (an R-3c Al4O6
    155 meV/atom above corundum; a P6/mmm Si16 that falls to hexagonal diamond). A copy of the
    result with the atoms rattled by ``rattle`` A (seeded) is relaxed for ``PROBE_STEPS`` steps,
    from ``hessian`` where the oracle takes one (the ensemble's, at the relaxation's start:
    true minima come back in fewer steps; a probe from it that neither converges nor goes lower
    is run again from BFGS's default Hessian): back at the same energy (or converged), it was a
    minimum; lower by ``PROBE_DROP`` eV/atom, the relaxation goes on from there, and where it
    converges the new result is checked in turn (at most ``rounds`` checks in all; a probe can
    converge on the flat ground beside a saddle). Structures without symmetry are not probed.
    ``hessian_at`` (a structure -> Hessian function, the ensemble's) gives the relaxation on from
    the probe its starting Hessian there, where the oracle takes one; without it, BFGS's default.

    Returns the oracle calls spent and the lower ``Relaxation``, or None (a minimum).
    """
    if rattle <= 0 or rounds <= 0 or max_steps <= 0 or space_group(structure)[1] <= 1:
        return 0, None
    atoms = structure_to_atoms(structure)
    atoms.rattle(rattle, seed=0)
    n = len(structure)
    rattled = atoms_to_structure(atoms)
    steps = min(PROBE_STEPS, max_steps)

    def lower(r: Any) -> bool:
        return math.isfinite(r.energy) and r.energy / n <= (energy / n) - PROBE_DROP

    probe, calls = None, 0
    if hessian is not None and runner.uses_hessian:
        probe = runner.relax(rattled, fmax, steps, hessian=hessian)
        calls = probe.n_steps
    if probe is None or not (lower(probe) or probe.converged):
        # without a Hessian, or neither back nor lower from it: BFGS on a poor guess of the
        # Hessian can climb (a P6/mmm Si16 saddle, +8 meV/atom after 10 steps), so BFGS's
        # default Hessian decides
        probe = runner.relax(rattled, fmax, steps)
        calls += probe.n_steps
    if not lower(probe):
        return calls, None
    result = probe
    if not probe.converged:
        h = hessian_at(probe.structure) if hessian_at and runner.uses_hessian else None
        if h is not None:
            rest = runner.relax(probe.structure, fmax, max(max_steps - calls, 1), hessian=h)
        else:
            rest = runner.relax(probe.structure, fmax, max(max_steps - calls, 1))
        calls += rest.n_steps
        if not math.isfinite(rest.energy):
            return calls, probe
        result = rest
    if result.converged:
        more, deeper = _past_symmetry(
            runner,
            result.structure,
            result.energy,
            fmax,
            max_steps - calls,
            rattle,
            None,
            rounds - 1,
            hessian_at,
        )
        calls += more
        if deeper is not None:
            result = deeper
    return calls, result


def minima_to_check(results: list[tuple[float, Structure] | None]) -> list[list[int]]:
    """Which converged results the symmetry check probes: the distinct minima with symmetry.

    ``results`` holds ``(energy_per_atom, structure)`` of each converged result, None for the
    others. Returns groups of indices into ``results`` (``group_minima``), lowest first within
    and between groups: the first of each is checked, for all of them.
    """
    held = [
        i
        for i, r in enumerate(results)
        if r is not None and space_group(r[1])[1] > 1  # P1 holds no saddle by symmetry
    ]
    held.sort(key=lambda i: results[i][0])
    groups = group_minima([results[i] for i in held])
    return [[held[k] for k in g] for g in groups]


def within_window(
    groups: list[list[int]], results: list[tuple[float, Structure] | None], window: float | None
) -> list[list[int]]:
    """Return the groups of ``minima_to_check`` that validation.symmetry_window lets the check take.

    Those whose minimum lies within ``window`` eV/atom of the lowest converged result of
    ``results``; all of them where ``window`` is None.
    """
    if window is None or not groups:
        return groups
    lowest = min(r[0] for r in results if r is not None)
    return [g for g in groups if results[g[0]][0] <= lowest + window]


class _Counting:
    """An oracle runner that counts the oracle calls of the relaxations it finished."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.calls = runner, 0
        self.uses_hessian = runner.uses_hessian

    def relax(self, *args: Any, **kwargs: Any) -> Any:
        result = self.runner.relax(*args, **kwargs)
        self.calls += result.n_steps
        return result


def _check_symmetry(
    runner: Any,
    structure: Structure,
    energy: float,
    fmax: float,
    max_steps: int,
    rattle: float,
    hessian: Any = None,
    hessian_at: Any = None,
) -> tuple[int, Any, str | None]:
    """Run ``_past_symmetry`` on a converged result; a check that raises leaves it standing.

    Returns the oracle calls spent (those of the relaxations it finished, where it raised), the
    lower ``Relaxation`` or None, and the error, if any.
    """
    counting = _Counting(runner)
    try:
        _, lower = _past_symmetry(
            counting, structure, energy, fmax, max_steps, rattle, hessian, hessian_at=hessian_at
        )
    except Exception as exc:  # the minimum found stands; the check is extra
        error = f"{type(exc).__name__}: {exc}"
        logger.warning("validation: symmetry check failed (%s); the minimum stands", error[:200])
        return counting.calls, None, error[:500]
    if lower is not None:
        n = len(structure)
        logger.info(
            "validation: %.4f eV/atom (%s) was a symmetric stationary point, not a minimum: "
            "rattled by %.2f A it relaxed on to %.4f eV/atom (%s) in %d steps",
            energy / n,
            space_group(structure)[0],
            rattle,
            lower.energy / n,
            space_group(lower.structure)[0],
            counting.calls,
        )
    return counting.calls, lower, None


def oracle_relax(
    structure: Structure,
    oracle: OracleConfig,
    fmax: float,
    max_steps: int,
    hessian: Any = None,
    symmetry_rattle: float = 0.0,
    ensemble: EnsembleDocument | None = None,
    **meta,
) -> OracleRelaxDocument:
    """Relax positions and cell with the oracle, counting oracle calls; failures are recorded.

    ``hessian`` (an array or nested lists, see ``crysal_flows.relaxation.hessian``) is the
    starting Hessian, for oracles whose ``uses_hessian`` is set; others relax without it. Without
    one, an ``ensemble`` gives its Hessian at ``structure`` (``ensemble_hessian``), computed
    here. With ``symmetry_rattle`` (A), a converged result with symmetry is checked for a
    stationary point that is not a minimum (``_past_symmetry``); the check's oracle calls are
    counted.
    """
    t0 = time.perf_counter()
    runner = get_oracle(oracle)
    identity = runner.identity
    if hessian is None and ensemble is not None and runner.uses_hessian:
        hessian = ensemble_hessian(structure, ensemble)
    used = hessian is not None and runner.uses_hessian
    meta["ensemble_hessian"] = used
    try:
        if used:
            result = runner.relax(structure, fmax, max_steps, hessian=hessian)
        else:
            result = runner.relax(structure, fmax, max_steps)
        final, energy, calls, converged = (
            result.structure,
            result.energy,
            result.n_steps,
            result.converged,
        )
        if not math.isfinite(energy):
            raise FloatingPointError("oracle energy is not finite")
        if converged:
            extra, lower, _ = _check_symmetry(
                runner, final, energy, fmax, max_steps, symmetry_rattle, hessian if used else None
            )
            calls += extra
            meta["symmetry_check_calls"] = extra
            if lower is not None:
                meta["stationary_energy_per_atom"] = energy / len(structure)
                final, energy, converged = lower.structure, lower.energy, lower.converged
    except Exception as exc:  # the report lists failures; the search result survives them
        logger.warning(
            "validation: oracle relaxation failed after %.0f s: %s",
            time.perf_counter() - t0,
            f"{type(exc).__name__}: {exc}"[:200],
        )
        return OracleRelaxDocument(
            oracle=identity,
            success=False,
            error=f"{type(exc).__name__}: {exc}"[:500],
            initial_structure=structure,
            seconds=time.perf_counter() - t0,
            **meta,
        )
    logger.info(
        "validation: relaxed with the oracle to %.4f eV/atom in %d steps (%s), %.0f s",
        energy / len(structure),
        calls,
        "converged" if converged else "not converged",
        time.perf_counter() - t0,
    )
    return OracleRelaxDocument(
        oracle=identity,
        success=True,
        converged=converged,
        oracle_calls=calls,
        initial_structure=structure,
        structure=final,
        energy_per_atom=energy / len(structure),
        seconds=time.perf_counter() - t0,
        **meta,
    )


def _hessian_source(hessian: Any, ensemble: EnsembleDocument | None) -> str:
    """Name the starting Hessian of a relaxation for its key: none, a matrix or an ensemble."""
    import hashlib

    if hessian is not None:
        matrix = np.round(np.asarray(hessian, dtype=float), 8)
        return "matrix:" + hashlib.sha256(matrix.tobytes()).hexdigest()[:16]
    if ensemble is not None:
        ids = [m.sha256 for m in ensemble.members]
        prior = "" if ensemble.prior is None else ensemble.prior.model_dump_json()
        return "ensemble:" + hashlib.sha256("|".join([*ids, prior]).encode()).hexdigest()[:16]
    return "none"


def _reused(key: str, what: str, query: dict[str, Any]) -> Any:
    """Return the output of this key that the run stored before it was resumed, if any."""
    doc = stored_output(key, query)
    if doc is not None:
        logger.info("validation: %s %s reused from the store (the run was resumed)", what, key[:8])
        doc = doc.model_copy(update={"reused": True})
    return doc


@dataclass
class OracleRelaxMaker(Maker):
    """Relax one structure with the oracle (a DFT job on a cluster)."""

    name: str = "oracle relax"
    oracle: OracleConfig = field(default_factory=OracleConfig)
    fmax: float = 0.05
    max_steps: int = 300
    symmetry_rattle: float = 0.0  # see oracle_relax; references are relaxed without the check
    #: check_minima checks only minima this close (eV/atom) to the lowest result; None: all
    #: (workflows added before the window keep checking every minimum)
    symmetry_window: float | None = None

    @crysal_job(schema=OracleRelaxDocument)
    def make(
        self,
        structure: Structure,
        source_index: int | None = None,
        cluster_rank: int | None = None,
        predicted_energy_per_atom: float | None = None,
        reference: str | None = None,
        hessian: list[list[float]] | None = None,
        ensemble: EnsembleDocument | None = None,
    ) -> OracleRelaxDocument:
        """Relax ``structure`` (from ``hessian``, or ``ensemble``'s Hessian at it, if given).

        Failures come back unsuccessful. ``ensemble`` is best passed as a ``StoredOutput``: the
        job loads it where it runs, and its document holds a uuid instead of a matrix. A run
        resumed after a crash gets back the relaxations it had finished (same ``key``) from the
        store instead of running them again.
        """
        rattle = self.symmetry_rattle if reference is None else 0.0
        meta = {
            "source_index": source_index,
            "cluster_rank": cluster_rank,
            "predicted_energy_per_atom": predicted_energy_per_atom,
            "reference": reference,
        }
        runner = get_oracle(self.oracle)
        key = structure_key(
            structure,
            f"relax|{runner.identity}|{self.fmax}|{self.max_steps}|{rattle}|"
            + (_hessian_source(hessian, ensemble) if runner.uses_hessian else "none"),
        )
        done = _reused(key, "relaxation", {"output.success": True})
        if done is not None:
            return done.model_copy(update=meta)
        return oracle_relax(
            structure,
            self.oracle,
            self.fmax,
            self.max_steps,
            hessian,
            symmetry_rattle=rattle,
            ensemble=ensemble,
            key=key,
            **meta,
        )


#: two validation results are one minimum where they lie within this much (eV/atom) ...
SAME_MINIMUM_ENERGY = 2e-3


def group_minima(results: list[tuple[float, Structure]]) -> list[list[int]]:
    """Group ``(energy_per_atom, structure)`` pairs into distinct minima, as indices.

    ... and StructureMatcher fits them (primitive cells, scaled volume, supercells). Each group is
    compared by its first member, so pass the results lowest first for the lowest as the head.
    """
    matcher = StructureMatcher(primitive_cell=True, scale=True, attempt_supercell=True)
    groups: list[list[int]] = []
    for i, (e, s) in enumerate(results):
        for g in groups:
            e0, s0 = results[g[0]]
            if abs(e0 - e) < SAME_MINIMUM_ENERGY and matcher.fit(s0, s):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


@crysal_job(schema=SymmetryCheckDocument)
def symmetry_probe(
    structure: Structure,
    energy_per_atom: float,
    relaxations: list[int],
    oracle: OracleConfig,
    fmax: float,
    max_steps: int,
    rattle: float,
    hessian: list[list[float]] | None = None,
    ensemble: EnsembleDocument | None = None,
    start: Structure | None = None,
) -> SymmetryCheckDocument:
    """Check one converged validation minimum past its symmetry (``_past_symmetry``).

    ``relaxations`` are the validation relaxations that converged to it (their indices), whom
    the result stands for; the probe starts from ``hessian``, or from ``ensemble``'s Hessian at
    ``start`` (the first relaxation's starting structure), computed here. A check that fails
    leaves the minimum as it was, with the calls of the relaxations it finished counted.
    """
    t0 = time.perf_counter()
    runner = get_oracle(oracle)
    n = len(structure)
    from_ensemble = (
        hessian is None and ensemble is not None and start is not None and runner.uses_hessian
    )
    source = "none"
    if from_ensemble:
        # "+on": the relaxation on from the probe starts from the ensemble's Hessian there too
        source = _hessian_source(None, ensemble) + "@" + structure_key(start, "") + "+on"
    elif hessian is not None and runner.uses_hessian:
        source = _hessian_source(hessian, None)
    key = structure_key(
        structure,
        f"probe|{runner.identity}|{energy_per_atom!r}|{fmax}|{max_steps}|{rattle}|{source}",
    )
    done = _reused(key, "symmetry check", {"output.error": None})
    if done is not None:
        return done.model_copy(update={"relaxations": relaxations})
    hessian_at = None
    if from_ensemble:  # the ensemble loaded once, for the probe's start and the relaxation on
        hessian_at = _hessian_function(ensemble)
        hessian = hessian_at(start) if hessian_at is not None else None
    calls, lower, error = _check_symmetry(
        runner, structure, energy_per_atom * n, fmax, max_steps, rattle, hessian, hessian_at
    )
    if lower is None and error is None:
        logger.info(
            "validation: %.4f eV/atom (%s, %d relaxation%s) is a minimum: the symmetry check "
            "came back in %d steps",
            energy_per_atom,
            space_group(structure)[0],
            len(relaxations),
            "s" if len(relaxations) > 1 else "",
            calls,
        )
    return SymmetryCheckDocument(
        relaxations=relaxations,
        oracle=runner.identity,
        energy_per_atom=energy_per_atom,
        oracle_calls=calls,
        lower=lower is not None,
        structure=None if lower is None else lower.structure,
        lower_energy_per_atom=None if lower is None else lower.energy / n,
        converged=True if lower is None else lower.converged,
        error=error,
        seconds=time.perf_counter() - t0,
        key=key,
    )


@crysal_job(gather=True)
def check_minima(
    relaxations: list[OracleRelaxDocument | None],
    relax_maker: OracleRelaxMaker | list,
    workers: Any = None,
    ensemble_uuid: Any = None,
) -> Response | list:
    """Fan out: one symmetry check (validation.symmetry_rattle) per distinct validation minimum.

    The converged results with symmetry are grouped as the report groups minima
    (``group_minima``); the lowest of each group is checked, from the Hessian its relaxation
    started from (where it started from the ensemble's: that of the ensemble whose output has
    ``ensemble_uuid``, computed in the check's own job). Several clusters often converge to the
    same minimum, which is then checked once. With the maker's ``symmetry_window``, minima more
    than that above the lowest converged result are not checked (the report marks them). Returns
    the checks' documents, for ``make_report``.

    Workflows added by older versions call it as ``(relaxations, hessians, relax_maker,
    workers)``, the starting Hessians as matrices; that still runs.
    """
    hessians = None
    if not isinstance(relax_maker, OracleRelaxMaker):  # a workflow an older version added
        hessians, relax_maker, workers, ensemble_uuid = relax_maker, workers, ensemble_uuid, None
    if relax_maker.symmetry_rattle <= 0:
        return []
    converged = [
        (r.energy_per_atom, r.structure)
        if r is not None and r.success and r.converged and r.structure is not None
        else None
        for r in relaxations
    ]
    every = minima_to_check(converged)
    window = getattr(relax_maker, "symmetry_window", None)
    groups = within_window(every, converged, window)
    if len(groups) < len(every):
        logger.info(
            "validation: %d of %d distinct minima with symmetry lie more than %g eV/atom above "
            "the lowest result (%.4f eV/atom) and are not checked (validation.symmetry_window)",
            len(every) - len(groups),
            len(every),
            window,
            min(c[0] for c in converged if c is not None),
        )
    if not groups:
        return []
    probes = []
    for k, g in enumerate(groups, start=1):
        r = relaxations[g[0]]
        from_ensemble = r.ensemble_hessian and ensemble_uuid is not None
        p = symmetry_probe(
            r.structure,
            r.energy_per_atom,
            g,
            relax_maker.oracle,
            relax_maker.fmax,
            relax_maker.max_steps,
            relax_maker.symmetry_rattle,
            ensemble=StoredOutput(uuid=ensemble_uuid) if from_ensemble else None,
            start=r.initial_structure if from_ensemble else None,
            **({"hessian": hessians[g[0]]} if hessians else {}),
        )
        p.name = (
            f"{relax_maker.name} symmetry check {k}/{len(groups)} (validation, "
            f"{space_group(r.structure)[0]} {r.energy_per_atom:.4f} eV/atom)"
        )
        probes.append(p)
    logger.info(
        "validation: %d converged results with symmetry, %d distinct minima to check",
        sum(len(g) for g in groups),
        len(groups),
    )
    tag(probes, Step.SYMMETRY_PROBE)
    route(probes, "oracle", workers)
    return Response(replace=Flow(probes, output=[p.output for p in probes], name="symmetry check"))


def apply_checks(
    relaxations: list[OracleRelaxDocument | None],
    checks: list[SymmetryCheckDocument | None],
) -> list[OracleRelaxDocument | None]:
    """Return the validation relaxations with what their minima's symmetry checks found.

    The first relaxation of each check is charged its oracle calls; where the check went lower,
    every relaxation of that minimum takes the lower result and keeps its own energy as
    ``stationary_energy_per_atom``.
    """
    out = list(relaxations)
    for c in checks:
        if c is None:
            continue
        for k, i in enumerate(c.relaxations):
            r = out[i] if 0 <= i < len(out) else None
            if r is None:
                continue
            update: dict[str, Any] = {}
            if k == 0:
                update["oracle_calls"] = r.oracle_calls + c.oracle_calls
                update["symmetry_check_calls"] = r.symmetry_check_calls + c.oracle_calls
            if c.lower and c.structure is not None:
                update.update(
                    structure=c.structure,
                    energy_per_atom=c.lower_energy_per_atom,
                    converged=c.converged,
                    stationary_energy_per_atom=r.energy_per_atom,
                )
            out[i] = r.model_copy(update=update)
    return out


def build_reference(ref: ReferenceStructure) -> Structure:
    """Build a reference structure from a file or ``ase.build.bulk`` arguments."""
    if ref.file is not None:
        return Structure.from_file(ref.file)
    from ase.build import bulk

    return atoms_to_structure(bulk(**(ref.bulk or {})))


#: a minimum that matches a reference's structure but lies further than this (eV/atom) from
#: the reference's own oracle relaxation is not counted as it: StructureMatcher took Al4O6's
#: R-3c saddle 155 meV/atom above corundum for corundum (the same space group and sites)
MATCH_ENERGY_TOL = 0.01


def matches_reference(
    structure: Structure,
    reference: Structure,
    energy_per_atom: float | None = None,
    reference_energy_per_atom: float | None = None,
) -> bool:
    """Whether ``structure`` is ``reference``: primitive cells at matched volume, supercells too.

    Given both energies (the same oracle), they must also agree within ``MATCH_ENERGY_TOL``.
    """
    return _energies_agree(energy_per_atom, reference_energy_per_atom) and StructureMatcher(
        primitive_cell=True, scale=True, attempt_supercell=True
    ).fit(structure, reference)


def _energies_agree(energy_per_atom: float | None, reference_energy_per_atom: float | None) -> bool:
    """Whether two oracle energies agree within ``MATCH_ENERGY_TOL`` (True where one is unknown)."""
    return (
        energy_per_atom is None
        or reference_energy_per_atom is None
        or abs(energy_per_atom - reference_energy_per_atom) <= MATCH_ENERGY_TOL
    )


def _checked(
    group: list[OracleRelaxDocument], position: dict[int, int], probed: set[int]
) -> bool | None:
    """Whether the symmetry check covered a minimum.

    False for a converged minimum with symmetry that it did not cover (outside
    validation.symmetry_window, or its check failed); None where there was nothing to check.
    """
    if any(position.get(id(r)) in probed for r in group):
        return True
    head = group[0]
    if head.converged and space_group(head.structure)[1] > 1:
        return False
    return None


@crysal_job(schema=ReportDocument, gather=True)
def make_report(
    relaxations: list[OracleRelaxDocument | None],
    picks: list[dict[str, Any]],
    reference_relaxations: list[OracleRelaxDocument | None],
    summaries: list,
    run: dict,
    references: list[ReferenceStructure],
    oracle: OracleConfig,
    started: float | None = None,
    checks: list[SymmetryCheckDocument | None] | None = None,
    checked: bool = False,
) -> ReportDocument:
    """Deduplicate the oracle-relaxed minima, match references, add up the oracle cost.

    ``picks`` says what each of ``relaxations`` relaxed (``cluster_rank``, ``source_index``); a
    relaxation that failed, or whose job did not complete (``None``), is listed in
    ``failed_relaxations`` and the others are reported. ``reference_relaxations`` are the oracle
    relaxations of ``references``, in order (not counted in the oracle cost). ``checks`` are the
    symmetry checks of the distinct minima (``check_minima``), where ``checked`` says one ran.
    """
    if checked and checks is None:
        logger.warning(
            "validation: the symmetry check did not complete; the minima are reported unchecked"
        )
    relaxations = apply_checks(relaxations, checks or [])
    done = [r for r in relaxations if r is not None and r.success and r.structure is not None]
    done.sort(key=lambda r: r.energy_per_atom)
    failed = []
    label_of: dict[int, str] = {}  # id of a relaxation -> key of the label it started from
    for pick, r in zip(picks, relaxations, strict=True):
        if r is not None and pick.get("label"):
            label_of[id(r)] = pick["label"]
        if r is None or not r.success or r.structure is None:
            error = "the relaxation job did not complete" if r is None else (r.error or "failed")
            failed.append(FailedRelaxationDocument(error=error, **pick))
    if failed:
        logger.warning(
            "validation: %d of %d oracle relaxations failed: %s",
            len(failed),
            len(picks),
            "; ".join(f.error for f in failed)[:300],
        )
    groups = [
        [done[i] for i in g] for g in group_minima([(r.energy_per_atom, r.structure) for r in done])
    ]
    position = {id(r): i for i, r in enumerate(relaxations) if r is not None}
    probed = {i for c in checks or [] if c is not None and c.error is None for i in c.relaxations}
    ref_structs = {ref.label: build_reference(ref) for ref in references}
    ref_energies = {
        ref.label: (rr.energy_per_atom if rr is not None else None)
        for ref, rr in zip(references, reference_relaxations, strict=True)
    }
    best = groups[0][0].energy_per_atom if groups else math.nan
    minima = []
    for rank, g in enumerate(groups, start=1):
        head = g[0]
        symbol, number = space_group(head.structure)
        shaped = [label for label, s in ref_structs.items() if matches_reference(head.structure, s)]
        matches = [
            label
            for label in shaped
            if _energies_agree(head.energy_per_atom, ref_energies.get(label))
        ]
        minima.append(
            MinimumDocument(
                rank=rank,
                structure=head.structure,
                energy_per_atom=head.energy_per_atom,
                energy_above_best=head.energy_per_atom - best,
                predicted_energy_per_atom=next(
                    (p for r in g if (p := r.predicted_energy_per_atom) is not None), None
                ),
                space_group_symbol=symbol,
                space_group_number=number,
                matches=matches,
                structure_matches=[label for label in shaped if label not in matches],
                source_indices=[r.source_index for r in g if r.source_index is not None],
                labels=[label_of[id(r)] for r in g if id(r) in label_of],
                symmetry_checked=_checked(g, position, probed) if checked else None,
            )
        )
    last = summaries[-1] if summaries else None
    single_points = last.oracle_single_points if last else 0
    steps = sum(r.oracle_calls for r in relaxations if r is not None)
    found = sorted({m for mn in minima for m in mn.matches})
    history = [
        {
            "cycle": s.cycle,
            "labels": s.oracle_single_points,
            "best_energy_per_atom": s.best_energy_per_atom,
            "clusters": len(s.clusters),
            "top_energy_change": s.top_energy_change,
            "prediction_mae": s.prediction_mae,
            "sigma_force_median": s.sigma_force_median,
            "status_counts": s.status_counts,
        }
        for s in summaries
        if s is not None
    ]
    report = ReportDocument(
        run_id=run["run_id"],
        name=run["name"],
        composition=run["composition"],
        oracle=oracle_identity(oracle),
        cycles=len(history),
        converged=bool(last.converged) if last else False,
        oracle_single_points=single_points,
        failed_labels=last.failed_labels if last else 0,
        validation_steps=steps,
        symmetry_check_steps=sum(r.symmetry_check_calls for r in relaxations if r is not None),
        oracle_cost=single_points + steps,
        minima=minima,
        failed_relaxations=failed,
        references=ref_energies,
        found=found,
        history=history,
        seconds=(time.time() - started) if started else None,
        packages=package_versions(),
    )
    logger.info(
        "search %s finished: %d minima, oracle cost %d (%d single points + %d validation steps)%s",
        run["name"],
        len(minima),
        report.oracle_cost,
        single_points,
        steps,
        f", found {', '.join(found)}" if found else "",
    )
    return report


def ensemble_hessian(structure: Structure, ensemble: Any) -> list[list[float]] | None:
    """Return the ensemble's Hessian at ``structure`` (``model_hessian``), or ``None``.

    ``ensemble`` is an ``EnsembleDocument`` (loaded here) or an ensemble already loaded.

    The oracle job computes it where it runs, from the ensemble's document: a starting Hessian
    is (3N + 9)^2 numbers, 0.4 MB of JSON for 46 atoms, and as a job input it would travel in
    the document of the job that adds the relaxation, once per relaxation. A Hessian that cannot
    be computed costs oracle steps (BFGS's default instead), never the relaxation.
    """
    from crysal_flows.models.ensemble import load_ensemble
    from crysal_flows.relaxation.hessian import model_hessian

    t0 = time.perf_counter()
    try:
        if isinstance(ensemble, EnsembleDocument):
            ensemble = load_ensemble(ensemble)
        h = model_hessian(structure_to_atoms(structure), ensemble).tolist()
    except Exception as exc:
        logger.warning("validation: no starting Hessian (%s); BFGS's default instead", exc)
        return None
    logger.info("validation: the ensemble's Hessian in %.1f s", time.perf_counter() - t0)
    return h


def _hessian_function(ensemble: Any) -> Any:
    """Return ``ensemble``'s structure -> Hessian function (loaded once), or None."""
    from crysal_flows.models.ensemble import load_ensemble

    try:
        loaded = load_ensemble(ensemble) if isinstance(ensemble, EnsembleDocument) else ensemble
    except Exception as exc:
        logger.warning("validation: the ensemble did not load (%s); BFGS's default Hessian", exc)
        return None
    return lambda structure: ensemble_hessian(structure, loaded)


def _starting_hessians(
    structures: list[Structure],
    ensemble: EnsembleDocument | None,
    hessian: str,
    oracle: OracleConfig,
) -> list[list[list[float]] | None]:
    """Return the ensemble's Hessian at each structure, or ``None`` where it is not used.

    For the replay scripts in ``benchmarks/``; the search computes each in its oracle job.
    """
    if hessian != "ensemble" or ensemble is None or not get_oracle(oracle).uses_hessian:
        return [None] * len(structures)
    from crysal_flows.models.ensemble import load_ensemble

    loaded = load_ensemble(ensemble)
    return [ensemble_hessian(s, loaded) for s in structures]


def validation_clusters(summary: CycleSummary, n_structures: int) -> list[ClusterDocument]:
    """Return the clusters validation relaxes: the lowest, then the summary's novel ones.

    The novel clusters (``validation.n_novel``, chosen by the analysis) take the last places of
    the ``n_structures``; where fewer qualified, the next lowest clusters fill them.
    """
    novel = list(summary.novel_clusters[: max(n_structures - 1, 0)])
    lowest = [cl for cl in summary.clusters if all(cl.rank != x.rank for x in novel)]
    return [*lowest[: n_structures - len(novel)], *novel]


@crysal_job
def validate_minima(
    pool: PoolDocument,
    summary: CycleSummary,
    summary_uuids: list[str],
    relax_maker: OracleRelaxMaker,
    n_structures: int,
    run: dict,
    references: list[ReferenceStructure],
    started: float | None = None,
    workers: WorkersConfig | None = None,
    ensemble_uuid: str | None = None,
    hessian: str = "default",
    ensemble: EnsembleDocument | None = None,
) -> Response:
    """Fan out: oracle relaxations of the best clusters and of the references, then the report.

    Replaces itself with one oracle job per cluster representative and per reference, and the
    report job that gathers them. With ``hessian="ensemble"``, an ``ensemble_uuid`` (of the job
    whose output is the last ensemble) and an oracle that takes a starting Hessian, each
    relaxation starts from the ensemble's Hessian at its structure
    (``crysal_flows.relaxation.hessian``), computed in the oracle job: the jobs added here
    carry the ensemble's uuid, not the matrices.

    ``ensemble`` (the ensemble's document itself) is what workflows added by older versions
    pass: a search added to a LaunchPad before an upgrade and still running after it computes
    the Hessians here, as those versions did, and its relaxations carry them as matrices.
    """
    by_index = {c.index: c for c in pool.candidates}
    jobs, picks = [], []
    chosen = validation_clusters(summary, n_structures)
    for cl in chosen:
        if cl.label_distance is not None:
            logger.info(
                "validation: novel cluster %d (%s, %.3f eV/atom above the best, fingerprint "
                "distance %.3f from the nearest label)",
                cl.rank,
                cl.space_group,
                cl.energy_per_atom - summary.clusters[0].energy_per_atom,
                cl.label_distance,
            )
    deep = summary.deep_labels
    for lab in deep:
        logger.info(
            "validation: label %s of cycle %d (%s), %.4f eV/atom, %.3f eV/atom below the best "
            "cluster's prediction",
            lab.key[:8],
            lab.cycle,
            lab.reason,
            lab.energy_per_atom,
            lab.below_best,
        )
    from_ensemble = None
    if hessian == "ensemble" and ensemble_uuid is not None:
        if get_oracle(relax_maker.oracle).uses_hessian:
            from_ensemble = ensemble_uuid
        else:
            logger.info("validation: the oracle relaxes with its own optimiser, from no Hessian")
    n_all = len(chosen) + len(deep)
    # makers of old take no ensemble
    extra = [{} if from_ensemble is None else {"ensemble": StoredOutput(uuid=from_ensemble)}]
    extra *= n_all
    if ensemble is not None and ensemble_uuid is None:  # a workflow an older version added
        logger.info("validation: the ensemble's Hessians computed here (an older workflow)")
        starts = [by_index[cl.representative].structure for cl in chosen]
        starts += [lab.structure for lab in deep]
        hessians = _starting_hessians(starts, ensemble, hessian, relax_maker.oracle)
        extra = [{} if h is None else {"hessian": h} for h in hessians]
    maker = relax_maker
    if getattr(relax_maker, "symmetry_rattle", 0.0) > 0:
        maker = replace(relax_maker, symmetry_rattle=0.0)  # checked after, once per minimum
    for i, cl in enumerate(chosen, start=1):
        c = by_index[cl.representative]
        j = maker.make(
            c.structure,
            source_index=c.index,
            cluster_rank=cl.rank,
            predicted_energy_per_atom=c.energy_per_atom,
            **extra[i - 1],
        )
        what = "novel cluster" if cl.label_distance is not None else "cluster"
        j.name = f"{relax_maker.name} {i}/{n_all} (validation, {what} {cl.rank})"
        jobs.append(j)
        picks.append({"cluster_rank": cl.rank, "source_index": c.index})
    for i, lab in enumerate(deep, start=1):
        j = maker.make(lab.structure, **extra[len(chosen) + i - 1])
        j.name = f"{relax_maker.name} {len(chosen) + i}/{n_all} (validation, label {lab.key[:8]})"
        jobs.append(j)
        picks.append({"label": lab.key})
    ref_jobs = []
    for ref in references:
        j = relax_maker.make(build_reference(ref), reference=ref.label)
        j.name = f"{relax_maker.name} reference {ref.label}"
        ref_jobs.append(j)
    summaries = [StoredOutput(uuid=u) for u in summary_uuids]
    check = None
    if getattr(relax_maker, "symmetry_rattle", 0.0) > 0 and jobs:
        # the results are checked once per distinct minimum after they are all in, not each
        # in its own job: clusters often converge to the same minimum
        check = check_minima([j.output for j in jobs], relax_maker, workers, from_ensemble)
        check.name = f"{relax_maker.name} symmetry check (validation)"
    report = make_report(
        [j.output for j in jobs],
        picks,
        [j.output for j in ref_jobs],
        summaries,
        run,
        references,
        relax_maker.oracle,
        started,
        checks=None if check is None else check.output,
        checked=check is not None,
    )
    report.name = REPORT_JOB_NAME
    tag(jobs, Step.ORACLE_RELAX)
    tag(ref_jobs, Step.REFERENCE_RELAX)
    tag(report, Step.REPORT)
    route([*jobs, *ref_jobs], "oracle", workers)
    route(report, "driver", workers)
    checking = []
    if check is not None:
        tag(check, Step.SYMMETRY_CHECK)
        route(check, "driver", workers)
        checking = [check]
    return Response(
        replace=Flow([*jobs, *ref_jobs, *checking, report], output=report.output, name="validation")
    )
