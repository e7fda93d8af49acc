"""The ensemble's Hessian as the starting Hessian of the validation's oracle relaxations."""

import numpy as np
import pytest
from ase.build import bulk
from ase.filters import FrechetCellFilter

from crysal_flows.config import OracleConfig, PriorConfig
from crysal_flows.models.ensemble import Ensemble
from crysal_flows.models.prior import CalculatorPrior
from crysal_flows.oracles import get_oracle
from crysal_flows.relaxation.hessian import model_hessian
from crysal_flows.relaxation.relax import CommitteeCalculator
from crysal_flows.utils import atoms_to_structure, structure_to_atoms
from crysal_flows.validation.jobs import oracle_relax

EMT = "ase.calculators.emt:EMT"


def _one_by_one(atoms, ensemble, step=0.01, floor=3.0):
    """The same Hessian the slow way: the committee calculator, one displacement at a time."""
    a = atoms.copy()
    a.calc = CommitteeCalculator(ensemble)
    filt = FrechetCellFilter(a)
    x0 = filt.get_positions().ravel().copy()
    rows = []
    for i in range(x0.size):
        grads = []
        for d in (step, -step):
            x = x0.copy()
            x[i] += d
            filt.set_positions(x.reshape(-1, 3))
            grads.append(-filt.get_forces().ravel())
        rows.append((grads[0] - grads[1]) / (2 * step))
    h = np.array(rows)
    h = 0.5 * (h + h.T)
    w, v = np.linalg.eigh(h)
    return (v * np.maximum(np.abs(w), floor)) @ v.T


def _strained_cu():
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True)  # 2 % above EMT's lattice constant
    atoms.rattle(0.08, seed=3)
    atoms.set_cell(atoms.cell * [1.02, 0.99, 1.01], scale_atoms=True)
    return atoms


def test_model_hessian_matches_finite_differences_and_is_positive(tiny_ensemble, si_frames):
    ensemble, _ = tiny_ensemble
    pool, _ = si_frames
    atoms = structure_to_atoms(pool.candidates[0].structure)
    h = model_hessian(atoms, ensemble)
    n = 3 * (len(atoms) + 3)
    assert h.shape == (n, n)
    assert np.allclose(h, h.T)
    assert np.linalg.eigvalsh(h).min() >= 3.0 - 1e-9
    assert np.allclose(h, _one_by_one(atoms, ensemble), atol=1e-3)
    with pytest.raises(ValueError, match="positive"):
        model_hessian(atoms, ensemble, floor=0.0)


def test_exact_hessian_saves_oracle_steps_and_reaches_the_same_minimum():
    """An ensemble that is the oracle itself (EMT as a prior, no members): its Hessian is exact,
    so BFGS from it reaches the same minimum as from BFGS's default, in fewer oracle calls."""
    ensemble = Ensemble([], [], prior=CalculatorPrior(PriorConfig(kind="ase", calculator=EMT)))
    oracle = OracleConfig(kind="ase", calculator=EMT)
    structure = atoms_to_structure(_strained_cu())
    h = model_hessian(structure_to_atoms(structure), ensemble)
    plain = oracle_relax(structure, oracle, 0.01, 300)
    warm = oracle_relax(structure, oracle, 0.01, 300, hessian=h.tolist())
    assert plain.success and warm.success and plain.converged and warm.converged
    assert not plain.ensemble_hessian and warm.ensemble_hessian
    assert warm.energy_per_atom == pytest.approx(plain.energy_per_atom, abs=1e-4)
    assert warm.oracle_calls < plain.oracle_calls, (warm.oracle_calls, plain.oracle_calls)
    # a Hessian of the wrong size is an error of the relaxation, recorded, not a crash
    bad = oracle_relax(structure, oracle, 0.01, 300, hessian=np.eye(3).tolist())
    assert not bad.success and "Hessian of shape" in bad.error


def test_oracles_with_their_own_optimiser_take_no_hessian():
    assert get_oracle(OracleConfig(kind="ase", calculator=EMT)).uses_hessian
    cp2k = get_oracle(OracleConfig(kind="cp2k"))
    assert not cp2k.uses_hessian


