"""Relaxing candidates with the ensemble mean: batched FIRE, and the one-at-a-time ASE path.

Both paths optimise positions and cell together with ASE's ``UnitCellFilter`` generalised
coordinates (atom positions in the undeformed frame plus ``n_atoms`` times the deformation gradient)
and ASE's FIRE rules, so they take identical steps up to floating-point noise. The batched path
evaluates every ensemble member on many candidates at once and refills a slot as soon as its
candidate stops, so one slow candidate never holds a batch.

A candidate stops when
- its largest generalised force is below ``fmax`` (``converged``),
- the ensemble disagrees: max sigma_F >= max(uncertainty_ratio * max|mean F|, uncertainty_floor,
  and, with ``uncertainty_quantile``, that quantile of the candidates' sigma_F before they move)
  (``uncertain``; the model is out of its depth there, which makes that frame a good label); F are
  the generalised forces, atoms and cell (virial per atom), so that a symmetric cell, whose atomic
  forces vanish in every member, still shows the members' disagreement,
- its energy falls ``energy_trust`` eV/atom below the lowest label the ensemble was trained on
  (``uncertain``: the models have seen nothing lower),
- it found no new energy minimum for ``patience`` steps (``stalled``),
- it reached ``max_steps`` (``max_steps``), or
- its energy, forces or stress are not finite, or its volume collapsed or exploded (``failed``).
The candidate's new structure is the lowest-energy frame before the stop.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from crysal_flows.config import RelaxationConfig
from crysal_flows.models.ensemble import Ensemble
from crysal_flows.schemas import CandidateStatus

logger = logging.getLogger(__name__)

__all__ = ["CommitteeCalculator", "RelaxOutcome", "relax_ase", "relax_batched"]

# ASE FIRE defaults
_DT, _DTMAX, _NMIN, _FINC, _FDEC, _ASTART, _FA = 0.1, 1.0, 5, 1.1, 0.5, 0.1, 0.99


@dataclass
class RelaxOutcome:
    """Where one candidate's relaxation ended."""

    status: CandidateStatus
    steps: int
    best_atoms: Atoms
    final_atoms: Atoms
    energy: float  # ensemble-mean energy of best_atoms, eV
    sigma_energy: float  # eV
    sigma_force: float  # at the final frame, eV/A
    max_force: float  # generalised, at the final frame, eV/A
    energies: list[float] = field(default_factory=list)  # trajectory of mean energies


def _generalised_forces(
    forces: np.ndarray, stress: np.ndarray, cell: np.ndarray, deform: np.ndarray
) -> np.ndarray:
    """ASE UnitCellFilter forces: atom forces in the undeformed frame plus virial / n_atoms."""
    n = len(forces)
    volume = abs(np.linalg.det(cell))
    virial = -volume * stress
    out = np.empty((n + 3, 3))
    out[:n] = forces @ deform
    out[n:] = np.linalg.solve(deform, virial.T).T / n
    return out


def starting_uncertainty(
    atoms_list: Sequence[Atoms], ensemble: Ensemble, cfg: RelaxationConfig
) -> float:
    """Return ``cfg.uncertainty_quantile`` of the candidates' sigma_F before they move (eV/A).

    0 without that setting. One ensemble evaluation of every candidate, in batches.
    """
    if cfg.uncertainty_quantile is None or not atoms_list:
        return 0.0
    sig = []
    for start in range(0, len(atoms_list), cfg.batch_size):
        chunk = list(atoms_list[start : start + cfg.batch_size])
        pred = ensemble.predict(chunk)
        sig.extend(pred.sigma_generalised_force([a.get_volume() for a in chunk]))
    sig = np.asarray(sig, dtype=float)
    sig = sig[np.isfinite(sig)]
    return float(np.quantile(sig, cfg.uncertainty_quantile)) if len(sig) else 0.0


