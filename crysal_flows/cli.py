"""The ``crysal`` command: run, watch, plot and export searches; submit them to FireWorks."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from crysal_flows.progress import quiet_libraries, setup_logging

__all__ = ["build_parser", "format_report", "main"]


# --- stores ----------------------------------------------------------------------------------


def _store_path(args: argparse.Namespace) -> str:
    from crysal_flows.settings import SETTINGS

    return getattr(args, "store", None) or SETTINGS.store


def _where(args: argparse.Namespace) -> str:
    if getattr(args, "jobstore", False):
        return "the JobStore of jobflow's configuration"
    return f"store {_store_path(args)}"


def _open_store(args: argparse.Namespace, create: bool = False):
    """Return the store the command reads or writes: ``--jobstore``'s or the local one."""
    if getattr(args, "jobstore", False):
        if getattr(args, "store", None):
            raise LookupError("give either --store (a local store) or --jobstore, not both")
        from jobflow import SETTINGS

        return SETTINGS.JOB_STORE
    from crysal_flows.store import local_store

    return local_store(_store_path(args), create=create)


def _registry(args: argparse.Namespace, store: Any):
    from crysal_flows.resume import RunRegistry

    if getattr(args, "jobstore", False):
        return RunRegistry.beside(store)
    return RunRegistry.local(_store_path(args))


def _reports(args: argparse.Namespace) -> list[dict[str, Any]]:
    from crysal_flows.store import connect, find_reports

    store = _open_store(args)
    connect(store)
    try:
        return find_reports(store)
    finally:
        store.close()


def _chosen_reports(args: argparse.Namespace) -> list[dict[str, Any]]:
    reports = _reports(args)
    if args.run:
        reports = [r for r in reports if args.run in (r["name"], r["run_id"])]
        if not reports:
            raise LookupError(f"no finished run named {args.run!r} in {_where(args)}")
    return reports


# --- the report table -----------------------------------------------------------------------


def _minimum_row(m: dict[str, Any]) -> str:
    pred = m.get("predicted_energy_per_atom")
    labels = m.get("labels") or []
    # a minimum only a label reached: no candidate's prediction, the label it came from instead
    ml = f"{pred:.4f}" if pred is not None else (f"label {labels[0][:8]}" if labels else "")
    return (
        f"  {m['rank']:>4}  {m['energy_per_atom']:>12.4f}  {m['energy_above_best'] * 1000:>9.1f}"
        f"  {m['space_group_symbol'] + ' (' + str(m['space_group_number']) + ')':<16}"
        f"  {ml:>14}  {', '.join(m['matches'])}"
    )


def format_report(r: dict[str, Any]) -> str:
    """Return a human-readable table of one report."""
    lines = [
        f"run {r['name']} ({r['run_id']}): {r['composition']}, oracle {r['oracle']}",
        f"  cycles {r['cycles']} ({'converged' if r['converged'] else 'stopped at max_cycles'}), "
        f"oracle cost {r['oracle_cost']} = {r['oracle_single_points']} single points "
        f"({r['failed_labels']} failed) + {r['validation_steps']} validation steps"
        + (
            f" ({r['symmetry_check_steps']} of them the symmetry check)"
            if r.get("symmetry_check_steps")
            else ""
        )
        + (f", wall time {r['seconds'] / 60:.1f} min" if r.get("seconds") else ""),
        "  rank  E (eV/atom)   dE (meV/atom)  space group  ML E (eV/atom)  matches",
    ]
    lines += [_minimum_row(m) for m in r["minima"]]
    unchecked = [str(m["rank"]) for m in r["minima"] if m.get("symmetry_checked") is False]
    if unchecked:
        lines.append(
            f"  minim{'a' if len(unchecked) > 1 else 'um'} {', '.join(unchecked)}: symmetry not "
            "checked (beyond validation.symmetry_window of the lowest, or the check failed); "
            "possibly a saddle the symmetry holds"
        )
    if not r["minima"]:
        lines.append("  (no minimum: every validation relaxation failed)")
    for f in r.get("failed_relaxations", []):
        what = (
            f"label {f['label'][:8]}"
            if f.get("label")
            else f"cluster {f['cluster_rank']} (candidate {f['source_index']})"
        )
        lines.append(f"  validation of {what} failed: {f['error'][:120]}")
    for label, e in r.get("references", {}).items():
        found = "found" if label in r.get("found", []) else "NOT found"
        if found != "found" and e is not None and r["minima"]:
            # how near the search came: a stacking variant a fraction of a meV/atom above the
            # reference is a miss by structure, not by energy
            low = r["minima"][0]
            found += (
                f"; the lowest minimum ({low['space_group_symbol']}) lies "
                f"{(low['energy_per_atom'] - e) * 1000:+.1f} meV/atom from it"
            )
            # a minimum with the reference's structure but not its energy (a saddle of the
            # same symmetry) is named, so a reader does not take the match table for a find
            near = [m for m in r["minima"] if label in m.get("structure_matches", [])]
            if near:
                found += (
                    f"; minimum {near[0]['rank']} has its structure at "
                    f"{(near[0]['energy_per_atom'] - e) * 1000:+.1f} meV/atom"
                )
        lines.append(
            f"  reference {label}: {'n/a' if e is None else f'{e:.4f}'} eV/atom "
            f"(oracle-relaxed), {found}"
        )
    return "\n".join(lines)