def test_oracle_jobs_compute_the_ensembles_hessian_from_its_uuid(memory_store):
    """The validation's oracle jobs carry the ensemble's uuid, not the matrix: each loads the
    ensemble from the store where it runs and starts from its Hessian at its own structure (the
    symmetry check's probe at the relaxation's start), the same steps as from the matrix."""
    from jobflow import Flow, job, run_locally

    from crysal_flows.refs import StoredOutput
    from crysal_flows.training.schemas import EnsembleDocument
    from crysal_flows.validation.jobs import OracleRelaxMaker, ensemble_hessian, symmetry_probe

    doc = EnsembleDocument(
        cycle=0, members=[], n_requested=0, prior=PriorConfig(kind="ase", calculator=EMT)
    )
    source = job(lambda: doc)()
    run_locally(Flow([source]), store=memory_store, ensure_success=True, log=False)
    ref = StoredOutput(uuid=source.uuid)

    oracle = OracleConfig(kind="ase", calculator=EMT)
    structure = atoms_to_structure(_strained_cu())
    h = ensemble_hessian(structure, doc)
    exact = Ensemble([], [], prior=CalculatorPrior(doc.prior))
    assert np.allclose(h, model_hessian(structure_to_atoms(structure), exact))
    direct = oracle_relax(structure, oracle, 0.01, 300, hessian=h)
    maker = OracleRelaxMaker(oracle=oracle, fmax=0.01, max_steps=300)
    relax = maker.make(structure, ensemble=ref)
    assert relax.function_kwargs["ensemble"] == ref and "hessian" not in relax.function_kwargs
    fcc = oracle_relax(atoms_to_structure(bulk("Cu", "fcc", a=3.6, cubic=True)), oracle, 0.01, 300)
    args = (fcc.structure, fcc.energy_per_atom, [0], oracle, 0.01, 300, 0.1)
    probe = symmetry_probe(*args, ensemble=ref, start=structure)
    out = run_locally(Flow([relax, probe]), store=memory_store, ensure_success=True, log=False)
    warm = out[relax.uuid][1].output
    assert warm.ensemble_hessian and warm.success and warm.converged
    assert warm.oracle_calls == direct.oracle_calls
    assert warm.energy_per_atom == pytest.approx(direct.energy_per_atom, abs=1e-8)
    check = out[probe.uuid][1].output
    assert check.error is None and not check.lower and check.oracle_calls > 0
    # ... from the Hessian at the start, as from the matrix itself (not BFGS's default)
    assert check.oracle_calls == symmetry_probe.original(*args, hessian=h).oracle_calls
    assert check.oracle_calls != symmetry_probe.original(*args).oracle_calls
    # at a saddle (simple cubic Cu under EMT), the relaxation on from the probe starts from the
    # ensemble's Hessian where the probe ended, as _past_symmetry does given that function
    from crysal_flows.oracles import get_oracle
    from crysal_flows.validation.jobs import _past_symmetry

    sc = atoms_to_structure(bulk("Cu", "sc", a=2.4).repeat((2, 2, 1)))
    sc = oracle_relax(sc, oracle, 0.01, 300)
    sargs = (sc.structure, sc.energy_per_atom, [0], oracle, 0.01, 300, 0.03)
    saddle = symmetry_probe(*sargs, ensemble=ref, start=structure)
    ran = run_locally(Flow([saddle]), store=memory_store, ensure_success=True, log=False)
    down = ran[saddle.uuid][1].output
    assert down.lower and down.lower_energy_per_atom < sc.energy_per_atom - 0.1
    e = sc.energy_per_atom * len(sc.structure)
    at = lambda x: ensemble_hessian(x, doc)  # noqa: E731
    runner = get_oracle(oracle)
    calls, _ = _past_symmetry(runner, sc.structure, e, 0.01, 300, 0.03, h, hessian_at=at)
    assert down.oracle_calls == calls
    assert down.oracle_calls != symmetry_probe.original(*sargs, hessian=h).oracle_calls
