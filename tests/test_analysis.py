"""Analysis: the fingerprint, the clustering of the low-energy end, the stopping rule; and the jobs
that gather shards and members."""

import numpy as np
import pytest
from ase.build import bulk

from crysal_flows.analysis.clustering import cluster_low_energy
from crysal_flows.analysis.stopping import StoppingRule
from crysal_flows.config import AnalysisConfig
from crysal_flows.schemas import Candidate, CandidateStatus
from crysal_flows.utils import atoms_to_structure, fingerprint, structure_to_atoms


def test_fingerprint_ignores_scale_order_and_supercells_but_not_structure():
    d = bulk("Si", "diamond", a=5.43, cubic=True)
    fp = fingerprint(d)
    assert np.linalg.norm(fp) == pytest.approx(1.0)
    scaled = d.copy()
    scaled.set_cell(d.cell * 1.1, scale_atoms=True)
    assert np.linalg.norm(fingerprint(scaled) - fp) < 1e-6
    shuffled = d[np.random.default_rng(0).permutation(len(d))]
    assert np.linalg.norm(fingerprint(shuffled) - fp) < 1e-6
    assert np.linalg.norm(fingerprint(d.repeat((2, 1, 1))) - fp) < 1e-6
    other = bulk("Si", "fcc", a=3.9).repeat((2, 2, 2))
    assert np.linalg.norm(fingerprint(other) - fp) > 0.3


def _cand(i, atoms, energy, status=CandidateStatus.CONVERGED):
    return Candidate(
        index=i,
        origin="test",
        structure=atoms_to_structure(atoms),
        energy_per_atom=energy,
        status=status,
    )


def _pool(cands, cycle):
    """An Si8 pool of ``cands`` (random cells) after ``cycle``."""
    from crysal_flows.generation.schemas import PoolDocument

    n = len(cands)
    return PoolDocument(
        composition="Si8",
        cycle=cycle,
        n_atoms=8,
        seed=1,
        reference_volume=160.0,
        n_symmetric=0,
        n_tiled=0,
        n_random=n,
        attempts=n,
        candidates=cands,
    )


def test_clusters_join_same_structure_and_energy_only():
    d = bulk("Si", "diamond", a=5.43, cubic=True)
    rattled = d.copy()
    rattled.rattle(0.01, seed=2)
    fcc = bulk("Si", "fcc", a=3.9, cubic=True).repeat((1, 1, 2))
    cands = [
        _cand(0, d, -4.33),
        _cand(1, rattled, -4.329),  # same minimum: joins cluster of 0
        _cand(2, d, -4.25),  # same structure, other energy: a cluster of its own
        _cand(3, fcc, -4.328, CandidateStatus.UNCERTAIN),  # other structure, close in energy
        _cand(4, fcc, -3.0),  # above the energy window
        _cand(5, d, -9.0, CandidateStatus.FAILED),  # failed candidates are never clustered
        _cand(6, d, None, CandidateStatus.NEW),
    ]
    clusters = cluster_low_energy(cands, energy_window=0.25, energy_tol=0.01, fingerprint_tol=0.1)
    assert [(cl.representative, cl.members) for cl in clusters] == [(0, [0, 1]), (3, [3]), (2, [2])]
    assert [cl.reliable for cl in clusters] == [True, False, True]
    assert cluster_low_energy([cands[5], cands[6]], 0.25, 0.01, 0.1) == []


MOVED = ([-4.0, -3.9], [-4.1, -3.9])  # the top energies moved 100 meV/atom
STILL = ([-4.0, -3.9], [-4.005, -3.908])  # ... and at most 8 meV/atom


@pytest.mark.parametrize(
    ("top", "previous", "mae", "reliable", "done", "held", "converged", "stop", "start"),
    [
        (*STILL, 0.01, True, 3, 0, True, True, "converged"),
        (*MOVED, 0.01, True, 3, 0, False, False, "continue"),
        (*STILL, 0.05, True, 3, 0, False, False, "continue"),  # inaccurate
        (*STILL, None, True, 3, 0, False, False, "continue"),  # no MAE yet
        (*STILL, 0.01, False, 3, 0, False, False, "continue"),  # unreliable
        (*STILL, 0.01, True, 1, 0, False, False, "continue"),  # < min_cycles
        ([-4.0], None, 0.01, True, 5, 0, False, True, "stopped at max_cycles=5"),
        # the best structure held two cycles in a row: converged whatever the energies did, with
        # a MAE above the energy rule's but within held_max_prediction_error (0.07)
        (*MOVED, None, True, 3, 2, True, True, "converged"),
        (*MOVED, 0.05, True, 4, 3, True, True, "converged"),
        (*MOVED, 0.2, True, 4, 3, False, False, "continue"),  # the ensemble far off the labels
        (*MOVED, None, True, 3, 1, False, False, "continue"),  # one cycle only
        (*MOVED, None, False, 3, 2, False, False, "continue"),  # best cluster unreliable
        (*MOVED, None, True, 1, 2, False, False, "continue"),  # < min_cycles
    ],
)
def test_stopping_rule(top, previous, mae, reliable, done, held, converged, stop, start):
    rule = StoppingRule(
        AnalysisConfig(energy_tolerance=0.01, max_prediction_error=0.03, min_cycles=2, max_cycles=5)
    )
    d = rule.decide(top, previous, mae, reliable, done, held)
    assert (d.converged, d.stop) == (converged, stop)
    assert d.reason.startswith(start)
    assert f"best structure held {min(held, 2)}/2 cycles" in d.reason
    assert ("best cluster converged" if reliable else "best cluster uncertain") in d.reason
    # with best_held_cycles 0 only the energies can end a search
    off = StoppingRule(
        AnalysisConfig(
            energy_tolerance=0.01,
            max_prediction_error=0.03,
            min_cycles=2,
            max_cycles=5,
            best_held_cycles=0,
        )
    ).decide(top, previous, mae, reliable, done, held)
    assert off.converged == (converged and held == 0)
    assert "held" not in off.reason
    assert rule.stops(d.converged, done) == stop
    if previous is None:
        assert d.top_energy_change is None and "moved n/a" in d.reason
    # clusters compared rank by rank, over as many as both cycles have
    assert StoppingRule.energy_change([-4.0, -3.8, -3.5], [-4.02, -3.85]) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("fraction", "limit", "done", "converged", "stop"),
    [
        (None, 0.95, 3, True, True),  # not known: the rules alone
        (0.94, 0.95, 3, True, True),
        (0.95, 0.95, 3, True, True),  # at the limit: allowed
        (0.99, 0.95, 3, False, False),  # nearly the whole pool uncertain: go on
        (0.99, 0.95, 5, False, True),  # ... but max_cycles still ends it
        (1.0, 1.0, 3, True, True),  # 1 switches the guard off
    ],
)
def test_no_stop_while_nearly_the_whole_pool_is_uncertain(fraction, limit, done, converged, stop):
    rule = StoppingRule(
        AnalysisConfig(
            energy_tolerance=0.01,
            max_prediction_error=0.03,
            min_cycles=2,
            max_cycles=5,
            max_uncertain_fraction=limit,
        )
    )
    for top, previous, mae, held in ((*STILL, 0.01, 0), (*MOVED, None, 2)):  # either rule
        d = rule.decide(top, previous, mae, True, done, held, uncertain_fraction=fraction)
        assert (d.converged, d.stop) == (converged, stop)
        assert ("of the pool uncertain" in d.reason) == (fraction is not None and fraction > limit)


