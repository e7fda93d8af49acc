"""How many candidates of a configuration's pool lie in a reference structure's basin.

Each generated candidate (before any ML relaxation) is relaxed with the configuration's oracle
(BFGS on positions and cell, the validation's fmax and max_steps) and matched with
StructureMatcher against the configuration's references. A pool with no candidate in the ground
state's basin can only find it if the ML relaxation carries a candidate across basins; the count
is also random structure search's success rate on that pool.

    python benchmarks/pool_basins.py examples/si16.yaml --seeds 0 1 2 3 4
    python benchmarks/pool_basins.py examples/si16.yaml --size 192 --seeds 0 1 2

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
    args = ap.parse_args()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"pool_basins: {exc}") from None
    pool_cfg = cfg.pool if args.size is None else cfg.pool.model_copy(update={"size": args.size})
    if not cfg.references:
        raise SystemExit(f"{args.config} lists no references to match against")
    refs = {ref.label: build_reference(ref) for ref in cfg.references}
    for seed in args.seeds or [cfg.seed]:
        t0 = time.perf_counter()
        pool = generate_pool(cfg.composition, pool_cfg, seed)
        hits: dict[str, list[tuple[int, int]]] = {label: [] for label in refs}
        calls = failed = 0
        for c in pool.candidates:
            # the validation's relaxation: a candidate whose relaxation fails is counted, not fatal
            r = oracle_relax(c.structure, cfg.oracle, cfg.validation.fmax, cfg.validation.max_steps)
            calls += r.oracle_calls
            if not r.success:
                failed += 1
                continue
            for label, ref in refs.items():
                if matches_reference(r.structure, ref):
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


if __name__ == "__main__":
    main()
