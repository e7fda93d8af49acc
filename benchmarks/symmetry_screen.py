"""Could the ensemble tell which validation minima the oracle's symmetry check moves?

The symmetry check (``validation.symmetry_rattle``) costs 3-5 oracle steps on a minimum that is
one, and each search checks up to five. If the last ensemble, which costs nothing in oracle
calls, said which minima are symmetric saddles, the oracle would only need to check those. For
every minimum the search checks (``minima_to_check`` within ``validation.symmetry_window``), this
prints the oracle's check, run as the search runs it (``_past_symmetry`` from the ensemble's
Hessian at the validation's start, and on from the ensemble's Hessian), beside the ensemble's
own test: the minimum relaxed with the ensemble mean (BFGS, positions and cell, to 0.01 eV/A)
as it is and rattled as the check rattles it; the rattled copy ending lower says "saddle".
With ``--hessian-at-minimum`` it also runs the oracle check from the ensemble's Hessian at the
minimum instead of at the validation's start::

    python benchmarks/symmetry_screen.py CONFIG STORE [CONFIG STORE ...] [--hessian-at-minimum]

Each check is an oracle job of its own after the last cycle, so the figures are those the
search would have spent. With the CHGNet oracle a store takes one to three minutes on one core.
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

#: the ensemble says "saddle" where its rattled copy ends this much lower, eV/atom
ENSEMBLE_DROP = 1e-3


def _ensemble_relax(atoms, ensemble, fmax: float = 0.01, steps: int = 300) -> tuple[float, int]:
    """Relax ``atoms`` (positions and cell) with the ensemble mean; energy per atom, steps."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    from crysal_flows.relaxation.relax import CommitteeCalculator

    a = atoms.copy()
    a.calc = CommitteeCalculator(ensemble)
    opt = BFGS(FrechetCellFilter(a), logfile=None)
    opt.run(fmax=fmax, steps=steps)
    return float(a.get_potential_energy()) / len(a), opt.nsteps


def _open_store(path: str):
    """The finished search's store at ``path``, connected; a clear exit where there is none."""
    from crysal_flows.store import local_store

    try:
        store = local_store(path, create=False)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SystemExit(str(exc)) from None
    store.connect()
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", metavar="CONFIG STORE")
    ap.add_argument(
        "--hessian-at-minimum",
        action="store_true",
        help="also run the oracle check from the ensemble's Hessian at the minimum",
    )
    args = ap.parse_args()
    if len(args.pairs) % 2:
        ap.error("give a configuration and a store for each search")

    import mace  # noqa: F401  (before e3nn)
    import torch
    from pymatgen.core import Structure

    from crysal_flows.config import ConfigError, load_config
    from crysal_flows.jobs import Step
    from crysal_flows.models.ensemble import load_ensemble
    from crysal_flows.oracles import get_oracle
    from crysal_flows.relaxation.hessian import model_hessian
    from crysal_flows.runs import find_runs
    from crysal_flows.store import last_ensemble, step_outputs
    from crysal_flows.utils import space_group, structure_to_atoms
    from crysal_flows.validation.jobs import _past_symmetry, minima_to_check, within_window

    torch.set_num_threads(1)
    agree = disagree = 0
    for cfg_file, store_dir in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        try:
            cfg = load_config(cfg_file)
        except ConfigError as exc:
            raise SystemExit(f"symmetry_screen.py: {exc}") from None
        js = _open_store(store_dir)
        v, runner = cfg.validation, get_oracle(cfg.oracle)
        for run_id in find_runs(js):
            docs = [d["output"] for d in step_outputs(js, run_id, Step.ORACLE_RELAX, load=True)]
            ens = load_ensemble(last_ensemble(js, run_id))

            def hessian_at(x, ens=ens):
                return model_hessian(structure_to_atoms(x), ens)

            def as_structure(s):
                return Structure.from_dict(s) if isinstance(s, dict) else s

            converged = [
                (o["energy_per_atom"], as_structure(o["structure"]))
                if o["success"] and o["converged"] and o.get("structure") is not None
                else None
                for o in docs
            ]
            if not any(converged):
                print(f"{store_dir} ({run_id}): no converged validation relaxation")
                continue
            groups = within_window(minima_to_check(converged), converged, v.symmetry_window)
            lowest = min(c[0] for c in converged if c is not None)
            print(f"{store_dir} ({run_id}): {len(groups)} minima checked", flush=True)
            for g in groups:
                e, s = converged[g[0]]
                o, n = docs[g[0]], len(s)
                start = as_structure(o["initial_structure"])
                used = o.get("ensemble_hessian") and runner.uses_hessian
                starts = [("check", hessian_at(start) if used else None)]
                if args.hessian_at_minimum and used:
                    starts.append(("from the minimum's Hessian", hessian_at(s)))
                cells = []
                moved = None
                for name, h in starts:
                    calls, lower = _past_symmetry(
                        runner, s, e * n, v.fmax, v.max_steps, v.symmetry_rattle, h,
                        hessian_at=hessian_at if used else None,
                    )  # fmt: skip
                    if name == "check":
                        moved = lower is not None
                    cells.append(
                        f"{name} {calls} steps: "
                        + (
                            f"lower, {space_group(lower.structure)[0]} {lower.energy / n:.4f}"
                            if lower is not None
                            else "a minimum"
                        )
                    )
                atoms = structure_to_atoms(s)
                e_sym, _ = _ensemble_relax(atoms, ens)
                rattled = atoms.copy()
                rattled.rattle(v.symmetry_rattle, seed=0)
                e_rat, _ = _ensemble_relax(rattled, ens)
                saddle = e_rat < e_sym - ENSEMBLE_DROP
                agree += saddle == moved
                disagree += saddle != moved
                print(
                    f"  {space_group(s)[0]:10s} {e:.4f} eV/atom (+{1000 * (e - lowest):.1f}) | "
                    + " | ".join(cells)
                    + f" | ensemble: rattled {1000 * (e_rat - e_sym):+.1f} meV/atom, "
                    + ("a saddle" if saddle else "a minimum")
                    + ("" if saddle == moved else "  <- disagrees"),
                    flush=True,
                )
    print(f"the ensemble agrees with the oracle's check on {agree} of {agree + disagree} minima")


if __name__ == "__main__":
    main()
