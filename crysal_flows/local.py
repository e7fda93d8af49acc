"""``crysal run``'s runner: jobflow's ``run_locally``, with independent ML jobs side by side.

jobflow's ``run_locally`` runs one job after another, so on a machine with several cores the
ensemble members of a cycle train one after another on one core each. :func:`run_flow` keeps
``run_locally``'s order and semantics (responses, additions, failed parents, stopped children)
but hands the ensemble members and the relaxation shards whose parents are all done to a pool
of worker processes, one per core, and waits for them before it goes on.

Only the parent process writes to the store: a worker resolves its job's inputs from the store
(reads only), runs the job and sends back the documents the job would have written, which the
parent then writes exactly as ``Job.run`` would have. So the store sees what ``run_locally``
would have written, one writer at a time. Oracle jobs stay in the parent: an oracle may use every
core itself (CP2K under MPI). Stores that live in one process's memory cannot be shared, and
with them, or with one process, :func:`run_flow` is ``run_locally``.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobflow import Flow, Job, JobStore, Response

from crysal_flows.jobs import Step
from crysal_flows.store import connect, maggma_stores

__all__ = ["PARALLEL_STEPS", "default_processes", "run_flow", "shareable"]

#: The steps whose jobs may run side by side in worker processes.
PARALLEL_STEPS = frozenset({Step.TRAIN_MEMBER, Step.RELAX_SHARD})

# the logger run_locally reports failed jobs on (``crysal run`` collects them from it)
logger = logging.getLogger("jobflow.managers.local")


def default_processes(torch_threads: int = 1) -> int:
    """Worker processes for this machine: the cores this process may use, over torch's threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, torch_threads))


def shareable(store: JobStore) -> bool:
    """Whether another process can open ``store`` from its ``as_dict`` and see the same data."""
    from maggma.stores import MemoryStore, MontyStore

    for s in maggma_stores(store):
        if isinstance(s, MontyStore):  # a MemoryStore too, but maybe on disk
            if s.storage == "memory":
                return False
        elif isinstance(s, MemoryStore):
            return False
    return True


def run_flow(
    flow: Flow | Job,
    store: JobStore,
    processes: int = 1,
    log: bool = False,
    ensure_success: bool = False,
    root_dir: str | Path | None = None,
) -> dict[str, dict[int, Response]]:
    """Run ``flow`` to its end, like jobflow's ``run_locally``, with up to ``processes`` workers.

    ``ensure_success`` and ``root_dir`` (the directory the jobs run in) are ``run_locally``'s.
    Returns the responses of the jobs the parent ran, as ``{uuid: {index: response}}`` (a
    worker's response comes back without its output, which is in the store).
    """
    from contextlib import chdir

    from jobflow import run_locally

    if processes <= 1 or not shareable(store):
        return run_locally(
            flow, store=store, log=log, ensure_success=ensure_success, root_dir=root_dir
        )
    root = Path.cwd() if root_dir is None else Path(root_dir).resolve()
    root.mkdir(exist_ok=True)
    runner = _Runner(store, processes, log)
    with chdir(root):  # the workers start here too
        responses = runner.run(flow)
    if ensure_success and not runner.finished:
        raise RuntimeError("Flow did not finish running successfully")
    return responses


