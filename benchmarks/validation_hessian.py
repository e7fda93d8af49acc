"""Validation's oracle steps from BFGS's default Hessian and from the ensemble's, side by side.

For each finished search (a configuration and its store), the last cycle's top
``validation.n_structures`` cluster representatives are oracle-relaxed twice, from the same
structures: with BFGS's default starting Hessian (70 eV/A^2 times the identity, the validation
before ``validation.hessian``) and from the last ensemble's Hessian at each
(``crysal_flows.relaxation.hessian.model_hessian``). It prints the oracle calls, the final
energies and whether each reached the configuration's references, per structure and in all.

    python benchmarks/validation_hessian.py config_Ga8As8_2.yaml:store_Ga8As8_2 ...

With the CHGNet oracle a 16-atom validation takes seconds per relaxation on one core.
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")


def compare(config_path: str, store_path: str) -> list[dict]:
    """Both validations of the last cycle of the store's (first) run."""
    import time

    from crysal_flows.config import load_config
    from crysal_flows.generation.schemas import PoolDocument
    from crysal_flows.models.ensemble import load_ensemble
    from crysal_flows.relaxation.hessian import model_hessian
    from crysal_flows.runs import find_runs, load_run
    from crysal_flows.store import local_store
    from crysal_flows.training.schemas import EnsembleDocument
    from crysal_flows.utils import structure_to_atoms
    from crysal_flows.validation.jobs import build_reference, matches_reference, oracle_relax

    cfg = load_config(config_path)
    refs = [build_reference(r) for r in cfg.references]
    store = local_store(store_path, create=False)
    store.connect()
    view = load_run(store, find_runs(store)[0])
    last = view.summaries[-1]
    pool = PoolDocument.model_validate(store.get_output(last["resume"]["pool"], load=True))
    doc = EnsembleDocument.model_validate(store.get_output(last["resume"]["ensemble"], load=True))
    ensemble = load_ensemble(doc)
    by_index = {c.index: c for c in pool.candidates}
    rows = []
    for cl in last["clusters"][: cfg.validation.n_structures]:
        structure = by_index[cl["representative"]].structure
        row = {"run": view.name, "candidate": cl["representative"]}
        t0 = time.perf_counter()
        hessian = model_hessian(structure_to_atoms(structure), ensemble)
        row["hessian_s"] = time.perf_counter() - t0
        for key, h in (("default", None), ("ensemble", hessian)):
            r = oracle_relax(
                structure, cfg.oracle, cfg.validation.fmax, cfg.validation.max_steps, hessian=h
            )
            row[key] = {
                "calls": r.oracle_calls,
                "energy": r.energy_per_atom,
                "converged": r.converged,
                "found": bool(r.success and any(matches_reference(r.structure, x) for x in refs)),
            }
        rows.append(row)
        d, e = row["default"], row["ensemble"]
        print(
            f"{view.name:>18} {row['candidate']:5d}  default {d['calls']:4d} "
            f"{d['energy']:.4f} {'*' if d['found'] else ' '}  ensemble {e['calls']:4d} "
            f"{e['energy']:.4f} {'*' if e['found'] else ' '}  (Hessian {row['hessian_s']:.1f} s)",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="config.yaml:store_dir of finished searches")
    parser.add_argument("--plot", help="also draw the oracle calls per relaxation to this PNG")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print("run, candidate; each: oracle calls, final eV/atom, * = a reference reached")
    table = []
    for spec in args.runs:
        config_path, _, store_path = spec.partition(":")
        rows = compare(config_path, store_path)
        d = sum(r["default"]["calls"] for r in rows)
        e = sum(r["ensemble"]["calls"] for r in rows)
        same = all(
            abs(r["default"]["energy"] - r["ensemble"]["energy"]) < 2e-3
            and r["default"]["found"] == r["ensemble"]["found"]
            for r in rows
        )
        found = (
            any(r["default"]["found"] for r in rows),
            any(r["ensemble"]["found"] for r in rows),
        )
        table.append((rows[0]["run"], d, e, found, same, rows))
    print()
    print(
        f"{'run':>18} {'default':>8} {'ensemble':>9} {'ratio':>6}  "
        "found (default/ensemble)  same minima"
    )
    for name, d, e, found, same, _ in table:
        print(
            f"{name:>18} {d:8d} {e:9d} {e / d if d else float('nan'):6.2f}  "
            f"{'yes' if found[0] else 'no':>7}/{'yes' if found[1] else 'no':<8}         "
            f"{'yes' if same else 'no'}"
        )
    d, e = sum(t[1] for t in table), sum(t[2] for t in table)
    print(f"{'all':>18} {d:8d} {e:9d} {e / d if d else float('nan'):6.2f}")
    if args.plot:
        plot(table, args.plot)
        print(f"written: {args.plot}")


def plot(table: list, path: str) -> None:
    """Oracle calls of each relaxation, default against ensemble Hessian, and each run's sums."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1, 1.6]})
    top = 1
    for k, (name, _, _, _, _, rows) in enumerate(table):
        x = [r["default"]["calls"] for r in rows]
        y = [r["ensemble"]["calls"] for r in rows]
        ax1.scatter(x, y, s=22, color=plt.cm.tab20(k % 20), label=name, zorder=3)
        top = max(top, *x, *y)
    ax1.plot([0, top * 1.05], [0, top * 1.05], color="0.6", lw=1, zorder=1)
    ax1.set_xlabel("oracle calls from BFGS's default Hessian")
    ax1.set_ylabel("oracle calls from the ensemble's Hessian")
    ax1.set_title("each validation relaxation (below the line: saved)", fontsize=10)
    ax1.set_xlim(0, top * 1.05)
    ax1.set_ylim(0, top * 1.05)
    ax1.legend(fontsize=7, ncol=2)
    names = [t[0] for t in table]
    pos = range(len(table))
    ax2.bar([p - 0.2 for p in pos], [t[1] for t in table], 0.4, label="default", color="0.65")
    ax2.bar([p + 0.2 for p in pos], [t[2] for t in table], 0.4, label="ensemble", color="C0")
    ax2.set_xticks(list(pos), names, rotation=45, ha="right", fontsize=8)
    ax2.set_ylabel("validation oracle calls")
    d, e = sum(t[1] for t in table), sum(t[2] for t in table)
    ax2.set_title(f"per search: {d} -> {e} oracle calls in all ({e / d:.2f})", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
