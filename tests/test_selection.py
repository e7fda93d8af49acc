"""Selection: random picks in cycle 0; later the lowest minima, low scores, stuck candidates
and random coverage."""

from crysal_flows.config import SelectionConfig
from crysal_flows.schemas import CandidateStatus
from crysal_flows.selection.jobs import select_structures


def _pool(si_frames):
    pool, _ = si_frames
    cands = []
    for c in pool.candidates:  # 24 candidates: energies rise with the index
        i = c.index
        if i in (20, 21, 22):  # stopped as uncertain before moving, far up in energy
            status, steps = CandidateStatus.UNCERTAIN, 0
        elif i == 0:
            status, steps = CandidateStatus.FAILED, 12
        else:
            status, steps = CandidateStatus.CONVERGED, 30
        cands.append(
            c.model_copy(
                update={
                    "energy_per_atom": -4.3 + 0.01 * i,
                    "sigma_force": 0.01,
                    "status": status,
                    "steps": steps,
                }
            )
        )
    return pool.model_copy(update={"candidates": cands})


def _labelled_all_but(pool, index: int):
    """A training set holding every candidate's structure but ``index``'s, labelled in cycle 1."""
    from crysal_flows.labelling.schemas import LabelDocument, TrainingSetDocument

    labels = [
        LabelDocument(
            structure=c.structure,
            oracle="sw",
            cycle=1,
            source_index=c.index,
            success=True,
            energy=-30.0,
        )
        for c in pool.candidates
        if c.index != index
    ]
    return TrainingSetDocument(
        cycle=1,
        labels=labels,
        n_new=len(labels),
        n_new_failed=0,
        n_attempted_total=len(labels),
        n_failed_total=0,
    )


def test_cycle_zero_picks_at_random(si_frames):
    """A pool nothing relaxed yet (no prior) has no energies: cycle 0 picks at random."""
    pool, _ = si_frames
    assert all(c.energy_per_atom is None for c in pool.candidates)
    cfg = SelectionConfig(n_labels=4, n_labels_first=6, min_fingerprint_distance=0)
    doc = select_structures.original(pool, None, 0, cfg, seed=1)
    assert len(doc.structures) == 6 and {s.reason for s in doc.structures} == {"random"}
    assert len({s.source_index for s in doc.structures}) == 6


def test_cycle_zero_after_a_prior_ranks_by_score(si_frames):
    """A pool the prior relaxed before cycle 0 has energies: cycle 0 labels its low end too."""
    pool = _pool(si_frames)
    cfg = SelectionConfig(
        n_labels=4, n_labels_first=8, random_fraction=0.25, min_fingerprint_distance=0
    )
    doc = select_structures.original(pool, None, 0, cfg, seed=1)
    by_reason = {}
    for s in doc.structures:
        by_reason.setdefault(s.reason, []).append(s.source_index)
    assert len(doc.structures) == 8 and len(by_reason["random"]) == 2
    assert by_reason["minimum"] == [1, 2]  # a quarter: the prior's lowest minima; 0 failed
    assert sorted(by_reason["score"]) == [3, 4]


def test_stuck_candidates_get_labels(si_frames):
    """A candidate that stopped as uncertain before its first step never moves until labelled;
    ``stuck_fraction`` of the labels go to such candidates even far up in energy."""
    pool = _pool(si_frames)
    cfg = SelectionConfig(
        n_labels=8, stuck_fraction=0.25, random_fraction=0.25, min_fingerprint_distance=0
    )
    doc = select_structures.original(pool, None, 3, cfg, seed=1)
    by_reason = {}
    for s in doc.structures:
        by_reason.setdefault(s.reason, []).append(s.source_index)
    assert sorted(by_reason["stuck"]) == [20, 21]  # 2 of 8, the best scored stuck ones
    assert by_reason["minimum"] == [1, 2]  # the lowest energies; 0 failed
    assert sorted(by_reason["score"]) == [3, 4]
    assert len(by_reason["random"]) == 2
    assert len({s.source_index for s in doc.structures}) == 8
    # without the reservation the stuck candidates are out of reach of the scores
    doc = select_structures.original(
        pool, None, 3, cfg.model_copy(update={"stuck_fraction": 0}), seed=1
    )
    assert not [
        s
        for s in doc.structures
        if s.reason in ("stuck", "minimum", "score") and s.source_index >= 20
    ]


