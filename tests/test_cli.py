"""The ``crysal`` command as a user types it, each in a new process."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from configs import TINY


def crysal(
    *args: str, env: dict | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crysal_flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


ONE_CYCLE = {**TINY, "analysis": {"min_cycles": 1, "max_cycles": 1}}


def test_version_and_help():
    from crysal_flows import __version__

    out = crysal("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"crysal_flows {__version__}"
    out = crysal("--help")
    for command in ("run", "status", "results", "plot", "models", "submit", "check"):
        assert command in out.stdout


@pytest.mark.slow
def test_finished_run_status_results_export_plot_models(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(ONE_CYCLE))
    store = str(tmp_path / "store")
    run = crysal("run", str(cfg), "--store", store)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cycle 0: 8 labels" in run.stdout and "oracle cost" in run.stdout
    assert "cuequivariance" not in run.stdout + run.stderr  # third-party noise stays out
    assert "ML E (eV/atom)" in run.stdout
    # progress of the long steps: the relaxation says how far and how fast
    assert "cycle 0: relax shard 1/2: 4/4 candidates in" in run.stdout

    status = crysal("status", "--store", store)
    assert status.returncode == 0, status.stderr
    assert "run tiny (" in status.stdout and ": finished;" in status.stdout
    assert "1 cycle(s) done; 8 oracle single points" in status.stdout
    assert "result: oracle cost" in status.stdout
    # the stopping rule's state: how long the best structure held, and whether the last
    # ensemble left the best cluster stuck where it started
    assert re.search(
        r"best structure held 0/2 cycles, pool uncertain [\d.]+% \(<= 95%\), best cluster at a "
        "converged minimum: ",
        status.stdout,
    ), status.stdout
    assert re.search(r"stuck where it started: (yes|no); cycles 1 of at most", status.stdout)
    # with the bounds the held rule and the uncertain pool are held to
    assert re.search(
        r"prediction MAE (n/a|[\d.]+ meV/atom) \(<= 30\.0; a held best structure <= 70\.0\)",
        status.stdout,
    ), status.stdout

    res = crysal("results", "--store", store, "--json")
    (report,) = json.loads(res.stdout)
    assert report["name"] == "tiny" and report["minima"][0]["structure"]["@class"] == "Structure"
    # a reader that stops early: no traceback, no error
    head = subprocess.run(
        f"{sys.executable} -m crysal_flows.cli results --store {store} --json | head -c 20",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert head.returncode == 0 and "Traceback" not in head.stderr and len(head.stdout) == 20

    export = crysal("results", "--store", store, "--export", str(tmp_path / "files"))
    assert export.returncode == 0, export.stderr
    folder = tmp_path / "files" / f"tiny_{report['run_id']}"
    from pymatgen.core import Structure

    for m in report["minima"]:
        stem = f"tiny_rank{m['rank']:02d}_{m['energy_per_atom']:.4f}eV-per-atom_" + m[
            "space_group_symbol"
        ].replace("/", "_")
        for suffix in (".cif", ".vasp"):
            s = Structure.from_file(folder / f"{stem}{suffix}")
            assert len(s) == 8 and s.composition.reduced_formula == "Si"
            assert s.lattice.volume == pytest.approx(
                Structure.from_dict(m["structure"]).lattice.volume, rel=1e-4
            )
    assert "eV/atom" in (folder / f"{stem}.vasp").read_text().splitlines()[0]

    plot = crysal("plot", "--store", store, "-o", str(tmp_path / "png"))
    assert plot.returncode == 0, plot.stderr
    for name in ("energy.png", "cycles.png", "statuses.png", "minima.png"):
        png = tmp_path / "png" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    # its ensemble, exported, starts a larger search (checked before anything runs)
    models = crysal("models", "--store", store, "--run", "tiny", "-o", str(tmp_path / "m"))
    assert models.returncode == 0, models.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "member_1.pt",
        "member_2.pt",
        "models.json",
    ]
    big = tmp_path / "si16.yaml"
    big.write_text(
        yaml.safe_dump(
            {
                "name": "si16",
                "composition": "Si16",
                "training": {"init_models": str(tmp_path / "m")},
            }
        )
    )
    check = crysal("check", str(big))
    assert check.returncode == 0 and "valid" in check.stdout, check.stderr
    missing = crysal("models", "--store", store, "--run", "nope", "-o", "x")
    assert missing.returncode == 2 and "no finished run named 'nope'" in missing.stderr

    # a run whose report is not in yet (a cluster's validation still running): status says
    # how far the validation's relaxations and the symmetry checks of their minima have come
    from crysal_flows.store import local_store

    js = local_store(store, create=False)
    js.connect()
    n_relaxed = js.docs_store.count({"metadata.crysal_step": "oracle_relax"})
    n_checked = js.docs_store.count({"metadata.crysal_step": "symmetry_probe"})
    assert n_relaxed >= 1 and n_checked >= 1
    js.docs_store.remove_docs({"metadata.crysal_step": "report"})
    js.close()
    status = crysal("status", "--store", store)
    assert status.returncode == 0, status.stderr
    assert (
        f"now: validation, {n_relaxed} oracle relaxation(s) finished, {n_checked} symmetry "
        "check(s) of its minima"
    ) in status.stdout, status.stdout


@pytest.mark.slow
def test_run_into_the_configured_jobstore(tmp_path):
    """``crysal run --jobstore`` writes to jobflow's configured JobStore (a MontyStore standing in
    for MongoDB), and status and results read it back from there."""
    store = {
        "type": "MontyStore",
        "database_path": str(tmp_path / "db"),
        "database_name": "crysal",
        "storage": "sqlite",
    }
    (tmp_path / "jobflow.yaml").write_text(
        yaml.safe_dump(
            {
                "JOB_STORE": {
                    "docs_store": {**store, "collection_name": "outputs"},
                    "additional_stores": {"data": {**store, "collection_name": "data"}},
                }
            }
        )
    )
    import os

    env = {**os.environ, "JOBFLOW_CONFIG_FILE": str(tmp_path / "jobflow.yaml")}
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**ONE_CYCLE, "name": "tiny-js"}))
    run = crysal("run", str(cfg), "--jobstore", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "the JobStore of jobflow's configuration" in run.stdout
    assert not Path("crysal_store").exists()  # nothing went to the default local store
    status = crysal("status", "--jobstore", env=env)
    assert "run tiny-js (" in status.stdout and ": finished;" in status.stdout, status.stdout
    res = crysal("results", "--jobstore", "--json", env=env)
    assert [r["name"] for r in json.loads(res.stdout)] == ["tiny-js"]
    both = crysal("results", "--jobstore", "--store", "x", env=env)
    assert both.returncode == 2 and "not both" in both.stderr
    # run again: the finished run is recognised in the JobStore's own run records
    again = crysal("run", str(cfg), "--jobstore", env=env)
    assert again.returncode == 0 and "crysal: search tiny-js" in again.stdout


_CONNECT_LOOP = """
import sys
from crysal_flows.store import connect, local_store
errors = 0
for _ in range(40):
    store = local_store(sys.argv[1])
    try:
        connect(store)
        store.close()
    except Exception as err:
        errors += 1
        print(repr(err))
