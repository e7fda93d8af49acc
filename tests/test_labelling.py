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


def test_the_priors_energy_zero_is_not_its_prediction_error():
    """Cycle 0 on a prior: a constant per-atom offset between prior and oracle (another energy
    zero within one composition) is removed before the error; later cycles keep every eV."""
    from crysal_flows.config import PriorConfig

    prior = PriorConfig(kind="ase", calculator="ase.calculators.lj:LennardJones")
    labels = []
    for k, (shift, noise) in enumerate([(0.0, 0.01), (0.02, -0.01), (0.04, 0.01), (0.03, -0.01)]):
        s = _diamond()
        s.perturb(shift + 0.01)
        lab = single_point(s, OracleConfig(), cycle=0, reason="random" if k == 3 else "score")
        labels.append(
            lab.model_copy(update={"predicted_energy_per_atom": lab.energy_per_atom - 1.0 + noise})
        )
    ts = gather_labels.original(labels, None, 0, prior)
    assert ts.prediction_offset == pytest.approx(1.0)  # oracle minus prior, over every label
    assert ts.prediction_mae == pytest.approx(0.01)  # over the score-ranked ones
    assert all(lab.prior and lab.prior.startswith("ase#") for lab in ts.labels)
    later = gather_labels.original(labels, None, 1, prior)  # members exist: nothing is removed
    assert later.prediction_offset is None and later.prediction_mae == pytest.approx(1.0, abs=0.02)
    no_prior = gather_labels.original(labels, None, 0)
    assert no_prior.prediction_offset is None


def test_chgnet_labels_every_element_in_ase_units(capsys):
    """CHGNet (the benchmarks' stand-in for DFT): NaCl, stress sign checked against energies.

    Once its model is loaded, a label prints nothing (CHGNet's calculator announces its device)."""
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
    capsys.readouterr()
    ep, em = (single_point(atoms_to_structure(energy(x)), cfg, cycle=0).energy for x in (e, -e))
    assert capsys.readouterr().out == ""
    fd_trace = (ep - em) / (2 * e) / energy(0.0).get_volume()
    assert abs(np.trace(lab.stress)) > 5e-3  # a cell under real stress
    assert np.trace(lab.stress) == pytest.approx(fd_trace, rel=0.1)


def test_labels_with_absurd_forces_are_energy_bounds_not_failures(si_frames):
    """Atoms pressed together: the forces are not trained on, the energy is a lower bound."""
    from crysal_flows.config import TrainingConfig
    from crysal_flows.training.jobs import labels_to_frames
    from crysal_flows.training.train import _targets, train_member

    crushed = _diamond()
    crushed.scale_lattice(crushed.volume * 0.5)  # compressed, one atom pushed towards another:
    crushed.translate_sites([0], [0.5, 0.02, 0.0], frac_coords=False)  # 42 eV/A
    lab = single_point(crushed, OracleConfig(), max_force=20.0, cycle=1)
    assert lab.success and lab.energy_only and lab.forces is None and lab.stress is None
    assert "lower bound" in lab.note and lab.energy_per_atom > -4.0
    ok = single_point(_diamond(), OracleConfig(), cycle=1)
    ts = gather_labels.original([ok, lab], None, 1)
    assert len(ts.labels) == 2 and ts.n_new_failed == 0
    frames = labels_to_frames(ts)
    assert frames[1].energy_only and not frames[0].energy_only
    t = _targets(frames, ceiling=10.0)  # below the ceiling: a bound at its own energy
    assert bool(t[1]["bound"]) and float(t[1]["energy"]) == pytest.approx(lab.energy, rel=1e-5)
    assert not bool(t[0]["bound"])
    # a member trains on such a set (the bound never enters the forces or the reference energies)
    _, more = si_frames
    from crysal_flows.training.train import filter_outliers

    everything = [*more, *frames]
    result = train_member(everything, TrainingConfig(epochs=2, min_steps=0), seed=1)
    kept = filter_outliers(everything, TrainingConfig().outlier_sigma)
    assert any(f is frames[1] for f in kept)  # its zero forces are no outlier
    assert result.n_train + result.n_validation == len(kept)
    assert np.isfinite(result.train_rmse_energy)


def test_a_resumed_runs_label_comes_from_the_store_by_an_indexed_key(memory_store):
    """A label job whose run already labelled the same structure with the same oracle returns
    that label (marked reused) instead of calling the oracle; on a MongoDB-like JobStore the
    lookup, one per label job of every run in the collection, goes through an index on the
    key, which the first lookup creates."""
    from jobflow import Flow, run_locally

    from crysal_flows.labelling.jobs import OracleStaticMaker

    maker = OracleStaticMaker(oracle=OracleConfig(kind="stillinger_weber"))
    first, again, other = (maker.make(_diamond(), cycle=c) for c in (0, 1, 1))
    for j, run in ((first, "r1"), (again, "r1"), (other, "r2")):
        j.metadata["crysal_run"] = run
    out = run_locally(Flow([first]), store=memory_store, ensure_success=True, log=False)
    label = out[first.uuid][1].output
    assert label.success and not label.reused
    indexes = memory_store.docs_store._collection.index_information()
    assert any(ix["key"] == [("output.key", 1)] for ix in indexes.values())
    out = run_locally(Flow([again, other]), store=memory_store, ensure_success=True, log=False)
    reused, fresh = out[again.uuid][1].output, out[other.uuid][1].output
    assert reused.reused and reused.key == label.key and reused.energy == label.energy
    assert not fresh.reused and fresh.key == label.key  # another run's label is not reused
