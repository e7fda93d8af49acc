"""End to end: a tiny search through jobflow's run_locally, then the CLI on its on-disk store."""

import itertools
import json
import subprocess
import sys
from importlib.metadata import version

import pytest
from configs import CONVERGING, TINY
from jobflow import run_locally

from crysal_flows.config import load_config
from crysal_flows.flows import CrystalSearchMaker


@pytest.mark.slow
def test_tiny_search_converges_and_finds_diamond(memory_store):
    cfg = load_config(CONVERGING)
    flow = CrystalSearchMaker(config=cfg).make()
    run_locally(flow, store=memory_store, ensure_success=True, log=False)
    summaries = sorted(
        (d["output"] for d in memory_store.query({"metadata.crysal_step": "analyse"})),
        key=lambda s: s["cycle"],
    )
    # the flow grew one cycle at a time, each added by the previous cycle's analysis
    assert [s["cycle"] for s in summaries] == list(range(len(summaries)))
    assert all(not s["stop"] for s in summaries[:-1])
    # ... and the stopping criterion ended it, before max_cycles
    last = summaries[-1]
    assert last["converged"] and last["decision"].startswith("converged"), last["decision"]
    assert len(summaries) < cfg.analysis.max_cycles
    # by its best structure, which held two cycles in a row (the configuration's prediction-error
    # bound leaves the energies' rule out) ...
    assert last["best_held_cycles"] >= 2 and "best structure held 2/2" in last["decision"]
    assert any(t in last["decision"] for t in ("best cluster converged", "uncertain, moved"))
    held = [s["best_held_cycles"] for s in summaries]
    assert held[0] == 0 and all(b in (0, a + 1) for a, b in itertools.pairwise(held)), held
    # ... on the first cycle of the streak whose ensemble did not stop it where it started: a held
    # structure the newest ensemble leaves stuck does not end the search (how long that lasts
    # depends on the installed releases: two cycles with one set, six with another)
    for s in summaries[:-1]:
        if s["cycle"] + 1 >= cfg.analysis.min_cycles and s["best_held_cycles"] >= 2:
            assert "best cluster stuck where it started" in s["decision"], s["decision"]
    assert last["prediction_mae"] > cfg.analysis.max_prediction_error
    # every setting the rule read, in the summary a MongoDB query sees
    an = cfg.analysis
    assert last["criterion"] == {
        k: float(getattr(an, k))
        for k in (
            "energy_tolerance",
            "max_prediction_error",
            "held_max_prediction_error",
            "n_top_clusters",
            "best_held_cycles",
            "max_uncertain_fraction",
            "min_cycles",
            "max_cycles",
        )
    }
    # labels accumulate: 12 in cycle 0, then 6 per cycle
    assert [s["oracle_single_points"] for s in summaries] == [
        12 + 6 * i for i in range(len(summaries))
    ]
    report = memory_store.query_one({"metadata.crysal_step": "report"}, load=True)["output"]
    assert report["converged"] and report["cycles"] == len(summaries)
    assert report["oracle_cost"] == report["oracle_single_points"] + report["validation_steps"]
    # the releases that shaped its numbers, as installed where it ran
    assert report["packages"]["ase"] == version("ase")
    assert report["packages"]["mace-torch"] == version("mace-torch")
    assert report["validation_steps"] > 0
    # the validation's oracle relaxations started from the last ensemble's Hessian
    relaxed = [d["output"] for d in memory_store.query({"metadata.crysal_step": "oracle_relax"})]
    assert 1 <= len(relaxed) <= cfg.validation.n_structures + cfg.validation.n_labels
    assert all(r["ensemble_hessian"] for r in relaxed)
    # ... and their distinct minima were checked past their symmetry, once each, afterwards
    checks = [d["output"] for d in memory_store.query({"metadata.crysal_step": "symmetry_probe"})]
    assert 1 <= len(checks) <= len(relaxed)
    assert report["symmetry_check_steps"] == sum(c["oracle_calls"] for c in checks) > 0
    assert report["validation_steps"] == sum(r["oracle_calls"] for r in relaxed) + sum(
        c["oracle_calls"] for c in checks
    )
    # the right structure: the lowest minimum is diamond, at the oracle's diamond energy
    assert report["found"] == ["diamond"]
    best = report["minima"][0]
    assert "diamond" in best["matches"] and best["space_group_symbol"] == "Fd-3m"
    assert best["energy_per_atom"] == pytest.approx(report["references"]["diamond"], abs=2e-3)
    # checkpoints and pools live in the data store, not in the documents
    member = memory_store.docs_store.query_one({"metadata.crysal_step": "train_member"})
    assert "blob_uuid" in json.dumps(member["output"]["checkpoint"])


def test_cli_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncomposition: Si8\npool: {sise: 3}\n")
    out = subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", "run", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "pool.sise: unknown key" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", "results", "--store", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "no store" in out.stderr


