"""Resuming a local run after a crash: nothing computed is lost, nothing is labelled twice.

``crysal run CONFIG`` records each run in the store's ``runs`` collection with a hash of its
search (its science: machine settings such as the store, the DFT command or worker categories are
not in it, and neither is ``analysis.max_cycles``, which the record keeps on its own). Run again
after the process died (killed, out of memory, node rebooted), it finds the unfinished run of the
same search and builds the rest of its flow from the store:

- after the last finished cycle: the next cycle (or validation) from that cycle's stored pool,
  training set and ensemble (``CycleSummary.resume``), exactly as its analysis job would have;
- before any cycle finished: cycle 0 from the stored pool, or the whole search.

The interrupted cycle runs again. Its selection is deterministic (seeded by the search seed and the
cycle), so it picks the same structures, and each oracle job first looks in the store for a
successful label of the same run with the same key (structure, oracle, settings): labels computed
before the crash are reused, not recomputed or duplicated. Training and ML relaxation, which cost no
oracle calls, are redone. An interrupted validation runs again the same way: each oracle
relaxation and symmetry check that finished before the crash (same structure, oracle, settings and
starting Hessian: the same ``key``) comes back from the store, marked ``reused``.

Raising ``analysis.max_cycles`` continues a run, finished or not, whose search stopped at its old
``max_cycles`` without meeting the stopping criterion: the next cycle starts from the last one's
stored state, and the earlier cycles' labels, ensembles and report stay as they are. Every other
setting must be the same; a run that met the criterion is not continued.

A run resumed under a version whose defaults differ from those it started with goes on under the
new values; ``crysal run`` lists each such setting (``changed_settings``, from the full
configuration the record keeps).

Runs recorded by crysal_flows 0.1 (no ``version`` in their record) cannot be resumed: their jobs
carry no step metadata. ``crysal run`` says so and starts a new run.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobflow import Flow, JobStore

from crysal_flows import __version__
from crysal_flows.analysis.schemas import ResumePoint
from crysal_flows.analysis.stopping import StoppingRule
from crysal_flows.config import SearchConfig
from crysal_flows.jobs import Step
from crysal_flows.refs import StoredOutput
from crysal_flows.store import connect, local_collection, step_outputs

__all__ = [
    "RunRecord",
    "RunRegistry",
    "changed_settings",
    "process_alive",
    "resume_flow",
    "search_hash",
]


def search_hash(config: SearchConfig) -> str:
    """Hash of the science of a search, ``analysis.max_cycles`` aside.

    Only values that differ from their defaults enter it, so a setting added in a later version
    with a default leaves the hashes of earlier runs as they were.
    """
    data = config.model_dump(mode="json", exclude_defaults=True)
    data.get("analysis", {}).pop("max_cycles", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_settings(recorded: dict[str, Any] | None, config: SearchConfig) -> list[str]:
    """Return the settings a resumed run goes on with that differ from those it started with.

    The search hash holds only values that differ from their defaults, so a run started under
    an earlier version resumes under this version's defaults: a default that changed (or a new
    setting) changes the rest of the run. ``recorded`` is the full configuration of the run's
    record; each difference reads ``section.key old -> new`` (``(new)`` for a setting the
    record lacks). ``analysis.max_cycles`` is left out: raising it is how a run continues.
    """
    if not recorded:
        return []
    old, new = _flat(recorded), _flat(config.model_dump(mode="json"))
    out = []
    for key, value in new.items():
        if key == "analysis.max_cycles":
            continue
        if key not in old:
            out.append(f"{key} (new) {value!r}")
        elif old[key] != value:
            out.append(f"{key} {old[key]!r} -> {value!r}")
    return out


@dataclass
class RunRecord:
    """A local run as recorded in the store's ``runs`` collection."""

    run_id: str
    name: str
    search_hash: str
    started: float
    status: str  # running | finished
    max_cycles: int  # the run's analysis.max_cycles
    config: dict[str, Any] | None = None  # its full configuration when last recorded


