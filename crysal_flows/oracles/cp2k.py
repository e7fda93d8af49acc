"""CP2K as the oracle: atomate2's CP2K input sets, run under custodian (see :mod:`.dft`).

The defaults suit random candidate structures: PBE, DZVP-MOLOPT-SR-GTH basis sets and GTH
pseudopotentials named for every element (no pymatgen CP2K data configuration is needed),
smearing (random cells are often metallic), no spin polarisation, a k-point *density* on the full
Gamma-centred mesh, stress on. See docs/dft.md for the measured settings and costs.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ase.units import Bohr, GPa, Hartree
from pymatgen.core import Structure

from crysal_flows.oracles.base import OracleUnavailableError, Relaxation, SinglePoint
from crysal_flows.oracles.dft import DftOracle, merge_settings, mpi_environment, workdir
from crysal_flows.settings import load_settings

__all__ = ["CP2K_DEFAULTS", "CP2K_KPOINT_SCHEME", "Cp2kOracle", "cp2k_data_dir", "cp2k_kpoints"]

#: CP2K settings for random structures (atomate2 ``user_input_settings``; overridable per search).
CP2K_DEFAULTS: dict[str, Any] = {
    "xc_functionals": ["PBE"],
    "cutoff": 300,  # Ry
    "rel_cutoff": 50,
    "smearing": True,
    "elec_temp": 500,  # K, Fermi-Dirac
    # diagonalisation, always: pymatgen's default, orbital transformation (OT), takes no smearing
    # and no k-points, so it fell back only where there are k-points; a cell whose mesh is Gamma
    # alone (a large cell) got OT without the smearing and mixing set here
    "ot": False,
    "spin_polarized": False,
    "eps_scf": 1e-6,
    # Broyden mixing with Kerker damping suited to metallic random cells: 16 instead of 26 SCF
    # steps, 39 s instead of 61 s, same energy, for a random Si16 label here (pymatgen: 0.05/0.01)
    "alpha": 0.3,
    "beta": 1.0,
    # atomate2's 1e-12 / 1e-16 cost a third more time here for micro-eV changes in the labels
    "eps_default": 1e-10,
    "eps_pgf_orb": 1e-6,
    "print_dos": False,
    "print_pdos": False,
    "print_mo_cubes": False,
    "print_v_hartree": False,
    "print_e_density": False,
}
CP2K_BASIS = "DZVP-MOLOPT-SR-GTH"
CP2K_POTENTIAL = "GTH-PBE"
CP2K_BASIS_FILE = "BASIS_MOLOPT"
CP2K_POTENTIAL_FILE = "GTH_POTENTIALS"

CP2K_BASIS = "DZVP-MOLOPT-SR-GTH"
CP2K_POTENTIAL = "GTH-PBE"
CP2K_BASIS_FILE = "BASIS_MOLOPT"
CP2K_POTENTIAL_FILE = "GTH_POTENTIALS"

_CP2K_BINARIES = ("cp2k.psmp", "cp2k.popt", "cp2k.ssmp", "cp2k.sopt", "cp2k")
_DATA_DIRS = ("/usr/share/cp2k", "/usr/share/cp2k/data", "/opt/cp2k/data")


def cp2k_data_dir() -> Path:
    """Return the CP2K data directory with the MOLOPT basis sets and GTH potentials."""
    candidates = [os.environ.get("CP2K_DATA_DIR"), *_DATA_DIRS]
    for d in candidates:
        if (
            d
            and (Path(d) / CP2K_BASIS_FILE).is_file()
            and (Path(d) / CP2K_POTENTIAL_FILE).is_file()
        ):
            return Path(d)
    raise OracleUnavailableError(
        f"CP2K data files {CP2K_BASIS_FILE} and {CP2K_POTENTIAL_FILE} not found in CP2K_DATA_DIR "
        f"({os.environ.get('CP2K_DATA_DIR') or 'unset'}) or {', '.join(_DATA_DIRS)}: on Debian/"
        "Ubuntu 'apt install cp2k-data', on a cluster 'module load cp2k' and set CP2K_DATA_DIR"
    )


def cp2k_command() -> str:
    """Return the command that runs CP2K: ``cp2k_command``, or mpirun over a binary on PATH."""
    settings = load_settings()
    if settings.cp2k_command:
        return settings.cp2k_command
    binary = next((b for b in _CP2K_BINARIES if shutil.which(b)), None)
    if binary is None:
        raise OracleUnavailableError(
            f"no CP2K executable ({', '.join(_CP2K_BINARIES)}) on PATH: on Debian/Ubuntu "
            "'apt install cp2k cp2k-data', on a cluster 'module load cp2k', or set "
            "CRYSAL_CP2K_COMMAND (or cp2k_command in ~/.crysal.yaml)"
        )
    nproc = settings.dft_nproc
    if nproc > 1 and binary.endswith(("psmp", "popt")) and shutil.which("mpirun"):
        return f"mpirun -np {nproc} {binary}"
    return binary


#: The k-point scheme ``cp2k_kpoints`` writes; part of the CP2K oracle's identity, so labels from
#: another scheme (the earlier space-group-reduced lists) are never mixed with these.
CP2K_KPOINT_SCHEME = "gamma-full-time-reversal"


def cp2k_kpoints(structure: Structure, density: float):
    """Return the Gamma-centred mesh of ``density`` k-points per reciprocal volume, as a list.

    Only time reversal (k, -k) reduces it. pymatgen's default writes CP2K the mesh reduced by the
    structure's space group, and CP2K does not symmetrise forces and stress over such a list:
    cubic diamond Si8 got forces of 0.055 eV/A and a sheared stress, and a cell optimisation,
    which keeps the list as the cell loses its symmetry, collapsed into a spurious dense state.
    """
    from pymatgen.io.vasp.inputs import Kpoints, KpointsSupportedModes

    divisions = Kpoints.automatic_density_by_vol(structure, density, force_gamma=True).kpts[0]
    grid = np.stack(np.meshgrid(*[np.arange(n) / n for n in divisions], indexing="ij"), -1)

    def fold(k: np.ndarray) -> tuple[float, ...]:  # into [-1/2, 1/2)
        return tuple(float(x) for x in np.round(k - np.floor(k + 0.5 + 1e-9), 9) + 0.0)

    weights: dict[tuple, int] = {}
    for k in grid.reshape(-1, 3):
        minus = fold(-k)
        key = minus if minus in weights else fold(k)
        weights[key] = weights.get(key, 0) + 1
    # Gamma last: pymatgen's CP2K set reads an explicit list that starts at Gamma as Gamma only
    kpts, wts = list(weights)[::-1], list(weights.values())[::-1]
    return Kpoints(
        comment=f"Gamma-centred {divisions}, time-reversal reduced",
        style=KpointsSupportedModes.Reciprocal,
        num_kpts=len(kpts),
        kpts=kpts,
        kpts_weights=wts,
    )


def _cp2k_energies(text: str) -> list[float]:
    """Every total energy (one per force evaluation), Hartree -> eV."""
    return [
        float(x) * Hartree
        for x in re.findall(r"ENERGY\| Total FORCE_EVAL \( QS \) energy[^:]*:\s+(\S+)", text)
    ]


def _cp2k_forces(text: str, n_atoms: int) -> np.ndarray:
    """Return the last ATOMIC FORCES block of a CP2K output, Hartree/Bohr -> eV/A."""
    blocks = text.split("ATOMIC FORCES in [a.u.]")
    if len(blocks) < 2:
        raise RuntimeError("CP2K output has no ATOMIC FORCES block")
    rows = []
    for line in blocks[-1].splitlines()[3:]:
        parts = line.split()
        if len(parts) == 6 and parts[0].isdigit():
            rows.append([float(x) for x in parts[3:6]])
        elif rows:
            break
    if len(rows) != n_atoms:
        raise RuntimeError(f"CP2K output has forces for {len(rows)} of {n_atoms} atoms")
    return np.array(rows) * Hartree / Bohr


def _cp2k_stress(text: str) -> np.ndarray:
    """Return the last analytical stress of a CP2K output: GPa (+ compressive) -> ASE units."""
    matches = re.findall(
        r"STRESS\|\s+Analytical stress tensor \[GPa\]\s*\n\s*STRESS\|\s+x\s+y\s+z\s*\n"
        r"((?:\s*STRESS\|\s+[xyz](?:\s+\S+){3}\s*\n){3})",
        text,
    )
    if not matches:
        raise RuntimeError("CP2K output has no analytical stress tensor")
    rows = [[float(v) for v in line.split()[2:5]] for line in matches[-1].strip().splitlines()]
    return -np.array(rows) * GPa


def _restarted_evaluations(path: Path) -> int:
    """Force evaluations of runs that custodian backed up (error.N.tar.gz) before a correction."""
    n = 0
    for archive in sorted(path.glob("error.*.tar.gz")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.name.endswith("cp2k.out") and (f := tar.extractfile(member)):
                    n += len(_cp2k_energies(f.read().decode(errors="replace")))
    return n


class Cp2kOracle(DftOracle):
    """CP2K single points and cell optimisations (BFGS, CP2K's own) through atomate2."""

    def identity_settings(self) -> dict[str, Any]:
        """Return the input settings, the k-point density and the k-point scheme."""
        return {**super().identity_settings(), "kpoints": CP2K_KPOINT_SCHEME}

    def check(self, elements: list[str] | None = None) -> None:
        """Check the command, the data directory, and a basis set and potential per element."""
        cp2k_command()
        data = cp2k_data_dir()
        for el in elements or []:
            for name, fname in (
                (CP2K_BASIS, CP2K_BASIS_FILE),
                (CP2K_POTENTIAL, CP2K_POTENTIAL_FILE),
            ):
                text = (data / fname).read_text(errors="replace")
                if not re.search(rf"^\s*{re.escape(el)}\s+.*\b{re.escape(name)}\b", text, re.M):
                    raise OracleUnavailableError(
                        f"CP2K data file {data / fname} has no {name} for {el}"
                    )

    def input_generator(self, structure: Structure, relax: dict | None = None):
        """atomate2's static (or, with ``relax``, cell-optimisation) input set generator."""
        from atomate2.cp2k.sets.core import CellOptSetGenerator, StaticSetGenerator

        elements = sorted({el.symbol for el in structure.composition})
        settings = merge_settings(
            CP2K_DEFAULTS,
            {
                "basis_and_potential": {
                    "basis_filenames": [CP2K_BASIS_FILE],
                    "potential_filename": CP2K_POTENTIAL_FILE,
                    **{
                        el: {"basis": CP2K_BASIS, "potential": CP2K_POTENTIAL, "aux_basis": None}
                        for el in elements
                    },
                },
            },
        )
        if relax is not None:
            settings["activate_motion"] = relax
        settings = merge_settings(settings, self.config.input_settings)
        cls = CellOptSetGenerator if relax is not None else StaticSetGenerator
        return cls(
            user_input_settings=settings,
            user_kpoints_settings=cp2k_kpoints(structure, self.config.kpoint_density),
        )

    def _run(self, structure: Structure, generator) -> str:
        from atomate2.cp2k.files import write_cp2k_input_set
        from atomate2.cp2k.run import run_cp2k

        data = str(cp2k_data_dir())
        os.environ.setdefault("CP2K_DATA_DIR", data)
        os.environ.setdefault("PMG_CP2K_DATA_DIR", data)
        mpi_environment()
        with warnings.catch_warnings():
            # pymatgen cannot "validate" basis sets named explicitly; CP2K reads them from its data
            warnings.filterwarnings("ignore", message="Unable to validate")
            write_cp2k_input_set(structure, generator)
        run_cp2k(cp2k_cmd=cp2k_command(), max_errors=self.config.max_errors)
        return Path("cp2k.out").read_text(errors="replace")

    def single_point(self, structure: Structure) -> SinglePoint:
        """Energy, forces and the analytical stress."""
        with workdir("cp2k", "static", structure):
            text = self._run(structure, self.input_generator(structure))
        energies = _cp2k_energies(text)
        if not energies:
            raise RuntimeError("CP2K output has no total energy")
        return SinglePoint(
            energy=energies[-1],
            forces=_cp2k_forces(text, len(structure)),
            stress=_cp2k_stress(text),
        )

    def relax(self, structure: Structure, fmax: float, max_steps: int) -> Relaxation:
        """Relax with CP2K's cell optimisation, counting every force evaluation.

        The evaluations of runs that custodian restarted count too.
        """
        motion = {
            "optimizer": "BFGS",
            "trust_radius": 0.1,
            "max_iter": max_steps,
            "max_force": fmax / (Hartree / Bohr),
            "rms_force": fmax / (Hartree / Bohr) / 1.5,
        }
        with workdir("cp2k", "relax", structure) as path:
            try:
                text = self._run(structure, self.input_generator(structure, motion))
            except Exception:
                # an optimisation that ran out of steps is still a result; custodian raises on it
                out = path / "cp2k.out"
                text = out.read_text(errors="replace") if out.exists() else ""
                if not _cp2k_energies(text):
                    raise
            from pymatgen.io.cp2k.outputs import Cp2kOutput

            out = Cp2kOutput(str(path / "cp2k.out"), auto_load=False)
            out.parse_structures()
        energies = _cp2k_energies(text)
        if not energies:
            raise RuntimeError("CP2K relaxation produced no energy")
        final = out.final_structure if out.structures else structure
        return Relaxation(
            structure=final,
            energy=energies[-1],
            n_steps=len(energies) + _restarted_evaluations(path),
            converged="GEOMETRY OPTIMIZATION COMPLETED" in text,
        )
