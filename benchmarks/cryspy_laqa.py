"""CrySPY's LAQA and random search on this project's oracles: oracle calls to the ground state.

CrySPY (``pip install csp-cryspy``) runs LAQA only with VASP, Quantum ESPRESSO or soiap: its
LAQA score needs every relaxation step's forces and stress, which it reads from those codes'
output files. Neither VASP nor soiap can be installed here, so this script stands in for soiap:
each CrySPY job relaxes its structure with the oracle (ASE BFGS on positions and cell,
``FrechetCellFilter``, ``maxstep`` 0.2, as every oracle relaxation of these benchmarks) for at
most ``--nstep`` steps and writes the files CrySPY's soiap interface reads (``log.tote``,
``log.struc``, ``log.frc``, ``log.strs`` in soiap's atomic units, and the two "converged" lines
before ``*** QMD%loopc`` in the output file). Everything else is CrySPY's own code, run as its
``cryspy`` command runs it: the random structures (PyXtal, seeded by ``[option] seed``), the
LAQA score (``wf * F^2 / (2 dF) + ws * S`` on top of the energy), the selections and the
bookkeeping. The jobs run in this process between two ``cryspy`` calls (CrySPY's ``Popen`` of
the job file is replaced by a queue), so the oracle is loaded once; a new job restarts BFGS, as
a new soiap process would.

An oracle call is one energy, forces and stress evaluation, as the search's cost counts them.
The ground state is found when a job converges to a structure that StructureMatcher matches to
the prototype within 10 meV/atom of the prototype's own oracle relaxation (the search's report
uses the same test); for LAQA the calls spent by then, over all jobs in the order CrySPY ran
them, are the cost. Random search (``--algo RS``: each job relaxes to the end, at most 300
steps) relaxes structures until the budget and gives its expected cost over all orders of what
it relaxed, as ``search_efficiency.py``'s baseline does.

    python benchmarks/cryspy_laqa.py Si16 --seeds 0 1 2 --out cry        # CHGNet, LAQA
    python benchmarks/cryspy_laqa.py Si16 --algo RS --seeds 0 1 2 --out cry_rs
    python benchmarks/cryspy_laqa.py Si8 --oracle stillinger_weber --tot-struc 8 --nselect 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

SOIAP_IN = "soiap.in"
SOIAP_OUT = "soiap.out"
SOIAP_CIF = "initial.cif"


def cryspy_input(system: str, algo: str, tot_struc: int, nselect: int, seed: int) -> str:
    """CrySPY's cryspy.in for ``system`` (e.g. Na8Cl8: atype Na Cl, nat 8 8)."""
    from crysal_flows.utils import parse_composition

    comp = parse_composition(system)
    laqa = f"[LAQA]\nnselect_laqa = {nselect}\nwf = 0.1\nws = 10.0\n" if algo == "LAQA" else ""
    return (
        f"[basic]\nalgo = {algo}\ncalc_code = soiap\ntot_struc = {tot_struc}\nnstage = 1\n"
        # LAQA's first selection relaxes all at once; random search 8 at a time, so that the
        # budget can stop it between them
        f"njob = {tot_struc if algo == 'LAQA' else 8}\njobcmd = bash\njobfile = job_cryspy\n\n"
        f"[structure]\natype = {' '.join(comp)}\n"
        f"nat = {' '.join(str(n) for n in comp.values())}\n\n"
        f"[soiap]\nsoiap_infile = {SOIAP_IN}\nsoiap_outfile = {SOIAP_OUT}\n"
        f"soiap_cif = {SOIAP_CIF}\n\n{laqa}"
        f"[option]\nseed = {seed}\nforce_step_flag = True\nstress_step_flag = True\n"
        "energy_step_flag = True\n"
    )


