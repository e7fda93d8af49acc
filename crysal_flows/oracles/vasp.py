"""VASP as the oracle: atomate2's VASP input sets, run under custodian (see :mod:`.dft`).

VASP cannot run without a licence: the tests check the inputs and the parsing of its outputs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from ase.units import GPa
from pymatgen.core import Structure

from crysal_flows.oracles.base import OracleUnavailableError, Relaxation, SinglePoint
from crysal_flows.oracles.dft import DftOracle, workdir
from crysal_flows.settings import load_settings

__all__ = ["VASP_DEFAULTS", "VaspOracle", "parse_vasp_static"]

#: INCAR tags for random structures, merged over atomate2's static / relax sets.
VASP_DEFAULTS: dict[str, Any] = {
    "ENCUT": 520,
    "EDIFF": 1e-5,
    "ISMEAR": 0,
    "SIGMA": 0.05,
    "ISPIN": 1,
    "ALGO": "Normal",
    "NELM": 200,
    "ISIF": 2,  # static: stress computed, nothing moves
    "LREAL": False,
    "LWAVE": False,
    "LCHARG": False,
    "LAECHG": False,
    "LVTOT": False,
    "LORBIT": None,
    "LASPH": True,
}


def _vasp_file(path: Path, name: str) -> Path:
    for candidate in (path / name, path / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no {name} in {path}")


def _vasprun(path: Path):
    from pymatgen.io.vasp import Vasprun

    return Vasprun(
        str(_vasp_file(path, "vasprun.xml")),
        parse_dos=False,
        parse_eigen=False,
        parse_potcar_file=False,
    )


def parse_vasp_static(path: Path) -> SinglePoint:
    """Energy, forces and stress from a VASP run's vasprun.xml, in ASE units.

    VASP prints stress in kBar with positive = compressive; ASE's positive is tensile.
    The free energy (``e_fr_energy``) is the one consistent with the forces.
    """
    vr = _vasprun(path)
    if not vr.converged_electronic:
        raise RuntimeError("VASP SCF did not converge")
    step = vr.ionic_steps[-1]
    stress = -np.asarray(step["stress"], dtype=float) * 0.1 * GPa
    return SinglePoint(
        energy=float(step["e_fr_energy"]), forces=np.asarray(step["forces"], float), stress=stress
    )


class VaspOracle(DftOracle):
    """VASP single points and relaxations (IBRION 2, ISIF 3) through atomate2."""

    def check(self, elements: list[str] | None = None) -> None:
        """Check the executable on PATH and pymatgen's POTCAR directory."""
        command = load_settings().vasp_command.split()
        exe = next((w for w in command if "vasp" in w), command[-1])
        if not shutil.which(exe):
            raise OracleUnavailableError(
                f"VASP executable {exe!r} not found on PATH: load the VASP module or set "
                "CRYSAL_VASP_COMMAND (or vasp_command in ~/.crysal.yaml)"
            )
        from pymatgen.core import SETTINGS

        if not (SETTINGS.get("PMG_VASP_PSP_DIR") or os.environ.get("PMG_VASP_PSP_DIR")):
            raise OracleUnavailableError(
                "VASP needs POTCARs: set PMG_VASP_PSP_DIR (pymatgen's .pmgrc.yaml)"
            )

    def input_generator(self, relax: dict | None = None):
        """atomate2's static (or, with ``relax``, full relaxation) input set generator."""
        from atomate2.vasp.sets.core import RelaxSetGenerator, StaticSetGenerator

        incar: dict[str, Any] = dict(VASP_DEFAULTS)
        if relax is not None:
            incar.update(relax)
        incar.update(self.config.input_settings)
        cls = RelaxSetGenerator if relax is not None else StaticSetGenerator
        return cls(
            user_incar_settings=incar,
            user_kpoints_settings={"reciprocal_density": self.config.kpoint_density},
            user_potcar_functional="PBE_54",
        )

    def _run(self, structure: Structure, generator) -> None:
        from atomate2.vasp.files import write_vasp_input_set
        from atomate2.vasp.run import run_vasp

        write_vasp_input_set(structure, generator)
        run_vasp(vasp_cmd=load_settings().vasp_command, max_errors=self.config.max_errors)

    def single_point(self, structure: Structure) -> SinglePoint:
        """Run a static calculation."""
        with workdir("vasp", "static", structure) as path:
            self._run(structure, self.input_generator())
            return parse_vasp_static(path)

    def relax(self, structure: Structure, fmax: float, max_steps: int) -> Relaxation:
        """VASP's own relaxation of positions and cell; each ionic step counts."""
        incar = {"IBRION": 2, "ISIF": 3, "NSW": max_steps, "EDIFFG": -abs(fmax)}
        with workdir("vasp", "relax", structure) as path:
            self._run(structure, self.input_generator(incar))
            vr = _vasprun(path)
        steps = vr.ionic_steps
        return Relaxation(
            structure=vr.final_structure,
            energy=float(steps[-1]["e_fr_energy"]),
            n_steps=len(steps),
            converged=bool(vr.converged_ionic),
        )