@pytest.mark.parametrize(
    ("top", "previous", "mae", "reliable", "moved", "held", "converged", "words"),
    [
        # held two cycles: the newest ensemble must have moved (or converged) the best structure
        (*MOVED, None, False, True, 2, True, "best cluster uncertain, moved"),
        (*MOVED, None, False, False, 2, False, "best cluster stuck where it started"),
        (*MOVED, None, True, False, 2, False, "stuck where it started (converged in an earlier"),
        (*MOVED, None, True, True, 2, True, "best cluster converged"),
        (*MOVED, None, False, True, 1, False, "best cluster uncertain, moved"),
        # ... and the previous ensemble's error on the newest low-energy labels within
        # held_max_prediction_error (0.07 eV/atom); unknown, it does not hold the rule back
        (*MOVED, 0.085, True, True, 2, False, "prediction MAE above held_max_prediction_error 70"),
        (*MOVED, 0.059, True, True, 2, True, "best cluster converged"),
        # the energy rule still asks for a converged best cluster, moved or not
        (*STILL, 0.01, True, False, 0, True, "stuck where it started"),
        (*STILL, 0.01, False, True, 0, False, "best cluster uncertain, moved"),
    ],
)
def test_held_rule_needs_a_best_structure_the_ensemble_moved(
    top, previous, mae, reliable, moved, held, converged, words
):
    rule = StoppingRule(
        AnalysisConfig(energy_tolerance=0.01, max_prediction_error=0.03, min_cycles=2, max_cycles=5)
    )
    d = rule.decide(top, previous, mae, reliable, 3, held, best_trusted=moved)
    assert d.converged == converged and d.stop == converged
    assert words in d.reason
    assert ("held_max_prediction_error" in d.reason) == (mae is not None and mae > 0.07)
    unbounded = StoppingRule(rule.config.model_copy(update={"held_max_prediction_error": None}))
    free = unbounded.decide(top, previous, mae, reliable, 3, held, best_trusted=moved)
    assert free.converged == (converged or mae == 0.085)


def test_merge_shards_keeps_candidates_of_a_missing_shard(si_frames):
    from crysal_flows.relaxation.jobs import merge_shards
    from crysal_flows.relaxation.schemas import ShardDocument

    pool, _ = si_frames
    relaxed = [
        c.model_copy(
            update={"status": CandidateStatus.CONVERGED, "energy_per_atom": -4.0, "steps": 5}
        )
        for c in pool.candidates[12:]
    ]
    shard = ShardDocument(
        cycle=2,
        shard=1,
        n_shards=2,
        candidates=relaxed,
        seconds=1.0,
        steps=60,
        status_counts={"converged": 12},
    )
    merged = merge_shards.original([None, shard], pool, 2)
    assert merged.cycle == 2 and [c.index for c in merged.candidates] == list(range(24))
    assert all(
        c.status == CandidateStatus.NOT_RELAXED
        and c.steps == 0
        and c.structure == pool.candidates[c.index].structure
        for c in merged.candidates[:12]
    )
    assert all(c.status == CandidateStatus.CONVERGED for c in merged.candidates[12:])


def test_gather_ensemble_needs_two_members():
    from crysal_flows.training.jobs import gather_ensemble
    from crysal_flows.training.schemas import MemberDocument

    def member(k):
        return MemberDocument(
            cycle=0,
            member=k,
            seed=k,
            warm_started=False,
            checkpoint="",
            sha256="",
            n_parameters=1,
            n_train=1,
            n_validation=0,
            epochs=1,
            seconds=0.0,
            train_rmse_energy=0.0,
            train_rmse_forces=0.0,
        )

    doc = gather_ensemble.original([member(0), None, member(2)], 0)
    assert [m.member for m in doc.members] == [0, 2] and doc.n_requested == 3
    with pytest.raises(RuntimeError, match="only 1 of 3 ensemble members trained"):
        gather_ensemble.original([None, member(1), None], 0)