def test_near_duplicates_are_labelled_once(si_frames):
    """Candidates that relaxed into the same structure are one label: the best-scored one."""
    pool = _pool(si_frames)
    cands = list(pool.candidates)
    for i in (2, 3):  # 2 and 3 became copies of 1 (slightly rattled, higher in energy)
        atoms = cands[1].structure.copy()
        atoms.perturb(0.002)
        cands[i] = cands[i].model_copy(update={"structure": atoms})
    pool = pool.model_copy(update={"candidates": cands})
    cfg = SelectionConfig(
        n_labels=6, stuck_fraction=0, random_fraction=0, min_fingerprint_distance=0.05
    )
    doc = select_structures.original(pool, None, 3, cfg, seed=1)
    picked = [s.source_index for s in doc.structures]
    assert picked == [1, 4, 5, 6, 7, 8]  # 2 and 3 skipped, the next scores took their places
    # without the distance every copy is labelled
    doc = select_structures.original(
        pool, None, 3, cfg.model_copy(update={"min_fingerprint_distance": 0}), seed=1
    )
    assert [s.source_index for s in doc.structures] == [1, 2, 3, 4, 5, 6]


def test_a_huge_spread_does_not_outrank_the_low_energy_end(si_frames):
    """A crushed cell (E +5 eV/atom, members 100 eV/A apart) scores by max_sigma at most."""
    pool = _pool(si_frames)
    cands = list(pool.candidates)
    cands[10] = cands[10].model_copy(update={"energy_per_atom": 5.0, "sigma_force": 100.0})
    pool = pool.model_copy(update={"candidates": cands})
    cfg = SelectionConfig(
        n_labels=4,
        stuck_fraction=0,
        random_fraction=0,
        minima_fraction=0,
        min_fingerprint_distance=0,
    )
    doc = select_structures.original(pool, None, 3, cfg, seed=1)
    assert [s.source_index for s in doc.structures] == [1, 2, 3, 4]
    # an unbounded spread bonus (what the score was before max_sigma) picks it first
    doc = select_structures.original(
        pool, None, 3, cfg.model_copy(update={"max_sigma": 1e6}), seed=1
    )
    assert doc.structures[0].source_index == 10


def test_stuck_candidates_get_one_reserved_label(si_frames):
    """A stuck candidate labelled before, or far above the pool's best, gets no reserved label."""
    from crysal_flows.labelling.schemas import LabelDocument, TrainingSetDocument

    pool = _pool(si_frames)
    cands = list(pool.candidates)
    cands[22] = cands[22].model_copy(update={"energy_per_atom": 3.0})  # an exploded cell
    pool = pool.model_copy(update={"candidates": cands})
    cfg = SelectionConfig(
        n_labels=8, stuck_fraction=0.25, random_fraction=0, min_fingerprint_distance=0
    )
    c20 = pool.candidates[20]
    label = LabelDocument(
        structure=c20.structure, oracle="sw", cycle=2, source_index=20, success=True, energy=-1.0
    )
    ts = TrainingSetDocument(
        cycle=2, labels=[label], n_new=1, n_new_failed=0, n_attempted_total=1, n_failed_total=0
    )
    doc = select_structures.original(pool, None, 3, cfg, seed=1, training_set=ts)
    stuck = [s.source_index for s in doc.structures if s.reason == "stuck"]
    assert stuck == [21]  # 20 was labelled in cycle 2; 22 lies 7 eV/atom above the best
    doc = select_structures.original(pool, None, 3, cfg, seed=1)
    assert sorted(s.source_index for s in doc.structures if s.reason == "stuck") == [20, 21]


def test_the_lowest_minima_are_labelled_whatever_the_spread_elsewhere(si_frames):
    """Uncertain cells a little higher in energy outscore the pool's converged lowest minima
    (E - kappa sigma); ``minima_fraction`` of the labels still go to those minima, so the
    ensemble is corrected where validation looks."""
    pool = _pool(si_frames)
    cands = list(pool.candidates)
    for i in range(5, 15):  # uncertain, 0.04-0.13 eV/atom above 1, members 1 eV/A apart
        cands[i] = cands[i].model_copy(
            update={"sigma_force": 1.0, "status": CandidateStatus.UNCERTAIN, "steps": 5}
        )
    pool = pool.model_copy(update={"candidates": cands})
    cfg = SelectionConfig(
        n_labels=4, stuck_fraction=0, random_fraction=0, min_fingerprint_distance=0
    )
    doc = select_structures.original(pool, None, 3, cfg, seed=1)
    assert (doc.structures[0].source_index, doc.structures[0].reason) == (1, "minimum")
    assert {s.source_index for s in doc.structures[1:]} <= set(range(5, 15))
    # without the reservation the lowest minimum is never labelled
    doc = select_structures.original(
        pool, None, 3, cfg.model_copy(update={"minima_fraction": 0}), seed=1
    )
    assert 1 not in {s.source_index for s in doc.structures}