def _energy_floor(cfg: RelaxationConfig, lowest_label: float | None, n_atoms: int) -> float:
    """Total energy (eV) below which a candidate stops: ``energy_trust`` under the lowest label."""
    if cfg.energy_trust is None or lowest_label is None or not math.isfinite(lowest_label):
        return -math.inf
    return (lowest_label - cfg.energy_trust) * n_atoms


def _stop_reason(
    energy: float,
    forces: np.ndarray,
    stress: np.ndarray,
    sigma_f: float,
    gen_forces: np.ndarray,
    volume: float,
    steps: int,
    since_best: int,
    cfg: RelaxationConfig,
    min_volume: float,
    energy_floor: float = -math.inf,
    sigma_ref: float = 0.0,
    max_volume: float = math.inf,
) -> CandidateStatus | None:
    if not (
        math.isfinite(energy)
        and np.isfinite(forces).all()
        and np.isfinite(stress).all()
        and math.isfinite(sigma_f)
    ):
        return CandidateStatus.FAILED
    if not min_volume <= volume <= max_volume:
        return CandidateStatus.FAILED
    if energy < energy_floor:  # below anything the models were trained on
        return CandidateStatus.UNCERTAIN
    fmax = float(np.sqrt((gen_forces**2).sum(1)).max())
    if fmax < cfg.fmax:
        return CandidateStatus.CONVERGED
    if sigma_f >= max(cfg.uncertainty_ratio * fmax, cfg.uncertainty_floor, sigma_ref):
        return CandidateStatus.UNCERTAIN
    if steps >= cfg.max_steps:
        return CandidateStatus.MAX_STEPS
    if since_best >= cfg.patience:
        return CandidateStatus.STALLED
    return None


@dataclass
class _Slot:
    index: int
    atoms: Atoms
    orig_cell: np.ndarray
    v: np.ndarray
    dt: float = _DT
    a: float = _ASTART
    n_pos: int = 0
    steps: int = 0
    since_best: int = 0
    best_energy: float = math.inf
    best_atoms: Atoms | None = None
    best_sigma_e: float = math.nan
    energies: list[float] = field(default_factory=list)


def _fire_update(slot: _Slot, gen_forces: np.ndarray, max_step: float) -> None:
    """One ASE-FIRE step of a candidate in UnitCellFilter coordinates (in place)."""
    atoms, n = slot.atoms, len(slot.atoms)
    deform = np.linalg.solve(slot.orig_cell, atoms.cell.array).T
    f = gen_forces
    if slot.steps > 0:  # ASE FIRE starts with v = 0 and skips the mixing on its first step
        vf = float(np.vdot(f, slot.v))
        if vf > 0.0:
            slot.v = (1.0 - slot.a) * slot.v + slot.a * f / np.sqrt(np.vdot(f, f)) * np.sqrt(
                np.vdot(slot.v, slot.v)
            )
            if slot.n_pos > _NMIN:
                slot.dt = min(slot.dt * _FINC, _DTMAX)
                slot.a *= _FA
            slot.n_pos += 1
        else:
            slot.v[:] = 0.0
            slot.a = _ASTART
            slot.dt *= _FDEC
            slot.n_pos = 0
    slot.v = slot.v + slot.dt * f
    dr = slot.dt * slot.v
    norm = float(np.sqrt(np.vdot(dr, dr)))
    if norm > max_step:
        dr = max_step * dr / norm
    pos = np.empty((n + 3, 3))
    pos[:n] = np.linalg.solve(deform, atoms.positions.T).T
    pos[n:] = n * deform
    new = pos + dr
    new_deform = new[n:] / n
    atoms.set_cell(slot.orig_cell @ new_deform.T, scale_atoms=False)
    atoms.positions = new[:n] @ new_deform.T


