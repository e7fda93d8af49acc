"""What ``validation.symmetry_rattle`` adds to finished searches: each validation result, checked.

A relaxation keeps the symmetry it starts with, so a validation relaxation can converge to a
saddle that the symmetry holds it on. For every run in each store, every converged validation
relaxation is checked as ``oracle_relax`` now does (``crysal_flows.validation.jobs.
_past_symmetry``: a rattled copy, relaxed for up to 10 oracle steps, and on where it lies lower),
with the configuration's oracle and validation settings. The relaxations themselves are those
the search ran, so the replay is exact but for the check::

    python benchmarks/symmetry_check.py CONFIG STORE [CONFIG STORE ...] [--rattle 0.03]
        [--hessian]

With ``--hessian`` the probe starts, as validation's own relaxation did, from the last
ensemble's Hessian at the validation's start (recomputed here), where the relaxation used one.

Per store it prints the check's extra oracle steps, the lowest minimum before and after, and
the references matched before and after; then each result the check moved.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", metavar="CONFIG STORE")
    ap.add_argument("--rattle", type=float, help="A (default: the configuration's setting)")
    ap.add_argument(
        "--hessian", action="store_true", help="probe from the ensemble's starting Hessian"
    )
    args = ap.parse_args()
    if len(args.pairs) % 2:
        ap.error("give a configuration and a store for each search")

    import yaml
    from pymatgen.core import Structure

    from crysal_flows.config import load_config
    from crysal_flows.jobs import Step
    from crysal_flows.oracles import get_oracle
    from crysal_flows.runs import find_runs
    from crysal_flows.store import last_ensemble, local_store, step_outputs
    from crysal_flows.utils import space_group, structure_to_atoms
    from crysal_flows.validation.jobs import (
        _past_symmetry,
        build_reference,
        matches_reference,
    )

    for cfg_file, store_dir in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        with open(cfg_file) as f:
            cfg = load_config(yaml.safe_load(f))
        rattle = cfg.validation.symmetry_rattle if args.rattle is None else args.rattle
        try:
            js = local_store(store_dir, create=False)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise SystemExit(str(exc)) from None
        js.connect()
        runner = get_oracle(cfg.oracle)
        refs = {r.label: build_reference(r) for r in cfg.references}

        def found(minima, refs=refs):
            return sorted(
                {k for _, s in minima for k, r in refs.items() if matches_reference(s, r)}
            )

        for run_id in find_runs(js):
            docs = [d["output"] for d in step_outputs(js, run_id, Step.ORACLE_RELAX, load=True)]
            ens = None
            if args.hessian:
                from crysal_flows.models.ensemble import load_ensemble

                ens = load_ensemble(last_ensemble(js, run_id))
            before, after, moved, extra = [], [], [], 0
            for o in docs:
                if not o["success"] or o.get("structure") is None:
                    continue
                s = o["structure"]
                s = Structure.from_dict(s) if isinstance(s, dict) else s
                e = o["energy_per_atom"]
                before.append((e, s))
                lower = None
                if o["converged"]:
                    hessian = None
                    if ens is not None and o.get("ensemble_hessian"):
                        from crysal_flows.relaxation.hessian import model_hessian

                        start = o["initial_structure"]
                        start = Structure.from_dict(start) if isinstance(start, dict) else start
                        hessian = model_hessian(structure_to_atoms(start), ens)
                    n_calls, lower = _past_symmetry(
                        runner,
                        s,
                        e * len(s),
                        cfg.validation.fmax,
                        cfg.validation.max_steps,
                        rattle,
                        hessian,
                    )
                    extra += n_calls
                if lower is None:
                    after.append((e, s))
                    continue
                e2 = lower.energy / len(s)
                after.append((e2, lower.structure))
                moved.append(
                    f"  {space_group(s)[0]} {e:.4f} -> {space_group(lower.structure)[0]} "
                    f"{e2:.4f} eV/atom ({n_calls} steps)"
                )
            if not before:
                print(f"{store_dir} ({run_id}): no finished validation relaxation")
                continue
            print(
                f"{store_dir} ({run_id}): {len(docs)} relaxations, "
                f"{sum(o['oracle_calls'] for o in docs)} steps, the check {extra} more; lowest "
                f"{min(e for e, _ in before):.4f} -> {min(e for e, _ in after):.4f} eV/atom; "
                f"found {found(before) or 'none'} -> {found(after) or 'none'}",
                flush=True,
            )
            for line in moved:
                print(line)


if __name__ == "__main__":
    main()
