"""Submitting a search to FireWorks: build the flow, convert it, add it to a LaunchPad."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from crysal_flows.config import SearchConfig
from crysal_flows.settings import WorkersConfig

__all__ = ["SubmitError", "build_workflow", "submit"]


class SubmitError(RuntimeError):
    """The LaunchPad cannot take the workflow (e.g. a database that was never initialised)."""


def build_workflow(config: SearchConfig, workers: WorkersConfig | None = None) -> tuple[Any, str]:
    """Return the FireWorks workflow of a search, and its run id.

    Every Firework carries ``_category`` from ``workers`` (default: the machine settings'); the
    jobs write to the JobStore of the worker's jobflow configuration (``JOBFLOW_CONFIG_FILE``).
    """
    from jobflow.managers.fireworks import flow_to_workflow

    from crysal_flows.flows import CrystalSearchMaker, CycleMaker, new_run_id

    cycle_maker = CycleMaker(config=config, **({"workers": workers} if workers else {}))
    run_id = new_run_id()
    flow = CrystalSearchMaker(config=config, cycle_maker=cycle_maker).make(
        run_id=run_id, started=time.time()
    )
    wf = flow_to_workflow(flow)
    wf.metadata.update(
        {
            "run_id": run_id,
            "name": config.name,
            "composition": config.composition,
            "crysal_flows": True,
        }
    )
    return wf, run_id


def submit(
    config: SearchConfig,
    launchpad: str | Path | None = None,
    output: str | Path | None = None,
    workers: WorkersConfig | None = None,
) -> str:
    """Add a search to a LaunchPad, or write its workflow to ``output`` for ``lpad add``.

    Parameters
    ----------
    config
        The search configuration.
    launchpad
        A LaunchPad file; None uses FireWorks' own lookup (``FW_CONFIG_FILE`` /
        ``my_launchpad.yaml``).
    output
        Write the workflow here (YAML or JSON by extension) instead of adding it.
    workers
        Worker categories of the jobs (default: the machine settings').

    Returns
    -------
    str
        A one-line description of what was done.
    """
    wf, run_id = build_workflow(config, workers)
    if output is not None:
        wf.to_file(str(output))
        return (
            f"wrote workflow of search {config.name} (run {run_id}, {len(wf.fws)} initial "
            f"jobs) to {output}; add it with: lpad add {output}"
        )
    from fireworks import LaunchPad

    if launchpad is not None:
        if not Path(launchpad).is_file():
            raise FileNotFoundError(f"no launchpad file {launchpad}")
        lpad = LaunchPad.from_file(str(launchpad))
    else:
        lpad = LaunchPad.auto_load()
    try:
        ids = lpad.add_wf(wf)
    except ValueError as exc:
        if "Could not get next FW id" in str(exc):
            raise SubmitError(
                "the LaunchPad database is not initialised: run 'lpad reset' once on a new database"
            ) from None
        raise
    return (
        f"added search {config.name} (run {run_id}) to the LaunchPad: {len(ids)} initial "
        f"jobs, fw_ids {min(ids.values())}-{max(ids.values())}"
    )