def _outcome(atoms, status, steps):
    from crysal_flows.relaxation.relax import RelaxOutcome

    return RelaxOutcome(status, steps, atoms, atoms, -4.3 * len(atoms), 0.0, 0.2, 0.01)


def test_a_candidate_keeps_its_confirmed_minimum_only_while_it_does_not_move():
    """An ensemble converged candidate 0 in cycle 3; cycle 4's ensemble stops it as uncertain
    before its first step (it stays where it converged), cycle 5's moves it uncertainly."""
    from crysal_flows.relaxation.jobs import relaxed_candidate

    d = bulk("Si", "diamond", a=5.43, cubic=True)
    c = _cand(0, d, -4.2, CandidateStatus.UNCERTAIN)
    assert not c.at_confirmed_minimum
    c3 = relaxed_candidate(c, _outcome(d, CandidateStatus.CONVERGED, 12), 3, len(d))
    assert c3.converged_cycle == 3 and c3.at_confirmed_minimum
    c4 = relaxed_candidate(c3, _outcome(d, CandidateStatus.UNCERTAIN, 0), 4, len(d))
    assert c4.status == CandidateStatus.UNCERTAIN and c4.converged_cycle == 3
    assert c4.at_confirmed_minimum
    assert cluster_low_energy([c4], 0.25, 0.01, 0.1)[0].reliable
    c5 = relaxed_candidate(c4, _outcome(d, CandidateStatus.UNCERTAIN, 1), 5, len(d))
    assert c5.converged_cycle is None and not c5.at_confirmed_minimum
    assert not cluster_low_energy([c5], 0.25, 0.01, 0.1)[0].reliable
    # stalled or at max_steps after moving: no longer at the confirmed minimum either
    for status in (CandidateStatus.STALLED, CandidateStatus.MAX_STEPS):
        moved = relaxed_candidate(c4, _outcome(d, status, 30), 5, len(d))
        assert moved.converged_cycle is None and not moved.at_confirmed_minimum
    # a candidate that never converged and did not move has none
    assert (
        relaxed_candidate(c, _outcome(d, CandidateStatus.UNCERTAIN, 0), 4, 8).converged_cycle
        is None
    )


def test_a_search_converges_when_its_best_structure_holds_two_cycles():
    """The ensemble's energies move every cycle (a retrained ensemble shifts them all), but the
    same structure stays the best: after two such cycles in a row the search has converged.
    A new best structure starts the count again."""
    from configs import TINY

    from crysal_flows.analysis.summary import analyse_cycle
    from crysal_flows.config import load_config
    from crysal_flows.labelling.schemas import TrainingSetDocument
    from crysal_flows.schemas import SearchState
    from crysal_flows.training.schemas import EnsembleDocument

    cfg = load_config({**TINY, "analysis": {"min_cycles": 2, "max_cycles": 9}})
    d = bulk("Si", "diamond", a=5.43, cubic=True)
    fcc = bulk("Si", "fcc", a=3.9, cubic=True).repeat((1, 1, 2))
    bcc = bulk("Si", "bcc", a=3.1, cubic=True).repeat((2, 2, 1))

    def pool(cycle, bcc_best, shift):
        # bcc lies outside the clustered energy window until it becomes the best
        e_bcc = -4.5 if bcc_best else -4.1
        e_d = -4.3 if bcc_best else -4.5
        cands = [
            _cand(0, d, e_d + shift),
            _cand(1, fcc, -4.25 + shift),
            _cand(2, bcc, e_bcc + shift),
        ]
        return _pool(cands, cycle)

    ts = TrainingSetDocument(
        cycle=0,
        labels=[],
        n_new=8,
        n_new_failed=0,
        n_attempted_total=8,
        n_failed_total=0,
        # above max_prediction_error (0.03), so the energies alone never converge; within
        # held_max_prediction_error (0.07), so the held structure does
        prediction_mae=0.06,
    )
    ens = EnsembleDocument(cycle=0, members=[], n_requested=2)
    uuids = {"pool": "p", "training_set": "t", "ensemble": "e"}
    state = SearchState(run_id="r")
    seen = []
    # diamond best in cycles 0-1, bcc (new) in 2, 3 and 4; the energies shift by 60 meV a cycle
    for cycle, best in enumerate([False, False, True, True, True]):
        before = state
        s = analyse_cycle(pool(cycle, best, 0.06 * cycle), ts, ens, state, cfg, f"s{cycle}", uuids)
        seen.append((s.best_held_cycles, s.converged))
        assert s.top_energy_change is None or s.top_energy_change > cfg.analysis.energy_tolerance
        state = s.resume.next_state
        assert len(state.top_fingerprints) in (2, 3) and state.stable_cycles == s.best_held_cycles
        if s.converged:
            assert s.stop and s.decision.startswith("converged") and "held 2/2" in s.decision
            break
    assert seen == [(0, False), (1, False), (0, False), (1, False), (2, True)]
    # a search on a prior: cycle 0 is compared with the pool as the prior alone relaxed it, so
    # a best structure the prior already ranked among its top clusters has held once after it
    prior_pool = pool(-1, False, 0.3)
    no_diamond = _pool([_cand(1, fcc, -4.25), _cand(2, bcc, -4.5)], -1)
    for start, held in ((None, 0), (prior_pool, 1), (no_diamond, 0)):
        s0 = analyse_cycle(
            pool(0, False, 0.0), ts, ens, SearchState(run_id="r"), cfg, "s0", uuids, start
        )
        assert s0.best_held_cycles == held and s0.resume.next_state.stable_cycles == held
    s1 = analyse_cycle(
        pool(1, False, 0.06),
        ts,
        ens,
        analyse_cycle(
            pool(0, False, 0.0), ts, ens, SearchState(run_id="r"), cfg, "s0", uuids, prior_pool
        ).resume.next_state,
        cfg,
        "s1",
        uuids,
    )
    assert s1.best_held_cycles == 2 and s1.converged and "held 2/2" in s1.decision
    # the same last cycle, had its ensemble stopped the best candidate (bcc) as uncertain: where
    # it started, it goes on; after a few steps, it stops as before
    # ... and stuck where an ensemble of the two cycles it held through converged it (cycle 3),
    # it stops; converged before the streak (cycle 2), it goes on
    for steps, converged_cycle, converged in (
        (0, None, False),
        (4, None, True),
        (0, 3, True),
        (0, 2, False),
    ):
        last = pool(4, True, 0.24)
        last.candidates[2] = last.candidates[2].model_copy(
            update={
                "status": CandidateStatus.UNCERTAIN,
                "steps": steps,
                "converged_cycle": converged_cycle,
            }
        )
        s = analyse_cycle(last, ts, ens, before, cfg, "s4", uuids)
        assert s.best_held_cycles == 2 and s.converged == converged
        assert s.clusters[0].representative == 2 and s.clusters[0].stuck == (steps == 0)
        assert ("stuck where it started" in s.decision) == (not converged)
    # ... and where every candidate of the pool ended the cycle uncertain (moved, as bcc above),
    # the ensemble has not learnt the pool: no stop, unless max_uncertain_fraction allows it
    last = pool(4, True, 0.24)
    last.candidates = [
        c.model_copy(update={"status": CandidateStatus.UNCERTAIN, "steps": 4})
        for c in last.candidates
    ]
    s = analyse_cycle(last, ts, ens, before, cfg, "s4", uuids)
    assert s.best_held_cycles == 2 and not s.converged and not s.stop
    assert "100.0% of the pool uncertain (> max_uncertain_fraction 0.95)" in s.decision
    off = cfg.model_copy(
        update={"analysis": cfg.analysis.model_copy(update={"max_uncertain_fraction": 1.0})}
    )
    s = analyse_cycle(last, ts, ens, before, off, "s4", uuids)
    assert s.converged and "held 2/2" in s.decision and "pool uncertain" not in s.decision


