import numpy as np
import pytest
from ase.calculators.calculator import Calculator

from crysal_flows.config import OracleConfig
from crysal_flows.labelling.jobs import gather_labels, single_point
from crysal_flows.utils import atoms_to_structure


class Exploding(Calculator):
    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=None, system_changes=None):
        raise RuntimeError("SCF did not converge")


class NaNCalc(Calculator):
    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=None, system_changes=None):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        self.results = {"energy": float("nan"), "forces": np.zeros((n, 3)), "stress": np.zeros(6)}


def _diamond():
    from ase.build import bulk

    return atoms_to_structure(bulk("Si", "diamond", 5.43, cubic=True))


def test_stillinger_weber_single_point_units():
    lab = single_point(_diamond(), OracleConfig(), cycle=0)
    assert lab.success and lab.oracle == "stillinger_weber"
    assert abs(lab.energy_per_atom - (-4.3366)) < 1e-3  # SW diamond cohesive energy
    assert np.asarray(lab.forces).shape == (8, 3) and np.abs(lab.forces).max() < 1e-8
    assert np.asarray(lab.stress).shape == (3, 3)


def test_failures_are_recorded_not_raised_and_never_trained_on():
    ok = single_point(_diamond(), OracleConfig(), cycle=1)
    boom = single_point(
        _diamond(), OracleConfig(kind="ase", calculator=f"{__name__}:Exploding"), cycle=1
    )
    nan = single_point(
        _diamond(), OracleConfig(kind="ase", calculator=f"{__name__}:NaNCalc"), cycle=1
    )
    assert not boom.success and "SCF did not converge" in boom.error
    assert not nan.success and "non-finite" in nan.error
    ts = gather_labels.original([ok, boom, nan, None], None, 1)
    assert len(ts.labels) == 1 and ts.n_new == 4 and ts.n_new_failed == 3
    assert ts.n_attempted_total == 4 and ts.n_failed_total == 3
    assert any("did not complete" in f for f in ts.failures)


def test_labels_of_another_oracle_are_refused():
    ok = single_point(_diamond(), OracleConfig(), cycle=0)
    ts = gather_labels.original([ok], None, 0)
    other = ok.model_copy(update={"oracle": "chgnet"})
    ts2 = gather_labels.original([other], ts, 1)
    assert len(ts2.labels) == 1 and ts2.n_failed_total == 1
    assert "refused" in ts2.failures[0]


def test_chgnet_labels_every_element_in_ase_units():
    """CHGNet (the benchmarks' stand-in for DFT): NaCl, stress sign checked against energies."""
    from ase.build import bulk

    def energy(strain):
        atoms = bulk("NaCl", "rocksalt", a=5.5, cubic=True)
        atoms.rattle(0.03, seed=0)
        atoms.set_cell(atoms.cell * (1 + strain), scale_atoms=True)
        return atoms

    cfg = OracleConfig(kind="chgnet")
    lab = single_point(atoms_to_structure(energy(0.0)), cfg, cycle=0)
    assert lab.success, lab.error
    assert lab.oracle.startswith("chgnet") and -4.5 < lab.energy_per_atom < -2.5
    forces = np.asarray(lab.forces)
    assert forces.shape == (8, 3) and np.abs(forces.sum(axis=0)).max() < 1e-3
    e = 0.01
    ep, em = (single_point(atoms_to_structure(energy(x)), cfg, cycle=0).energy for x in (e, -e))
    fd_trace = (ep - em) / (2 * e) / energy(0.0).get_volume()
    assert abs(np.trace(lab.stress)) > 5e-3  # a cell under real stress
    assert np.trace(lab.stress) == pytest.approx(fd_trace, rel=0.1)