def test_cli_refuses_before_any_job(tmp_path):
    """An oracle whose code is missing, or a store path that is a file: exit 2, nothing written."""
    import yaml

    store = tmp_path / "store"
    cfg = tmp_path / "missing.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {**TINY, "oracle": {"kind": "ase", "calculator": "no_such_dft_code.calculator:DFT"}}
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", "run", str(cfg), "--store", str(store)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "no_such_dft_code" in out.stderr
    assert not store.exists()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "submit",
            str(cfg),
            "-o",
            str(tmp_path / "wf.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "no_such_dft_code" in out.stderr
    assert not (tmp_path / "wf.yaml").exists()
    # a store path that is a file
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg.write_text(yaml.safe_dump(TINY))
    out = subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", "run", str(cfg), "--store", str(blocker)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "not a directory" in out.stderr


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_duplicating_labels(tmp_path):
    """SIGKILL during cycle 1, then the same command again: the run goes on from the store."""
    import signal

    import yaml

    from crysal_flows.store import connect, local_collection, local_store

    store = tmp_path / "store"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "analysis": {"min_cycles": 3, "max_cycles": 3}}))
    cmd = [sys.executable, "-m", "crysal_flows.cli", "run", str(cfg), "--store", str(store)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "cycle 1: member 1" in line:  # cycle 1's labels are in the store, its training runs
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])

    # what a user sees of the killed run before resuming it
    status = subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", "status", "--store", str(store)],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    assert "interrupted (its process is gone)" in status.stdout, status.stdout
    assert "1 cycle(s) done" in status.stdout and "now: cycle 1: 4/4 labels" in status.stdout
    # the best candidates so far as structure files, marked as not validated
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "status",
            "--store",
            str(store),
            "--export",
            str(tmp_path / "so_far"),
        ],
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0 and "not validated" in export.stdout, export.stderr
    files = sorted((tmp_path / "so_far").glob("tiny_cycle0_cluster01_*eV-per-atom-ML_*"))
    assert [f.suffix for f in files] == [".cif", ".vasp"]
    plot = subprocess.run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "plot",
            "--store",
            str(store),
            "-o",
            str(tmp_path / "png"),
        ],
        capture_output=True,
        text=True,
    )
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "png" / "energy.png").stat().st_size > 10_000

    # the run as an earlier version recorded it: another default stress weight, no virial weight
    runs = local_collection(store, "runs", key="run_id")
    connect(runs)
    (doc,) = list(runs.query({}))
    doc.pop("_id")
    doc["config"]["training"]["stress_weight"] = 100.0
    del doc["config"]["training"]["virial_weight"]
    runs.update([doc])
    runs.close()

    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resuming run" in run.stdout and "from cycle 1" in run.stdout
    # the user is told that the rest of the run goes on under this version's defaults
    warning = next(line for line in run.stdout.splitlines() if "defaults changed" in line)
    assert "training.stress_weight 100.0 -> 0.0" in warning, warning
    assert "training.virial_weight (new) 1.0" in warning, warning
    assert warning.count(" -> ") == 1, warning
    res = subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", "results", "--store", str(store), "--json"],
        capture_output=True,
        text=True,
    )
    reports = json.loads(res.stdout)
    assert len(reports) == 1 and reports[0]["cycles"] == 3
    # 8 labels in cycle 0, 4 in each later cycle: none lost, none computed twice
    assert reports[0]["oracle_single_points"] == 16

    js = local_store(store, create=False)
    js.connect()
    last = max(
        js.query({"metadata.crysal_step": "gather_labels"}, load=True),
        key=lambda d: d["output"]["cycle"],
    )["output"]
    keys = [lab["key"] for lab in last["labels"]]
    assert len(keys) == len(set(keys)), "a label is in the training set twice"
    reused = [lab for lab in last["labels"] if lab["reused"]]
    # cycle 1's labels were computed before the kill and reused after it
    assert reused and all(lab["cycle"] == 1 for lab in reused)
    n_cycle1 = sum(lab["cycle"] == 1 for lab in last["labels"])
    assert len(reused) == n_cycle1
    singles = list(
        js.query(
            {
                "metadata.crysal_step": "oracle_single_point",
                "metadata.crysal_cycle": 1,
                "output.reused": False,
            }
        )
    )
    assert len(singles) == 4  # each of cycle 1's oracle calls ran once, before the kill


