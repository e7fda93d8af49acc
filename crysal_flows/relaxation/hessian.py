"""The ensemble's Hessian as the starting Hessian of an oracle relaxation.

A quasi-Newton relaxation starts from a guess of the Hessian (ASE's BFGS: 70 eV/A^2 times the
identity) and learns the real one from the forces of each step: with a DFT oracle, every one of
those steps is a DFT calculation. The ensemble that relaxed the candidate already knows the
curvature of its basin, for free. Here it is evaluated by central differences of the ensemble
mean's forces in the coordinates the oracle relaxation steps in (ASE's ``FrechetCellFilter``:
positions and the logarithm of the cell deformation, scaled by the number of atoms), the
displaced structures in batches, and made positive definite (eigenvalues below ``floor`` raised
to it, negative ones by their magnitude first), so the first step goes downhill whatever the
models got wrong. On the benchmark runs it cut the validation's oracle steps by about half
(docs/benchmarks.md, "Validation from the ensemble's Hessian").
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.filters import FrechetCellFilter
from ase.stress import full_3x3_to_voigt_6_stress

from crysal_flows.models.ensemble import Ensemble

__all__ = ["DEFAULT_FLOOR", "model_hessian"]

DEFAULT_FLOOR = 3.0  # eV/A^2; at 1.0 one Ga8As8 relaxation ran to its step limit (benchmarks)
_BATCH = 64


def model_hessian(
    atoms: Atoms,
    ensemble: Ensemble,
    step: float = 0.01,
    floor: float = DEFAULT_FLOOR,
) -> np.ndarray:
    """Return the ensemble mean's Hessian at ``atoms`` in ``FrechetCellFilter`` coordinates.

    Returns a symmetric positive-definite ``(3 (N + 3), 3 (N + 3))`` array whose eigenvalues are
    at least ``floor``; ``step`` is the finite-difference displacement of each coordinate.
    """
    if floor <= 0 or step <= 0:
        raise ValueError("model_hessian needs a positive step and floor")
    work = atoms.copy()
    work.calc = None
    filt = FrechetCellFilter(work)
    x0 = filt.get_positions().ravel().copy()
    n = x0.size
    shifts = [(i, sign * step) for i in range(n) for sign in (1.0, -1.0)]
    displaced = []
    for i, d in shifts:
        x = x0.copy()
        x[i] += d
        filt.set_positions(x.reshape(-1, 3))
        displaced.append(work.copy())
    energies, forces, stresses = [], [], []
    for start in range(0, len(displaced), _BATCH):
        pred = ensemble.predict(displaced[start : start + _BATCH])
        energies.extend(pred.mean_energy)
        forces.extend(pred.mean_forces)
        stresses.extend(pred.mean_stress)
    gradients = np.empty((len(shifts), n))
    for k, (i, d) in enumerate(shifts):
        x = x0.copy()
        x[i] += d
        filt.set_positions(x.reshape(-1, 3))
        work.calc = SinglePointCalculator(
            work,
            energy=float(energies[k]),
            forces=np.asarray(forces[k]),
            stress=full_3x3_to_voigt_6_stress(np.asarray(stresses[k])),
        )
        gradients[k] = -filt.get_forces().ravel()
    hessian = (gradients[0::2] - gradients[1::2]) / (2 * step)
    hessian = 0.5 * (hessian + hessian.T)
    if not np.isfinite(hessian).all():
        raise FloatingPointError("the ensemble's Hessian is not finite")
    values, vectors = np.linalg.eigh(hessian)
    values = np.maximum(np.abs(values), floor)
    return (vectors * values) @ vectors.T
