"""Integration: a search submitted with ``crysal submit`` runs through FireWorks ``qlaunch`` on a
real single-node SLURM, with the LaunchPad in FireWorks' mongomock mode (no MongoDB server can run
here) and an on-disk JobStore. The worker files are the shipped ``fw_configs/`` ones, with only the
machine-specific lines (paths, queue, GPU request) replaced.

mongomock keeps the whole database in one file that each process reads at start and writes at exit,
so every FireWorks command here runs strictly one after another: one ``qlaunch``, then its SLURM job
to the end, then the next.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from configs import TINY_FW

ROOT = Path(__file__).resolve().parents[1]
FW_CONFIGS = ROOT / "fw_configs"


def _run(cmd: list[str], env: dict, cwd: Path, timeout: float = 300) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A real single-node SLURM cluster (slurmctld + slurmd + munge), stopped afterwards."""
    if os.geteuid() != 0:
        pytest.fail("this integration test starts SLURM daemons and must run as root (as CI does)")
    base = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_CI_DIR": str(base)}
    up = subprocess.run(
        ["bash", str(ROOT / ".ci" / "slurm_up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert up.returncode == 0, f"SLURM did not start:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    yield base
    subprocess.run(
        ["bash", str(ROOT / ".ci" / "slurm_down.sh")], env=env, capture_output=True, timeout=120
    )


def _write_configs(work: Path) -> dict:
    """FireWorks and jobflow files for this machine, derived from the shipped fw_configs/."""
    (work / "mongomock.json").write_text("{}")
    (work / "logs").mkdir()
    fw_config = yaml.safe_load((FW_CONFIGS / "FW_config.yaml").read_text())
    fw_config.update(
        CONFIG_FILE_DIR=str(work),
        RAPIDFIRE_SLEEP_SECS=1,
        MONGOMOCK_SERVERSTORE_FILE=str(work / "mongomock.json"),
    )
    (work / "FW_config.yaml").write_text(yaml.safe_dump(fw_config))
    # the production launchpad file as shipped: mongomock ignores the mongodb:// host
    shutil.copy(FW_CONFIGS / "my_launchpad.yaml", work / "my_launchpad.yaml")
    store = {
        "type": "MontyStore",
        "database_path": str(work / "store"),
        "database_name": "crysal",
        "storage": "sqlite",
    }
    (work / "jobflow.yaml").write_text(
        yaml.safe_dump(
            {
                "JOB_STORE": {
                    "docs_store": {**store, "collection_name": "outputs"},
                    "additional_stores": {"data": {**store, "collection_name": "data"}},
                }
            }
        )
    )
    env = {
        **os.environ,
        "FW_CONFIG_FILE": str(work / "FW_config.yaml"),
        "JOBFLOW_CONFIG_FILE": str(work / "jobflow.yaml"),
        "MONGOMOCK_SERVERSTORE_FILE": str(work / "mongomock.json"),
        "CRYSAL_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for kind in ("gpu", "cpu"):
        worker = yaml.safe_load((FW_CONFIGS / f"my_fworker_{kind}.yaml").read_text())
        (work / f"my_fworker_{kind}.yaml").write_text(yaml.safe_dump(worker))
        qa = yaml.safe_load((FW_CONFIGS / f"my_qadapter_{kind}.yaml").read_text())
        assert qa["_fw_q_type"] == "SLURM" and qa["_fw_name"] == "CommonAdapter"
        for key in ("gres", "account", "cpus_per_task"):
            qa.pop(key, None)
        # run what is ready for this worker now, then end the SLURM job (so that the next process
        # can open the single-process mongomock file)
        qa.update(
            queue="debug",
            nodes=1,
            ntasks=1,
            walltime="00:30:00",
            logdir=str(work / "logs"),
            rocket_launch=f"rlaunch -w {work}/my_fworker_{kind}.yaml -l {work}/my_launchpad.yaml "
            "rapidfire --nlaunches 0 --max_loops 1 --sleep 1",
            pre_rocket=f"export FW_CONFIG_FILE={env['FW_CONFIG_FILE']}\n"
            f"export JOBFLOW_CONFIG_FILE={env['JOBFLOW_CONFIG_FILE']}\n"
            f"export MONGOMOCK_SERVERSTORE_FILE={env['MONGOMOCK_SERVERSTORE_FILE']}\n"
            f"export PATH={Path(sys.executable).parent}:$PATH\n"
            "export CRYSAL_DEVICE=cpu",  # no GPU on this node
        )
        (work / f"my_qadapter_{kind}.yaml").write_text(yaml.safe_dump(qa))
    return env


QUERY = """
import json
from fireworks import LaunchPad
lp = LaunchPad.from_file("my_launchpad.yaml")
rows = []
for doc in lp.fireworks.find({}, {"fw_id": 1, "name": 1, "state": 1, "spec._category": 1}):
    launch = lp.launches.find_one({"fw_id": doc["fw_id"]}, sort=[("launch_id", -1)]) or {}
    rows.append({"name": doc["name"], "state": doc["state"],
                 "category": doc["spec"].get("_category"),
                 "worker": (launch.get("fworker") or {}).get("category"),
                 "host": launch.get("host")})
print("ROWS" + json.dumps(rows))
"""


def _fireworks(env: dict, work: Path) -> list[dict]:
    out = _run([sys.executable, "-c", QUERY], env, work)
    return json.loads(out.split("ROWS", 1)[1].splitlines()[0])


def _wait_for_queue(env: dict, work: Path, timeout: float = 900) -> None:
    t0 = time.time()
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=env).stdout.strip():
        assert time.time() - t0 < timeout, "SLURM job did not finish"
        time.sleep(1)


def _qlaunch_until_done(env: dict, work: Path) -> int:
    """qlaunch one SLURM job per worker kind at a time until no Firework is ready; how many ran."""
    submitted = 0
    for _ in range(80):
        progressed = False
        for kind in ("gpu", "cpu"):
            out = _run(
                [
                    "qlaunch",
                    "-l",
                    "my_launchpad.yaml",
                    "-w",
                    f"my_fworker_{kind}.yaml",
                    "-q",
                    f"my_qadapter_{kind}.yaml",
                    "singleshot",
                ],
                env,
                work,
            )
            if "No jobs exist" in out:
                continue
            submitted += 1
            progressed = True
            _wait_for_queue(env, work)
        if not progressed:
            break
    return submitted


def _slurm_env(slurm: Path, work: Path) -> dict:
    env = _write_configs(work)
    env["SLURM_CONF"] = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY_FW))
    today = datetime.now().strftime("%Y-%m-%d")
    _run(["lpad", "-l", "my_launchpad.yaml", "reset", "--password", today], env, work)
    return env


def _assert_completed_and_routed(env: dict, work: Path, submitted: int) -> list[dict]:
    rows = _fireworks(env, work)
    states = {r["name"]: r["state"] for r in rows}
    logs = "\n".join(p.read_text()[-1500:] for p in sorted((work / "logs").glob("*")))
    assert all(s == "COMPLETED" for s in states.values()), f"{states}\n{logs}"
    assert submitted >= 4
    # the second cycle was added at run time by cycle 0's analysis, and ran through SLURM too
    names = set(states)
    assert any(n.startswith("train member 1/2 (cycle 1)") for n in names)
    assert any(n.startswith("analyse (cycle 1)") for n in names)
    assert any(n.startswith("oracle single point 1/3 (cycle 1)") for n in names)
    # the lowest cluster, and a label below the pool's best if there is one (validation.n_labels)
    assert any(re.match(r"oracle relax 1/[12] \(validation, cluster 1\)", n) for n in names)
    assert any(n.startswith("oracle relax reference diamond") for n in names)
    # the validation's minima were grouped for the symmetry check, and each checked in a job
    assert "oracle relax symmetry check (validation)" in names
    assert any(re.match(r"oracle relax symmetry check 1/\d+ \(validation, ", n) for n in names)
    # every job ran on a worker of its category: ML jobs on the GPU worker, the rest on the CPU one
    for r in rows:
        expected = (
            "gpu" if r["name"].startswith(("select", "train member", "relax shard")) else "cpu"
        )
        assert r["category"] == expected, r
        assert r["worker"] == r["category"], r
    return rows


RELAXED = """
import json
from jobflow import SETTINGS
store = SETTINGS.JOB_STORE
store.connect()
docs = store.query({"metadata.crysal_step": "oracle_relax"}, properties=["output"])
print("RELAXED" + json.dumps([d["output"]["ensemble_hessian"] for d in docs]))
"""


def _report(env: dict, work: Path) -> dict:
    """The one report that ``crysal results --jobstore`` finds in the workers' JobStore."""
    res = _run(
        [sys.executable, "-m", "crysal_flows.cli", "results", "--jobstore", "--json"], env, work
    )
    (report,) = json.loads(res[res.index("[") :])
    return report


@pytest.mark.slow
def test_submitted_file_lpad_add_qlaunch_slurm_until_completed(slurm, tmp_path):
    """The documented path, word for word: crysal submit -o, lpad add, qlaunch on SLURM."""
    work = tmp_path
    env = _slurm_env(slurm, work)
    out = _run(
        [sys.executable, "-m", "crysal_flows.cli", "submit", "tiny.yaml", "--output", "wf.yaml"],
        env,
        work,
    )
    assert "lpad add wf.yaml" in out
    out = _run(["lpad", "-l", "my_launchpad.yaml", "add", "wf.yaml"], env, work)
    assert "Added a workflow" in out, out
    submitted = _qlaunch_until_done(env, work)
    _assert_completed_and_routed(env, work, submitted)

    report = _report(env, work)
    assert report["name"] == "tiny-fw" and report["cycles"] == 2
    # each validation relaxation loaded the last ensemble on the CPU worker (its job carries
    # the ensemble's uuid) and started from its Hessian
    out = _run([sys.executable, "-c", RELAXED], env, work)
    relaxed = json.loads(out.split("RELAXED", 1)[1].splitlines()[0])
    assert relaxed and all(relaxed), relaxed
    assert report["minima"] and report["minima"][0]["structure"]["@class"] == "Structure"
    assert report["references"]["diamond"] is not None

    # the FireWorks web GUI serves this workflow (mongomock: it reads the same file), named by
    # the run first
    port = 5000 + os.getpid() % 1000
    gui = subprocess.Popen(
        ["lpad", "-l", "my_launchpad.yaml", "webgui", "-s", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import urllib.request

        page = index = ""
        for _ in range(60):
            try:
                index = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                )
                page = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/wf/1", timeout=5)
                    .read()
                    .decode()
                )
                break
            except OSError:
                time.sleep(0.5)
        assert f"tiny-fw (Si8) crysal search {report['run_id']}" in page
        assert "tiny-fw (Si8)" in index
        assert "analyse (cycle 1)" in page and "oracle single point 2/3 (cycle 1)" in page
        # ... and a real browser draws it: the graph (cytoscape canvases) and the JSON view,
        # with jQuery served from this machine (docs/fireworks.md: the page loads it from a CDN)
        assert "//code.jquery.com/jquery.min.js" in page
        dom = _browser_dom(f"http://127.0.0.1:{port}/wf/1", port + 1)
        assert 'data-id="layer2-node"' in dom and 'class="jsonview"' in dom, dom[-2000:]
    finally:
        gui.terminate()
        gui.wait(timeout=30)


JQUERY = Path("/usr/share/javascript/jquery")  # Debian's libjs-jquery


def _browser_dom(url: str, jquery_port: int) -> str:
    """The page as headless Chromium renders it, scripts run, jQuery from ``JQUERY``."""
    chromium = shutil.which("chromium")
    assert chromium and (JQUERY / "jquery.min.js").is_file(), (
        "apt-get install chromium libjs-jquery (the README's test command does)"
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(jquery_port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(JQUERY),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        out = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--host-resolver-rules=MAP code.jquery.com 127.0.0.1:{jquery_port}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_submit_to_launchpad_qlaunch_slurm_until_completed(slurm, tmp_path):
    """``crysal submit -l`` adds the workflow itself; the same run through SLURM."""
    work = tmp_path
    env = _slurm_env(slurm, work)
    out = _run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "submit",
            "tiny.yaml",
            "-l",
            "my_launchpad.yaml",
        ],
        env,
        work,
    )
    assert "added search tiny-fw" in out
    submitted = _qlaunch_until_done(env, work)
    _assert_completed_and_routed(env, work, submitted)
    assert _report(env, work)["minima"]


@pytest.mark.slow
def test_failed_jobs_fizzle_and_the_search_goes_on_under_fireworks(tmp_path):
    """A member, a shard and a validation relaxation raise: their Fireworks FIZZLE, the jobs that
    gather them run anyway (``_allow_fizzled_parents``) and the search reaches its report."""
    from configs import FAULTY
    from faults import __file__ as faults_file
    from test_failures import faulty_search

    work = tmp_path
    env = _write_configs(work)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(faults_file).parent), env.get("PYTHONPATH", "")])
    (work / "my_fworker_any.yaml").write_text(
        yaml.safe_dump({"name": "any", "category": "", "query": "{}"})
    )
    today = datetime.now().strftime("%Y-%m-%d")
    _run(["lpad", "-l", "my_launchpad.yaml", "reset", "--password", today], env, work)
    from jobflow.managers.fireworks import flow_to_workflow

    _, flow = faulty_search({**FAULTY, "name": "faulty-fw"})
    flow_to_workflow(flow).to_file(str(work / "faulty.yaml"))
    _run(["lpad", "-l", "my_launchpad.yaml", "add", "faulty.yaml"], env, work)
    _run(
        [
            "rlaunch",
            "-w",
            "my_fworker_any.yaml",
            "-l",
            "my_launchpad.yaml",
            "rapidfire",
            "--nlaunches",
            "0",
            "--max_loops",
            "1",
            "--sleep",
            "1",
        ],
        env,
        work,
        timeout=1200,
    )
    states = {r["name"]: r["state"] for r in _fireworks(env, work)}
    fizzled = sorted(n for n, s in states.items() if s == "FIZZLED")
    assert len(fizzled) == 4 and fizzled[0].startswith("oracle relax 1/"), states
    assert fizzled[1:] == [
        "relax shard 1/2 (cycle 0)",
        "train member 1/3 (cycle 0)",
        "train member 1/3 (cycle 1)",
    ], states
    assert all(s == "COMPLETED" for n, s in states.items() if n not in fizzled), states
    report = _report(env, work)
    assert report["name"] == "faulty-fw" and report["cycles"] == 2
    assert [f["cluster_rank"] for f in report["failed_relaxations"]] == [1]
    assert report["minima"]


