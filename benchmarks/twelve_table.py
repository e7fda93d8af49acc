"""The benchmark table from finished searches: found, stopped by the criterion, oracle cost.

Reads the layout ``twelve_configs.py`` writes and ``crysal run`` fills: in each directory, every
``config_<key>.yaml`` beside its ``store_<key>`` (run with ``crysal run DIR/config_<key>.yaml
--store DIR/store_<key>``). Per run, one row from its final report: the cycles and how the
search ended (stopped by the criterion before ``analysis.max_cycles``, converged in the last
cycle, or ran to ``max_cycles``), the oracle cost (label single points + validation steps, of
them the symmetry check) and the references found; then the three figures the benchmark is
judged by: runs that found their ground state (the configuration's first reference), runs that
stopped by the criterion before ``max_cycles``, and the median oracle cost. No oracle runs::

    python benchmarks/twelve_table.py t16 [DIR ...] [--json table.json]

A configuration without a store, or whose store holds no finished report, is listed as not
finished and left out of the figures (the line under the table counts them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_row(key: str, config_path: Path, store_dir: Path) -> dict:
    """The table's row of one configuration and its store (``status`` says if it finished)."""
    from crysal_flows.config import ConfigError, load_config
    from crysal_flows.store import connect, find_reports, local_store

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise SystemExit(f"twelve_table.py: {exc}") from None
    row = {"key": key, "config": str(config_path)}
    row.update(name=config.name, max_cycles=config.analysis.max_cycles)
    row["ground_state"] = config.references[0].label if config.references else None
    if not store_dir.is_dir():
        return {**row, "status": "no store"}
    store = local_store(store_dir, create=False)
    connect(store)
    try:
        reports = [r for r in find_reports(store) if r["name"] == config.name]
    finally:
        store.close()
    if not reports:
        return {**row, "status": "no report (unfinished)"}
    r = reports[-1]  # the newest, where a store holds the same search more than once
    cycles, converged = r["cycles"], r["converged"]
    stopped_early = converged and cycles < config.analysis.max_cycles
    if stopped_early:
        ended = f"stopped by the criterion after cycle {cycles - 1}"
    elif converged:
        ended = f"converged in cycle {cycles - 1}, the last"
    else:
        ended = "ran to max_cycles"
    return {
        **row,
        "status": "done",
        "run_id": r["run_id"],
        "cycles": cycles,
        "ended": ended,
        "stopped_early": stopped_early,
        "oracle_cost": r["oracle_cost"],
        "single_points": r["oracle_single_points"],
        "validation_steps": r["validation_steps"],
        "symmetry_check_steps": r.get("symmetry_check_steps", 0),
        "found": list(r["found"]),
        "found_ground_state": row["ground_state"] in r["found"],
        "lowest": (
            f"{r['minima'][0]['space_group_symbol']} at {r['minima'][0]['energy_per_atom']:.4f}"
            if r["minima"]
            else None
        ),
        "minutes": round(r["seconds"] / 60, 1) if r.get("seconds") else None,
    }


def collect(dirs: list[Path]) -> list[dict]:
    rows = []
    for d in dirs:
        configs = sorted(d.glob("config_*.yaml"))
        if not configs:
            raise SystemExit(f"twelve_table.py: no config_*.yaml in {d}")
        for path in configs:
            key = path.stem.removeprefix("config_")
            rows.append(run_row(key, path, d / f"store_{key}"))
    return rows


def figures(rows: list[dict]) -> dict:
    done = [r for r in rows if r["status"] == "done"]
    costs = [r["oracle_cost"] for r in done]
    return {
        "runs": len(done),
        "unfinished": len(rows) - len(done),
        "found": sum(r["found_ground_state"] for r in done),
        "stopped_early": sum(r["stopped_early"] for r in done),
        "median_cost": statistics.median(costs) if costs else None,
    }


def table(rows: list[dict], f: dict) -> str:
    """The rows as a Markdown table, then the line of ``figures(rows)`` (given as ``f``)."""
    lines = [
        "| run | ends | oracle cost | ground state | found | lowest minimum (eV/atom) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "done":
            lines.append(f"| {r['key']} | {r['status']} | | {r['ground_state']} | | |")
            continue
        check = f", {r['symmetry_check_steps']} the check" if r["symmetry_check_steps"] else ""
        lines.append(
            f"| {r['key']} | {r['ended']} | {r['oracle_cost']} ({r['single_points']} + "
            f"{r['validation_steps']}{check}) | {r['ground_state']}: "
            f"{'found' if r['found_ground_state'] else '**missed**'} | "
            f"{', '.join(r['found']) or 'none'} | {r['lowest']} |"
        )
    n = f["runs"]
    summary = (
        f"{f['found']} of {n} found the ground state; {f['stopped_early']} of {n} stopped by the "
        "criterion before max_cycles; median oracle cost "
        + ("n/a" if f["median_cost"] is None else f"{f['median_cost']:g}")
    )
    if f["unfinished"]:
        summary += f" ({f['unfinished']} not finished, not counted)"
    return "\n".join(lines) + "\n\n" + summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="directories of twelve_configs.py")
    ap.add_argument("--json", type=Path, help="also write the rows and figures here")
    args = ap.parse_args()
    for d in args.dirs:
        if not d.is_dir():
            raise SystemExit(f"twelve_table.py: {d} is not a directory")
    rows = collect(args.dirs)
    f = figures(rows)
    print(table(rows, f))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "figures": f}, indent=1))


if __name__ == "__main__":
    main()