class Oracle:
    """The oracle's calculator, built once, and the count of its calls over every job."""

    def __init__(self, kind: str, comp: dict[str, int], nstep: int, fmax: float) -> None:
        from crysal_flows.config import OracleConfig
        from crysal_flows.oracles import get_oracle

        self.calc = get_oracle(OracleConfig(kind=kind)).calculator()
        self.atype, self.nat = list(comp), list(comp.values())
        self.nstep, self.fmax = nstep, fmax
        self.calls = 0
        self.jobs: list[dict[str, Any]] = []

    def run_job(self, work: Path) -> dict[str, Any]:
        """Relax ``work``'s CIF for at most ``nstep`` steps; write soiap's output files there."""
        from ase.filters import FrechetCellFilter
        from ase.optimize import BFGS
        from cryspy.util import constants
        from pymatgen.core import Structure

        from crysal_flows.utils import atoms_to_structure, structure_to_atoms

        s = read_soiap_cif(work / SOIAP_CIF)
        s = Structure.from_sites(sorted(s, key=lambda site: self.atype.index(site.specie.symbol)))
        if [s.composition[el] for el in self.atype] != self.nat:  # as a failed soiap run:
            logging.warning("%s holds %s, not %s atoms", work / SOIAP_CIF, s.composition, self.nat)
            s = None  # no energy written, and CrySPY gives the structure up
        atoms = structure_to_atoms(s) if s is not None else None
        if atoms is not None:
            atoms.calc = self.calc
        steps: list[tuple] = []
        original = self.calc.calculate

        def recorded(*args, **kwargs):
            original(*args, **kwargs)
            a = args[0] if args else kwargs["atoms"]
            r = self.calc.results
            frac = a.get_scaled_positions(wrap=True)
            steps.append((a.cell.array.copy(), frac, r["energy"], r["forces"], r["stress"]))

        self.calc.calculate = recorded
        converged = False
        try:
            if atoms is not None:
                opt = BFGS(FrechetCellFilter(atoms), logfile=None, maxstep=0.2)
                converged = bool(opt.run(fmax=self.fmax, steps=self.nstep - 1))
        except Exception as exc:  # a failed job leaves no energy: CrySPY skips the structure
            logging.warning("job in %s failed: %s", work, exc)
            converged = False
        finally:
            self.calc.calculate = original
        self.calls += len(steps)
        n = sum(self.nat)
        hrt, bohr = constants.HRT2EV, constants.BOHR2ANG
        tote, struc, frc, strs = [], [], [], []
        for k, (cell, frac, energy, forces, stress) in enumerate(steps, start=1):
            tote.append(f"{k} 1 {energy / hrt:.12f} 0.0 {energy / n / hrt:.12f}\n")
            lat = cell.T / bohr  # soiap: each column a lattice vector, in Bohr
            struc.append(f"QMD%loopc {k}\n")
            struc += [" ".join(f"{x:.12f}" for x in row) + "\n" for row in lat]
            struc.append("internal coordinates\n")
            struc += [" ".join(f"{x:.12f}" for x in row) + "\n" for row in frac]
            frc.append(f"forces {k}\n")
            frc += [" ".join(f"{x:.12f}" for x in row) + "\n" for row in forces * bohr / hrt]
            s3 = np.array(stress)
            s3 = s3.reshape(3, 3) if s3.size == 9 else _voigt_to_3x3(s3)
            strs.append(f"QMD%strs {k}\n")
            strs += [" ".join(f"{x:.12f}" for x in row) + "\n" for row in s3 * bohr**3 / hrt]
        for name, lines in (("log.tote", tote), ("log.struc", struc), ("log.frc", frc)):
            (work / name).write_text("".join(lines))
        (work / "log.strs").write_text("".join(strs))
        done = "QMD%frc converged.\nQMD%strs converged.\n" if converged else "\n\n"
        (work / SOIAP_OUT).write_text(f"{done}*** QMD%loopc = {len(steps)}\n")
        job = {
            "id": int(work.name),
            "first_energy_per_atom": float(steps[0][2]) / n if steps else None,
            "calls": len(steps),
            "converged": converged,
            "energy_per_atom": float(steps[-1][2]) / n if steps else None,
            "structure": atoms_to_structure(atoms) if steps and atoms is not None else None,
        }
        self.jobs.append(job)
        return job