def test_a_minimum_unlike_every_label_is_labelled(si_frames):
    """A converged minimum unlike every structure labelled so far gets a label even where the
    ensemble ranks it too high for the score to reach: there the members' agreement says
    nothing (diamond Si16 sat converged at rank 116 of 192, 0.37 eV/atom too high)."""
    from ase.build import bulk

    from crysal_flows.utils import atoms_to_structure

    pool = _pool(si_frames)
    cands = list(pool.candidates)
    diamond = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True))
    cands[9] = cands[9].model_copy(update={"structure": diamond, "energy_per_atom": -4.02})
    pool = pool.model_copy(update={"candidates": cands})
    ts = _labelled_all_but(pool, 9)  # every other candidate's structure was labelled before
    cfg = SelectionConfig(
        n_labels=8,
        stuck_fraction=0,
        random_fraction=0,
        novelty_fraction=0.125,
        min_fingerprint_distance=0,
    )
    doc = select_structures.original(pool, None, 2, cfg, seed=1, training_set=ts)
    reasons = {s.source_index: s.reason for s in doc.structures}
    assert reasons[9] == "novel" and list(reasons.values()).count("novel") == 1
    assert reasons[1] == reasons[2] == "minimum"
    # without the reservation the score never reaches it: seven candidates rank lower
    off = cfg.model_copy(update={"novelty_fraction": 0})
    doc = select_structures.original(pool, None, 2, off, seed=1, training_set=ts)
    assert 9 not in {s.source_index for s in doc.structures}
    # and only near the low-energy end: 0.4 eV/atom above the best is outside novelty_window
    cands[9] = cands[9].model_copy(update={"energy_per_atom": -3.89})
    pool = pool.model_copy(update={"candidates": cands})
    doc = select_structures.original(pool, None, 2, cfg, seed=1, training_set=ts)
    assert 9 not in {s.source_index for s in doc.structures}
    # and every other minimum in the window was labelled: no novel pick, the score takes it
    assert "novel" not in {s.reason for s in doc.structures} and len(doc.structures) == 8


def test_a_novel_minimum_may_be_uncertain_if_it_moved(si_frames):
    """Where most of the pool stops as uncertain, a basin the ensemble has not learnt rarely
    converges: a candidate that moved and then stopped as uncertain is a novel pick too
    (diamond Si16 stayed uncertain for five cycles and was never labelled); one that never
    moved is not, and ``novelty_uncertain: false`` keeps to converged candidates."""
    from ase.build import bulk

    from crysal_flows.utils import atoms_to_structure

    pool = _pool(si_frames)
    cands = list(pool.candidates)
    diamond = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True))
    cands[9] = cands[9].model_copy(
        update={
            "structure": diamond,
            "energy_per_atom": -4.02,
            "status": CandidateStatus.UNCERTAIN,
            "steps": 17,
            "sigma_force": 0.3,
        }
    )
    pool = pool.model_copy(update={"candidates": cands})
    ts = _labelled_all_but(pool, 9)
    cfg = SelectionConfig(
        n_labels=8,
        stuck_fraction=0,
        random_fraction=0,
        novelty_fraction=0.125,
        min_fingerprint_distance=0,
        kappa=0,
    )
    assert cfg.novelty_uncertain
    doc = select_structures.original(pool, None, 2, cfg, seed=1, training_set=ts)
    reasons = {s.source_index: s.reason for s in doc.structures}
    assert reasons[9] == "novel"
    off = cfg.model_copy(update={"novelty_uncertain": False})
    doc = select_structures.original(pool, None, 2, off, seed=1, training_set=ts)
    assert 9 not in {s.source_index for s in doc.structures}
    # stopped as uncertain before its first step: no novel pick (the stuck reservation's job)
    cands[9] = cands[9].model_copy(update={"steps": 0})
    pool = pool.model_copy(update={"candidates": cands})
    doc = select_structures.original(pool, None, 2, cfg, seed=1, training_set=ts)
    assert "novel" not in {s.reason for s in doc.structures}
