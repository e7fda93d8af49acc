"""Selection: random picks in cycle 0; later low scores, stuck candidates and random coverage."""

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


def test_cycle_zero_picks_at_random(si_frames):
    pool = _pool(si_frames)
    cfg = SelectionConfig(n_labels=4, n_labels_first=6, min_fingerprint_distance=0)
    doc = select_structures.original(pool, None, 0, cfg, seed=1)
    assert len(doc.structures) == 6 and {s.reason for s in doc.structures} == {"random"}
    assert len({s.source_index for s in doc.structures}) == 6


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
    assert sorted(by_reason["score"]) == [1, 2, 3, 4]  # the lowest energies; 0 failed
    assert len(by_reason["random"]) == 2
    assert len({s.source_index for s in doc.structures}) == 8
    # without the reservation the stuck candidates are out of reach of the scores
    doc = select_structures.original(
        pool, None, 3, cfg.model_copy(update={"stuck_fraction": 0}), seed=1
    )
    assert not [
        s for s in doc.structures if s.reason in ("stuck", "score") and s.source_index >= 20
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
