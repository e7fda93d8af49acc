"""The ``crysal`` command: run a search locally, list results from a store."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore", message=".*TorchScript.*")
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module="pyxtal")
    warnings.filterwarnings("ignore", module="spglib")


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger("crysal_flows")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    logging.getLogger("jobflow").setLevel(logging.INFO if verbose else logging.ERROR)


def _open_store(store_path: str | None):
    """Return the local on-disk store at ``store_path``, or jobflow's JobStore if None."""
    if store_path is None:
        from jobflow import SETTINGS

        return SETTINGS.JOB_STORE
    from crysal_flows.store import local_store

    return local_store(store_path, create=False)


def _reports(store_path: str | None) -> list[dict[str, Any]]:
    from crysal_flows.store import find_reports

    store = _open_store(store_path)
    store.connect()
    try:
        return find_reports(store)
    finally:
        store.close()


def _minimum_row(m: dict[str, Any]) -> str:
    pred = m.get("predicted_energy_per_atom")
    return (
        f"  {m['rank']:>4}  {m['energy_per_atom']:>12.4f}  {m['energy_above_best'] * 1000:>9.1f}"
        f"  {m['space_group_symbol'] + ' (' + str(m['space_group_number']) + ')':<16}"
        f"  {'' if pred is None else f'{pred:.4f}':>10}  {', '.join(m['matches'])}"
    )


def format_report(r: dict[str, Any]) -> str:
    """Return a human-readable table of one report."""
    lines = [
        f"run {r['name']} ({r['run_id']}): {r['composition']}, oracle {r['oracle']}",
        f"  cycles {r['cycles']} ({'converged' if r['converged'] else 'stopped at max_cycles'}), "
        f"oracle cost {r['oracle_cost']} = {r['oracle_single_points']} single points "
        f"({r['failed_labels']} failed) + {r['validation_steps']} validation steps"
        + (f", wall time {r['seconds'] / 60:.1f} min" if r.get("seconds") else ""),
        "  rank  E (eV/atom)   dE (meV)  space group       ML E (eV)   matches",
    ]
    lines += [_minimum_row(m) for m in r["minima"]]
    if not r["minima"]:
        lines.append("  (no minimum: every validation relaxation failed)")
    for f in r.get("failed_relaxations", []):
        lines.append(
            f"  validation of cluster {f['cluster_rank']} (candidate {f['source_index']}) "
            f"failed: {f['error'][:120]}"
        )
    for label, e in r.get("references", {}).items():
        found = "found" if label in r.get("found", []) else "NOT found"
        lines.append(
            f"  reference {label}: {'n/a' if e is None else f'{e:.4f}'} eV/atom "
            f"(oracle-relaxed), {found}"
        )
    return "\n".join(lines)


def _checked_config(path: str, check_oracle_here: bool = True):
    """Load a configuration and check that it can run here, before any job runs."""
    from crysal_flows.config import load_config
    from crysal_flows.preflight import preflight

    config = load_config(path)
    preflight(config, oracle=check_oracle_here)
    return config


def _store_path(args: argparse.Namespace) -> str:
    from crysal_flows.settings import SETTINGS

    return args.store or SETTINGS.store