def relax_batched(
    atoms_list: Sequence[Atoms],
    ensemble: Ensemble,
    cfg: RelaxationConfig,
    reference_volume: float,
    progress: Callable[[int, int], None] | None = None,
    lowest_label: float | None = None,
) -> list[RelaxOutcome]:
    """Relax all structures with the ensemble mean, ``cfg.batch_size`` candidates at a time.

    Parameters
    ----------
    atoms_list
        Structures with the same number of atoms (one composition).
    reference_volume
        The pool's target cell volume; volumes below ``cfg.min_volume_factor`` times it fail.
    progress
        Called as ``progress(done, total)`` whenever candidates finish.
    lowest_label
        Lowest energy per atom among the ensemble's training labels; with
        ``cfg.energy_trust``, candidates stop as uncertain that far below it.
    """
    if not atoms_list:
        return []
    n_atoms = len(atoms_list[0])
    if any(len(a) != n_atoms for a in atoms_list):
        raise ValueError("batched relaxation needs structures with the same number of atoms")
    min_volume = cfg.min_volume_factor * reference_volume
    max_volume = cfg.max_volume_factor * reference_volume
    floor = _energy_floor(cfg, lowest_label, len(atoms_list[0]) if atoms_list else 0)
    sigma_ref = starting_uncertainty(atoms_list, ensemble, cfg)
    queue = deque(range(len(atoms_list)))
    active: list[_Slot] = []
    results: dict[int, RelaxOutcome] = {}
    while queue or active:
        while queue and len(active) < cfg.batch_size:
            i = queue.popleft()
            a = atoms_list[i].copy()
            a.calc = None
            active.append(
                _Slot(index=i, atoms=a, orig_cell=a.cell.array.copy(), v=np.zeros((n_atoms + 3, 3)))
            )
        pred = ensemble.predict([s.atoms for s in active])
        e_mean, f_mean, s_mean = pred.mean_energy, pred.mean_forces, pred.mean_stress
        sig_e = pred.sigma_energy
        volumes = [s.atoms.get_volume() for s in active]
        sig_f = pred.sigma_generalised_force(volumes)
        still = []
        for k, slot in enumerate(active):
            energy = float(e_mean[k])
            cell = slot.atoms.cell.array
            deform = np.linalg.solve(slot.orig_cell, cell).T
            gen = _generalised_forces(f_mean[k], s_mean[k], cell, deform)
            new_best = math.isfinite(energy) and energy < slot.best_energy
            slot.since_best = 0 if new_best else slot.since_best + 1
            slot.energies.append(energy)
            reason = _stop_reason(
                energy,
                f_mean[k],
                s_mean[k],
                float(sig_f[k]),
                gen,
                volumes[k],
                slot.steps,
                slot.since_best,
                cfg,
                min_volume,
                floor,
                sigma_ref,
                max_volume,
            )
            # a frame where the ensemble disagrees (or that failed) never becomes the structure
            if new_best and reason not in (CandidateStatus.UNCERTAIN, CandidateStatus.FAILED):
                slot.best_energy, slot.best_atoms = energy, slot.atoms.copy()
                slot.best_sigma_e = float(sig_e[k])
            if reason is None:
                _fire_update(slot, gen, cfg.max_step)
                slot.steps += 1
                still.append(slot)
                continue
            results[slot.index] = _outcome(slot, reason, float(sig_f[k]), gen, atoms_list)
        finished = len(active) - len(still)
        active = still
        if finished and progress is not None:
            progress(len(results), len(atoms_list))
    return [results[i] for i in range(len(atoms_list))]


def _outcome(
    slot: _Slot,
    reason: CandidateStatus,
    sigma_f: float,
    gen: np.ndarray,
    atoms_list: Sequence[Atoms],
) -> RelaxOutcome:
    best = slot.best_atoms if slot.best_atoms is not None else atoms_list[slot.index].copy()
    return RelaxOutcome(
        status=reason,
        steps=slot.steps,
        best_atoms=best,
        final_atoms=slot.atoms.copy(),
        energy=slot.best_energy if slot.best_atoms is not None else slot.energies[0],
        sigma_energy=slot.best_sigma_e,
        sigma_force=sigma_f if math.isfinite(sigma_f) else math.nan,
        max_force=float(np.sqrt((gen**2).sum(1)).max()) if np.isfinite(gen).all() else math.nan,
        energies=slot.energies,
    )


