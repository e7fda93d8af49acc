"""Many minima, not only the lowest: which low-energy minima of a pool the search's report lists.

Random structure search on the search's own pool (every generated candidate relaxed with the
oracle: BFGS on positions and cell, the validation's fmax and max_steps) gives the distinct
minima (StructureMatcher, as the report deduplicates) within ``--window`` of the lowest energy
either method reached. For each the script prints how many candidates relax into it and random
search's expected oracle calls to meet it first (over all orders of the pool), and whether the
search's report (from its store) lists it. The search's report lists minima of its own, too,
which the pool's candidates do not relax into: those are counted apart.

    crysal run examples/si16.yaml --store si16-store
    python benchmarks/many_minima.py examples/si16.yaml --store si16-store [more stores...]

The configuration must be the search's (composition, pool, seed): the pool is generated again
from it. Cheap with a classical oracle (Stillinger-Weber Si16: 2-3 minutes per 48 candidates);
with DFT it is a whole random structure search.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from pymatgen.core import Structure

from crysal_flows.config import ConfigError, load_config
from crysal_flows.generation.jobs import generate_pool
from crysal_flows.utils import space_group
from crysal_flows.validation.jobs import matches_reference, oracle_relax


def expected_first_hit(calls: np.ndarray, hits: np.ndarray) -> float:
    """Expected oracle calls until the first of ``hits`` (at least one) is relaxed, over all
    orders of the relaxations: with K hits, sum of the misses' calls / (K + 1) + sum of the
    hits' calls / K. Random structure search's cost in ``search_efficiency.py`` too."""
    k = int(hits.sum())
    return calls[~hits].sum() / (k + 1) + calls[hits].sum() / k


def _report(path: str) -> tuple[str, dict, list]:
    """The finished run in the store at ``path``: its name, report and minima (structure, energy
    per atom, space group)."""
    from crysal_flows.runs import load_run
    from crysal_flows.store import local_store

    try:
        store = local_store(path, create=False)
        store.connect()
        try:
            view = load_run(store)
        finally:
            store.close()
    except (FileNotFoundError, LookupError) as exc:  # no store there, or no run in it
        raise SystemExit(f"many_minima: {exc}") from None
    name = view.name or view.run_id
    if view.report is None:
        raise SystemExit(f"many_minima: run {name} in {path} has no report yet")
    minima = [
        (Structure.from_dict(m["structure"]), m["energy_per_atom"], m["space_group_symbol"])
        for m in view.report["minima"]
    ]
    return name, view.report, minima


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="the searches' configuration (YAML; its pool and seed)")
    ap.add_argument(
        "--store",
        required=True,
        nargs="+",
        help="store directories of finished searches on this pool (the newest run of each)",
    )
    ap.add_argument("--seed", type=int, help="the search's seed (default: the configuration's)")
    ap.add_argument(
        "--size", type=int, help="the search's pool size (default: the configuration's)"
    )
    ap.add_argument("--window", type=float, default=0.05, help="eV/atom above the lowest minimum")
    args = ap.parse_args()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"many_minima: {exc}") from None
    searches = [_report(path) for path in args.store]

    pool_cfg = cfg.pool if args.size is None else cfg.pool.model_copy(update={"size": args.size})
    seed = cfg.seed if args.seed is None else args.seed
    pool = generate_pool(cfg.composition, pool_cfg, seed)
    t0 = time.perf_counter()
    relaxed = []  # (index, calls, energy per atom or None, structure or None)
    for c in pool.candidates:
        r = oracle_relax(c.structure, cfg.oracle, cfg.validation.fmax, cfg.validation.max_steps)
        relaxed.append(
            (c.index, r.oracle_calls, r.energy_per_atom if r.success else None, r.structure)
        )
    calls = np.array([r[1] for r in relaxed], dtype=float)
    ok = [r for r in relaxed if r[2] is not None]
    lowest = min([r[2] for r in ok] + [e for _, _, found in searches for _, e, _ in found])

    # the pool's distinct minima in the window, lowest first, each with its candidates
    minima: list[dict] = []
    for index, _, energy, structure in sorted(ok, key=lambda r: r[2]):
        if energy > lowest + args.window:
            break
        same = next((m for m in minima if matches_reference(structure, m["structure"])), None)
        if same is None:
            minima.append(
                {
                    "structure": structure,
                    "energy": energy,
                    "space_group": space_group(structure)[0],
                    "members": [index],
                }
            )
        else:
            same["members"].append(index)

    print(
        f"{cfg.composition}, seed {seed}, pool {len(pool.candidates)}: random structure search "
        f"relaxed every candidate with {cfg.oracle.kind} for {calls.sum():.0f} oracle calls "
        f"({len(relaxed) - len(ok)} failed), {time.perf_counter() - t0:.0f} s"
    )
    print(
        f"distinct minima within {args.window * 1000:.0f} meV/atom of the lowest "
        f"({lowest:.4f} eV/atom) that random search reaches on this pool: {len(minima)}"
    )
    names = [name for name, _, _ in searches]
    print(
        f"  {'E - lowest':>10}  {'space group':<12} {'candidates':>10} {'RS calls':>9}  "
        + "  ".join(f"{n:>14}" for n in names)
    )
    listed = [0] * len(searches)
    for m in minima:
        hits = np.array([r[0] in m["members"] for r in relaxed])
        cells = []
        for k, (_, _, found) in enumerate(searches):
            yes = any(matches_reference(s, m["structure"]) for s, _, _ in found)
            listed[k] += yes
            cells.append(f"{'listed' if yes else '-':>14}")
        print(
            f"  {(m['energy'] - lowest) * 1000:>7.1f} meV  {m['space_group']:<12} "
            f"{len(m['members']):>10} {expected_first_hit(calls, hits):>9.0f}  " + "  ".join(cells)
        )
    for (name, report, found), n in zip(searches, listed, strict=True):
        extra = [
            (e, sg)
            for s, e, sg in found
            if e <= lowest + args.window
            and not any(matches_reference(s, m["structure"]) for m in minima)
        ]
        print(
            f"{name}: lists {n} of the {len(minima)} for an oracle cost of {report['oracle_cost']} "
            f"({report['oracle_single_points']} single points + {report['validation_steps']} "
            f"validation steps; random search: {calls.sum():.0f} for the pool), and "
            f"{len(extra)} more within the window that no candidate relaxes into"
            + (
                ": " + ", ".join(f"{sg} {(e - lowest) * 1000:+.1f} meV" for e, sg in extra)
                if extra
                else ""
            )
        )


if __name__ == "__main__":
    main()