def test_validation_relaxes_a_label_below_everything_the_pool_reaches(memory_store):
    """A label more than validation.label_margin below the best cluster's predicted energy is
    relaxed by the oracle beside the clusters (validation.n_labels), lowest first; near-twins
    of a taken label, energy-only labels and labels within the margin are not; the relaxation
    runs for real and its minimum is in the report."""
    from configs import TINY
    from jobflow import Flow, run_locally

    from crysal_flows.analysis.summary import analyse_cycle
    from crysal_flows.config import load_config
    from crysal_flows.labelling.schemas import LabelDocument, TrainingSetDocument
    from crysal_flows.schemas import SearchState
    from crysal_flows.training.schemas import EnsembleDocument
    from crysal_flows.validation.jobs import OracleRelaxMaker, check_minima, validate_minima

    d = bulk("Si", "diamond", a=5.43, cubic=True)
    rattled = d.copy()
    rattled.rattle(0.02, seed=3)
    fcc = bulk("Si", "fcc", a=3.9, cubic=True).repeat((1, 1, 2))
    hcp = bulk("Si", "hcp", a=2.7, c=4.4).repeat((2, 2, 1))
    pool = _pool([_cand(0, fcc, -4.0), _cand(1, hcp, -3.98)], cycle=1)

    def label(atoms, e_per_atom, **kw):
        return LabelDocument(
            structure=atoms_to_structure(atoms),
            oracle="sw",
            cycle=1,
            reason="novel",
            success=True,
            energy=e_per_atom * len(atoms),
            key=f"k{e_per_atom}",
            **kw,
        )

    labels = [
        label(fcc, -4.03),  # within the margin of the best cluster (-4.0)
        label(rattled, -4.30),  # the deepest
        label(d, -4.29),  # its near-twin
        label(hcp, -4.10),
        label(bulk("Si", "sc", a=2.6).repeat((2, 2, 2)), -4.9, energy_only=True),
    ]
    ts = TrainingSetDocument(
        cycle=1, labels=labels, n_new=5, n_new_failed=0, n_attempted_total=5, n_failed_total=0
    )
    ens = EnsembleDocument(cycle=1, members=[], n_requested=2)
    uuids = {"pool": "p", "training_set": "t", "ensemble": "e"}

    def summary(**validation):
        cfg = load_config({**TINY, "validation": {"n_structures": 1, **validation}})
        return analyse_cycle(pool, ts, ens, SearchState(run_id="r"), cfg, "s", uuids), cfg

    out, _ = summary()
    (deep,) = out.deep_labels
    assert deep.key == "k-4.3" and deep.below_best == pytest.approx(0.30)
    out2, _ = summary(n_labels=3)
    assert [x.key for x in out2.deep_labels] == ["k-4.3", "k-4.1"]
    assert summary(n_labels=0)[0].deep_labels == []
    assert summary(n_labels=3, label_margin=0.2)[0].deep_labels[-1].key == "k-4.3"

    # validation: the best cluster and the deepest label, relaxed with Stillinger-Weber
    cfg = summary()[1]
    job = validate_minima(
        pool,
        out,
        [],
        OracleRelaxMaker(oracle=cfg.oracle, fmax=0.05, max_steps=200, symmetry_rattle=0.03),
        1,
        {"run_id": "r", "name": "t", "composition": "Si8"},
        [],
    )
    responses = run_locally(Flow([job]), ensure_success=True)
    report = next(
        r[1].output for r in responses.values() if type(r[1].output).__name__ == "ReportDocument"
    )
    energies = sorted(m.energy_per_atom for m in report.minima)
    assert len(energies) == 2 and energies[0] == pytest.approx(-4.3366, abs=1e-3)  # diamond
    # from the ensemble's Hessian, the jobs it adds carry the ensemble's uuid, not the matrices
    # (each oracle job computes its own: tests/test_hessian.py), so the document that adds
    # them does not grow with the cell
    import json

    from monty.json import jsanitize

    from crysal_flows.refs import StoredOutput

    def added(**kw):
        response = validate_minima.original(
            pool, out, [], job.function_args[3], 1, job.function_args[5], [], **kw
        )
        return response.replace, len(json.dumps(jsanitize(response.replace, strict=True)))

    flow, size = added(ensemble_uuid="e0", hessian="ensemble")
    relax = [j for j in flow.jobs if "validation, " in j.name and "symmetry" not in j.name]
    assert len(relax) == 2
    assert all(j.function_kwargs["ensemble"] == StoredOutput(uuid="e0") for j in relax)
    (check,) = [j for j in flow.jobs if j.name.endswith("symmetry check (validation)")]
    assert check.function_args[-1] == "e0"
    assert size - added(ensemble_uuid="e0", hessian="default")[1] < 2000
    # a workflow an older version added to a LaunchPad calls it with ensemble=, which resolves
    # to the ensemble's document: it still validates, the Hessians computed in this job
    from jobflow import job as as_job

    from crysal_flows.config import PriorConfig

    lj = PriorConfig(kind="ase", calculator="ase.calculators.lj:LennardJones")
    source = as_job(lambda: EnsembleDocument(cycle=1, members=[], n_requested=0, prior=lj))()
    old = validate_minima(
        *job.function_args[:7], ensemble=StoredOutput(uuid=source.uuid), hessian="ensemble"
    )
    ran = run_locally(Flow([source, old]), store=memory_store, ensure_success=True, log=False)
    added_old = [j for j in ran[old.uuid][1].replace.jobs if "validation, " in j.name]
    relax_old = [j for j in added_old if "symmetry" not in j.name]
    n = 3 * len(pool.candidates[0].structure) + 9
    assert len(relax_old) == 2 and all(
        np.shape(j.function_kwargs["hessian"]) == (n, n) for j in relax_old
    )
    report_old = next(
        r[1].output for r in ran.values() if type(r[1].output).__name__ == "ReportDocument"
    )
    assert [m.energy_per_atom for m in report_old.minima] == pytest.approx(energies, abs=1e-3)
    # the symmetry check ran after the relaxations, once per distinct minimum, in jobs of its own
    outputs = [r[1].output for r in responses.values()]
    relaxed = [
        o for o in outputs if type(o).__name__ == "OracleRelaxDocument" and o.reference is None
    ]
    checks = [o for o in outputs if type(o).__name__ == "SymmetryCheckDocument"]
    assert len(relaxed) == 2 and all(r.symmetry_check_calls == 0 for r in relaxed)
    assert sorted(i for c in checks for i in c.relaxations) == [0, 1]
    assert 0 < report.symmetry_check_steps == sum(c.oracle_calls for c in checks)
    assert report.validation_steps == sum(r.oracle_calls for r in relaxed) + sum(
        c.oracle_calls for c in checks
    )
    # a workflow whose validation added its symmetry check before an upgrade passes the starting
    # Hessians to it as matrices, before the maker
    eye = np.eye(n).tolist()
    probes = check_minima.original(relaxed, [eye, None], job.function_args[3]).replace.jobs
    assert sorted(p.function_args[2][0] for p in probes) == [0, 1]
    for p in probes:
        assert p.function_kwargs.get("hessian") == (eye if p.function_args[2][0] == 0 else None)
    # validation.symmetry_window: a minimum farther above the lowest result is not checked, and
    # the report says so (the table too); the lowest is checked as before
    from dataclasses import replace

    from crysal_flows.cli import format_report
    from crysal_flows.validation.jobs import make_report

    assert report.minima[1].symmetry_checked is True
    low = min(range(2), key=lambda i: relaxed[i].energy_per_atom)
    gap = abs(relaxed[0].energy_per_atom - relaxed[1].energy_per_atom)
    near = replace(job.function_args[3], symmetry_window=gap / 2)
    (probe,) = check_minima.original(relaxed, near).replace.jobs
    assert probe.function_args[2] == [low]
    wide = replace(near, symmetry_window=2 * gap)
    assert len(check_minima.original(relaxed, wide).replace.jobs) == 2
    kept = [c for c in checks if c.relaxations == [low]]
    windowed = make_report.original(
        relaxed, [{}, {}], [], [], job.function_args[5], [], near.oracle, checks=kept, checked=True
    )
    assert [m.symmetry_checked for m in windowed.minima] == [True, False]
    assert "minimum 2: symmetry not checked" in format_report(windowed.model_dump())
    assert "not checked" not in format_report(report.model_dump())
    # the report says which minimum only the label reached, and shows its key where a
    # candidate's minimum shows the ensemble's energy
    deepest = out.deep_labels[0].key
    by_label = {m.rank: m.labels for m in report.minima}
    assert by_label == {1: [deepest], 2: []}
    assert report.minima[0].predicted_energy_per_atom is None
    assert report.minima[1].predicted_energy_per_atom is not None
    rows = format_report(report.model_dump()).splitlines()
    assert f"label {deepest[:8]}" in rows[3] and "label" not in rows[4]
    # a reference the search missed: the report says how far its lowest minimum lies from it
    d = report.model_dump()
    e0 = report.minima[0].energy_per_atom
    d["references"], d["found"] = {"diamond": e0, "other": e0 - 0.0006}, ["diamond"]
    refs = format_report(d).splitlines()[-2:]
    assert refs[0].endswith("(oracle-relaxed), found"), refs
    assert refs[1].endswith("NOT found; the lowest minimum (Fd-3m) lies +0.6 meV/atom from it")


