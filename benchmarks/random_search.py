"""Random structure search on the pool of a search's configuration: oracle calls to a find.

The pool is the one ``crysal run CONFIG`` searches (same generator, settings and seed); a random
subset of ``--size`` candidates (drawn as ``search_efficiency.py``'s baseline draws it) is relaxed
with the configuration's oracle (BFGS on positions and cell to ``validation.fmax``, at most
``validation.max_steps`` steps), and each result is matched with StructureMatcher against the
configuration's references, each relaxed by the oracle, in structure and in energy (within
10 meV/atom): what the search's report counts as found. The cost is the expected
oracle calls to the first find over all orders of the relaxed candidates
(``search_efficiency.py`` explains the formula), or more than all of them where none found it::

    python benchmarks/random_search.py t13m/config_Al4O6_0.yaml --out rs_Al4O6_0.json

Run it where ``crysal run CONFIG`` runs (reference files are read relative to there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a search's configuration (YAML), with references")
    ap.add_argument("--size", type=int, default=48, help="candidates relaxed (0: the whole pool)")
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args()

    import yaml
    from search_efficiency import run_baseline

    from crysal_flows.config import ConfigError, load_config
    from crysal_flows.models.mace import torch_setup
    from crysal_flows.validation.jobs import build_reference, oracle_relax

    torch_setup(1)
    try:
        config = load_config(args.config)  # a clear error for a missing or bad file
    except ConfigError as exc:
        raise SystemExit(f"random_search.py: {exc}") from None
    raw = yaml.safe_load(Path(args.config).read_text())  # run_baseline takes the dictionary
    if not config.references:
        raise SystemExit(f"{args.config} lists no references: nothing to count as found")
    fmax, max_steps = config.validation.fmax, config.validation.max_steps
    # each reference relaxed by the oracle, as the search's report relaxes it: a find must match
    # its structure and its energy (within MATCH_ENERGY_TOL)
    states = []
    for ref in config.references:
        doc = oracle_relax(build_reference(ref), config.oracle, fmax, max_steps)
        if not doc.success:
            raise SystemExit(f"the oracle could not relax reference {ref.label}: {doc.error}")
        states.append((ref.label, doc))
        print(f"reference {ref.label}: {doc.energy_per_atom:.4f} eV/atom (oracle-relaxed)")
    print(
        f"{config.name}: random search on {args.size or config.pool.size} of its "
        f"{config.pool.size} candidates, oracle {config.oracle.kind}, found = "
        + " or ".join(label for label, _ in states),
        flush=True,
    )
    result = run_baseline(raw, states, fmax, max_steps, args.size or None)
    k, n = result["n_success"], len(result["candidates"])
    cost = result["expected_cost"]
    print(
        f"{config.name}: {k} of {n} relaxed reach the ground state; expected oracle calls to the "
        + (f"first: {cost:.0f}" if k else f"first: more than {result['total_cost']:.0f}")
        + f" ({result['seconds'] / 60:.1f} min)",
        flush=True,
    )
    if args.out:
        result.update(config=args.config, name=config.name, references=[s[0] for s in states])
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