class _Runner:
    """``run_locally``'s loop (jobflow 0.4), with batches of parallel jobs sent to workers."""

    def __init__(self, store: JobStore, processes: int, log: bool) -> None:
        self.store, self.processes, self.log = store, processes, log
        self.stopped_parents: set[str] = set()
        self.errored: set[str] = set()
        self.responses: dict[str, dict[int, Response]] = defaultdict(dict)
        self.stop_jobflow = False
        self._pool: ProcessPoolExecutor | None = None
        self.finished = False  # every job ran and succeeded
        self._store_json = _to_json(store)  # how a worker opens the same store

    def run(self, flow: Flow | Job) -> dict[str, dict[int, Response]]:
        from jobflow import initialize_logger
        from jobflow.core.flow import get_flow

        connect(self.store)
        if self.log:
            initialize_logger()
        flow = get_flow(flow)
        logger.info("Started executing jobs locally")
        try:
            self.finished = self._run(flow)
        except BaseException:  # Ctrl-C: the workers' jobs stop too, their results are lost
            self._close(kill=True)
            raise
        self._close(kill=False)
        logger.info("Finished executing jobs locally")
        return dict(self.responses)

    # --- the loop ----------------------------------------------------------------------------

    def _run(self, root_flow: Flow) -> bool:
        pending = list(root_flow.iterflow())
        bad = False
        while pending:
            job, parents = pending[0]
            if _parallel(job):
                waiting = {j.uuid for j, _ in pending}
                batch = [
                    (j, p) for j, p in pending if _parallel(j) and not set(p) & (waiting - {j.uuid})
                ]
            else:
                batch = [(job, parents)]
            done = {j.uuid for j, _ in batch}
            pending = [(j, p) for j, p in pending if j.uuid not in done]
            outcomes = [self._run_job(job, parents)] if len(batch) == 1 else self._run_batch(batch)
            for response, stopped in outcomes:
                bad = bad or response is None
                if stopped:
                    return False
        return not bad

    def _may_run(self, job: Job, parents: list[str]) -> tuple[bool, bool]:
        """(run it, the flow stopped) after run_locally's checks on the job's parents."""
        from jobflow.core.reference import OnMissing

        if self.stop_jobflow:
            return False, True
        if set(parents) & self.stopped_parents:
            logger.info(f"{job.name} is a child of a job with stop_children=True, skipping...")
            self.stopped_parents.add(job.uuid)
            return False, False
        if set(parents) & self.errored and job.config.on_missing_references == OnMissing.ERROR:
            self.errored.add(job.uuid)
            return False, False
        return True, False

    def _run_job(self, job: Job, parents: list[str]) -> tuple[Response | None, bool]:
        run, stopped = self._may_run(job, parents)
        if not run:
            return None, stopped
        try:
            response = job.run(store=self.store)
        except Exception:
            self._failed(job, traceback.format_exc())
            return None, False
        return self._follow(job, response)

    def _run_batch(self, batch: list[tuple[Job, list[str]]]) -> list[tuple[Response | None, bool]]:
        futures: dict[int, Future] = {}
        results: list[tuple[Response | None, bool] | None] = [None] * len(batch)
        for i, (job, parents) in enumerate(batch):
            run, stopped = self._may_run(job, parents)
            if not run:
                results[i] = (None, stopped)
                continue
            with _sigint_ignored():  # a worker started now ignores Ctrl-C from its birth
                futures[i] = self._workers().submit(_work, _to_json(job), self._store_json)
        finished = {}
        for i, future in futures.items():
            try:
                finished[i] = future.result()
            except BrokenProcessPool as err:  # a worker died (out of memory, killed)
                self._pool = None
                finished[i] = [], None, f"its worker process died: {err!r}"
        # written once every worker is done (none reads while the parent writes), in the flow's
        # order, as run_locally would have written them
        for i, (writes, response, error) in finished.items():
            job = batch[i][0]
            for docs, key, save in writes:
                self.store.update(docs, key=key, save=save)
            if error is not None:
                self._failed(job, error)
                results[i] = (None, False)
                continue
            results[i] = self._follow(job, _response_from(response))
        return results

    def _follow(self, job: Job, response: Response) -> tuple[Response | None, bool]:
        """run_locally's handling of a finished job's response."""
        self.responses[job.uuid][job.index] = response
        if response.stored_data is not None:
            logger.warning("Response.stored_data is not supported with local manager.")
        if response.stop_children:
            self.stopped_parents.add(job.uuid)
        if response.stop_jobflow:
            self.stop_jobflow = True
            return None, True
        diversions = [
            self._run(flow)
            for flow in (response.replace, response.detour, response.addition)
            if flow is not None
        ]
        if not all(diversions):
            return None, False
        return response, False

    def _failed(self, job: Job, trace: str) -> None:
        logger.info(f"{job.name} failed with exception:\n{trace}")
        self.errored.add(job.uuid)

    # --- workers -----------------------------------------------------------------------------

    def _close(self, kill: bool) -> None:
        if self._pool is None:
            return
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=not kill, cancel_futures=True)
        if kill:
            for p in processes:
                p.terminate()
        self._pool = None

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            # spawn: a fork of a process whose torch already runs threads can hang
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.log,),
            )
        return self._pool


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process meanwhile, and so in the processes it starts.

    Ctrl-C reaches every process of the terminal's foreground group; the parent handles it and
    stops the workers, so a worker must not raise KeyboardInterrupt, not even while it imports.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _parallel(job: Job) -> bool:
    return (job.metadata or {}).get("crysal_step") in PARALLEL_STEPS


def _to_json(obj: Any) -> str:
    from monty.json import MontyEncoder

    return json.dumps(obj, cls=MontyEncoder)


def _from_json(text: str) -> Any:
    from monty.json import MontyDecoder

    return json.loads(text, cls=MontyDecoder)


def _response_from(d: dict[str, Any]) -> Response:
    flows = {k: _from_json(d[k]) if d[k] else None for k in ("replace", "detour", "addition")}
    return Response(
        stored_data=d["stored_data"],
        stop_children=d["stop_children"],
        stop_jobflow=d["stop_jobflow"],
        **flows,
    )


# --- in the worker processes -----------------------------------------------------------------

_STORES: dict[str, JobStore] = {}


def _start_worker(log: bool) -> None:
    """Set a worker up as ``crysal run`` sets itself up; it dies with its parent (Linux)."""
    import signal
    import sys

    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already ignored since its start; stays so
    from crysal_flows.progress import quiet_libraries, setup_logging
    from crysal_flows.settings import apply_torch_settings

    quiet_libraries()
    setup_logging(log)
    if log:
        from jobflow import initialize_logger

        initialize_logger()
    apply_torch_settings()
    sys.stdout.reconfigure(line_buffering=True)


def _work(job_json: str, store_json: str) -> tuple[list, dict | None, str | None]:
    """Run one job; return the store writes it made, its response's flags, or its traceback."""
    store = _STORES.get(store_json)
    if store is None:
        store = _from_json(store_json)
        connect(store)
        _STORES[store_json] = store
    writes: list[tuple[Any, Any, Any]] = []

    def update(docs, key=None, save=None) -> None:
        writes.append((docs, key, save))  # the parent writes them

    store.update = update  # reads go to the store, writes come back
    try:
        job = _from_json(job_json)
        response = job.run(store=store)
    except Exception:
        return writes, None, traceback.format_exc()
    finally:
        del store.update
    return (
        writes,
        {
            "stored_data": response.stored_data,
            "stop_children": response.stop_children,
            "stop_jobflow": response.stop_jobflow,
            **{
                k: _to_json(getattr(response, k)) if getattr(response, k) is not None else None
                for k in ("replace", "detour", "addition")
            },
        },
        None,
    )
