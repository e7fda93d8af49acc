"""How many candidates of a configuration's pool lie in a reference structure's basin.

Each generated candidate (before any ML relaxation) is relaxed with the configuration's oracle
(BFGS on positions and cell, the validation's fmax and max_steps) and matched with
StructureMatcher against the configuration's references. A pool with no candidate in the ground
state's basin can only find it if the ML relaxation carries a candidate across basins; the count
is also random structure search's success rate on that pool.

    python benchmarks/pool_basins.py examples/si16.yaml --seeds 0 1 2 3 4
    python benchmarks/pool_basins.py examples/si16.yaml --size 192 --seeds 0 1 2

With ``--store DIR`` it does the same for every cycle of a finished search in that store: each
cycle's pool, as that cycle's ensemble left it, is relaxed with the oracle, and each candidate in
a reference's basin is printed with the ensemble's view of it (rank by ML energy, ML energy,
status, steps, force spread, volume per atom before and after the oracle). A search that misses
a reference its pool held shows whether its candidates left the basin or sat in it misjudged.

    python benchmarks/pool_basins.py examples/si16.yaml --store crysal_store
    python benchmarks/pool_basins.py examples/si16.yaml --store crysal_store --candidates 14 82

Cheap with a classical oracle (Stillinger-Weber Si16: 2-3 minutes per 48 candidates on one
core beside other work); with DFT it is a whole random structure search.
"""

from __future__ import annotations

import argparse
import time

from crysal_flows.config import ConfigError, load_config
from crysal_flows.generation.jobs import generate_pool
from crysal_flows.validation.jobs import build_reference, matches_reference, oracle_relax


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="search configuration (YAML)")
    ap.add_argument("--size", type=int, help="pool size (default: the configuration's)")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the configuration's)")
    ap.add_argument("--store", help="a finished search's store: its pools cycle by cycle")
    ap.add_argument("--candidates", type=int, nargs="+", help="with --store: these pool indices")
    args = ap.parse_args()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"pool_basins: {exc}") from None
    pool_cfg = cfg.pool if args.size is None else cfg.pool.model_copy(update={"size": args.size})
    if not cfg.references:
        raise SystemExit(f"{args.config} lists no references to match against")
    refs = {ref.label: build_reference(ref) for ref in cfg.references}
    if args.store:
        from crysal_flows.store import local_store

        try:
            store = local_store(args.store, create=False)
        except OSError as exc:  # no store there, or not a directory: its own message
            raise SystemExit(f"pool_basins: {exc}") from None
        cycle_basins(cfg, refs, store, args.candidates)
        return
    for seed in args.seeds or [cfg.seed]:
        t0 = time.perf_counter()
        pool = generate_pool(cfg.composition, pool_cfg, seed)
        hits: dict[str, list[tuple[int, int]]] = {label: [] for label in refs}
        calls = failed = 0
        for c in pool.candidates:
            # a candidate whose relaxation fails is counted, not fatal
            r, found = relax_and_match(c.structure, cfg, refs)
            calls += r.oracle_calls
            failed += not r.success
            for label in found:
                hits[label].append((c.index, r.oracle_calls))
        found = "; ".join(
            f"{len(h)} in the {label} basin {[i for i, _ in h]}" for label, h in hits.items()
        )
        print(
            f"seed {seed}, pool {len(pool.candidates)}: {found}; "
            f"{calls} oracle calls for the whole pool, {failed} relaxations failed, "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )


def relax_and_match(structure, cfg, refs: dict):
    """Relax ``structure`` as the validation does; return the relaxation and the labels found."""
    r = oracle_relax(structure, cfg.oracle, cfg.validation.fmax, cfg.validation.max_steps)
    found = [
        label for label, ref in refs.items() if r.success and matches_reference(r.structure, ref)
    ]
    return r, found


def cycle_basins(cfg, refs: dict, store, candidates: list[int] | None) -> None:
    """Per run and cycle in the store: the candidates in each reference's basin, as seen then."""
    from crysal_flows.generation.schemas import PoolDocument
    from crysal_flows.runs import find_runs, load_run
    from crysal_flows.utils import structure_to_atoms

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
            wanted = set(candidates or [c.index for c in pool.candidates])
            lines, hits = [], {label: [] for label in refs}
            for c in pool.candidates:
                if c.index not in wanted:
                    continue
                r, found = relax_and_match(c.structure, cfg, refs)
                for label in found:
                    hits[label].append(c.index)
                if not found and not candidates:
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
