"""The prior under the ensemble: its kinds, the members' corrections, a search on it."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from configs import TINY

from crysal_flows.config import ConfigError, PriorConfig, load_config
from crysal_flows.models.checkpoint import decode
from crysal_flows.models.ensemble import Ensemble
from crysal_flows.models.prior import get_prior
from crysal_flows.utils import structure_to_atoms


@pytest.fixture(scope="module")
def mace_file(tiny_ensemble, tmp_path_factory):
    """A small MACE model saved as a whole module, as MACE foundation files are."""
    _, results = tiny_ensemble
    model, _ = decode(results[0].checkpoint, results[0].sha256)
    path = tmp_path_factory.mktemp("prior") / "small.model"
    torch.save(model, path)
    return str(path)


def test_a_prior_that_is_the_oracle_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"the prior \(chgnet\) is the oracle itself"):
        load_config(
            {
                "name": "x",
                "composition": "Si8",
                "oracle": {"kind": "chgnet"},
                "training": {"prior": {"kind": "chgnet"}},
            }
        )
    cfg = tmp_path / "same.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "composition": "Si8",
                "oracle": {"kind": "ase", "calculator": "ase.calculators.emt:EMT"},
                "training": {"prior": {"kind": "ase", "calculator": "ase.calculators.emt:EMT"}},
            }
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", "check", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "is the oracle itself" in out.stderr
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(
            {
                "name": "x",
                "composition": "Si8",
                "training": {"prior": {"kind": "mace", "model": str(tmp_path / "no")}},
            }
        )


def test_mace_file_prior_is_batched_and_members_add_to_it(mace_file, tiny_ensemble, si_frames):
    ens, results = tiny_ensemble
    pool, _ = si_frames
    atoms = [structure_to_atoms(c.structure) for c in pool.candidates[:5]]
    prior = get_prior(PriorConfig(kind="mace", model=mace_file))
    p = prior.predict(atoms)
    model, hyper = decode(results[0].checkpoint, results[0].sha256)
    direct = Ensemble([model], [hyper]).predict(atoms)  # the same model, as a member
    np.testing.assert_allclose(p.energy, direct.energy[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(p.forces, direct.forces[0], atol=1e-4)
    np.testing.assert_allclose(p.stress, direct.stress[0], atol=1e-6)
    # the prior alone: its prediction, and no spread
    alone = Ensemble([], [], prior=prior).predict(atoms)
    np.testing.assert_allclose(alone.mean_energy, p.energy)
    assert np.all(alone.sigma_energy == 0)
    # members on the prior: the prior plus each member, one prior call for all
    other, other_hyper = decode(results[1].checkpoint, results[1].sha256)
    calls = []
    original = prior.predict
    prior.predict = lambda a: calls.append(len(a)) or original(a)
    try:
        on = Ensemble(
            [model, other],
            [{**hyper, "prior": prior.identity}, {**other_hyper, "prior": prior.identity}],
            prior=prior,
        ).predict(atoms)
    finally:
        prior.predict = original
    assert calls == [5]
    np.testing.assert_allclose(on.energy, ens.predict(atoms).energy + p.energy[None], atol=1e-3)
    # members trained without the prior are refused on it
    with pytest.raises(ValueError, match="cannot be used with"):
        Ensemble([model], [hyper], prior=prior)


def test_members_learn_the_difference_to_the_prior(mace_file, si_frames):
    """Trained on the labels minus the prior, prior + member fits the labels better than the
    prior alone."""
    from crysal_flows.config import TrainingConfig
    from crysal_flows.training.train import train_member

    _, frames = si_frames
    prior = get_prior(PriorConfig(kind="mace", model=mace_file))
    pred = prior.predict([f.to_atoms() for f in frames])
    for k, f in enumerate(frames):
        f.prior_energy, f.prior_forces, f.prior_stress = (
            float(pred.energy[k]),
            pred.forces[k],
            pred.stress[k],
        )
    try:
        result = train_member(
            frames, TrainingConfig(epochs=60, channels=8, min_steps=0), seed=4, prior=prior.identity
        )
    finally:
        for f in frames:
            f.prior_forces = f.prior_stress = None
            f.prior_energy = 0.0
    model, hyper = decode(result.checkpoint, result.sha256)
    assert hyper["prior"] == prior.identity
    both = Ensemble([model], [hyper], prior=prior).predict([f.to_atoms() for f in frames])
    n = len(frames[0].numbers)
    labels = np.array([f.energy for f in frames]) / n
    fitted = labels <= labels.min() + TrainingConfig().max_energy_above_min  # not lower bounds
    rmse_prior = np.sqrt(np.mean((pred.energy / n - labels)[fitted] ** 2))
    rmse_both = np.sqrt(np.mean((both.energy[0] / n - labels)[fitted] ** 2))
    assert rmse_both < 0.7 * rmse_prior, (rmse_both, rmse_prior)


def test_packaged_priors_match_their_calculators(monkeypatch):
    """CHGNet and SevenNet-0, whose weights ship with their packages, evaluated in batches (two
    per model call here, so the last batch is short) on three different Si16 cells, against their
    own ASE calculators one cell at a time."""
    from ase.build import bulk
    from sevenn.sevennet_calculator import SevenNetCalculator

    from crysal_flows.config import OracleConfig
    from crysal_flows.models import prior as prior_module
    from crysal_flows.oracles import get_oracle
    from crysal_flows.utils import atoms_to_structure

    monkeypatch.setattr(prior_module, "BATCH_SIZE", 2)
    cells = []
    for k, strain in enumerate((0.0, 0.04, -0.03)):
        atoms = bulk("Si", "diamond", a=5.45, cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.05 + 0.05 * k, seed=3 + k)
        atoms.set_cell(
            atoms.cell @ (np.eye(3) + strain * np.array([[1, 0.3, 0], [0, 0, 0], [0, 0, -1]])),
            scale_atoms=True,
        )
        cells.append(atoms)
    chgnet = get_prior(PriorConfig(kind="chgnet")).predict(cells)
    seven = get_prior(PriorConfig(kind="sevennet")).predict(cells)
    assert chgnet.forces.shape == seven.forces.shape == (3, 16, 3)
    oracle = get_oracle(OracleConfig(kind="chgnet"))
    calc = SevenNetCalculator("7net-0", device="cpu")
    for k, atoms in enumerate(cells):
        sp = oracle.single_point(atoms_to_structure(atoms))
        assert chgnet.energy[k] == pytest.approx(sp.energy, abs=1e-3)
        np.testing.assert_allclose(chgnet.forces[k], sp.forces, atol=1e-4)
        np.testing.assert_allclose(chgnet.stress[k], sp.stress, atol=1e-5)
        a = atoms.copy()
        a.calc = calc
        assert seven.energy[k] == pytest.approx(a.get_potential_energy(), abs=1e-3)
        assert -5.5 < seven.energy[k] / 16 < -5.0  # a physical silicon energy per atom
        np.testing.assert_allclose(seven.forces[k], a.get_forces(), atol=1e-4)
        np.testing.assert_allclose(seven.stress[k], a.get_stress(voigt=False), atol=1e-5)
    # the strained cells are under stress, in both, with the same sign
    assert np.abs(seven.stress[1]).max() > 1e-3
    assert np.sign(seven.stress[1][0, 0]) == np.sign(chgnet.stress[1][0, 0])


@pytest.mark.slow
def test_search_on_a_prior(mace_file, memory_store):
    """The pool is relaxed with the prior before cycle 0, cycle 0 labels its low-energy end, the
    labels carry the prior's values, and the members are corrections to it."""
    from jobflow import run_locally

    from crysal_flows.flows import CrystalSearchMaker

    cfg = load_config(
        {
            **TINY,
            "training": {**TINY["training"], "prior": {"kind": "mace", "model": mace_file}},
            "analysis": {"min_cycles": 1, "max_cycles": 2},
        }
    )
    run_locally(CrystalSearchMaker(config=cfg).make(), store=memory_store, log=False)

    def docs(step, **more):
        return list(memory_store.query({"metadata.crysal_step": step, **more}, load=True))

    assert len(docs("relax_shard", **{"metadata.crysal_cycle": -1})) == 2  # the prescreen
    (alone,) = docs("gather_ensemble", **{"metadata.crysal_cycle": -1})
    assert alone["output"]["members"] == [] and alone["output"]["prior"]["kind"] == "mace"
    (select0,) = docs("select", **{"metadata.crysal_cycle": 0})
    reasons = {s["reason"] for s in select0["output"]["structures"]}
    assert "score" in reasons or "uncertain" in reasons  # not random picks only
    labels = [d["output"] for d in docs("oracle_single_point")]
    assert all(
        lab["predicted_energy_per_atom"] is not None
        for lab in labels
        if lab["cycle"] == 0 and lab["reason"] != "random"
    )
    ts = docs("gather_labels", **{"metadata.crysal_cycle": 1})[0]["output"]
    assert all(lab["prior"].startswith("mace#") and lab["prior_forces"] for lab in ts["labels"])
    (s0,) = [d["output"] for d in docs("analyse", **{"metadata.crysal_cycle": 0})]
    assert s0["prediction_mae"] is not None  # the prior's error on cycle 0's labels
    assert s0["top_energy_change"] is not None  # against the pool the prior relaxed
    report = docs("report")[0]["output"]
    assert report["minima"] and report["oracle_single_points"] == 8 + 4
