"""Cycle by cycle of a finished search: which candidates lie in a reference's basin, and how the
ensemble saw them.

Every candidate of each cycle's stored pool (or those given with ``--candidates``) is relaxed with
the configuration's oracle (BFGS on positions and cell, the validation's fmax and max_steps, no
ensemble Hessian) and matched with StructureMatcher against the configuration's references. For
each candidate in a basin it prints the ensemble's view after that cycle: its rank by ML energy,
ML energy, status, steps and force spread, and its volume per atom next to the oracle-relaxed
one. A search that misses a reference it held in its pool shows here whether its candidates
left the basin or sat in it misjudged.

    python benchmarks/cycle_basins.py examples/si16.yaml crysal_store
    python benchmarks/cycle_basins.py examples/si16.yaml crysal_store --candidates 14 82

Cheap with a classical oracle (Stillinger-Weber Si16: about a minute per cycle of 96 on one core).
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")


def main() -> None:
    from crysal_flows.config import ConfigError, load_config
    from crysal_flows.generation.schemas import PoolDocument
    from crysal_flows.runs import find_runs, load_run
    from crysal_flows.store import local_store
    from crysal_flows.utils import structure_to_atoms
    from crysal_flows.validation.jobs import build_reference, matches_reference, oracle_relax

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="the search's configuration (oracle, references)")
    ap.add_argument("store", help="the search's store directory (its runs, one after another)")
    ap.add_argument("--candidates", type=int, nargs="+", help="pool indices (default: all)")
    args = ap.parse_args()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"cycle_basins: {exc}") from None
    if not cfg.references:
        raise SystemExit(f"{args.config} lists no references to match against")
    if not os.path.isdir(args.store):
        raise SystemExit(f"cycle_basins: no store at {args.store}")
    refs = {ref.label: build_reference(ref) for ref in cfg.references}
    store = local_store(args.store, create=False)
    store.connect()
    for run_id in find_runs(store):
        view = load_run(store, run_id)
        print(f"run {view.name} ({run_id})")
        for s in view.summaries:
            pool = PoolDocument.model_validate(store.get_output(s["resume"]["pool"], load=True))
            known = [c for c in pool.candidates if c.energy_per_atom is not None]
            ranked = sorted(known, key=lambda c: c.energy_per_atom)
            rank = {c.index: r for r, c in enumerate(ranked)}
            best = ranked[0].energy_per_atom if ranked else float("nan")
            wanted = set(args.candidates or [c.index for c in pool.candidates])
            lines, hits = [], {label: [] for label in refs}
            for c in pool.candidates:
                if c.index not in wanted:
                    continue
                r = oracle_relax(
                    c.structure, cfg.oracle, cfg.validation.fmax, cfg.validation.max_steps
                )
                found = [
                    label
                    for label, ref in refs.items()
                    if r.success and matches_reference(r.structure, ref)
                ]
                for label in found:
                    hits[label].append(c.index)
                if not found and not args.candidates:
                    continue
                atoms = structure_to_atoms(c.structure)
                after = structure_to_atoms(r.structure) if r.success else None
                ml = (
                    f"rank {rank[c.index] + 1}/{len(known)}, ML {c.energy_per_atom:.4f} "
                    f"({1000 * (c.energy_per_atom - best):+.0f} meV/atom from the best)"
                    if c.index in rank
                    else "no ML energy"
                )
                lines.append(
                    f"  candidate {c.index}: {ml}, {c.status.value}, {c.steps} steps, "
                    f"sigma_F {c.sigma_force if c.sigma_force is not None else float('nan'):.2f}"
                    f" eV/A, V/atom {atoms.get_volume() / len(atoms):.2f}"
                    + (
                        f" -> oracle {r.energy_per_atom:.4f} eV/atom at V/atom "
                        f"{after.get_volume() / len(after):.2f}"
                        if after is not None
                        else " -> oracle relaxation failed"
                    )
                    + (f" ({', '.join(found)})" if found else "")
                )
            summary = "; ".join(f"{len(h)} in the {label} basin" for label, h in hits.items())
            print(f"cycle {s['cycle']}: {summary}")
            print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