def test_validation_takes_the_novel_cluster_beside_the_lowest():
    """Of validation.n_structures, the last n_novel go to the clusters farthest from every label
    (within the novelty window; converged, or moved before they stopped as uncertain); the
    lowest clusters take the rest. Labelled and stuck structures are not novel."""
    from configs import TINY

    from crysal_flows.analysis.summary import analyse_cycle
    from crysal_flows.config import load_config
    from crysal_flows.labelling.schemas import LabelDocument, TrainingSetDocument
    from crysal_flows.schemas import SearchState
    from crysal_flows.training.schemas import EnsembleDocument
    from crysal_flows.validation.jobs import validation_clusters

    s = {
        "d": bulk("Si", "diamond", a=5.43, cubic=True),
        "fcc": bulk("Si", "fcc", a=3.9, cubic=True).repeat((1, 1, 2)),
        "hcp": bulk("Si", "hcp", a=2.7, c=4.4).repeat((2, 2, 1)),
        "bcc": bulk("Si", "bcc", a=3.1, cubic=True).repeat((2, 2, 1)),
        "sc": bulk("Si", "sc", a=2.6).repeat((2, 2, 2)),
    }
    stuck = _cand(3, s["bcc"], -4.42, CandidateStatus.UNCERTAIN)  # never moved: stuck
    moved = _cand(4, s["sc"], -4.40, CandidateStatus.UNCERTAIN).model_copy(update={"steps": 5})
    cands = [_cand(0, s["d"], -4.5), _cand(1, s["fcc"], -4.46), _cand(2, s["hcp"], -4.44)]
    pool = _pool([*cands, stuck, moved], cycle=1)

    def summary(labelled, **validation):
        cfg = load_config({**TINY, "validation": {"n_structures": 3, **validation}})
        labels = [
            LabelDocument(
                structure=atoms_to_structure(s[k]), oracle="sw", cycle=0, success=True, energy=0.0
            )
            for k in labelled
        ]
        ts = TrainingSetDocument(
            cycle=1, labels=labels, n_new=3, n_new_failed=0, n_attempted_total=3, n_failed_total=0
        )
        ens = EnsembleDocument(cycle=1, members=[], n_requested=2)
        uuids = {"pool": "p", "training_set": "t", "ensemble": "e"}
        out = analyse_cycle(pool, ts, ens, SearchState(run_id="r"), cfg, "s", uuids)
        return out, cfg.validation.n_structures

    out, n = summary(["d", "fcc", "hcp"])
    assert [cl.representative for cl in out.clusters] == [0, 1, 2, 3, 4]
    (novel,) = out.novel_clusters
    assert (novel.rank, novel.representative, novel.space_group) == (5, 4, "Pm-3m")
    assert novel.label_distance == pytest.approx(0.79, abs=0.01)  # from diamond, the nearest
    assert [cl.rank for cl in validation_clusters(out, n)] == [1, 2, 5]
    assert [cl.rank for cl in validation_clusters(out, 1)] == [1]  # the lowest always
    # a labelled structure is not novel, and nor is a stuck one: the lowest clusters fill in
    out, n = summary(["d", "fcc", "hcp", "sc"])
    assert out.novel_clusters == []
    assert [cl.rank for cl in validation_clusters(out, n)] == [1, 2, 3]
    # n_novel 0, or a single structure to validate: the lowest only
    for validation in ({"n_novel": 0}, {"n_structures": 1}):
        out, n = summary(["d", "fcc", "hcp"], **validation)
        assert out.novel_clusters == []
        assert [cl.rank for cl in validation_clusters(out, n)] == [1, 2, 3][:n]
    # fewer novel clusters than n_novel: the next lowest fill in
    out, n = summary(["d", "fcc", "hcp"], n_structures=5, n_novel=2)
    assert [cl.rank for cl in out.novel_clusters] == [5]  # beyond rank 3, bcc is stuck
    assert [cl.rank for cl in validation_clusters(out, n)] == [1, 2, 3, 4, 5]


