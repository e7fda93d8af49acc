"""A search run read back from a JobStore, finished or still running: for status, plots, export.

Everything is found by the metadata every job carries (``crysal_run``, ``crysal_step``,
``crysal_cycle``), so the same code reads the local on-disk store of ``crysal run`` and the
MongoDB JobStore that FireWorks workers write to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jobflow import JobStore

from crysal_flows.jobs import Step
from crysal_flows.store import step_outputs

__all__ = ["CycleProgress", "RunView", "find_runs", "load_run"]


@dataclass
class CycleProgress:
    """What the cycle in progress has finished so far."""

    cycle: int
    labels_done: int
    labels_total: int | None  # known once its selection ran
    members_done: int
    members_total: int | None
    shards_done: int
    shards_total: int | None
    validating: bool = False  # the search is in its final oracle relaxations
    relaxations_done: int = 0
    checks_done: int = 0  # symmetry checks of the validation's minima (validation.symmetry_rattle)


@dataclass
class RunView:
    """One run as its store holds it."""

    run_id: str
    name: str | None
    composition: str | None
    n_atoms: int | None
    summaries: list[dict[str, Any]] = field(default_factory=list)  # CycleSummary, by cycle
    labels: list[dict[str, Any]] = field(default_factory=list)  # cycle, success, energy/atom
    report: dict[str, Any] | None = None
    last_update: float | None = None  # Unix time of the newest finished job
    progress: CycleProgress | None = None  # None once the report is written

    @property
    def finished(self) -> bool:
        """Whether the run wrote its report."""
        return self.report is not None


def _when(doc: dict[str, Any]) -> float | None:
    from datetime import datetime

    stamp = doc.get("completed_at")
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def find_runs(store: JobStore) -> list[str]:
    """Ids of every run with at least a generated pool in a connected store, oldest first."""
    docs = step_outputs(store, None, Step.POOL, properties=["metadata", "completed_at"])
    seen: dict[str, None] = {}
    for d in docs:
        run = (d.get("metadata") or {}).get("crysal_run")
        if run:
            seen[run] = None
    return list(seen)


def load_run(store: JobStore, run: str | None = None) -> RunView:
    """Return the run named ``run`` (its name or id; default: the newest) from a connected store.

    Raises
    ------
    LookupError
        If the store holds no such run.
    """
    ids = find_runs(store)
    if not ids:
        raise LookupError("the store holds no search run")
    summaries_by_run: dict[str, list[dict]] = {}
    chosen = None
    if run is None:
        chosen = ids[-1]
    elif run in ids:
        chosen = run
    else:
        for run_id in reversed(ids):
            docs = step_outputs(store, run_id, Step.ANALYSE, properties=["output"])
            summaries_by_run[run_id] = [d["output"] for d in docs]
            if any(s.get("name") == run for s in summaries_by_run[run_id]):
                chosen = run_id
                break
    if chosen is None:
        raise LookupError(f"no run named {run!r} in the store (runs: {', '.join(ids)})")
    return _view(store, chosen, summaries_by_run.get(chosen))


def _view(store: JobStore, run_id: str, summaries: list[dict] | None) -> RunView:
    if summaries is None:
        summaries = [
            d["output"] for d in step_outputs(store, run_id, Step.ANALYSE, properties=["output"])
        ]
    summaries = sorted(summaries, key=lambda s: s["cycle"])
    pool = step_outputs(
        store,
        run_id,
        Step.POOL,
        properties=["output.composition", "output.n_atoms", "completed_at", "metadata"],
    )
    composition = pool[0]["output"].get("composition") if pool else None
    n_atoms = pool[0]["output"].get("n_atoms") if pool else None
    label_docs = step_outputs(
        store,
        run_id,
        Step.ORACLE_SINGLE_POINT,
        properties=[
            "output.cycle",
            "output.success",
            "output.energy",
            "output.reason",
            "output.reused",
            "completed_at",
        ],
    )
    labels = []
    for d in label_docs:
        o = d["output"]
        energy = o.get("energy")
        labels.append(
            {
                "cycle": o.get("cycle"),
                "success": bool(o.get("success")),
                "reason": o.get("reason"),
                "reused": bool(o.get("reused")),
                "energy_per_atom": None if energy is None or not n_atoms else energy / n_atoms,
            }
        )
    reports = [d["output"] for d in step_outputs(store, run_id, Step.REPORT, load=True)]
    newest = [t for t in (_when(d) for d in (*pool, *label_docs)) if t is not None]
    name = summaries[-1]["name"] if summaries else None
    if name is None and pool:
        name = (pool[0].get("metadata") or {}).get("crysal_name")
    view = RunView(
        run_id=run_id,
        name=name,
        composition=composition,
        n_atoms=n_atoms,
        summaries=summaries,
        labels=labels,
        report=reports[-1] if reports else None,
    )
    stamps = [
        t
        for t in (
            _when(d) for d in step_outputs(store, run_id, Step.ANALYSE, properties=["completed_at"])
        )
        if t is not None
    ]
    view.last_update = max([*newest, *stamps], default=None)
    if view.report is None:
        view.progress = _progress(store, run_id, summaries)
    return view


def _progress(store: JobStore, run_id: str, summaries: list[dict]) -> CycleProgress:
    """Count the finished jobs of the cycle after the last analysed one."""
    last = summaries[-1] if summaries else None
    if last is not None and last.get("stop"):
        done = step_outputs(store, run_id, Step.ORACLE_RELAX, properties=["uuid"])
        checks = step_outputs(store, run_id, Step.SYMMETRY_PROBE, properties=["uuid"])
        return CycleProgress(
            cycle=last["cycle"],
            labels_done=0,
            labels_total=None,
            members_done=0,
            members_total=None,
            shards_done=0,
            shards_total=None,
            validating=True,
            relaxations_done=len(done),
            checks_done=len(checks),
        )
    c = 0 if last is None else last["cycle"] + 1

    def count(step: str) -> list[dict]:
        return [
            d
            for d in step_outputs(store, run_id, step, properties=["metadata", "output"])
            if (d.get("metadata") or {}).get("crysal_cycle") == c
        ]

    select = count(Step.SELECT)
    plan = (select[0].get("metadata") or {}).get("crysal_plan", {}) if select else {}
    return CycleProgress(
        cycle=c,
        labels_done=len(count(Step.ORACLE_SINGLE_POINT)),
        labels_total=len(select[0]["output"].get("structures", [])) if select else None,
        members_done=len(count(Step.TRAIN_MEMBER)),
        members_total=plan.get("members"),
        shards_done=len(count(Step.RELAX_SHARD)),
        shards_total=plan.get("shards"),
    )


def age(seconds_since: float | None) -> str:
    """'3 min ago' for a Unix time."""
    if seconds_since is None:
        return "unknown"
    s = max(0.0, time.time() - seconds_since)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.1f} h ago"