def read_soiap_cif(path: Path):
    """The structure of the CIF CrySPY writes for soiap: cell, symmetry operations and the
    inequivalent sites (no ``_atom_site_label``, which pymatgen's parser needs)."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.core.operations import SymmOp

    cell, ops, sites = {}, [], []
    for line in path.read_text().splitlines():
        w = line.split()
        if not w:
            continue
        if w[0].startswith("_cell_"):
            cell[w[0][6:]] = float(w[1])
        elif line.strip().startswith("'"):
            ops.append(SymmOp.from_xyz_str(line.strip().strip("'")))
        elif len(w) == 4 and not w[0].startswith("_"):
            sites.append((w[0], np.array([float(x) for x in w[1:]])))
    lattice = Lattice.from_parameters(
        cell["length_a"], cell["length_b"], cell["length_c"],
        cell["angle_alpha"], cell["angle_beta"], cell["angle_gamma"],
    )  # fmt: skip
    species, coords = [], []
    for el, frac in sites:
        for op in ops:
            x = np.mod(op.operate(frac), 1.0)
            d = [
                np.linalg.norm(lattice.get_cartesian_coords((x - y + 0.5) % 1.0 - 0.5))
                for e, y in zip(species, coords, strict=True)
                if e == el
            ]
            # one site within 0.05 A: the operations' translations are written as fractions of
            # small denominators ('-x+692/791'), off by up to 1e-3 of the cell
            if not d or min(d) > 0.05:
                species.append(el)
                coords.append(x)
    return Structure(lattice, species, coords)


def _voigt_to_3x3(v: np.ndarray) -> np.ndarray:
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def _cryspy_once(pending: list[Path]) -> str:
    """One ``cryspy`` command, in this process; its jobs go to ``pending``. Returns its log."""
    import cryspy.job.ctrl_job as ctrl
    from cryspy.scripts import cryspy as cmd

    class Queued:
        def __init__(self, args, stdout=None, stderr=None, **kw):
            pending.append(Path.cwd())

    real, ctrl.subprocess = ctrl.subprocess, types.SimpleNamespace(Popen=Queued, run=Queued)
    argv = sys.argv
    sys.argv = ["cryspy", "-n"]
    log = Path("log_cryspy")
    before = log.stat().st_size if log.exists() else 0
    try:
        with contextlib.suppress(SystemExit):
            cmd.main()
    finally:
        sys.argv, ctrl.subprocess = argv, real
        for h in list(logging.getLogger("cryspy").handlers):  # set_logger adds them per call
            logging.getLogger("cryspy").removeHandler(h)
            h.close()
    text = log.read_text() if log.exists() else ""
    return text[before:]


def run_one(system: str, seed: int, args: argparse.Namespace, states: list, out: Path) -> dict:
    """CrySPY on ``system`` with this seed until the ground state, all done, or the budget.

    ``states``: what counts as the ground state (``search_efficiency.ground_states``), the
    prototype first.
    """
    from benchmarks.search_efficiency import reached
    from crysal_flows.utils import parse_composition

    gs = states[0][1]

    root = out / f"{args.algo}_{system}_{seed}"
    (root / "calc_in").mkdir(parents=True, exist_ok=True)
    (root / "cryspy.in").write_text(
        cryspy_input(system, args.algo, args.tot_struc, args.nselect, seed)
    )
    (root / "calc_in" / "job_cryspy").write_text("# run in-process by benchmarks/cryspy_laqa.py\n")
    (root / "calc_in" / SOIAP_IN).write_text(f"# nstep {args.nstep}\n")
    oracle = Oracle(args.oracle, parse_composition(system), args.nstep, args.fmax)
    t0 = time.time()
    found_at, found_job, n_cmd = None, None, 0
    cwd = Path.cwd()
    os.chdir(root)
    try:
        while True:
            pending: list[Path] = []
            log = _cryspy_once(pending)
            n_cmd += 1
            for work in pending:
                job = oracle.run_job(work)
                stat = (work / "stat_job").read_text().splitlines()
                stat[2] = "done"
                (work / "stat_job").write_text("\n".join(stat) + "\n")
                hit = job["converged"] and reached(job["structure"], job["energy_per_atom"], states)
                job["ground_state"] = bool(hit)
                job["reached"] = hit or None
                if found_at is None and job["ground_state"]:
                    found_at, found_job = oracle.calls, len(oracle.jobs)
                    print(
                        f"{args.algo} {system} seed {seed}: ground state after {found_at} oracle "
                        f"calls (job {found_job}, {work.name})",
                        flush=True,
                    )
            if found_at is not None and args.stop_at_found:
                reason = "ground state"
                break
            if "Done all structures!" in log and not pending:
                reason = "done all structures"
                break
            if oracle.calls >= args.budget:
                reason = "budget"
                break
            if n_cmd > 100000:
                raise RuntimeError("CrySPY made no progress")
            if n_cmd % 20 == 0:
                print(f"  {oracle.calls} oracle calls, {len(oracle.jobs)} jobs", flush=True)
    finally:
        os.chdir(cwd)
    jobs = oracle.jobs
    (root / "jobs.json").write_text(
        json.dumps([{k: v for k, v in j.items() if k != "structure"} for j in jobs], indent=0)
    )
    best = min((j["energy_per_atom"] for j in jobs if j["converged"]), default=None)
    row = {
        "algo": args.algo,
        "system": system,
        "seed": seed,
        "found": found_at is not None,
        "calls_to_ground_state": found_at,
        "calls": oracle.calls,
        "jobs": len(jobs),
        "converged_jobs": sum(j["converged"] for j in jobs),
        "best_converged_above_gs": None if best is None else 1000 * (best - gs.energy_per_atom),
        "stopped": reason,
        "seconds": time.time() - t0,
        "settings": {
            "tot_struc": args.tot_struc,
            "nselect_laqa": args.nselect,
            "nstep": args.nstep,
            "fmax": args.fmax,
            "budget": args.budget,
            "oracle": args.oracle,
        },
    }
    if args.algo == "RS":
        row["expected_calls"] = _expected_calls(jobs)
    print(json.dumps(row), flush=True)
    return row


def _expected_calls(jobs: list[dict]) -> float | None:
    """Random search: each job a whole relaxation, the expected calls to the first find over
    all orders of the jobs (None: no job found the ground state)."""
    from benchmarks.many_minima import expected_first_hit

    hits = np.array([bool(j.get("ground_state")) for j in jobs])
    calls = np.array([j["calls"] for j in jobs])
    return float(expected_first_hit(calls, hits)) if hits.any() else None


def _opt_structures(data: Path) -> dict:
    """CrySPY's optimised structures by ID, from its ``data/pkl_data/opt_struc_data.pkl``."""
    import pickle

    path = data / "pkl_data" / "opt_struc_data.pkl"
    return pickle.loads(path.read_bytes()) if path.exists() else {}