def _checked_config(path: str, check_oracle_here: bool = True, models: bool = True):
    """Load a configuration and check that it can run here, before any job runs."""
    from crysal_flows.config import load_config
    from crysal_flows.preflight import preflight

    config = load_config(path)
    preflight(config, oracle=check_oracle_here, models=models)
    return config


# --- commands --------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Run a search here (``crysal_flows.local``), on the on-disk store or ``--jobstore``."""
    config = _checked_config(args.config, models=False)  # the flow reads init_models once
    setup_logging(args.verbose)

    from crysal_flows.flows import CrystalSearchMaker, CycleMaker, new_run_id
    from crysal_flows.local import default_processes, run_flow, shareable
    from crysal_flows.resume import changed_settings, resume_flow
    from crysal_flows.settings import SETTINGS

    store = _open_store(args, create=True)
    registry = _registry(args, store)
    where = _where(args) if args.jobstore else f"store {Path(_store_path(args)).resolve()}"
    previous = None if args.new else registry.find_resumable(config)
    cycle_maker = CycleMaker(config=config)
    resumed = None
    if previous is not None:
        resumed = resume_flow(store, cycle_maker, previous, finished=previous.status == "finished")
    if resumed is not None:
        flow, start = resumed
        run_id = previous.run_id
        how = ""
        if previous.max_cycles != config.analysis.max_cycles:
            how = f" with max_cycles {previous.max_cycles} -> {config.analysis.max_cycles}"
        changed = changed_settings(previous.config, config)
        registry.record(config, run_id, previous.started)  # this process runs it now
        verb = f"continuing {previous.status} run" if how else "resuming run"
        print(
            f"crysal: {verb} {run_id} of search {config.name} ({config.composition}){how} "
            f"from {start}; {where} (--new starts afresh)",
            flush=True,
        )
        if changed:
            print(
                "crysal: warning: defaults changed since this run started; its earlier cycles "
                f"ran with the old values, the rest run with this version's: {'; '.join(changed)}"
                " (--new starts the search afresh)",
                flush=True,
            )
    else:
        if not args.new and (old := registry.legacy_runs(config.name)):
            print(
                f"crysal: unfinished run(s) {', '.join(old)} of {config.name} in {where} were "
                "recorded by crysal_flows 0.1 and cannot be resumed by this version; starting "
                "a new run",
                flush=True,
            )
        run_id, started = new_run_id(), time.time()
        flow = CrystalSearchMaker(config=config, cycle_maker=cycle_maker).make(
            run_id=run_id, started=started
        )
        registry.record(config, run_id, started)
        print(
            f"crysal: search {config.name} ({config.composition}), run {run_id}, {where}",
            flush=True,
        )
    processes = args.processes or SETTINGS.processes or default_processes(SETTINGS.torch_threads)
    if processes > 1 and shareable(store):
        print(
            f"crysal: ensemble members and relaxation shards run in up to {processes} "
            "processes side by side (--processes 1: one after another)",
            flush=True,
        )
    t0 = time.time()
    failures = _FailedJobs()
    local_log = logging.getLogger("jobflow.managers.local")  # logs each job that raised, at INFO
    local_log.setLevel(logging.INFO)
    local_log.addHandler(failures)
    # without -v its lines reach no one else (a library may have set up the root logger)
    local_log.propagate = args.verbose
    try:
        run_flow(flow, store=store, processes=processes, log=args.verbose)
    finally:
        local_log.removeHandler(failures)
    reports = [r for r in _reports(args) if r["run_id"] == run_id]
    if not reports:
        print(
            f"crysal: the search stopped without a report: {failures.summary()}; run the same "
            "command again to resume it after its last finished cycle",
            file=sys.stderr,
        )
        return 1
    registry.mark(run_id, "finished")
    print(f"\nfinished in {(time.time() - t0) / 60:.1f} min\n" + format_report(reports[-1]))
    if failures.names:
        print(f"\ncrysal: {failures.summary()}; the search went on without them", file=sys.stderr)
    return 0