# rlaunch, killed like a SLURM job at its walltime. A MongoDB server keeps every write the rocket
# made before the kill; mongomock writes its file at process exit only, so the kill handler saves
# the database first (what MongoDB would hold) and then ends the process without any FireWorks
# cleanup.
KILLABLE_RLAUNCH = """
import atexit, os, signal, sys
from fireworks.scripts.rlaunch_run import rlaunch

def killed(*_):
    atexit._run_exitfuncs()  # mongomock: write the database as a server would hold it
    os._exit(137)

signal.signal(signal.SIGTERM, killed)
sys.argv[0] = "rlaunch"
sys.exit(rlaunch())
"""


@pytest.mark.slow
def test_lost_run_is_recovered_with_the_documented_lpad_command(tmp_path):
    """A rocket killed mid-job leaves its Firework RUNNING; ``lpad detect_lostruns --rerun`` (as
    docs/fireworks.md says) puts it back, and the search completes without duplicated labels."""
    work = tmp_path
    env = _write_configs(work)
    (work / "my_fworker_any.yaml").write_text(
        yaml.safe_dump({"name": "any", "category": "", "query": "{}"})
    )
    (work / "killable_rlaunch.py").write_text(KILLABLE_RLAUNCH)
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY_FW))
    today = datetime.now().strftime("%Y-%m-%d")
    _run(["lpad", "-l", "my_launchpad.yaml", "reset", "--password", today], env, work)
    _run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "submit",
            "tiny.yaml",
            "-l",
            "my_launchpad.yaml",
        ],
        env,
        work,
    )
    rapidfire = [
        "-w",
        "my_fworker_any.yaml",
        "-l",
        "my_launchpad.yaml",
        "rapidfire",
        "--nlaunches",
        "0",
        "--max_loops",
        "1",
        "--sleep",
        "1",
    ]

    # kill the worker while it trains a member of cycle 0
    proc = subprocess.Popen(
        [sys.executable, "killable_rlaunch.py", *rapidfire],
        env=env,
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    t0 = time.time()
    victim = None
    while victim is None:
        assert proc.poll() is None, f"rlaunch ended before the kill:\n{proc.stdout.read()[-3000:]}"
        assert time.time() - t0 < 600, "no training job started"
        for fw_json in work.glob("launcher_*/FW.json"):
            if '"train member' in fw_json.read_text():
                victim = json.loads(fw_json.read_text())
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 137
    states = {r["name"]: r["state"] for r in _fireworks(env, work)}
    assert states[victim["name"]] == "RUNNING"

    time.sleep(2)
    out = _run(["lpad", "-l", "my_launchpad.yaml", "detect_lostruns", "--time", "1"], env, work)
    lost = next(line for line in out.splitlines() if "lost FWs" in line)
    assert f"[{victim['fw_id']}]" in lost, out
    _run(
        ["lpad", "-l", "my_launchpad.yaml", "detect_lostruns", "--time", "1", "--rerun"], env, work
    )
    assert {r["name"]: r["state"] for r in _fireworks(env, work)}[victim["name"]] == "READY"

    _run(["rlaunch", *rapidfire], env, work, timeout=1200)
    rows = _fireworks(env, work)
    assert all(r["state"] == "COMPLETED" for r in rows), rows
    res = _run(
        [sys.executable, "-m", "crysal_flows.cli", "results", "--jobstore", "--json"], env, work
    )
    (report,) = json.loads(res[res.index("[") :])
    assert report["name"] == "tiny-fw" and report["cycles"] == 2
    # labels: 6 in cycle 0, 3 in cycle 1; each computed once
    assert report["oracle_single_points"] == 9
    labels = sum(r["name"].startswith("oracle single point") for r in rows)
    assert labels == 9
