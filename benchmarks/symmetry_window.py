"""What an energy window on the symmetry check would have saved, from the checks a search ran.

``validation.symmetry_rattle`` checks each distinct converged validation minimum with symmetry
(``check_minima``), however far above the lowest result it lies; a saddle far above it can take
a hundred oracle steps to relax on to a minimum that changes nothing. With a window ``W``
(``validation.symmetry_window``), only minima within ``W`` eV/atom of the lowest converged
validation result (before any check) are checked. The checks are separate oracle jobs, so
leaving one out changes nothing else: this replay from the stored check documents is exact.
No oracle runs::

    python benchmarks/symmetry_window.py STORE [STORE ...] [--windows 0.05 0.1 0.2]

Per run: the lowest converged result; each check (its minimum's energy above that, what it
moved, its oracle calls); then per window the calls saved and whether the run would still have
found each reference it found (a skipped check whose lower result was the only match loses it).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--windows", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    args = ap.parse_args()

    from pymatgen.core import Structure

    from crysal_flows.jobs import Step
    from crysal_flows.runs import find_runs
    from crysal_flows.store import find_reports, local_store, step_outputs
    from crysal_flows.utils import space_group

    def structure(s):
        return Structure.from_dict(s) if isinstance(s, dict) else s

    for store_dir in args.stores:
        js = local_store(store_dir, create=False)
        js.connect()
        reports = {r["run_id"]: r for r in find_reports(js)}
        for run_id in find_runs(js):
            report = reports.get(run_id)
            if report is None:
                print(f"{store_dir} {run_id}: no report (unfinished)")
                continue
            relax = [d["output"] for d in step_outputs(js, run_id, Step.ORACLE_RELAX, load=True)]
            checks = [d["output"] for d in step_outputs(js, run_id, Step.SYMMETRY_PROBE, load=True)]
            done = [r["energy_per_atom"] for r in relax if r.get("success") and r.get("converged")]
            if not done:
                print(f"{store_dir} {report['name']}: no converged validation result")
                continue
            low = min(done)
            # the minima that match a reference, and which check (if any) produced each
            found = {m: [] for m in report["found"]}
            for mn in report["minima"]:
                for label in mn["matches"]:
                    found[label].append(mn["energy_per_atom"])
            print(
                f"{store_dir} {report['name']}: cost {report['oracle_cost']} "
                f"({report['symmetry_check_steps']} the check), lowest result {low:.4f} eV/atom, "
                f"found {report['found'] or 'nothing'}"
            )
            rows = []
            for c in checks:
                above = c["energy_per_atom"] - low
                moved = ""
                if c.get("lower") and c.get("structure") is not None:
                    moved = (
                        f" -> {space_group(structure(c['structure']))[0]} "
                        f"{c['lower_energy_per_atom']:.4f}"
                    )
                print(
                    f"  check {c['energy_per_atom']:.4f} eV/atom (+{above * 1000:.1f} meV/atom)"
                    f"{moved or ' a minimum'}, {c['oracle_calls']} calls"
                )
                rows.append((above, c))
            for w in args.windows:
                skipped = [c for above, c in rows if above > w]
                saved = sum(c["oracle_calls"] for c in skipped)
                lost = []
                for label, energies in found.items():
                    kept = [
                        e
                        for e in energies
                        if not any(
                            c.get("lower")
                            and c.get("lower_energy_per_atom") is not None
                            and abs(c["lower_energy_per_atom"] - e) < 1e-6
                            for c in skipped
                        )
                    ]
                    if not kept:
                        lost.append(label)
                print(
                    f"  window {w:g} eV/atom: {len(skipped)} of {len(rows)} checks skipped, "
                    f"{saved} calls saved -> cost {report['oracle_cost'] - saved}"
                    + (f"; LOSES {', '.join(lost)}" if lost else "")
                )


if __name__ == "__main__":
    main()