class RunRegistry:
    """The ``runs`` records of a store: one per run of ``crysal run``, with its search hash.

    For a local on-disk store, a ``runs`` collection in its directory; for jobflow's configured
    JobStore (``crysal run --jobstore``), a ``crysal_runs`` collection beside its documents
    (in the same MongoDB database, for a MongoStore).
    """

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    @classmethod
    def local(cls, path: str | Path) -> RunRegistry:
        """Return the registry of the on-disk store in directory ``path``."""
        return cls(local_collection(path, "runs", key="run_id"))

    @classmethod
    def beside(cls, store: JobStore) -> RunRegistry:
        """Return the registry beside a JobStore's documents (its ``crysal_runs`` collection)."""
        from monty.json import MontyDecoder

        d = store.docs_store.as_dict()
        d.update(collection_name="crysal_runs", key="run_id")
        return cls(MontyDecoder().process_decoded(d))

    @contextmanager
    def _runs(self) -> Iterator:
        connect(self._collection)
        try:
            yield self._collection
        finally:
            self._collection.close()

    def record(
        self, config: SearchConfig, run_id: str, started: float, status: str = "running"
    ) -> None:
        """Record a run (new, or going on under another ``max_cycles``) as this process's."""
        with self._runs() as runs:
            runs.update(
                [
                    {
                        "run_id": run_id,
                        "name": config.name,
                        "search_hash": search_hash(config),
                        "max_cycles": config.analysis.max_cycles,
                        "started": started,
                        "status": status,
                        "updated": time.time(),
                        "version": __version__,
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "config": config.model_dump(mode="json"),
                    }
                ]
            )

    def mark(self, run_id: str, status: str) -> None:
        """Set a run's status."""
        with self._runs() as runs:
            doc = runs.query_one({"run_id": run_id})
            if doc is not None:
                doc.pop("_id", None)
                runs.update([{**doc, "status": status, "updated": time.time()}])

    def get(self, run_id: str) -> dict[str, Any] | None:
        """Return the record of ``run_id``, if any."""
        with self._runs() as runs:
            doc = runs.query_one({"run_id": run_id})
        return None if doc is None else {k: v for k, v in doc.items() if k != "_id"}

    def find_resumable(self, config: SearchConfig) -> RunRecord | None:
        """Return the run of this search that ``crysal run`` goes on with, if any.

        The latest unfinished run of this search (under any ``max_cycles``); else the latest
        finished one with another ``max_cycles`` (``resume_flow`` tells whether it can be
        continued).
        """
        with self._runs() as runs:
            docs = list(runs.query({"search_hash": search_hash(config)}, sort={"started": -1}))
        own = config.analysis.max_cycles
        docs = [d for d in docs if d["status"] == "running"] + [
            d for d in docs if d["status"] != "running" and d["max_cycles"] != own
        ]
        if not docs:
            return None
        d = docs[0]
        return RunRecord(
            d["run_id"],
            d["name"],
            d["search_hash"],
            d["started"],
            d["status"],
            d["max_cycles"],
            d.get("config"),
        )

    def legacy_runs(self, name: str) -> list[str]:
        """Return unfinished runs named ``name`` that an earlier version recorded."""
        with self._runs() as runs:
            docs = list(
                runs.query({"name": name, "status": "running", "version": {"$exists": False}})
            )
        return [d["run_id"] for d in docs]


def process_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process that runs a recorded run is alive (None: not this machine's)."""
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return None
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resume_flow(
    store: JobStore, cycle_maker: Any, record: RunRecord, finished: bool = False
) -> tuple[Flow, str] | None:
    """Return the remaining flow of the run of ``record`` and a sentence saying where it resumes.

    ``cycle_maker`` must carry the run's configuration, whose ``max_cycles`` decides whether the
    last finished cycle is followed by another or by validation. A ``finished`` run gets only
    further cycles: None when its last cycle met the criterion or reached the new
    ``max_cycles``.
    """
    from crysal_flows.flows import CrystalSearchMaker, initial_state, tag_run

    cfg = cycle_maker.config
    run_id = record.run_id
    connect(store)
    summaries = [
        d["output"]
        for d in step_outputs(store, run_id, Step.ANALYSE, properties=["output"])
        if d["output"].get("resume")
    ]
    pools = step_outputs(store, run_id, Step.POOL, properties=["uuid"])
    if summaries:
        last = max(summaries, key=lambda s: s["cycle"])
        resume = ResumePoint.model_validate(last["resume"])
        stop = StoppingRule(cfg.analysis).stops(last["converged"], resume.next_state.cycle)
        if finished and stop:
            return None
        flow = cycle_maker.follow_up(resume, stop)
        where = (
            "validation" if stop else f"cycle {resume.next_state.cycle}"
        ) + f" (after cycle {last['cycle']}, {last['oracle_single_points']} labels so far)"
    elif finished:
        return None
    elif pools:
        flow = cycle_maker.start(
            StoredOutput(uuid=pools[0]["uuid"]), initial_state(cfg, run_id, record.started)
        )
        where = "cycle 0 (the pool was generated)"
    else:  # tagged with the run id already
        flow = CrystalSearchMaker(config=cfg, cycle_maker=cycle_maker).make(
            run_id=run_id, started=record.started
        )
        return flow, "the start (nothing was stored)"
    tag_run(flow, run_id, cfg.name)
    return flow, where