def cmd_run(args: argparse.Namespace) -> int:
    """Run a search with jobflow's run_locally on the on-disk store."""
    config = _checked_config(args.config)
    store_path = _store_path(args)
    _setup_logging(args.verbose)

    from jobflow import run_locally

    from crysal_flows.flows import CrystalSearchMaker, CycleMaker, new_run_id
    from crysal_flows.resume import find_resumable, legacy_runs, mark, record_run, resume_flow
    from crysal_flows.store import local_store

    store = local_store(store_path)
    where = Path(store_path).resolve()
    previous = None if args.new else find_resumable(store_path, config)
    cycle_maker = CycleMaker(config=config)
    resumed = None
    if previous is not None:
        resumed = resume_flow(store, cycle_maker, previous, finished=previous.status == "finished")
    if resumed is not None:
        flow, start = resumed
        run_id = previous.run_id
        how = ""
        if previous.max_cycles != config.analysis.max_cycles:  # recorded under the new settings
            how = f" with max_cycles {previous.max_cycles} -> {config.analysis.max_cycles}"
            record_run(store_path, config, run_id, previous.started)
        verb = f"continuing {previous.status} run" if how else "resuming run"
        print(
            f"crysal: {verb} {run_id} of search {config.name} ({config.composition}){how} "
            f"from {start}; store {where} (--new starts afresh)",
            flush=True,
        )
    else:
        if not args.new and (old := legacy_runs(store_path, config.name)):
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
        record_run(store_path, config, run_id, started)
        print(
            f"crysal: search {config.name} ({config.composition}), run {run_id}, store {where}",
            flush=True,
        )
    t0 = time.time()
    failures = _FailedJobs()
    local_log = logging.getLogger("jobflow.managers.local")  # logs each job that raised, at INFO
    local_log.setLevel(logging.INFO)
    local_log.addHandler(failures)
    try:
        run_locally(flow, store=store, log=args.verbose)
    finally:
        local_log.removeHandler(failures)
    reports = [r for r in _reports(store_path) if r["run_id"] == run_id]
    if not reports:
        print(
            f"crysal: the search stopped without a report: {failures.summary()}; run the same "
            "command again to resume it after its last finished cycle",
            file=sys.stderr,
        )
        return 1
    mark(store_path, run_id, "finished")
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
    """List the runs in a store with their minima."""
    if args.jobstore and args.store:
        raise LookupError("give either --store (a local store) or --jobstore, not both")
    store = None if args.jobstore else _store_path(args)
    where = "the JobStore of jobflow's configuration" if store is None else f"store {store}"
    reports = _reports(store)
    if args.run:
        reports = [r for r in reports if args.run in (r["name"], r["run_id"])]
        if not reports:
            raise LookupError(f"no finished run named {args.run!r} in {where}")
    if args.json:
        print(json.dumps(reports, indent=1, default=str))
        return 0
    if not reports:
        print(f"no finished runs in {where}")
        return 0
    print("\n\n".join(format_report(r) for r in reports))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Export the last ensemble of a finished run as model files (for training.init_models)."""
    from crysal_flows.models.checkpoint import export_members
    from crysal_flows.store import last_ensemble

    store_path = None if args.jobstore else _store_path(args)
    where = (
        "the JobStore of jobflow's configuration" if store_path is None else f"store {store_path}"
    )
    runs = [r for r in _reports(store_path) if args.run in (r["name"], r["run_id"])]
    if not runs:
        raise LookupError(f"no finished run named {args.run!r} in {where}")
    run = runs[-1]
    store = _open_store(store_path)
    store.connect()
    try:
        ensemble = last_ensemble(store, run["run_id"])
    finally:
        store.close()
    if ensemble is None:
        raise LookupError(f"run {run['run_id']} has no trained ensemble in {where}")
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


def cmd_submit(args: argparse.Namespace) -> int:
    """Build a search's flow and add it to a FireWorks LaunchPad (or write it to a file)."""
    config = _checked_config(args.config, check_oracle_here=not args.skip_oracle_check)
    from crysal_flows.submit import submit

    workers = _workers(args.category)
    print(
        "crysal: " + submit(config, launchpad=args.launchpad, output=args.output, workers=workers)
    )
    return 0


def _workers(overrides: list[str] | None):
    """Return the worker categories of the machine settings, with ``kind=category`` overrides."""
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


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a configuration without running it."""
    config = _checked_config(args.config)
    print(
        f"{args.config}: valid ({config.name}, {config.composition}, pool {config.pool.size}, "
        f"oracle {config.oracle.kind})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``crysal``."""
    parser = argparse.ArgumentParser(
        prog="crysal", description="Crystal structure search with active learning (CrysAL)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a search locally (jobflow run_locally, on-disk store)")
    run.add_argument("config", help="search configuration (YAML)")
    run.add_argument("--store", help="store directory (default: crysal_store, or CRYSAL_STORE)")
    run.add_argument(
        "--new",
        action="store_true",
        help="start a new run even if the store holds "
        "an unfinished run of this configuration, or a run that stopped at a lower "
        "analysis.max_cycles (default: resume or continue it)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="show jobflow's job log")
    run.set_defaults(func=cmd_run)
    res = sub.add_parser("results", help="list finished runs and their minima")
    res.add_argument(
        "--store", help="local store directory (default: crysal_store, or CRYSAL_STORE)"
    )
    res.add_argument(
        "--jobstore",
        action="store_true",
        help="read jobflow's configured JobStore (JOBFLOW_CONFIG_FILE or "
        "~/.jobflow.yaml), e.g. the MongoDB store of FireWorks runs",
    )
    res.add_argument("--run", help="only the run with this name or run id")
    res.add_argument("--json", action="store_true", help="print the reports as JSON")
    res.set_defaults(func=cmd_results)
    mdl = sub.add_parser("models", help="export a finished run's ensemble as model files")
    mdl.add_argument("--run", required=True, help="the run's name or run id")
    mdl.add_argument("-o", "--output", required=True, help="directory to write member_<k>.pt to")
    mdl.add_argument(
        "--store", help="local store directory (default: crysal_store, or CRYSAL_STORE)"
    )
    mdl.add_argument("--jobstore", action="store_true", help="read jobflow's configured JobStore")
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
    """Entry point of ``crysal``."""
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    from crysal_flows.config import ConfigError
    from crysal_flows.oracles import OracleUnavailableError
    from crysal_flows.submit import SubmitError

    try:
        return args.func(args)
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
