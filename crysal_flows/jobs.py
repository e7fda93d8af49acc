"""The project's job decorator: stored inputs, data stores, schemas, partial failure in one place.

``@crysal_job`` wraps jobflow's ``@job`` for every job of the search:

- inputs that are :class:`~crysal_flows.refs.StoredOutput` references (outputs of earlier cycles,
  see :mod:`crysal_flows.refs`), alone or in a list, are loaded from the running job's store
  before the function sees them, so no job calls ``load`` by hand;
- ``data`` names the output fields that go to the ``data`` additional store (GridFS in
  production), ``schema`` the output document;
- ``gather=True`` marks a job that gathers the outputs of several parents (labels, ensemble
  members, relaxation shards, validation relaxations): a parent that failed arrives as ``None``
  instead of stopping the search. jobflow reads this from the job's ``JobConfig``
  (``on_missing_references``); FireWorks then gets ``_allow_fizzled_parents`` in the spec.
  (``@job(on_missing_references=...)`` would not do this: jobflow takes unknown keywords of its
  decorator as names of additional stores.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from jobflow import Flow, Job, JobConfig, OnMissing, job

from crysal_flows.refs import StoredOutput

__all__ = ["Step", "crysal_job", "resolve_stored", "stored_output", "tag"]


class Step:
    """The steps of a search, as every job's ``metadata.crysal_step`` names them.

    Stored outputs are found by ``metadata.crysal_run`` and ``metadata.crysal_step`` (and
    ``metadata.crysal_cycle``), never by a job's display name.
    """

    POOL = "generate_pool"
    SELECT = "select"
    LABEL = "label"  # the fan-out job
    ORACLE_SINGLE_POINT = "oracle_single_point"
    ORACLE_CALCULATION = "oracle_calculation"  # a code's own job inside a label maker's flow
    COLLECT_LABELS = "collect_labels"
    GATHER_LABELS = "gather_labels"
    TRAIN_MEMBER = "train_member"
    GATHER_ENSEMBLE = "gather_ensemble"
    RELAX_SHARD = "relax_shard"
    MERGE_SHARDS = "merge_shards"
    ANALYSE = "analyse"
    VALIDATE = "validate"  # the fan-out job
    ORACLE_RELAX = "oracle_relax"
    REFERENCE_RELAX = "reference_relax"
    SYMMETRY_CHECK = "symmetry_check"  # the fan-out job
    SYMMETRY_PROBE = "symmetry_probe"
    REPORT = "report"


def tag(
    jobs: Job | Flow | Iterable[Job | Flow], step: str, cycle: int | None = None, **extra: Any
) -> None:
    """Put ``step`` (and ``cycle``, and ``extra``) into the metadata of ``jobs``.

    The jobs of a flow (e.g. a label maker that runs an atomate2 job and converts its output)
    all get it; a job that already names its step keeps that name.
    """
    for item in [jobs] if isinstance(jobs, Job | Flow) else jobs:
        for j in item.jobs if isinstance(item, Flow) else [item]:
            if isinstance(j, Flow):
                tag(j, step, cycle, **extra)
                continue
            j.metadata = {
                "crysal_step": step,
                **(j.metadata or {}),
                **({} if cycle is None else {"crysal_cycle": cycle}),
                **extra,
            }


def resolve_stored(value: Any) -> Any:
    """``value`` with any ``StoredOutput`` in it (itself, or items of a list) loaded."""
    if isinstance(value, StoredOutput):
        return value.resolve()
    if isinstance(value, list) and any(isinstance(v, StoredOutput) for v in value):
        return [resolve_stored(v) for v in value]
    return value


def crysal_job(
    method: Callable | None = None,
    *,
    data: str | list[str] | None = None,
    schema: type | None = None,
    gather: bool = False,
) -> Callable:
    """Make a function (or a Maker's ``make``) a jobflow job of the search.

    Parameters
    ----------
    data
        Output field(s) stored in the ``data`` additional store.
    schema
        The output document (a pydantic model).
    gather
        Tolerate parents that failed: their outputs arrive as ``None``.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def resolved(*args: Any, **kwargs: Any) -> Any:
            return fn(
                *(resolve_stored(a) for a in args),
                **{k: resolve_stored(v) for k, v in kwargs.items()},
            )

        options: dict[str, Any] = {}
        if data is not None:
            options["data"] = data
        if schema is not None:
            options["output_schema"] = schema
        missing = OnMissing.NONE if gather else OnMissing.ERROR
        return job(
            resolved, config=JobConfig(on_missing_references=missing, expose_store=True), **options
        )

    return decorate if method is None else decorate(method)


def stored_output(key: str, query: dict[str, Any] | None = None) -> Any:
    """Return an output with ``key`` that a job of the running job's run stored before, if any.

    A run resumed after a crash builds the interrupted step's jobs again; an oracle job that
    finds its own result of the same run in the store (same structure and settings, so the
    same ``key``) returns it instead of calling the oracle again. ``query`` narrows the match
    (e.g. ``{"output.success": True}``). ``None`` outside a running job or a run.
    """
    from jobflow import CURRENT_JOB
    from monty.json import MontyDecoder

    store = CURRENT_JOB.store
    run = (CURRENT_JOB.job.metadata or {}).get("crysal_run") if CURRENT_JOB.job else None
    if store is None or not run:
        return None
    try:  # on a MongoDB JobStore, jobs of every run share the collection: look up by index
        store.ensure_index("output.key")
    except Exception:  # the local MontyDB store has no indexes; an index never fails a job
        pass
    doc = store.query_one(
        {"output.key": key, "metadata.crysal_run": run, **(query or {})},
        properties=["output"],
        load=True,
    )
    return None if doc is None else MontyDecoder().process_decoded(doc["output"])
