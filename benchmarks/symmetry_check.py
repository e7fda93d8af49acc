"""What ``validation.symmetry_rattle`` adds to finished searches: their minima, checked.

A relaxation keeps the symmetry it starts with, so a validation relaxation can converge to a
saddle that the symmetry holds it on. For every run in each store, the converged validation
relaxations with symmetry are checked as the search now does (``crysal_flows.validation.jobs.
check_minima``): grouped into distinct minima as the report groups them, the lowest of each
checked once (``_past_symmetry``: a rattled copy, relaxed for up to 10 oracle steps, and on where
it lies lower), with the configuration's oracle and validation settings, the result standing for
every relaxation of that minimum. With ``--each``, every converged result is checked in turn, as
the search did before. The relaxations themselves are those the search ran (stores of searches
that checked them already give the checked results), so the replay is exact but for the check::

    python benchmarks/symmetry_check.py CONFIG STORE [CONFIG STORE ...] [--rattle 0.03]
        [--hessian] [--each]

With ``--hessian`` the probe starts, as validation's own relaxation did, from the last
ensemble's Hessian at the validation's start (recomputed here), where the relaxation used one,
and the relaxation on from a probe that went lower starts from the ensemble's Hessian there
(``--before-on``: from BFGS's default, as before 2026-12-07).

Per store it prints the check's extra oracle steps, the lowest minimum before and after, and
the references matched before and after (structure, and energy within ``MATCH_ENERGY_TOL`` of
the reference's own oracle relaxation in the store); then each result the check moved.
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
    ap.add_argument(
        "--each", action="store_true", help="check every converged result, not each minimum once"
    )
    ap.add_argument(
        "--before-on",
        action="store_true",
        help="relax on from the probe from BFGS's default Hessian, as before 2026-12-07 (with "
        "--hessian the search now starts it from the ensemble's Hessian there)",
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
        minima_to_check,
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

        for run_id in find_runs(js):
            docs = [d["output"] for d in step_outputs(js, run_id, Step.ORACLE_RELAX, load=True)]
            ref_e = {
                d["output"]["reference"]: d["output"].get("energy_per_atom")
                for d in step_outputs(js, run_id, Step.REFERENCE_RELAX, load=True)
                if d["output"].get("success")
            }

            def found(minima, refs=refs, ref_e=ref_e):
                return sorted(
                    {
                        k
                        for e, s in minima
                        for k, r in refs.items()
                        if matches_reference(s, r, e, ref_e.get(k))
                    }
                )

            ens = None
            if args.hessian:
                from crysal_flows.models.ensemble import load_ensemble

                ens = load_ensemble(last_ensemble(js, run_id))
            before, after, moved, extra = {}, {}, [], 0
            converged: list = []  # (energy, structure) of each converged result, else None
            for i, o in enumerate(docs):
                converged.append(None)
                if not o["success"] or o.get("structure") is None:
                    continue
                s = o["structure"]
                s = Structure.from_dict(s) if isinstance(s, dict) else s
                before[i] = after[i] = (o["energy_per_atom"], s)
                if o["converged"]:
                    converged[i] = before[i]
            groups = minima_to_check(converged)
            if args.each:
                groups = [[i] for g in groups for i in g]
            for g in groups:
                (e, s), o = converged[g[0]], docs[g[0]]
                hessian = None
                if ens is not None and o.get("ensemble_hessian"):
                    from crysal_flows.relaxation.hessian import model_hessian

                    start = o["initial_structure"]
                    start = Structure.from_dict(start) if isinstance(start, dict) else start
                    hessian = model_hessian(structure_to_atoms(start), ens)
                hessian_at = None
                if hessian is not None and not args.before_on:  # model_hessian imported above

                    def hessian_at(x, ens=ens):
                        return model_hessian(structure_to_atoms(x), ens)

                n_calls, lower = _past_symmetry(
                    runner,
                    s,
                    e * len(s),
                    cfg.validation.fmax,
                    cfg.validation.max_steps,
                    rattle,
                    hessian,
                    hessian_at=hessian_at,
                )
                extra += n_calls
                if lower is None:
                    continue
                e2 = lower.energy / len(s)
                for i in g:
                    after[i] = (e2, lower.structure)
                moved.append(
                    f"  {space_group(s)[0]} {e:.4f} -> {space_group(lower.structure)[0]} "
                    f"{e2:.4f} eV/atom ({n_calls} steps"
                    + (f", for {len(g)} relaxations)" if len(g) > 1 else ")")
                )
            before, after = list(before.values()), list(after.values())
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
