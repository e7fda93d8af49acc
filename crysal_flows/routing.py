"""Routing jobs to workers: every job carries its worker in its ``manager_config``.

FireWorks reads ``_category``, jobflow-remote ``worker``; both are the category of the job's kind
(``ml``, ``oracle``, ``driver``) in the machine settings' ``workers``.

Jobs are tagged where they are made, also the jobs that cycles and fan-outs add at run time, and
no job passes its own ``manager_config`` on to the jobs it adds (jobflow's default would send an
oracle job to the GPU worker because the analysis job that added its cycle ran there).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from jobflow import Flow, Job

from crysal_flows.settings import WorkersConfig

__all__ = ["JobKind", "placement", "route"]

JobKind = Literal["ml", "oracle", "driver"]


def _jobs(item: Job | Flow | Iterable) -> Iterable[Job]:
    if isinstance(item, Job):
        yield item
    elif isinstance(item, Flow):
        for j in item.jobs:
            yield from _jobs(j)
    else:
        for j in item:
            yield from _jobs(j)


def placement(category: str) -> dict[str, str]:
    """Return the ``manager_config`` that sends a job to the workers of ``category``.

    FireWorks reads ``_category`` (a worker with that category pulls the job); jobflow-remote
    reads ``worker`` (the worker of that name in its project runs the job).
    """
    return {"_category": category, "worker": category}


def route(jobs: Job | Flow | Iterable, kind: JobKind, workers: WorkersConfig | None) -> None:
    """Give ``jobs`` the worker category of ``kind`` and stop them passing it to their children.

    Jobs that jobflow itself adds at run time (``store_inputs``, which stores the output of a job
    that replaced itself with a flow) are routed to the driver category by a dynamic config update
    filtered on that function.
    """
    from jobflow.core.job import store_inputs

    workers = workers or WorkersConfig()
    category = getattr(workers, kind)
    helper = {"manager_config": placement(workers.driver)}
    for j in _jobs(jobs):
        j.config.manager_config = placement(category)
        j.config.pass_manager_config = False
        if not any(
            u.get("function_filter") is not None and u.get("config") == helper
            for u in j.config_updates
        ):
            j.update_config(helper, function_filter=store_inputs, dynamic=True)
