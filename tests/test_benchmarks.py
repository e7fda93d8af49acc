"""The benchmark scripts that stand in for a code: what they write is what the code reads."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cryspy_laqa_runs_on_the_files_written_in_soiaps_place(tmp_path):
    """benchmarks/cryspy_laqa.py runs CrySPY's LAQA with each job's relaxation done by the
    oracle and written as soiap's output files: CrySPY's own step count equals the oracle's
    calls, the energies it ranks by are the oracle's, and a structure it continues starts where
    its last job ended (so the units and the cell's orientation are read back right)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "cryspy_laqa.py"), "Si8"]
    cmd += ["--oracle", "stillinger_weber", "--tot-struc", "8", "--nselect", "2", "--seeds", "0"]
    subprocess.run([*cmd, "--all", "--out", str(tmp_path)], check=True, timeout=600)
    (row,) = json.loads((tmp_path / "results.json").read_text())
    run = tmp_path / "LAQA_Si8_0"
    assert row["stopped"] == "done all structures" and row["calls"] > 8 * 10
    assert f"total_step = {row['calls']}" in (run / "cryspy.stat").read_text()
    jobs = json.loads((run / "jobs.json").read_text())
    assert len(jobs) == row["jobs"] > 8 and sum(j["calls"] for j in jobs) == row["calls"]
    # the energies CrySPY ranks by (data/laqa_energy: per structure, one per selection)
    ours: dict[int, list[float]] = {}
    for j in jobs:
        ours.setdefault(j["id"], []).append(j["energy_per_atom"])
    lines = (run / "data" / "laqa_energy").read_text().splitlines()[1:]
    theirs = {int(w[0]): [float(x) for x in w[1:]] for w in map(str.split, lines)}
    assert theirs.keys() == ours.keys()
    for cid, energies in theirs.items():
        mine = [math.nan if e is None else e for e in ours[cid]]
        assert energies == pytest.approx(mine, abs=1e-5, nan_ok=True), cid
    # continued structures start where they stopped
    last, continued = {}, 0
    for j in jobs:
        if last.get(j["id"]) is not None and j["first_energy_per_atom"] is not None:
            assert j["first_energy_per_atom"] == pytest.approx(last[j["id"]], abs=1e-3)
            continued += 1
        last[j["id"]] = j["energy_per_atom"]
    assert continued >= 8
    # counted again from the files CrySPY kept (its pickled structures, the last round's work
    # folders): each converged job's structure, read back, has the job's energy ...
    sys.path.insert(0, str(ROOT))
    from benchmarks.cryspy_laqa import converged_structures
    from crysal_flows.config import OracleConfig
    from crysal_flows.oracles import get_oracle
    from crysal_flows.utils import structure_to_atoms

    # (a run stopped by its budget leaves its last round uncollected, in work folders)
    cut = tmp_path / "cut"
    subprocess.run([*cmd, "--budget", "150", "--out", str(cut)], check=True, timeout=600)
    cut_jobs = json.loads((cut / "LAQA_Si8_0" / "jobs.json").read_text())
    calc = get_oracle(OracleConfig(kind="stillinger_weber")).calculator()
    for root, runs in ((run, jobs), (cut / "LAQA_Si8_0", cut_jobs)):
        final = converged_structures(root, runs, "Si8")
        assert len(final) == sum(j["converged"] for j in runs) >= 1
        for k, s in final.items():
            atoms = structure_to_atoms(s)
            atoms.calc = calc
            energy = atoms.get_potential_energy() / len(atoms)
            assert energy == pytest.approx(runs[k]["energy_per_atom"], abs=1e-4), k
    assert any(
        j["converged"] and (cut / "LAQA_Si8_0" / "work" / str(j["id"]) / "log.struc").exists()
        for j in cut_jobs
    )
    # ... and the recount gives the run's own finds, job by job
    found = [j["ground_state"] for j in jobs]
    subprocess.run([*cmd, "--recount", "--out", str(tmp_path)], check=True, timeout=600)
    assert [j["ground_state"] for j in json.loads((run / "jobs.json").read_text())] == found
    (again,) = json.loads((tmp_path / "results.json").read_text())
    assert again["calls_to_ground_state"] == row["calls_to_ground_state"]