def _last_structure(work: Path, atype: list[str], nat: list[int]):
    """The last structure of the job that ran in ``work``, from the ``log.struc`` written there."""
    from cryspy.util import constants
    from pymatgen.core import Lattice, Structure

    lines = (work / "log.struc").read_text().splitlines()
    n = sum(nat)
    block = lines[-(n + 5) :]
    if not block or not block[0].startswith("QMD%loopc"):
        raise ValueError(f"{work / 'log.struc'}: no structure at its end")
    lat = np.array([[float(x) for x in line.split()] for line in block[1:4]])
    frac = np.array([[float(x) for x in line.split()] for line in block[5:]])
    species = [el for el, k in zip(atype, nat, strict=True) for _ in range(k)]
    return Structure(Lattice(lat.T * constants.BOHR2ANG), species, frac)


def converged_structures(root: Path, jobs: list[dict], system: str) -> dict:
    """The structure each converged job of a stored run ended at, by the job's index.

    ``data/pkl_data/opt_struc_data.pkl`` holds the structure each ID last relaxed to, as CrySPY
    collected it, and ``work/<ID>/log.struc`` that of the jobs of the last round, which CrySPY
    did not collect (a converged job is the last of its ID: CrySPY does not continue it).
    """
    from crysal_flows.utils import parse_composition

    comp = parse_composition(system)
    collected = _opt_structures(root / "data")
    out = {}
    for k, job in enumerate(jobs):
        if job["converged"]:
            work = root / "work" / str(job["id"])
            if (work / "log.struc").exists():
                out[k] = _last_structure(work, list(comp), list(comp.values()))
            else:
                out[k] = collected[job["id"]]
    return out