class _FailedJobs(logging.Handler):
    """Collects the jobs that raised under ``run_locally`` (jobflow logs them and goes on)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if " failed with exception:" not in msg:
            return
        name = msg.split(" failed with exception:")[0]
        self.names.append(name)
        last = msg.strip().splitlines()[-1]
        print(f"crysal: job '{name}' failed: {last}", file=sys.stderr, flush=True)

    def summary(self) -> str:
        if not self.names:
            return "no job failed"
        return f"{len(self.names)} job(s) failed ({', '.join(self.names[:5])})"


def cmd_results(args: argparse.Namespace) -> int:
    """List the finished runs in a store with their minima; export their structures."""
    reports = _chosen_reports(args)
    if args.export:
        from crysal_flows.export import export_minima

        for r in reports:
            paths = export_minima(r, Path(args.export) / f"{r['name']}_{r['run_id']}")
            print(
                f"crysal: wrote {len(paths)} files of run {r['name']} ({r['run_id']}) to "
                f"{paths[0].parent if paths else args.export}"
            )
        return 0
    if args.json:
        print(json.dumps(reports, indent=1, default=str))
        return 0
    if not reports:
        print(f"no finished runs in {_where(args)}")
        return 0
    print("\n\n".join(format_report(r) for r in reports))
    return 0


def _load_view(args: argparse.Namespace):
    from crysal_flows.runs import load_run
    from crysal_flows.store import connect

    store = _open_store(args)
    connect(store)
    try:
        return load_run(store, args.run), store
    except Exception:
        store.close()
        raise


def cmd_status(args: argparse.Namespace) -> int:
    """Say where a search stands: finished, running or interrupted, and what it has done."""
    from crysal_flows.resume import process_alive
    from crysal_flows.runs import age

    view, store = _load_view(args)
    try:
        record = _registry(args, store).get(view.run_id)
        exported = []
        if args.export and view.summaries:
            from crysal_flows.export import export_candidates

            exported = export_candidates(
                store, view.run_id, view.summaries[-1], args.export, view.name or view.run_id
            )
    finally:
        store.close()
    name = view.name or (record or {}).get("name") or "?"
    if view.finished:
        state = "finished"
    elif record is not None and record.get("status") == "running":
        alive = process_alive(record)
        state = {
            True: f"running (process {record['pid']} on {record['host']})",
            False: "interrupted (its process is gone): run the same 'crysal run' command "
            "again to resume it",
            None: f"running on {record.get('host')}, or interrupted",
        }[alive]
    else:
        state = "in progress"
    lines = [
        f"run {name} ({view.run_id}), {view.composition}: {state}; last job finished "
        f"{age(view.last_update)}"
    ]
    labels = view.labels
    ok = [
        lab["energy_per_atom"]
        for lab in labels
        if lab["success"] and lab["energy_per_atom"] is not None
    ]
    s = view.summaries[-1] if view.summaries else None
    lines.append(
        f"  {len(view.summaries)} cycle(s) done; {len(labels)} oracle single points "
        f"({sum(not lab['success'] for lab in labels)} failed, "
        f"{sum(lab['reused'] for lab in labels)} reused)"
        + (f", lowest oracle label {min(ok):.4f} eV/atom" if ok else "")
    )
    if s is not None:
        crit = s.get("criterion") or {}
        cfg = (record or {}).get("config", {}).get("analysis", {})
        crit = {**cfg, **crit}
        best = s.get("best_energy_per_atom")
        change, mae = s.get("top_energy_change"), s.get("prediction_mae")

        def meV(x: float | None) -> str:
            return "n/a" if x is None else f"{x * 1000:.1f} meV/atom"

        lines.append(
            f"  after cycle {s['cycle']}: best ensemble energy "
            f"{'n/a' if best is None else f'{best:.4f}'} eV/atom, sigma_F median "
            f"{s.get('sigma_force_median') or float('nan'):.3f} eV/A, "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["status_counts"].items()))
        )
        tol = (
            ""
            if "energy_tolerance" not in crit
            else f" (stops at <= {crit['energy_tolerance'] * 1000:.1f})"
        )
        bounds = []
        if "max_prediction_error" in crit:
            bounds.append(f"<= {crit['max_prediction_error'] * 1000:.1f}")
        if crit.get("best_held_cycles") and crit.get("held_max_prediction_error") is not None:
            bounds.append(
                f"a held best structure <= {crit['held_max_prediction_error'] * 1000:.1f}"
            )
        tol_mae = f" ({'; '.join(bounds)})" if bounds else ""
        counts = s["status_counts"]
        total = sum(counts.values())
        uncertain = ""
        if total:
            uncertain = f", pool uncertain {counts.get('uncertain', 0) / total:.1%}"
            if crit.get("max_uncertain_fraction") is not None:
                uncertain += f" (<= {crit['max_uncertain_fraction'] * 100:g}%)"
        span = ""
        if "max_cycles" in crit:
            span = f"; cycles {len(view.summaries)} of at most {int(crit['max_cycles'])}"
            if "min_cycles" in crit:
                span += f", at least {int(crit['min_cycles'])}"
        reliable = bool(s["clusters"]) and s["clusters"][0]["reliable"]
        stuck = ""  # summaries written before the field have no answer
        if s["clusters"] and "stuck" in s["clusters"][0]:
            stuck = f", stuck where it started: {'yes' if s['clusters'][0]['stuck'] else 'no'}"
        held = ""
        if crit.get("best_held_cycles"):
            held = (
                f", best structure held {s.get('best_held_cycles', 0)}/"
                f"{int(crit['best_held_cycles'])} cycles"
            )
        lines.append(
            f"  stopping rule: top energies moved {meV(change)}{tol}, prediction MAE "
            f"{meV(mae)}{tol_mae}{held}{uncertain}, best cluster at a converged minimum: "
            f"{'yes' if reliable else 'no'}{stuck}{span}; {s['decision'].split(':')[0]}"
        )
    p = view.progress
    if p is not None and p.validating:
        checks = f", {p.checks_done} symmetry check(s) of its minima" if p.checks_done else ""
        lines.append(
            f"  now: validation, {p.relaxations_done} oracle relaxation(s) finished{checks}"
        )
    elif p is not None:

        def of(done: int, total: int | None) -> str:
            return f"{done}/{total}" if total else f"{done}"

        lines.append(
            f"  now: cycle {p.cycle}: {of(p.labels_done, p.labels_total)} labels, "
            f"{of(p.members_done, p.members_total)} members trained, "
            f"{of(p.shards_done, p.shards_total)} shards relaxed"
        )
    if view.report is not None:
        r = view.report
        best = r["minima"][0] if r["minima"] else None
        lines.append(
            f"  result: oracle cost {r['oracle_cost']}, best minimum "
            + (
                "n/a"
                if best is None
                else f"{best['energy_per_atom']:.4f} eV/atom {best['space_group_symbol']}"
            )
            + (f", found {', '.join(r['found'])}" if r.get("found") else "")
            + " ('crysal results' for the table)"
        )
    if args.launchpad:
        lines += _fireworks_states(args.launchpad, view.run_id)
    if args.export:
        lines.append(
            f"  wrote {len(exported) // 2} cluster representatives of the last cycle "
            f"(ML energies, not validated) to {args.export}"
            if exported
            else "  nothing to export yet: no cycle has finished"
        )
    print("\n".join(lines))
    return 0


def _fireworks_states(launchpad: str, run_id: str) -> list[str]:
    """Return the FireWorks states of the run's workflow, and what runs now."""
    from fireworks import LaunchPad

    if not Path(launchpad).is_file():
        raise FileNotFoundError(f"no launchpad file {launchpad}")
    lp = LaunchPad.from_file(launchpad)
    wf = lp.workflows.find_one({"metadata.run_id": run_id}, {"nodes": 1})
    if wf is None:
        return [f"  FireWorks: no workflow with metadata.run_id {run_id} on this LaunchPad"]
    fws = list(lp.fireworks.find({"fw_id": {"$in": wf["nodes"]}}, {"name": 1, "state": 1}))
    counts: dict[str, int] = {}
    for fw in fws:
        counts[fw["state"]] = counts.get(fw["state"], 0) + 1
    running = [fw["name"] for fw in fws if fw["state"] == "RUNNING"]
    out = ["  FireWorks: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    if running:
        out.append("  running: " + "; ".join(running[:8]) + (" ..." if len(running) > 8 else ""))
    return out


def cmd_plot(args: argparse.Namespace) -> int:
    """Write a run's PNGs (finished or still running)."""
    from crysal_flows.plots import plot_run

    view, store = _load_view(args)
    store.close()
    out = Path(args.output or f"crysal_plots/{view.name or view.run_id}_{view.run_id}")
    paths = plot_run(view, out)
    print(
        f"crysal: wrote {', '.join(p.name for p in paths)} of run {view.name} "
        f"({view.run_id}) to {out}"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Export the last ensemble of a finished run as model files (for training.init_models)."""
    from crysal_flows.models.checkpoint import export_members
    from crysal_flows.store import connect, last_ensemble

    runs = [r for r in _reports(args) if args.run in (r["name"], r["run_id"])]
    if not runs:
        raise LookupError(f"no finished run named {args.run!r} in {_where(args)}")
    run = runs[-1]
    store = _open_store(args)
    connect(store)
    try:
        ensemble = last_ensemble(store, run["run_id"])
    finally:
        store.close()
    if ensemble is None:
        raise LookupError(f"run {run['run_id']} has no trained ensemble in {_where(args)}")
    paths = export_members(
        ensemble.members,
        args.output,
        {
            "run": run["name"],
            "run_id": run["run_id"],
            "composition": run.get("composition"),
            "oracle": run.get("oracle"),
            "cycle": ensemble.cycle,
        },
    )
    print(
        f"crysal: wrote {len(paths)} members of run {run['name']} ({run['run_id']}), cycle "
        f"{ensemble.cycle}, to {args.output}; start a search from them with "
        f"'training: {{init_models: {args.output}}}'"
    )
    return 0


def _workers(overrides: list[str] | None):
    """Return the machine settings' worker categories, with ``kind=category`` overrides."""
    from crysal_flows.settings import SETTINGS, WorkersConfig

    update = {}
    for item in overrides or []:
        kind, sep, category = item.partition("=")
        if not sep or kind not in WorkersConfig.model_fields or not category:
            raise LookupError(
                f"--category {item!r}: give KIND=CATEGORY with KIND one of "
                f"{', '.join(WorkersConfig.model_fields)}"
            )
        update[kind] = category
    return SETTINGS.workers.model_copy(update=update)


def cmd_submit(args: argparse.Namespace) -> int:
    """Build a search's flow and add it to a FireWorks LaunchPad (or write it to a file)."""
    config = _checked_config(args.config, check_oracle_here=not args.skip_oracle_check)
    from crysal_flows.submit import submit

    workers = _workers(args.category)
    print(
        "crysal: " + submit(config, launchpad=args.launchpad, output=args.output, workers=workers)
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a configuration without running it."""
    config = _checked_config(args.config)
    print(
        f"{args.config}: valid ({config.name}, {config.composition}, pool {config.pool.size}, "
        f"oracle {config.oracle.kind})"
    )
    return 0


# --- the parser ------------------------------------------------------------------------------


def _store_options(parser: argparse.ArgumentParser, what: str = "read") -> None:
    parser.add_argument(
        "--store", help=f"local store directory to {what} (default: crysal_store, or CRYSAL_STORE)"
    )
    parser.add_argument(
        "--jobstore",
        action="store_true",
        help=f"{what} jobflow's configured JobStore instead (JOBFLOW_CONFIG_FILE or "
        "~/.jobflow.yaml), e.g. the MongoDB store of FireWorks runs",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``crysal``."""
    from crysal_flows import __version__

    parser = argparse.ArgumentParser(
        prog="crysal", description="Crystal structure search with active learning (CrysAL)."
    )
    parser.add_argument("--version", action="version", version=f"crysal_flows {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a search locally (jobflow, on this machine)")
    run.add_argument("config", help="search configuration (YAML)")
    _store_options(run, "write")
    run.add_argument(
        "--new",
        action="store_true",
        help="start a new run even if the store holds "
        "an unfinished run of this search, or one that stopped at a lower "
        "analysis.max_cycles (default: resume or continue it)",
    )
    run.add_argument(
        "-p",
        "--processes",
        type=_positive,
        metavar="N",
        help="worker processes that train ensemble members and relax shards side by side "
        "(default: CRYSAL_PROCESSES, else the cores available over CRYSAL_TORCH_THREADS)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="show jobflow's job log")
    run.set_defaults(func=cmd_run)
    st = sub.add_parser("status", help="where a search stands, running, interrupted or finished")
    st.add_argument("--run", help="the run's name or id (default: the newest)")
    _store_options(st)
    st.add_argument("-l", "--launchpad", help="also show the FireWorks states of its workflow")
    st.add_argument(
        "--export",
        metavar="DIR",
        help="write the last cycle's cluster "
        "representatives (ML-relaxed, not yet validated) as CIF and POSCAR into DIR",
    )
    st.set_defaults(func=cmd_status)
    res = sub.add_parser("results", help="list finished runs and their minima")
    _store_options(res)
    res.add_argument("--run", help="only the run with this name or run id")
    res.add_argument("--json", action="store_true", help="print the reports as JSON")
    res.add_argument(
        "--export",
        metavar="DIR",
        help="write each minimum as CIF and POSCAR "
        "(.vasp) into DIR/<run>_<id>/, named by rank, energy and space group",
    )
    res.set_defaults(func=cmd_results)
    plt = sub.add_parser(
        "plot",
        help="PNGs of a run: energies against oracle calls, "
        "uncertainty and energies per cycle, statuses, minima",
    )
    plt.add_argument("--run", help="the run's name or id (default: the newest)")
    _store_options(plt)
    plt.add_argument("-o", "--output", help="directory (default: crysal_plots/<run>_<id>)")
    plt.set_defaults(func=cmd_plot)
    mdl = sub.add_parser("models", help="export a finished run's ensemble as model files")
    mdl.add_argument("--run", required=True, help="the run's name or run id")
    mdl.add_argument("-o", "--output", required=True, help="directory to write member_<k>.pt to")
    _store_options(mdl)
    mdl.set_defaults(func=cmd_models)
    sbm = sub.add_parser("submit", help="add a search to a FireWorks LaunchPad (cluster runs)")
    sbm.add_argument("config", help="search configuration (YAML)")
    sbm.add_argument(
        "-l",
        "--launchpad",
        help="LaunchPad file (default: FireWorks' own lookup, FW_CONFIG_FILE / my_launchpad.yaml)",
    )
    sbm.add_argument(
        "-o",
        "--output",
        help="write the workflow to this file (for 'lpad add') instead of adding it",
    )
    sbm.add_argument(
        "--skip-oracle-check",
        action="store_true",
        help="do not check that the oracle can be built on this machine (e.g. a "
        "login node without the DFT code)",
    )
    sbm.add_argument(
        "--category",
        action="append",
        metavar="KIND=CATEGORY",
        help="FireWorks worker category of a kind of job (ml, oracle, driver), e.g. "
        "--category ml=a100; default: the machine settings (CRYSAL_WORKERS__ML, ...; "
        "gpu, cpu, cpu)",
    )
    sbm.set_defaults(func=cmd_submit)
    chk = sub.add_parser("check", help="validate a configuration without running it")
    chk.add_argument("config", help="search configuration (YAML)")
    chk.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``crysal``."""
    quiet_libraries()
    args = build_parser().parse_args(argv)
    from crysal_flows.config import ConfigError
    from crysal_flows.oracles import OracleUnavailableError
    from crysal_flows.submit import SubmitError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        hint = ""
        if args.command == "run":
            hint = (
                "; run the same command again to resume it ('crysal status' shows where it stands)"
            )
        print(f"\ncrysal: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``crysal results --json | head``): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (
        ConfigError,
        OracleUnavailableError,
        FileNotFoundError,
        NotADirectoryError,
        LookupError,
        SubmitError,
    ) as exc:
        print(f"crysal: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