sys.exit(1 if errors else 0)
"""


def test_processes_open_one_on_disk_store_at_once(tmp_path):
    """The workers of ``crysal run -p 2`` open the on-disk store at the same moment; every open
    rewrites montydb's configuration files, and an open that read them half written failed
    ("Empty module name", "montydb has been config to use BSON"): each open now holds a lock."""
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", _CONNECT_LOOP, str(tmp_path / "db")],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [(p.communicate(timeout=300)[0], p.returncode) for p in openers]
    assert all(rc == 0 for _, rc in outs), [out[:500] for out, _ in outs]
    assert (tmp_path / "db" / ".crysal-connect.lock").exists()


@pytest.mark.slow
def test_side_by_side_run_writes_what_one_after_another_writes(tmp_path):
    """``crysal run -p 2`` trains members and relaxes shards in two worker processes; the
    store ends up with the same jobs and the same search as ``-p 1`` (jobflow's run_locally)."""
    from crysal_flows.store import local_store

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(ONE_CYCLE))
    runs = {}
    for n in ("1", "2"):
        out = crysal("run", str(cfg), "--store", str(tmp_path / n), "-p", n)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[n] = out.stdout
        # the workers' progress lines reach the terminal too
        assert "cycle 0: member 2 trained on 7 structures" in out.stdout
        assert "cycle 0: relax shard 2/2: 4/4 candidates" in out.stdout
    assert "run in up to 2 processes side by side" in runs["2"]
    assert "side by side" not in runs["1"]

    def written(n: str) -> tuple[list, dict]:
        js = local_store(tmp_path / n, create=False)
        js.connect()
        steps = sorted(d["metadata"]["crysal_step"] for d in js.query({}))
        (report,) = [d["output"] for d in js.query({"metadata.crysal_step": "report"}, load=True)]
        return steps, report

    (steps1, one), (steps2, two) = written("1"), written("2")
    assert steps1 == steps2 and steps2.count("train_member") == 2
    assert two["oracle_single_points"] == one["oracle_single_points"] == 8
    # the same models relaxed the same candidates to the same minima
    assert [m["energy_per_atom"] for m in two["minima"]] == pytest.approx(
        [m["energy_per_atom"] for m in one["minima"]], abs=1e-6
    )
    assert [m["predicted_energy_per_atom"] for m in two["minima"]] == pytest.approx(
        [m["predicted_energy_per_atom"] for m in one["minima"]], abs=1e-6
    )

    bad = crysal("run", str(cfg), "--store", str(tmp_path / "3"), "-p", "0")
    assert bad.returncode == 2 and "at least 1, not '0'" in bad.stderr


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_its_workers(tmp_path):
    """Ctrl-C while two members train in worker processes: a clear line, no traceback, and no
    worker left running (test_search.py resumes a killed run)."""
    import os
    import signal
    import time

    cfg = tmp_path / "long.yaml"
    long_training = {**ONE_CYCLE["training"], "epochs": 400, "min_steps": 4000}
    cfg.write_text(yaml.safe_dump({**ONE_CYCLE, "training": long_training}))
    store = str(tmp_path / "s")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crysal_flows.cli", "run", str(cfg), "--store", store, "-p", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    for line in proc.stdout:
        if "cycle 0: oracle labels" in line:  # the members' training starts next
            break
    workers: list[int] = []
    for _ in range(60):
        time.sleep(1)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        workers = [  # the worker processes, not multiprocessing's resource tracker
            int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        if len(workers) >= 2:
            break
    assert len(workers) >= 2, "no worker processes started"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "crysal: interrupted; run the same command again to resume it" in err
    assert "Traceback" not in err

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        return state != "Z"

    for _ in range(20):
        if not any(alive(w) for w in workers):
            break
        time.sleep(0.5)
    assert not any(alive(w) for w in workers), "a worker outlived the run"
