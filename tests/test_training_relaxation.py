import numpy as np
import pytest

from crysal_flows.config import RelaxationConfig
from crysal_flows.mace_utils import Ensemble, checkpoint_to_model
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
    model, hyper = checkpoint_to_model(r.checkpoint, r.sha256)
    assert hyper["z_table"] == [14]
    with pytest.raises(ValueError, match="corrupt"):
        checkpoint_to_model(r.checkpoint, "0" * 64)


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
    uncertain = relax_batched(atoms, ens, RelaxationConfig(uncertainty_ratio=1e-9, fmax=1e-9,
                                                           uncertainty_floor=0.0),
                              pool.reference_volume)
    assert [(o.status, o.steps) for o in uncertain] == [(CandidateStatus.UNCERTAIN, 0)] * 3
    capped = relax_batched(atoms, ens, RelaxationConfig(max_steps=3, fmax=1e-6, uncertainty_floor=1e3),
                           pool.reference_volume)
    assert all(o.status == CandidateStatus.MAX_STEPS and o.steps == 3 for o in capped)


def test_diverging_model_marks_candidate_failed(si_frames):
    pool, _ = si_frames

    class Broken(Ensemble):
        def __init__(self):
            pass

        def predict(self, atoms_list):
            from crysal_flows.mace_utils import EnsemblePrediction

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
    from crysal_flows.mace_utils import Ensemble
    from crysal_flows.training.train import Frame, train_member
    from crysal_flows.utils import atoms_to_structure

    pool, frames = si_frames
    atoms = structure_to_atoms(pool.candidates[0].structure)
    atoms.set_cell(atoms.cell * 0.75, scale_atoms=True)  # 42% of the volume
    label = single_point(atoms_to_structure(atoms), OracleConfig(), max_force=1e9, cycle=0)
    collapsed = Frame(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array,
                      energy=label.energy, forces=np.asarray(label.forces),
                      stress=np.asarray(label.stress))
    lowest = min(f.energy / len(f.numbers) for f in frames)
    cfg = TrainingConfig(epochs=1, min_steps=150, channels=8, validation_fraction=0.0,
                         outlier_sigma=1e9)
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
