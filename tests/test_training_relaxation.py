import numpy as np
import pytest

from crysal_flows.config import RelaxationConfig
from crysal_flows.models.checkpoint import decode
from crysal_flows.models.ensemble import Ensemble
from crysal_flows.relaxation.relax import relax_ase, relax_batched
from crysal_flows.schemas import CandidateStatus
from crysal_flows.utils import structure_to_atoms


def test_members_learn_and_differ(tiny_ensemble, si_frames):
    ens, results = tiny_ensemble
    _, frames = si_frames
    for r in results:
        # the fitted model beats predicting the mean energy per atom
        spread = np.std([f.energy / len(f.numbers) for f in frames])
        assert r.train_rmse_energy < spread
    pred = ens.predict([f.to_atoms() for f in frames[:4]])
    assert pred.energy.shape == (2, 4) and np.all(pred.sigma_energy > 0)


def test_checkpoint_roundtrip_and_checksum(tiny_ensemble):
    _, results = tiny_ensemble
    r = results[0]
    model, hyper = decode(r.checkpoint, r.sha256)
    assert hyper["z_table"] == [14] and sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(ValueError, match="corrupt"):
        decode(r.checkpoint, "0" * 64)


def test_batched_matches_ase_path(tiny_ensemble, si_frames):
    ens, _ = tiny_ensemble
    pool, _ = si_frames
    atoms = [structure_to_atoms(c.structure) for c in pool.candidates[:5]]
    cfg = RelaxationConfig(max_steps=25, uncertainty_ratio=1e3, uncertainty_floor=1e3, batch_size=2)
    batched = relax_batched(atoms, ens, cfg, pool.reference_volume)
    ase = relax_ase(atoms, ens, cfg, pool.reference_volume)
    for b, a in zip(batched, ase, strict=True):
        assert b.status == a.status and b.steps == a.steps
        assert abs(b.energy - a.energy) / 8 < 1e-3  # 1 meV/atom
        assert b.energy <= b.energies[0] + 1e-6  # the kept frame is the lowest seen


def test_stop_reasons(tiny_ensemble, si_frames):
    ens, _ = tiny_ensemble
    pool, _ = si_frames
    atoms = [structure_to_atoms(c.structure) for c in pool.candidates[:3]]
    uncertain = relax_batched(
        atoms,
        ens,
        RelaxationConfig(uncertainty_ratio=1e-9, fmax=1e-9, uncertainty_floor=0.0),
        pool.reference_volume,
    )
    assert [(o.status, o.steps) for o in uncertain] == [(CandidateStatus.UNCERTAIN, 0)] * 3
    capped = relax_batched(
        atoms,
        ens,
        RelaxationConfig(max_steps=3, fmax=1e-6, uncertainty_floor=1e3),
        pool.reference_volume,
    )
    assert all(o.status == CandidateStatus.MAX_STEPS and o.steps == 3 for o in capped)


def test_diverging_model_marks_candidate_failed(si_frames):
    pool, _ = si_frames

    class Broken(Ensemble):
        def __init__(self):
            pass

        def predict(self, atoms_list):
            from crysal_flows.models.ensemble import EnsemblePrediction

            b, n = len(atoms_list), len(atoms_list[0])
            e = np.full((2, b), np.nan)
            return EnsemblePrediction(e, np.zeros((2, b, n, 3)), np.zeros((2, b, 3, 3)))

    atoms = [structure_to_atoms(c.structure) for c in pool.candidates[:2]]
    out = relax_batched(atoms, Broken(), RelaxationConfig(), pool.reference_volume)
    assert all(o.status == CandidateStatus.FAILED for o in out)


