"""Partial failure is normal: a job that raises (a member, a shard, a validation relaxation) does
not stop the search, under run_locally here and under FireWorks in test_fireworks_slurm.py."""

import json

import pytest
from configs import FAULTY
from faults import FailingRelaxMaker, FailingTrainMaker, FailingValidationMaker
from jobflow import OnMissing, run_locally
from jobflow.managers.fireworks import flow_to_workflow

from crysal_flows.config import load_config
from crysal_flows.flows import CrystalSearchMaker, CycleMaker
from crysal_flows.labelling.jobs import collect_labels
from crysal_flows.local import run_flow
from crysal_flows.relaxation.jobs import merge_shards, shard_indices
from crysal_flows.store import local_store
from crysal_flows.training.jobs import gather_ensemble
from crysal_flows.validation.jobs import OracleRelaxMaker, check_minima, make_report


def faulty_search(config: dict):
    """The search of ``config`` with member 1 failing in every cycle, relaxation shard 1 in cycle
    0, and the validation relaxation of the best cluster."""
    cfg = load_config(config)
    cycle_maker = CycleMaker(
        config=cfg,
        train_maker=FailingTrainMaker(config=cfg.training),
        relax_maker=FailingRelaxMaker(config=cfg.relaxation),
        validation_maker=FailingValidationMaker(
            oracle=cfg.oracle, fmax=cfg.validation.fmax, max_steps=cfg.validation.max_steps
        ),
    )
    return cfg, CrystalSearchMaker(config=cfg, cycle_maker=cycle_maker).make()


def test_gather_jobs_tolerate_missing_parents_on_the_job_and_in_fireworks():
    for j in (
        gather_ensemble([], 0),
        merge_shards([], None, 0),
        collect_labels([]),
        make_report([], [], [], [], {}, [], None),
        check_minima([], OracleRelaxMaker()),
    ):
        assert j.config.on_missing_references == OnMissing.NONE, j.name
        assert j.config.expose_store
    cfg = load_config(FAULTY)
    wf = flow_to_workflow(CrystalSearchMaker(config=cfg).make())
    specs = {fw.name: fw.spec for fw in wf.fws}
    assert specs["gather ensemble (cycle 0)"]["_allow_fizzled_parents"] is True
    assert specs["merge shards (cycle 0)"]["_allow_fizzled_parents"] is True
    assert "_allow_fizzled_parents" not in specs["analyse (cycle 0)"]


@pytest.mark.slow
@pytest.mark.parametrize("side_by_side", [False, True], ids=["run_locally", "two_processes"])
def test_failed_member_shard_and_validation_jobs_do_not_stop_the_search(
    memory_store, tmp_path, side_by_side
):
    cfg, flow = faulty_search(FAULTY)
    if side_by_side:  # crysal run's runner: the failing member and shard raise in a worker
        memory_store = local_store(tmp_path / "store")
        run_flow(flow, store=memory_store, processes=2)
    else:
        run_locally(flow, store=memory_store, log=False)

    def outputs(step: str) -> list[dict]:
        docs = memory_store.query({"metadata.crysal_step": step}, load=True)
        return sorted((d["output"] for d in docs), key=lambda o: o.get("cycle", 0))

    # every cycle trained 3 members, one raised, and went on with the other two
    ensembles = outputs("gather_ensemble")
    assert [e["cycle"] for e in ensembles] == [0, 1]
    assert all(e["n_requested"] == 3 and len(e["members"]) == 2 for e in ensembles)
    assert all(sorted(m["member"] for m in e["members"]) == [1, 2] for e in ensembles)

    # shard 1 of cycle 0 raised: its candidates kept their generated structures, marked as such
    pool = memory_store.query_one({"metadata.crysal_step": "generate_pool"}, load=True)["output"]
    merged = outputs("merge_shards")[0]
    lost = set(shard_indices(cfg.pool.size, cfg.relaxation.n_shards)[0].tolist())
    for before, after in zip(pool["candidates"], merged["candidates"], strict=True):
        if after["index"] in lost:
            assert after["status"] == "not_relaxed"
            assert after["structure"] == before["structure"]
        else:
            assert after["status"] != "not_relaxed"
    # ... and both cycles were analysed
    assert [s["cycle"] for s in outputs("analyse")] == [0, 1]

    # the validation of the best cluster raised: listed as failed, the others reported
    (report,) = outputs("report")
    summary = outputs("analyse")[-1]
    assert len(summary["clusters"]) >= 2
    (failed,) = report["failed_relaxations"]
    assert failed["cluster_rank"] == 1
    assert failed["source_index"] == summary["clusters"][0]["representative"]
    assert failed["error"] == "the relaxation job did not complete"
    assert report["minima"]
    assert all(failed["source_index"] not in m["source_indices"] for m in report["minima"])
    # the reference was relaxed by an oracle job of its own, not inside the report
    assert report["references"]["diamond"] == pytest.approx(-4.3366, abs=2e-3)
    ref_job = memory_store.query_one({"metadata.crysal_step": "reference_relax"})
    assert ref_job["output"]["reference"] == "diamond"
    assert json.dumps(report)  # a plain document
