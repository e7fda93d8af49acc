"""Resuming a local run after a crash: nothing computed is lost, nothing is labelled twice.

``crysal run CONFIG`` records each run in the store's ``runs`` collection with a hash of its
configuration. Run again after the process died (killed, out of memory, node rebooted), it finds
the unfinished run of the same configuration and builds the rest of its flow from the store:

- after the last finished cycle: the next cycle (or validation) from that cycle's stored pool,
  training set and ensemble (``CycleSummary.resume``), exactly as its analysis job would have;
- before any cycle finished: cycle 0 from the stored pool, or the whole search.

The interrupted cycle runs again. Its selection is deterministic (seeded by the search seed and the
cycle), so it picks the same structures, and each oracle job first looks in the store for a
successful label of the same run with the same key (structure, oracle, settings): labels computed
before the crash are reused, not recomputed or duplicated. Training and ML relaxation, which cost no
oracle calls, are redone.

Raising ``analysis.max_cycles`` continues a run, finished or not, whose search stopped at its old
``max_cycles`` without meeting the stopping criterion: the next cycle starts from the last one's
stored state, and the earlier cycles' labels, ensembles and report stay as they are. Every other
setting must be the same; a run that met the criterion is not continued.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobflow import Flow, JobStore

from crysal_flows.config import MAX_CYCLES_LIMIT, SearchConfig
from crysal_flows.refs import StoredOutput
from crysal_flows.schemas import SearchState
from crysal_flows.store import local_collection

__all__ = ["RunRecord", "config_hash", "find_resumable", "mark", "record_run", "resume_flow"]


def config_hash(config: SearchConfig) -> str:
    """Hash of everything in a configuration that changes results (not the store path)."""
    data = config.model_dump(mode="json", exclude={"store"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _same_search(config: SearchConfig) -> dict[str, int]:
    """``config_hash`` of this configuration under each ``max_cycles`` -> that ``max_cycles``."""
    return {config_hash(config.model_copy(update={
        "analysis": config.analysis.model_copy(update={"max_cycles": k})})): k
        for k in range(1, MAX_CYCLES_LIMIT + 1)}


@dataclass
class RunRecord:
    """A local run as recorded in the store's ``runs`` collection."""

    run_id: str
    name: str
    config_hash: str
    started: float
    status: str  # running | finished
    max_cycles: int  # the run's analysis.max_cycles


@contextmanager
def _runs(path: str | Path) -> Iterator:
    """The store's ``runs`` collection, connected."""
    runs = local_collection(path, "runs", key="run_id")
    runs.connect()
    try:
        yield runs
    finally:
        runs.close()


def record_run(path: str | Path, config: SearchConfig, run_id: str, started: float) -> None:
    """Record a new run as running."""
    with _runs(path) as runs:
        runs.update([{"run_id": run_id, "name": config.name, "config_hash": config_hash(config),
                      "started": started, "status": "running", "updated": time.time()}])


def mark(path: str | Path, run_id: str, status: str) -> None:
    """Set a run's status."""
    with _runs(path) as runs:
        doc = runs.query_one({"run_id": run_id})
        if doc is not None:
            doc.pop("_id", None)
            runs.update([{**doc, "status": status, "updated": time.time()}])


def find_resumable(path: str | Path, config: SearchConfig) -> RunRecord | None:
    """The run of this search that ``crysal run`` goes on with, if any.

    The latest unfinished run of this configuration, or of the same one with another
    ``max_cycles``; else the latest finished run of the same search with another ``max_cycles``
    (``resume_flow`` tells whether it can be continued).
    """
    family = _same_search(config)
    with _runs(path) as runs:
        docs = list(runs.query({"config_hash": {"$in": list(family)}}, sort={"started": -1}))
    own = config.analysis.max_cycles
    docs = ([d for d in docs if d["status"] == "running"]
            + [d for d in docs if d["status"] != "running" and family[d["config_hash"]] != own])
    if not docs:
        return None
    d = docs[0]
    return RunRecord(d["run_id"], d["name"], d["config_hash"], d["started"], d["status"],
                     family[d["config_hash"]])


def _outputs(store: JobStore, run_id: str, name_regex: str) -> list[dict[str, Any]]:
    return list(store.query({"metadata.crysal_run": run_id, "name": {"$regex": name_regex}},
                            properties=["uuid", "output", "name", "completed_at"], load=False))


def resume_flow(store: JobStore, cycle_maker: Any, pool_maker: Any = None,
                finished: bool = False) -> tuple[Flow, str] | None:
    """The remaining flow of ``cycle_maker.run_id`` and a sentence saying where it resumes.

    ``cycle_maker`` must carry the run's id and configuration, whose ``max_cycles`` decides
    whether the last finished cycle is followed by another or by validation. A ``finished`` run
    gets only further cycles: None when its last cycle met the criterion or reached the new
    ``max_cycles``.
    """
    from crysal_flows.flows import CrystalSearchMaker, tag_run

    run_id, cfg = cycle_maker.run_id, cycle_maker.config
    store.connect()
    summaries = [d for d in _outputs(store, run_id, "^analyse") if d["output"].get("resume")]
    pools = _outputs(store, run_id, "^generate pool")
    if summaries:
        last = max(summaries, key=lambda d: d["output"]["cycle"])["output"]
        info = last["resume"]
        state = SearchState.model_validate(info["next_state"])
        stop = cycle_maker.stops(last["converged"], state.cycle)
        if finished and stop:
            return None
        flow = cycle_maker.follow_up(info, state, stop, info["n_members"])
        where = ("validation" if stop else f"cycle {state.cycle}") + \
            f" (after cycle {last['cycle']}, {last['oracle_single_points']} labels so far)"
    elif finished:
        return None
    elif pools:
        flow = cycle_maker.make(StoredOutput(uuid=pools[0]["uuid"]))
        where = "cycle 0 (the pool was generated)"
    else:  # tagged with the run id already
        return (CrystalSearchMaker(config=cfg, cycle_maker=cycle_maker,
                                   pool_maker=pool_maker).make(), "the start (nothing was stored)")
    tag_run(flow, run_id)
    return flow, where