def test_labels_far_above_the_lowest_teach_a_lower_bound(si_frames):
    """A collapsed cell labelled far above the rest is trained as 'at least this high'.

    Dropping such labels (as before) let the models keep predicting deep false minima at collapsed
    densities, which the search then relaxed into cycle after cycle.
    """
    from dataclasses import replace

    from crysal_flows.config import OracleConfig, TrainingConfig
    from crysal_flows.labelling.jobs import single_point
    from crysal_flows.models.ensemble import Ensemble
    from crysal_flows.training.train import Frame, train_member
    from crysal_flows.utils import atoms_to_structure

    pool, frames = si_frames
    atoms = structure_to_atoms(pool.candidates[0].structure)
    atoms.set_cell(atoms.cell * 0.75, scale_atoms=True)  # 42% of the volume
    label = single_point(atoms_to_structure(atoms), OracleConfig(), max_force=1e9, cycle=0)
    collapsed = Frame(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        energy=label.energy,
        forces=np.asarray(label.forces),
        stress=np.asarray(label.stress),
    )
    lowest = min(f.energy / len(f.numbers) for f in frames)
    cfg = TrainingConfig(
        epochs=1, min_steps=150, channels=8, validation_fraction=0.0, outlier_sigma=1e9
    )
    assert collapsed.energy / len(atoms) > lowest + cfg.max_energy_above_min + 5  # far above
    copies = [replace(collapsed) for _ in range(3)]

    def predicted(train_frames):
        members = [train_member(train_frames, cfg, seed=s) for s in (0, 1)]
        ens = Ensemble.from_checkpoints([(r.checkpoint, r.sha256) for r in members])
        return float(ens.predict([atoms]).mean_energy[0]) / len(atoms), members[0]

    with_bound, result = predicted([*frames, *copies])
    without, _ = predicted(frames)
    # the lower bound lifts the prediction above the ceiling, well above where the models put the
    # collapsed cell without it, and the in-window labels are still fitted
    assert with_bound > lowest + cfg.max_energy_above_min
    assert with_bound > without + 0.5
    assert result.train_rmse_energy < np.std([f.energy / len(f.numbers) for f in frames])


def test_held_out_lower_bounds_do_not_pick_the_state(si_frames):
    """A held-out split of lower bounds only scores 0 at every check; it must not freeze the
    first state evaluated as 'best', nor be reported as a held-out error of 0."""
    from dataclasses import replace

    from crysal_flows.config import TrainingConfig
    from crysal_flows.training.train import train_member

    _, frames = si_frames
    high = [replace(f, energy=f.energy + 20.0 * len(f.numbers)) for f in frames[:3]]  # bounds
    data = [*frames, *high]
    cfg = TrainingConfig(
        epochs=20, min_steps=0, channels=8, outlier_sigma=1e9, validation_fraction=1.4 / len(data)
    )  # one held-out frame
    # a seed whose held-out frame is one of the bounds (the split as train_member draws it)
    seed = next(
        s for s in range(1000) if np.random.default_rng(s).permutation(len(data))[0] >= len(frames)
    )
    result = train_member(data, cfg, seed=seed)
    assert result.n_validation == 1
    assert result.validation_rmse_energy is None and result.validation_rmse_forces is None
    # the final state is kept: it fits at least as well as training half as long
    half = train_member(data, cfg.model_copy(update={"epochs": 10}), seed=seed)
    assert result.train_rmse_energy < half.train_rmse_energy


def _export(results, directory):
    from crysal_flows.models.checkpoint import export_members
    from crysal_flows.training.schemas import MemberDocument

    members = [
        MemberDocument(
            cycle=0,
            member=k,
            seed=k,
            warm_started=False,
            checkpoint=r.checkpoint,
            sha256=r.sha256,
            n_parameters=1,
            n_train=r.n_train,
            n_validation=r.n_validation,
            epochs=r.epochs,
            seconds=r.seconds,
            train_rmse_energy=r.train_rmse_energy,
            train_rmse_forces=r.train_rmse_forces,
        )
        for k, r in enumerate(results)
    ]
    return export_members(members, directory, {"run": "test"})


