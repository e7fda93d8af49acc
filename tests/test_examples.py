"""The shipped examples run as the README says, and find what they promise."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def crysal(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    exe = shutil.which("crysal")
    assert exe, "the crysal command is not installed (pip install -e .)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("example", ["quick.yaml", "si16.yaml"])
def test_example_finds_diamond(example, tmp_path):
    """``crysal run examples/<example>`` word for word: the search ends and finds diamond.

    examples/si16.yaml (seed 0) missed diamond when its ensembles left the stress of a strained
    diamond cell unlearnt (the loss weighted stress, not the virial per atom the relaxation
    follows): the candidate sat at 30 % too large a volume for four cycles.
    """
    run = crysal("run", str(ROOT / "examples" / example), cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "reference diamond: -4.3366 eV/atom (oracle-relaxed), found" in run.stdout, run.stdout
    res = crysal("results", "--json", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (report,) = json.loads(res.stdout)
    assert report["found"] == ["diamond"]
    assert report["oracle_cost"] == report["oracle_single_points"] + report["validation_steps"]