class CommitteeCalculator(Calculator):
    """ASE calculator of the ensemble mean and its spread.

    ``results['sigma_force']`` holds the spread of the generalised forces (atoms and cell, see
    ``EnsemblePrediction.sigma_generalised_force``).
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, ensemble: Ensemble, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ensemble = ensemble

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Evaluate every member on ``atoms`` and store the mean and the spread."""
        super().calculate(atoms, properties, system_changes)
        pred = self.ensemble.predict([self.atoms])
        from ase.stress import full_3x3_to_voigt_6_stress

        self.results = {
            "energy": float(pred.mean_energy[0]),
            "free_energy": float(pred.mean_energy[0]),
            "forces": pred.mean_forces[0],
            "stress": full_3x3_to_voigt_6_stress(pred.mean_stress[0]),
            "sigma_energy": float(pred.sigma_energy[0]),
            "sigma_force": float(pred.sigma_generalised_force([self.atoms.get_volume()])[0]),
        }


def relax_ase(
    atoms_list: Sequence[Atoms],
    ensemble: Ensemble,
    cfg: RelaxationConfig,
    reference_volume: float,
    lowest_label: float | None = None,
) -> list[RelaxOutcome]:
    """Return the reference path: each candidate alone, with ASE's FIRE and UnitCellFilter."""
    from ase.filters import UnitCellFilter
    from ase.optimize import FIRE

    min_volume = cfg.min_volume_factor * reference_volume
    max_volume = cfg.max_volume_factor * reference_volume
    floor = _energy_floor(cfg, lowest_label, len(atoms_list[0]) if atoms_list else 0)
    sigma_ref = starting_uncertainty(atoms_list, ensemble, cfg)
    outcomes = []
    for a0 in atoms_list:
        atoms = a0.copy()
        atoms.calc = CommitteeCalculator(ensemble)
        filt = UnitCellFilter(atoms)
        opt = FIRE(filt, maxstep=cfg.max_step, logfile=None)
        energies: list[float] = []
        best_e, best_atoms, best_se, since_best, steps = math.inf, None, math.nan, 0, 0
        t0 = time.perf_counter()
        while True:
            energy = float(atoms.get_potential_energy())
            forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
            sig_f = float(atoms.calc.results["sigma_force"])
            gen = filt.get_forces()
            energies.append(energy)
            new_best = math.isfinite(energy) and energy < best_e
            since_best = 0 if new_best else since_best + 1
            reason = _stop_reason(
                energy,
                forces,
                stress,
                sig_f,
                gen,
                atoms.get_volume(),
                steps,
                since_best,
                cfg,
                min_volume,
                floor,
                sigma_ref,
                max_volume,
            )
            if new_best and reason not in (CandidateStatus.UNCERTAIN, CandidateStatus.FAILED):
                best_e, best_atoms = energy, atoms.copy()
                best_se = float(atoms.calc.results["sigma_energy"])
            if reason is not None:
                break
            opt.step()
            steps += 1
        final = atoms.copy()
        final.calc = None
        if best_atoms is not None:
            best_atoms.calc = None
        outcomes.append(
            RelaxOutcome(
                status=reason,
                steps=steps,
                best_atoms=best_atoms if best_atoms is not None else a0.copy(),
                final_atoms=final,
                energy=best_e if best_atoms is not None else energies[0],
                sigma_energy=best_se,
                sigma_force=sig_f,
                max_force=float(np.sqrt((gen**2).sum(1)).max()),
                energies=energies,
            )
        )
        logger.debug(
            "ASE relaxation: %s after %d steps (%.2fs)", reason, steps, time.perf_counter() - t0
        )
    return outcomes
