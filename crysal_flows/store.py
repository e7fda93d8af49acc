"""JobStores: the embedded on-disk default for local runs, and lookups of a run's outputs.

Outputs are found by the metadata every job carries (``crysal_run``, ``crysal_step``,
``crysal_cycle``; see :class:`crysal_flows.jobs.Step`), never by job names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobflow import JobStore

from crysal_flows.jobs import Step

__all__ = [
    "connect",
    "find_reports",
    "last_ensemble",
    "local_collection",
    "local_store",
    "maggma_stores",
    "step_outputs",
]


def local_store(path: str | Path, create: bool = True) -> JobStore:
    """Return an on-disk JobStore (MontyDB/sqlite) with a ``data`` store, in directory ``path``.

    No server is needed. Documents and the ``data`` store (checkpoints, pools) live in two
    collections of one database under ``path``.
    """
    path = Path(path).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"store path {path} exists and is not a directory")
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"no store at {path} (run a search first, or pass --store)")
        path.mkdir(parents=True)
    return JobStore(
        local_collection(path, "outputs"),
        additional_stores={"data": local_collection(path, "data")},
    )


def local_collection(path: str | Path, name: str, **kwargs):
    """Return a MontyStore collection of the on-disk database in directory ``path``."""
    from maggma.stores import MontyStore

    return MontyStore(
        name,
        database_path=str(Path(path).expanduser().resolve()),
        database_name="crysal",
        storage="sqlite",
        **kwargs,
    )


def maggma_stores(store: Any) -> list[Any]:
    """Return the maggma Stores behind ``store``: a JobStore's documents and additional stores."""
    if isinstance(store, JobStore):
        return [store.docs_store, *store.additional_stores.values()]
    return [store]


def connect(store: Any) -> None:
    """Connect a JobStore or a maggma Store, safe beside other processes opening the same files.

    Every connect of an on-disk MontyStore rewrites the database's configuration files, and a
    process that opens the database meanwhile reads them half written (montydb then fails with
    "Empty module name" or "montydb has been config to use BSON"). Two workers of ``crysal run
    -p 2`` open the store at the same moment, so every connect of such a database holds a lock
    file in its directory; stores of other kinds connect as they are.
    """
    import fcntl
    from contextlib import ExitStack

    from maggma.stores import MontyStore

    paths = sorted(
        {
            str(Path(s.database_path).resolve())
            for s in maggma_stores(store)
            if isinstance(s, MontyStore) and s.storage != "memory" and s.database_path != ":memory:"
        }
    )
    with ExitStack() as held:
        for path in paths:  # in one order, so two processes never wait on each other
            Path(path).mkdir(parents=True, exist_ok=True)
            lock = held.enter_context(open(Path(path) / ".crysal-connect.lock", "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        store.connect()


def step_outputs(
    store: JobStore,
    run_id: str | None,
    step: str,
    load: bool = False,
    properties: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Return the job documents of ``step`` (of run ``run_id``, or of every run), oldest first."""
    query: dict[str, Any] = {"metadata.crysal_step": step}
    if run_id is not None:
        query["metadata.crysal_run"] = run_id
    return list(store.query(query, properties=properties, sort={"completed_at": 1}, load=load))


def find_reports(store: JobStore) -> list[dict[str, Any]]:
    """Return every run's final report in a connected store, oldest first.

    Reports of crysal_flows 0.1, whose jobs carry no step, are found by their job name.
    """
    query = {
        "$or": [
            {"metadata.crysal_step": Step.REPORT},
            {"name": "crysal report", "metadata.crysal_step": {"$exists": False}},
        ]
    }
    return [d["output"] for d in store.query(query, sort={"completed_at": 1}, load=True)]


def last_ensemble(store: JobStore, run_id: str) -> Any:
    """Return the last cycle's ``EnsembleDocument`` of run ``run_id``, or None."""
    from crysal_flows.training.schemas import EnsembleDocument

    docs = step_outputs(store, run_id, Step.GATHER_ENSEMBLE, load=True)
    if not docs:
        return None
    return EnsembleDocument.model_validate(max(docs, key=lambda d: d["output"]["cycle"])["output"])