def test_validation_relaxes_past_a_saddle_its_symmetry_holds():
    """A relaxation keeps the symmetry it starts from: bcc Si8 under Stillinger-Weber converges
    to a stationary point that is not a minimum. validation.symmetry_rattle rattles a converged
    result with symmetry and relaxes on where the rattled copy goes lower; a true minimum
    (diamond) stays, for at most the probe's steps; the search's validation maker takes the
    setting from the configuration."""
    from configs import TINY

    from crysal_flows.config import OracleConfig, load_config
    from crysal_flows.flows import CycleMaker
    from crysal_flows.validation.jobs import PROBE_STEPS, oracle_relax

    sw = OracleConfig(kind="stillinger_weber")
    bcc = atoms_to_structure(bulk("Si", "bcc", a=3.1, cubic=True).repeat((2, 2, 1)))
    held = oracle_relax(bcc, sw, 0.05, 300, symmetry_rattle=0.0)
    assert held.converged and held.stationary_energy_per_atom is None
    past = oracle_relax(bcc, sw, 0.05, 300, symmetry_rattle=0.03)
    assert past.converged and past.energy_per_atom < held.energy_per_atom - 0.01
    assert past.stationary_energy_per_atom == pytest.approx(held.energy_per_atom, abs=1e-4)
    assert past.oracle_calls > held.oracle_calls + PROBE_STEPS // 2

    d = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True))
    plain = oracle_relax(d, sw, 0.05, 300, symmetry_rattle=0.0)
    checked = oracle_relax(d, sw, 0.05, 300, symmetry_rattle=0.03)
    assert checked.energy_per_atom == pytest.approx(plain.energy_per_atom, abs=1e-6)
    assert checked.stationary_energy_per_atom is None
    assert plain.oracle_calls < checked.oracle_calls <= plain.oracle_calls + PROBE_STEPS
    assert checked.oracle_calls == plain.oracle_calls + checked.symmetry_check_calls
    assert past.symmetry_check_calls > 0 and plain.symmetry_check_calls == 0

    cfg = load_config({**TINY, "validation": {"n_structures": 1, "symmetry_rattle": 0.05}})
    assert CycleMaker(config=cfg).validation_maker.symmetry_rattle == 0.05
    assert CycleMaker(config=load_config(TINY)).validation_maker.symmetry_rattle == 0.03