def recount(out: Path, rows: list[dict]) -> list[dict]:
    """Count the finds of stored runs again, against every structure that counts now.

    Each run's ``jobs.json`` gives its jobs in CrySPY's order with their calls and energies,
    its files the structures they converged to (``converged_structures``).
    """
    from benchmarks.search_efficiency import ground_states, reached

    states_of: dict[tuple, list] = {}
    for r in rows:
        key = (r["system"], r["settings"]["oracle"], r["settings"]["fmax"])
        if key not in states_of:
            states_of[key] = ground_states(*key)
        states = states_of[key]
        root = out / f"{r['algo']}_{r['system']}_{r['seed']}"
        jobs = json.loads((root / "jobs.json").read_text())
        final = converged_structures(root, jobs, r["system"])
        calls, found_at = 0, None
        for k, job in enumerate(jobs):
            calls += job["calls"]
            hit = reached(final[k], job["energy_per_atom"], states) if k in final else None
            job["ground_state"], job["reached"] = bool(hit), hit
            if hit and found_at is None:
                found_at = calls
        before = (r["found"], r["calls_to_ground_state"], r.get("expected_calls"))
        # the run's first count stays in the row (a second recount keeps the first one's)
        r.setdefault(
            "first_count",
            dict(zip(("found", "calls_to_ground_state", "expected_calls"), before, strict=True)),
        )
        r["found"] = found_at is not None
        r["calls_to_ground_state"] = found_at
        r["reached"] = sorted({j["reached"] for j in jobs if j["reached"]})
        if r["algo"] == "RS":
            r["expected_calls"] = _expected_calls(jobs)
        r["recounted"] = [name for name, _ in states]
        (root / "jobs.json").write_text(json.dumps(jobs, indent=0))
        now = (r["found"], r["calls_to_ground_state"], r.get("expected_calls"))
        print(
            f"{r['algo']} {r['system']} seed {r['seed']}: "
            + ("unchanged" if now == before else f"{before} -> {now}, reached {r['reached']}"),
            flush=True,
        )
    return rows


def main() -> None:
    """Run CrySPY on each system and seed; print one JSON row each and a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("systems", nargs="+", help="compositions, e.g. Si16 Na8Cl8 Ga8As8 Al4O6")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--algo", choices=["LAQA", "RS"], default="LAQA")
    ap.add_argument("--oracle", default="chgnet", choices=["chgnet", "stillinger_weber"])
    ap.add_argument("--tot-struc", type=int, default=96, help="CrySPY's random structures")
    ap.add_argument("--nselect", type=int, default=8, help="LAQA: structures per selection")
    ap.add_argument("--nstep", type=int, default=10, help="oracle steps per job (LAQA)")
    ap.add_argument("--fmax", type=float, default=0.05, help="convergence, eV/A (as the search)")
    ap.add_argument("--budget", type=int, default=6000, help="stop after this many oracle calls")
    ap.add_argument(
        "--all", dest="stop_at_found", action="store_false", help="go on after the ground state"
    )
    ap.add_argument("--out", default="cryspy_results")
    ap.add_argument(
        "--recount",
        action="store_true",
        help="count the finds of the runs already in --out again, against every structure that "
        "counts as the ground state now (search_efficiency.ground_states), from their files",
    )
    args = ap.parse_args()
    if args.algo == "RS":
        args.nstep = max(args.nstep, 300)  # a random-search job relaxes to the end
        args.stop_at_found = False  # its cost is an expectation over all it relaxed
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from benchmarks.search_efficiency import ground_states
    from crysal_flows.models.mace import torch_setup

    torch_setup(1)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    done = out / "results.json"
    rows = json.loads(done.read_text()) if done.exists() else []
    if args.recount:
        rows = recount(out, rows)
        done.write_text(json.dumps(rows, indent=1))
    for system in args.systems:
        states = ground_states(system, args.oracle, args.fmax)
        for name, doc in states:
            print(f"{system}: {name} at {doc.energy_per_atom:.4f} eV/atom", flush=True)
        for seed in args.seeds:
            if any(r["system"] == system and r["seed"] == seed for r in rows):
                continue
            rows.append(run_one(system, seed, args, states, out))
            done.write_text(json.dumps(rows, indent=1))
    print(
        f"\n{'system':<8} {'seed':>4} {'algo':>5} {'found':>6} {'calls to GS':>11} {'calls':>6} "
        f"{'RS expected':>11}"
    )
    for r in rows:
        c = r["calls_to_ground_state"]
        print(
            f"{r['system']:<8} {r['seed']:>4} {r['algo']:>5} {r['found']!s:>6} "
            f"{'-' if c is None else c:>11} {r['calls']:>6} "
            f"{'-' if r.get('expected_calls') is None else round(r['expected_calls']):>11}"
        )


if __name__ == "__main__":
    main()