def test_search_starts_from_exported_models(tiny_ensemble, si_frames, tmp_path, memory_store):
    """Transfer: a Si16 search's cycle 0 warm-starts from the members of a Si8 run."""
    from jobflow import run_locally

    from crysal_flows.config import load_config
    from crysal_flows.flows import CycleMaker, initial_state
    from crysal_flows.generation.jobs import PoolMaker
    from crysal_flows.labelling.schemas import TrainingSetDocument
    from crysal_flows.training.jobs import TrainMemberMaker

    _, results = tiny_ensemble
    paths = _export(results, tmp_path / "si8-models")
    assert [p.name for p in paths] == ["member_1.pt", "member_2.pt"]
    cfg = load_config(
        {
            "name": "si16",
            "composition": "Si16",
            "pool": {"size": 8},
            "selection": {"n_labels": 4},
            "training": {
                "n_members": 3,
                "init_models": str(tmp_path / "si8-models"),
                "warm_start_epochs": 2,
                "min_steps": 0,
            },
        }
    )
    pool = PoolMaker(config=cfg.pool).make(cfg.composition, cfg.seed)
    flow = CycleMaker(config=cfg).make(pool.output, state=initial_state(cfg, "run"))
    trains = [j for j in flow.jobs if j.metadata["crysal_step"] == "train_member"]
    # member k starts from file k modulo the number of files, pinned by checksum
    assert [j.function_kwargs["init_model"] for j in trains] == [
        [str(paths[k % 2].resolve()), results[k % 2].sha256] for k in range(3)
    ]

    # the job trains from the file: warm-started, for warm_start_epochs, in the file's architecture
    from crysal_flows.config import OracleConfig
    from crysal_flows.labelling.jobs import single_point

    si8_pool, _ = si_frames
    labels = [single_point(c.structure, OracleConfig(), cycle=0) for c in si8_pool.candidates[:8]]
    labels = [lab for lab in labels if lab.success]
    ts = TrainingSetDocument(
        cycle=0,
        oracle=labels[0].oracle,
        labels=labels,
        n_new=len(labels),
        n_new_failed=0,
        n_attempted_total=len(labels),
        n_failed_total=0,
    )
    training = cfg.training.model_copy(update={"channels": 16})
    job = TrainMemberMaker(config=training).make(
        ts, cycle=0, member=0, seed=3, init_model=trains[0].function_kwargs["init_model"]
    )
    run_locally(job, store=memory_store, ensure_success=True, log=False)
    out = memory_store.query_one({"uuid": job.uuid}, load=True)["output"]
    assert out["warm_started"] and out["epochs"] == 2
    _, hyper = decode(out["checkpoint"], out["sha256"])
    assert hyper["channels"] == 8  # the exported model's, not the 16 asked for here
    # a file changed after the flow was built is refused, not silently used
    from crysal_flows.models.checkpoint import read_model_file

    paths[0].write_bytes(paths[1].read_bytes())
    with pytest.raises(ValueError, match="changed since the search was built"):
        read_model_file(*trains[0].function_kwargs["init_model"])


def test_bad_model_paths_are_refused_naming_the_field(tiny_ensemble, tmp_path):
    """A missing path fails validation; files that are no models, or miss an element, or cannot be
    read fail the check before any job runs, each naming training.init_models."""
    from crysal_flows.config import ConfigError, load_config
    from crysal_flows.preflight import preflight

    _, results = tiny_ensemble
    _export(results, tmp_path / "models")
    base = {"name": "t", "composition": "Si8"}

    def refused(path, composition="Si8", oracle="stillinger_weber"):
        with pytest.raises(ConfigError) as err:
            preflight(
                load_config(
                    {
                        **base,
                        "composition": composition,
                        "oracle": {"kind": oracle},
                        "training": {"init_models": str(path)},
                    }
                ),
                oracle=False,
            )
        assert "training.init_models" in str(err.value)
        return str(err.value)

    assert "does not exist" in refused(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "no model files" in refused(tmp_path / "empty")
    (tmp_path / "junk.pt").write_text("not a model")
    assert "not a crysal_flows model file" in refused(tmp_path / "junk.pt")
    assert "knows Si but not Cl, Na" in refused(tmp_path / "models", "Na4Cl4", "chgnet")
    # unreadable, also for root: a directory where a member file should be
    (tmp_path / "models" / "member_3.pt").mkdir()
    assert "cannot read model file" in refused(tmp_path / "models")
    (tmp_path / "models" / "member_3.pt").rmdir()
    preflight(
        load_config({**base, "training": {"init_models": str(tmp_path / "models")}}), oracle=False
    )


def test_uncertainty_sees_symmetric_cells(tiny_ensemble):
    """In diamond the atomic forces vanish by symmetry in every member, so their spread says
    nothing; the spread of the cell's force (virial per atom) still shows the members disagree,
    and a relaxation stops there as uncertain instead of converging on the models' word."""
    from ase.build import bulk

    ens, _ = tiny_ensemble
    diamond = bulk("Si", "diamond", a=5.2, cubic=True)  # compressed: the members' stresses differ
    pred = ens.predict([diamond])
    assert pred.sigma_force[0] < 1e-4
    sigma = pred.sigma_generalised_force([diamond.get_volume()])[0]
    assert sigma > 100 * max(pred.sigma_force[0], 1e-6)
    # the ratio test off (the cell force of a compressed cell is many times sigma), the floor on
    cfg = RelaxationConfig(uncertainty_floor=0.5 * sigma, uncertainty_ratio=1e-6)
    out = relax_batched([diamond], ens, cfg, diamond.get_volume())
    assert out[0].status == CandidateStatus.UNCERTAIN and out[0].steps == 0
    assert out[0].sigma_force == pytest.approx(sigma, rel=1e-4)
