"""What the DFT oracles share: atomate2 input sets, custodian, a kept work directory, MPI settings.

Both codes are driven the way atomate2's makers drive them: the maker's input set generator writes
the inputs, atomate2's ``run_cp2k`` / ``run_vasp`` run the code under custodian, whose error
handlers fix what they can (unconverged or diverging SCF, frozen jobs, ...). What custodian cannot
fix raises, and the label job records it as a failed label. Outputs are converted to ASE units and
sign conventions (eV, eV/A, eV/A^3, positive stress is tensile), the units of every other oracle.
The commands that start the codes are machine settings (:mod:`crysal_flows.settings`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from crysal_flows.oracles.base import Oracle

__all__ = ["DftOracle", "merge_settings", "workdir"]


def merge_settings(base: dict, update: dict) -> dict:
    """Return ``base`` updated by ``update``, nested dictionaries merged key by key."""
    out = dict(base)
    for k, v in update.items():
        out[k] = (
            merge_settings(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


@contextmanager
def workdir(kind: str, task: str, structure: Structure) -> Iterator[Path]:
    """Work in a fresh directory under the job's directory, kept for inspection afterwards."""
    h = hashlib.sha1(
        np.round(structure.cart_coords, 6).tobytes()
        + np.round(structure.lattice.matrix, 6).tobytes()
    ).hexdigest()[:12]
    base = Path.cwd() / "dft"
    path = base / f"{kind}-{task}-{h}"
    k = 1
    while path.exists():
        k += 1
        path = base / f"{kind}-{task}-{h}-{k}"
    path.mkdir(parents=True)
    old = Path.cwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(old)


def mpi_environment() -> None:
    """One OpenMP thread per MPI rank, and Open MPI allowed to start as root (containers, CI)."""
    # cp2k.psmp would otherwise start as many threads per rank as there are cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")


class DftOracle(Oracle):
    """A DFT code run through atomate2 and custodian."""

    is_dft = True

    def identity_settings(self) -> dict[str, Any]:
        """Return what changes the numbers: the input settings and the k-point density.

        The command and the number of processes are not part of it.
        """
        return {
            "input_settings": self.config.input_settings,
            "kpoint_density": self.config.kpoint_density,
        }