@pytest.mark.slow
def test_run_killed_during_validation_resumes_without_relaxing_again(tmp_path):
    """SIGKILL during the validation's symmetry checks, then the same command again: the oracle
    relaxations and the check the run had finished come back from the store, not the oracle,
    and the report is that of a run never killed."""
    import signal

    import yaml

    from crysal_flows.store import local_store

    cfg = tmp_path / "tiny.yaml"
    # every minimum checked (no symmetry_window): the kill comes after the second check
    validation = {**TINY.get("validation", {}), "symmetry_window": None}
    run_cfg = {**TINY, "analysis": {"min_cycles": 2, "max_cycles": 2}, "validation": validation}
    cfg.write_text(yaml.safe_dump(run_cfg))

    def run(store, kill_at=None):
        cmd = [sys.executable, "-m", "crysal_flows.cli", "run", str(cfg), "--store", str(store)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen, checks = [], 0
        for line in proc.stdout:
            seen.append(line)
            checks += "the symmetry check came back" in line or "relaxed on to" in line
            if kill_at and checks == kill_at:  # the first check's output is stored by then
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=600)
        return proc.returncode, "".join(seen)

    rc, _ = run(tmp_path / "whole")
    assert rc == 0
    rc, out = run(tmp_path / "store", kill_at=2)
    assert rc == -signal.SIGKILL, out[-3000:]
    assert "relaxed with the oracle" in out
    rc, out = run(tmp_path / "store")
    assert rc == 0 and "resuming run" in out, out[-3000:]
    # every oracle relaxation (three of the validation and the reference) came from the store
    assert out.count("validation: relaxation ") == 4, out
    assert "relaxed with the oracle" not in out
    assert out.count("validation: symmetry check ") >= 1

    def report(store):
        res = subprocess.run(
            [sys.executable, "-m", "crysal_flows.cli", "results", "--store", str(store), "--json"],
            capture_output=True,
            text=True,
        )
        (rep,) = json.loads(res.stdout)
        return rep

    whole, resumed = report(tmp_path / "whole"), report(tmp_path / "store")
    assert resumed["oracle_cost"] == whole["oracle_cost"] > resumed["oracle_single_points"]
    assert resumed["symmetry_check_steps"] == whole["symmetry_check_steps"] > 0
    energies = [[m["energy_per_atom"] for m in r["minima"]] for r in (whole, resumed)]
    assert energies[1] == pytest.approx(energies[0], abs=1e-6)
    # each relaxation ran once, before the kill
    js = local_store(tmp_path / "store")
    js.connect()
    ran = js.query({"metadata.crysal_step": "oracle_relax", "output.reused": False})
    assert len(list(ran)) == 3


@pytest.mark.slow
def test_raising_max_cycles_continues_a_run_that_stopped_there(tmp_path):
    """A finished run that reached max_cycles goes on from its last cycle when max_cycles rises."""
    import yaml

    from crysal_flows.resume import RunRegistry
    from crysal_flows.store import local_store

    store = tmp_path / "store"
    # a criterion no run meets: the search stops at max_cycles
    never = {
        "min_cycles": 1,
        "energy_tolerance": 1e-12,
        "max_prediction_error": 1e-12,
        "best_held_cycles": 0,
    }
    cfg = tmp_path / "tiny.yaml"

    def run(max_cycles: int) -> str:
        cfg.write_text(yaml.safe_dump({**TINY, "analysis": {**never, "max_cycles": max_cycles}}))
        res = subprocess.run(
            [sys.executable, "-m", "crysal_flows.cli", "run", str(cfg), "--store", str(store)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        return res.stdout

    first = run(1)
    assert "stopped at max_cycles=1" in first
    # another setting changed: not the same search
    other = load_config({**TINY, "seed": 2, "analysis": {**never, "max_cycles": 2}})
    assert RunRegistry.local(store).find_resumable(other) is None
    runs = RunRegistry.local(store)
    two = load_config({**TINY, "analysis": {**never, "max_cycles": 2}})
    record = runs.find_resumable(two)
    assert record is not None and record.status == "finished" and record.max_cycles == 1

    second = run(2)
    assert f"continuing finished run {record.run_id}" in second, second[:2000]
    assert "max_cycles 1 -> 2 from cycle 1 (after cycle 0, 8 labels so far)" in second
    res = subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", "results", "--store", str(store), "--json"],
        capture_output=True,
        text=True,
    )
    reports = json.loads(res.stdout)
    # the first report stays; the second is the same run, one cycle and 4 labels further
    assert [(r["run_id"], r["cycles"], r["oracle_single_points"]) for r in reports] == [
        (record.run_id, 1, 8),
        (record.run_id, 2, 12),
    ]
    js = local_store(store, create=False)
    js.connect()
    fresh = list(
        js.query(
            {"metadata.crysal_step": "oracle_single_point", "output.reused": False},
            properties=["output.cycle"],
        )
    )
    assert sorted(d["output"]["cycle"] for d in fresh) == [0] * 8 + [1] * 4  # none ran twice
    js.close()
    # the same configuration again: that run is finished, so this is a new one
    assert runs.find_resumable(two) is None