def test_the_symmetry_check_runs_once_per_distinct_minimum():
    """Validation relaxes every chosen cluster first and then checks each distinct converged
    minimum with symmetry once, in an oracle job of its own: two bcc clusters that converge to
    the same Stillinger-Weber saddle cost one check, and both take the lower minimum it finds;
    diamond's check comes back. The report charges each check once."""
    from configs import TINY
    from jobflow import Flow, run_locally

    from crysal_flows.analysis.summary import analyse_cycle
    from crysal_flows.config import load_config
    from crysal_flows.labelling.schemas import TrainingSetDocument
    from crysal_flows.schemas import SearchState
    from crysal_flows.training.schemas import EnsembleDocument
    from crysal_flows.validation.jobs import OracleRelaxMaker, validate_minima

    b1 = bulk("Si", "bcc", a=3.1, cubic=True).repeat((2, 2, 1))
    b2 = bulk("Si", "bcc", a=2.9, cubic=True).repeat((2, 1, 2))
    d = bulk("Si", "diamond", a=5.43, cubic=True)
    pool = _pool([_cand(0, b1, -4.5), _cand(1, b2, -4.4), _cand(2, d, -4.3)], cycle=1)
    ts = TrainingSetDocument(
        cycle=1, labels=[], n_new=0, n_new_failed=0, n_attempted_total=0, n_failed_total=0
    )
    ens = EnsembleDocument(cycle=1, members=[], n_requested=2)
    cfg = load_config({**TINY, "validation": {"n_structures": 3, "n_novel": 0}})
    uuids = {"pool": "p", "training_set": "t", "ensemble": "e"}
    out = analyse_cycle(pool, ts, ens, SearchState(run_id="r"), cfg, "s", uuids)
    assert [cl.representative for cl in out.clusters] == [0, 1, 2]

    def validate(rattle):
        maker = OracleRelaxMaker(
            oracle=cfg.oracle, fmax=0.05, max_steps=200, symmetry_rattle=rattle
        )
        job = validate_minima(
            pool, out, [], maker, 3, {"run_id": "r", "name": "t", "composition": "Si8"}, []
        )
        responses = run_locally(Flow([job]), ensure_success=True)
        outputs = [r[1].output for r in responses.values()]
        (report,) = [o for o in outputs if type(o).__name__ == "ReportDocument"]
        relaxed = [o for o in outputs if type(o).__name__ == "OracleRelaxDocument"]
        checks = [o for o in outputs if type(o).__name__ == "SymmetryCheckDocument"]
        return report, relaxed, checks

    plain, relaxed0, none = validate(0.0)
    assert none == [] and plain.symmetry_check_steps == 0
    saddle = [m for m in plain.minima if m.space_group_symbol == "Im-3m"]
    assert len(saddle) == 1 and sorted(saddle[0].source_indices) == [0, 1]

    report, relaxed, checks = validate(0.03)
    # the relaxations are the same as without the check; the check came after them
    assert [r.energy_per_atom for r in relaxed] == pytest.approx(
        [r.energy_per_atom for r in relaxed0], abs=1e-8
    )
    assert all(r.symmetry_check_calls == 0 for r in relaxed)
    assert len(checks) == 2  # the saddle once (for both clusters), diamond once
    by_size = sorted(checks, key=lambda c: len(c.relaxations))
    assert not by_size[0].lower and len(by_size[0].relaxations) == 1
    down = by_size[1]
    assert down.lower and len(down.relaxations) == 2
    assert down.lower_energy_per_atom < saddle[0].energy_per_atom - 0.01
    assert report.symmetry_check_steps == sum(c.oracle_calls for c in checks) > 0
    assert report.validation_steps == plain.validation_steps + report.symmetry_check_steps
    # both bcc clusters are now reported at the minimum below the saddle
    assert not [m for m in report.minima if m.space_group_symbol == "Im-3m"]
    below = [m for m in report.minima if 0 in m.source_indices or 1 in m.source_indices]
    assert len(below) == 1 and sorted(below[0].source_indices) == [0, 1]
    assert below[0].energy_per_atom == pytest.approx(down.lower_energy_per_atom)
    # a check that never came back (its jobs lost on a cluster) leaves the minima unchecked
    from crysal_flows.validation.jobs import make_report

    picks = [{"cluster_rank": r.cluster_rank, "source_index": r.source_index} for r in relaxed]
    args = (relaxed, picks, [], [], {"run_id": "r", "name": "t", "composition": "Si8"}, [])
    lost = make_report.original(*args, cfg.oracle, checks=None, checked=True)
    assert [m.energy_per_atom for m in lost.minima] == [m.energy_per_atom for m in plain.minima]
    assert lost.symmetry_check_steps == 0


