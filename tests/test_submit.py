"""Submission without a queue: workflow files, LaunchPad (mongomock) and routing of every job."""

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml
from fireworks import Workflow
from jobflow import Flow, Job

from crysal_flows.config import PoolConfig, SearchConfig, load_config
from crysal_flows.flows import CrystalSearchMaker
from crysal_flows.settings import WorkersConfig

ROOT = Path(__file__).resolve().parents[1]


def test_flow_survives_serialisation():
    """Job inputs (makers with pydantic configs, search state) come back as the same models."""
    cfg = load_config(ROOT / "examples" / "quick.yaml")
    flow = CrystalSearchMaker(config=cfg).make()
    back = Flow.from_dict(json.loads(json.dumps(flow.as_dict())))
    jobs = {j.name: j for j in back.jobs if isinstance(j, Job)}
    pool = jobs["generate pool"]
    assert isinstance(pool.function.__self__.config, PoolConfig)
    analyse = next(j for j in back.iterflow() if j[0].name.startswith("analyse"))[0]
    assert isinstance(analyse.function.__self__.config, SearchConfig)
    assert analyse.function.__self__.config == cfg


def test_submit_writes_workflow_with_categories(tmp_path):
    out = tmp_path / "wf.yaml"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "submit",
            str(ROOT / "examples" / "quick.yaml"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert f"lpad add {out}" in run.stdout
    wf = Workflow.from_file(str(out))
    cats = {fw.name: fw.spec["_category"] for fw in wf.fws}
    assert cats["select (cycle 0)"] == "gpu" and cats["train member 1/2 (cycle 0)"] == "gpu"
    assert cats["relax shard 1/2 (cycle 0)"] == "gpu"
    assert cats["generate pool"] == "cpu" and cats["analyse (cycle 0)"] == "cpu"
    # no job hands its own category to the jobs it adds at run time
    assert all(not fw.tasks[0]["job"].config.pass_manager_config for fw in wf.fws)
    assert wf.metadata["composition"] == "Si8"
    # jobflow-remote reads the worker from the same manager_config
    assert all(fw.spec["worker"] == fw.spec["_category"] for fw in wf.fws)


def test_submit_categories_come_from_settings_or_the_command_line(tmp_path):
    import os

    env = {**os.environ, "CRYSAL_WORKERS__ML": "a100"}
    out = tmp_path / "wf.yaml"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "submit",
            str(ROOT / "examples" / "quick.yaml"),
            "-o",
            str(out),
            "--category",
            "driver=login",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    cats = {fw.name: fw.spec["_category"] for fw in Workflow.from_file(str(out)).fws}
    assert cats["train member 1/2 (cycle 0)"] == "a100" and cats["generate pool"] == "login"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "submit",
            str(ROOT / "examples" / "quick.yaml"),
            "-o",
            str(out),
            "--category",
            "gpu",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "KIND=CATEGORY" in bad.stderr


def test_workflow_script_adds_to_launchpad(tmp_path):
    """workflows/submit_quick.py against the shipped launchpad file, in mongomock mode."""
    db = tmp_path / "mongomock.json"
    db.write_text("{}")
    env = {**os.environ, "MONGOMOCK_SERVERSTORE_FILE": str(db)}
    lp = str(ROOT / "fw_configs" / "my_launchpad.yaml")
    today = datetime.now().strftime("%Y-%m-%d")
    subprocess.run(
        ["lpad", "-l", lp, "reset", "--password", today], env=env, check=True, capture_output=True
    )
    run = subprocess.run(
        [sys.executable, str(ROOT / "workflows" / "submit_quick.py"), lp],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "added search si8-quick" in run.stdout
    wfs = subprocess.run(
        ["lpad", "-l", lp, "get_wflows", "-d", "more"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = json.loads(wfs)
    assert info["name"].startswith("si8-quick (Si8) crysal search ")  # the run first, for the GUI
    run_id = info["name"].split()[-1].split("--")[0]
    assert f"added search si8-quick (run {run_id})" in run.stdout
    assert info["states"]["generate pool--11"] == "READY"


def test_submit_on_uninitialised_launchpad_says_reset(tmp_path):
    db = tmp_path / "mongomock.json"
    db.write_text("{}")
    env = {**os.environ, "MONGOMOCK_SERVERSTORE_FILE": str(db)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "crysal_flows.cli",
            "submit",
            str(ROOT / "examples" / "quick.yaml"),
            "-l",
            str(ROOT / "fw_configs" / "my_launchpad.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "lpad reset" in run.stderr


def test_fw_configs_are_production_defaults():
    lp = yaml.safe_load((ROOT / "fw_configs" / "my_launchpad.yaml").read_text())
    assert lp["host"].startswith("mongodb://") and lp["uri_mode"] is True
    store = yaml.safe_load((ROOT / "fw_configs" / "jobflow.yaml").read_text())["JOB_STORE"]
    assert store["docs_store"]["type"] == "MongoStore"
    assert store["additional_stores"]["data"]["type"] == "GridFSStore"
    for kind, category in (("gpu", WorkersConfig().ml), ("cpu", WorkersConfig().oracle)):
        worker = yaml.safe_load((ROOT / "fw_configs" / f"my_fworker_{kind}.yaml").read_text())
        assert worker["category"] == category
        qa = yaml.safe_load((ROOT / "fw_configs" / f"my_qadapter_{kind}.yaml").read_text())
        assert qa["_fw_q_type"] == "SLURM" and f"my_fworker_{kind}.yaml" in qa["rocket_launch"]