def test_the_symmetry_check_probes_from_the_starting_hessian_and_checks_again():
    """The probe starts from the relaxation's starting Hessian where the oracle takes one (a
    true minimum comes back in fewer steps; where that probe neither converges nor goes lower,
    BFGS's default Hessian decides), and a lower result that converged is checked in turn,
    never more than PROBE_ROUNDS times."""
    from crysal_flows.config import OracleConfig
    from crysal_flows.oracles import get_oracle
    from crysal_flows.validation.jobs import PROBE_ROUNDS, PROBE_STEPS, _past_symmetry

    runner = get_oracle(OracleConfig(kind="stillinger_weber"))
    seen = []

    class Recording:
        uses_hessian = True

        def relax(self, structure, fmax, max_steps, hessian=None):
            seen.append(hessian is not None)
            return runner.relax(structure, fmax, max_steps, hessian=hessian)

    d = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True))
    plain = runner.relax(d, 0.05, 300)
    hessian = 10.0 * np.eye(3 * (len(d) + 3))
    shaken = structure_to_atoms(d)
    shaken.rattle(0.05, seed=1)
    assert runner.relax(atoms_to_structure(shaken), 0.05, 20, hessian=hessian).n_steps > 2
    assert np.array_equal(hessian, 10.0 * np.eye(len(hessian)))  # BFGS updates a copy
    calls, lower = _past_symmetry(
        Recording(), plain.structure, plain.energy, 0.05, 300, 0.03, hessian
    )
    assert lower is None and seen == [True] and 0 < calls
    # a Hessian far too soft sends BFGS off with its largest steps: neither back nor lower
    # after the probe's steps, the default Hessian decides (and finds the minimum)
    seen.clear()
    calls, lower = _past_symmetry(
        Recording(), plain.structure, plain.energy, 0.05, 300, 0.03, 1e-3 * hessian
    )
    assert lower is None and seen == [True, False] and calls > PROBE_STEPS

    bcc = atoms_to_structure(bulk("Si", "bcc", a=3.1, cubic=True).repeat((2, 2, 1)))
    held = runner.relax(bcc, 0.05, 300)
    seen.clear()
    calls, lower = _past_symmetry(
        Recording(), held.structure, held.energy, 0.05, 300, 0.03, hessian
    )
    assert lower is not None and lower.energy < held.energy - 0.01 * len(bcc)
    assert seen[0] is True and not any(seen[1:])  # later relaxations start afresh
    assert len([s for s in seen if s is False]) <= 2 * PROBE_ROUNDS
    # given the ensemble's Hessian as a function of the structure, the relaxation on from a probe
    # that went lower starts from the Hessian where the probe ended; probes still start afresh
    at = []

    def hessian_at(structure):
        at.append(structure)
        return hessian

    seen.clear()
    _, on = _past_symmetry(
        Recording(), held.structure, held.energy, 0.05, 300, 0.03, hessian, hessian_at=hessian_at
    )
    assert on is not None and on.energy < held.energy - 0.01 * len(bcc)
    assert seen[:2] == [True, True] and len(at) == seen[1:].count(True) >= 1
    assert _past_symmetry(runner, held.structure, held.energy, 0.05, 300, 0.03, None, 0) == (
        0,
        None,
    )


def test_a_reference_match_needs_the_reference_energy():
    """StructureMatcher alone took an R-3c saddle 155 meV/atom above corundum for corundum;
    given both oracle energies, a match must also agree in energy."""
    from crysal_flows.validation.jobs import MATCH_ENERGY_TOL, matches_reference

    d = atoms_to_structure(bulk("Si", "diamond", a=5.43))
    big = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1)))
    assert matches_reference(big, d)
    assert matches_reference(big, d, -4.336, -4.3366)
    assert not matches_reference(big, d, -4.3366 + 2 * MATCH_ENERGY_TOL, -4.3366)
    assert matches_reference(big, d, -4.0, None)
    assert not matches_reference(atoms_to_structure(bulk("Si", "bcc", a=3.1)), d)

    # the report: a minimum with the structure but not the energy is no find, and is named
    from crysal_flows.cli import format_report
    from crysal_flows.config import OracleConfig, ReferenceStructure
    from crysal_flows.validation.jobs import make_report
    from crysal_flows.validation.schemas import OracleRelaxDocument

    def relaxed(structure, e, **kw):
        return OracleRelaxDocument(
            oracle="sw",
            success=True,
            converged=True,
            initial_structure=structure,
            structure=structure,
            energy_per_atom=e,
            **kw,
        )

    ref = ReferenceStructure(label="diamond", bulk={"name": "Si", "crystalstructure": "diamond"})
    low = atoms_to_structure(bulk("Si", "sc", a=2.5).repeat((2, 1, 1)))
    report = make_report.original(
        [relaxed(low, -4.40), relaxed(big, -4.20)],
        [{"cluster_rank": 1, "source_index": 0}, {"cluster_rank": 2, "source_index": 1}],
        [relaxed(d, -4.3366, reference="diamond")],
        [],
        {"run_id": "r", "name": "t", "composition": "Si2"},
        [ref],
        OracleConfig(kind="stillinger_weber"),
    )
    assert report.found == [] and [m.matches for m in report.minima] == [[], []]
    assert [m.structure_matches for m in report.minima] == [[], ["diamond"]]
    line = format_report(report.model_dump()).splitlines()[-1]
    assert line.endswith(
        "NOT found; the lowest minimum (Pm-3m) lies -63.4 meV/atom from it; "
        "minimum 2 has its structure at +136.6 meV/atom"
    ), line
