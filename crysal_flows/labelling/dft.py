"""DFT oracles: CP2K and VASP through atomate2's input sets and custodian.

Both codes are driven the way atomate2's makers drive them: the maker's input set generator writes
the inputs (``write_cp2k_input_set`` / ``write_vasp_input_set``), atomate2's ``run_cp2k`` /
``run_vasp`` run the code under custodian, whose error handlers fix what they can (unconverged or
diverging SCF, frozen jobs, ...). What custodian cannot fix raises, and the label job records it as
a failed label. The outputs are parsed with pymatgen and converted to ASE units and sign
conventions (eV, eV/A, eV/A^3, positive stress is tensile), the units of every other oracle.

The defaults suit random candidate structures: PBE, smearing (random cells are often metallic),
no spin polarisation, a k-point *density* instead of a fixed mesh, stress on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase.units import GPa, Bohr, Hartree
from pymatgen.core import Structure

from crysal_flows.config import OracleConfig

logger = logging.getLogger(__name__)

__all__ = [
    "CP2K_DEFAULTS",
    "VASP_DEFAULTS",
    "DftResult",
    "DftRelaxResult",
    "check_dft",
    "cp2k_command",
    "cp2k_data_dir",
    "dft_relax",
    "dft_single_point",
    "vasp_input_generator",
    "cp2k_input_generator",
    "cp2k_kpoints",
]

#: CP2K settings for random structures (atomate2 ``user_input_settings``; overridable per search).
CP2K_DEFAULTS: dict[str, Any] = {
    "xc_functionals": ["PBE"],
    "cutoff": 300,  # Ry
    "rel_cutoff": 50,
    "smearing": True,
    "elec_temp": 500,  # K, Fermi-Dirac
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

_CP2K_BINARIES = ("cp2k.psmp", "cp2k.popt", "cp2k.ssmp", "cp2k.sopt", "cp2k")
_DATA_DIRS = ("/usr/share/cp2k", "/usr/share/cp2k/data", "/opt/cp2k/data")


@dataclass
class DftResult:
    """A single point in ASE units."""

    energy: float  # eV
    forces: np.ndarray  # eV/A
    stress: np.ndarray  # 3x3, eV/A^3, ASE sign (positive = tensile)
    directory: str


@dataclass
class DftRelaxResult:
    """An oracle relaxation of positions and cell."""

    structure: Structure
    energy: float  # eV
    n_steps: int  # force evaluations (each one an oracle call)
    converged: bool
    directory: str


def _unavailable(msg: str) -> Exception:
    from crysal_flows.labelling.oracles import OracleUnavailableError

    return OracleUnavailableError(msg)


def cp2k_data_dir() -> Path:
    """The CP2K data directory with the MOLOPT basis sets and GTH potentials."""
    candidates = [os.environ.get("CP2K_DATA_DIR"), *_DATA_DIRS]
    for d in candidates:
        if d and (Path(d) / CP2K_BASIS_FILE).is_file() and (Path(d) / CP2K_POTENTIAL_FILE).is_file():
            return Path(d)
    raise _unavailable(
        f"CP2K data files {CP2K_BASIS_FILE} and {CP2K_POTENTIAL_FILE} not found in CP2K_DATA_DIR "
        f"({os.environ.get('CP2K_DATA_DIR') or 'unset'}) or {', '.join(_DATA_DIRS)}: on Debian/"
        "Ubuntu 'apt install cp2k-data', on a cluster 'module load cp2k' and set CP2K_DATA_DIR"
    )


def cp2k_command(config: OracleConfig) -> str:
    """The command that runs CP2K: ``config.command``, or mpirun over a CP2K binary on PATH."""
    if config.command:
        return config.command
    binary = next((b for b in _CP2K_BINARIES if shutil.which(b)), None)
    if binary is None:
        raise _unavailable(
            f"no CP2K executable ({', '.join(_CP2K_BINARIES)}) on PATH: on Debian/Ubuntu "
            "'apt install cp2k cp2k-data', on a cluster 'module load cp2k', or set the oracle's "
            "'command'"
        )
    nproc = int(os.environ.get("CRYSAL_DFT_NPROC", "2"))
    if nproc > 1 and binary.endswith(("psmp", "popt")) and shutil.which("mpirun"):
        return f"mpirun -np {nproc} {binary}"
    return binary


def check_dft(config: OracleConfig, elements: list[str] | None = None) -> None:
    """Fail early when the DFT code (or, for CP2K, its basis sets) is not available here."""
    if config.kind == "cp2k":
        cp2k_command(config)
        data = cp2k_data_dir()
        for el in elements or []:
            for name, fname in ((CP2K_BASIS, CP2K_BASIS_FILE), (CP2K_POTENTIAL, CP2K_POTENTIAL_FILE)):
                text = (data / fname).read_text(errors="replace")
                if not re.search(rf"^\s*{re.escape(el)}\s+.*\b{re.escape(name)}\b", text, re.M):
                    raise _unavailable(f"CP2K data file {data / fname} has no {name} for {el}")
    elif config.kind == "vasp":
        command = (config.command or "vasp_std").split()
        exe = next((w for w in command if "vasp" in w), command[-1])
        if not shutil.which(exe):
            raise _unavailable(f"VASP executable {exe!r} not found on PATH: load the VASP module or "
                               "set the oracle's 'command'")
        from pymatgen.core import SETTINGS

        if not (SETTINGS.get("PMG_VASP_PSP_DIR") or os.environ.get("PMG_VASP_PSP_DIR")):
            raise _unavailable("VASP needs POTCARs: set PMG_VASP_PSP_DIR (pymatgen's .pmgrc.yaml)")


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def cp2k_input_generator(config: OracleConfig, structure: Structure, relax: dict | None = None):  # noqa: ANN201
    """atomate2's static (or, with ``relax``, cell-optimisation) input set generator for CP2K.

    Basis sets and potentials are named explicitly for every element of ``structure``
    (DZVP-MOLOPT-SR-GTH, GTH-PBE), so no pymatgen CP2K data configuration is needed.
    """
    from atomate2.cp2k.sets.core import CellOptSetGenerator, StaticSetGenerator

    elements = sorted({el.symbol for el in structure.composition})
    settings = _merge(CP2K_DEFAULTS, {
        "basis_and_potential": {
            "basis_filenames": [CP2K_BASIS_FILE], "potential_filename": CP2K_POTENTIAL_FILE,
            **{el: {"basis": CP2K_BASIS, "potential": CP2K_POTENTIAL, "aux_basis": None}
               for el in elements},
        },
    })
    if relax is not None:
        settings["activate_motion"] = relax
    settings = _merge(settings, config.input_settings)
    cls = CellOptSetGenerator if relax is not None else StaticSetGenerator
    return cls(user_input_settings=settings,
               user_kpoints_settings=cp2k_kpoints(structure, config.kpoint_density))


#: The k-point scheme ``cp2k_kpoints`` writes; part of the CP2K oracle's identity, so labels from
#: another scheme (the earlier space-group-reduced lists) are never mixed with these.
CP2K_KPOINT_SCHEME = "gamma-full-time-reversal"


def cp2k_kpoints(structure: Structure, density: float):  # noqa: ANN201
    """The Gamma-centred mesh of ``density`` k-points per reciprocal volume, as an explicit list.

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
    return Kpoints(comment=f"Gamma-centred {divisions}, time-reversal reduced",
                   style=KpointsSupportedModes.Reciprocal, num_kpts=len(kpts),
                   kpts=kpts, kpts_weights=wts)


def vasp_input_generator(config: OracleConfig, relax: dict | None = None):  # noqa: ANN201
    """atomate2's static (or, with ``relax``, full relaxation) input set generator for VASP."""
    from atomate2.vasp.sets.core import RelaxSetGenerator, StaticSetGenerator

    incar = dict(VASP_DEFAULTS)
    if relax is not None:
        incar.update(relax)
    incar.update(config.input_settings)
    cls = RelaxSetGenerator if relax is not None else StaticSetGenerator
    return cls(user_incar_settings=incar,
               user_kpoints_settings={"reciprocal_density": config.kpoint_density},
               user_potcar_functional="PBE_54")


@contextmanager
def _workdir(kind: str, task: str, structure: Structure) -> Iterator[Path]:
    """A fresh directory under the job's working directory, kept for inspection afterwards."""
    h = hashlib.sha1(np.round(structure.cart_coords, 6).tobytes()
                     + np.round(structure.lattice.matrix, 6).tobytes()).hexdigest()[:12]
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


def _mpi_env() -> None:
    # One OpenMP thread per MPI rank unless the user chose otherwise (cp2k.psmp would otherwise
    # start as many threads per rank as there are cores and oversubscribe the node).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Open MPI refuses to start as root unless told; containers and CI often run as root.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")


def _run_cp2k(config: OracleConfig, structure: Structure, generator) -> str:  # noqa: ANN001
    from atomate2.cp2k.files import write_cp2k_input_set
    from atomate2.cp2k.run import run_cp2k

    data = str(cp2k_data_dir())
    os.environ.setdefault("CP2K_DATA_DIR", data)
    os.environ.setdefault("PMG_CP2K_DATA_DIR", data)
    _mpi_env()
    with warnings.catch_warnings():
        # pymatgen cannot "validate" basis sets named explicitly; CP2K reads them from its data
        warnings.filterwarnings("ignore", message="Unable to validate")
        write_cp2k_input_set(structure, generator)
    run_cp2k(cp2k_cmd=cp2k_command(config), max_errors=config.max_errors)
    return Path("cp2k.out").read_text(errors="replace")


def _cp2k_forces(text: str, n_atoms: int) -> np.ndarray:
    """The last ATOMIC FORCES block of a CP2K output, Hartree/Bohr -> eV/A."""
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
    """The last analytical stress tensor of a CP2K output, GPa (positive = compressive) -> ASE."""
    matches = re.findall(
        r"STRESS\|\s+Analytical stress tensor \[GPa\]\s*\n\s*STRESS\|\s+x\s+y\s+z\s*\n"
        r"((?:\s*STRESS\|\s+[xyz](?:\s+\S+){3}\s*\n){3})", text)
    if not matches:
        raise RuntimeError("CP2K output has no analytical stress tensor")
    rows = [[float(v) for v in line.split()[2:5]] for line in matches[-1].strip().splitlines()]
    return -np.array(rows) * GPa


def _cp2k_energies(text: str) -> list[float]:
    """Every total energy (one per force evaluation), Hartree -> eV."""
    return [float(x) * Hartree for x in
            re.findall(r"ENERGY\| Total FORCE_EVAL \( QS \) energy[^:]*:\s+(\S+)", text)]


def _restarted_evaluations(path: Path) -> int:
    """Force evaluations of runs that custodian backed up (error.N.tar.gz) before a correction."""
    import tarfile

    n = 0
    for archive in sorted(path.glob("error.*.tar.gz")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.name.endswith("cp2k.out") and (f := tar.extractfile(member)):
                    n += len(_cp2k_energies(f.read().decode(errors="replace")))
    return n


def dft_single_point(structure: Structure, config: OracleConfig) -> DftResult:
    """Energy, forces and stress of ``structure`` with the DFT oracle, in ASE units."""
    if config.kind == "cp2k":
        with _workdir("cp2k", "static", structure) as path:
            text = _run_cp2k(config, structure, cp2k_input_generator(config, structure))
        energies = _cp2k_energies(text)
        if not energies:
            raise RuntimeError("CP2K output has no total energy")
        return DftResult(energy=energies[-1], forces=_cp2k_forces(text, len(structure)),
                         stress=_cp2k_stress(text), directory=str(path))
    if config.kind == "vasp":
        with _workdir("vasp", "static", structure) as path:
            _run_vasp(config, structure, vasp_input_generator(config))
            return _parse_vasp_static(path)
    raise ValueError(f"oracle kind {config.kind!r} is not a DFT code")


def dft_relax(structure: Structure, config: OracleConfig, fmax: float,
              max_steps: int) -> DftRelaxResult:
    """Relax positions and cell with the DFT oracle; every force evaluation is counted."""
    if config.kind == "cp2k":
        motion = {"optimizer": "BFGS", "trust_radius": 0.1, "max_iter": max_steps,
                  "max_force": fmax / (Hartree / Bohr), "rms_force": fmax / (Hartree / Bohr) / 1.5}
        with _workdir("cp2k", "relax", structure) as path:
            try:
                text = _run_cp2k(config, structure, cp2k_input_generator(config, structure, motion))
            except Exception:
                # an optimisation that ran out of steps is still a result; custodian raises on it
                text = (path / "cp2k.out").read_text(errors="replace") if (
                    path / "cp2k.out").exists() else ""
                if not _cp2k_energies(text):
                    raise
            from pymatgen.io.cp2k.outputs import Cp2kOutput

            out = Cp2kOutput(str(path / "cp2k.out"), auto_load=False)
            out.parse_structures()
        energies = _cp2k_energies(text)
        if not energies:
            raise RuntimeError("CP2K relaxation produced no energy")
        converged = "GEOMETRY OPTIMIZATION COMPLETED" in text
        final = out.final_structure if out.structures else structure
        return DftRelaxResult(structure=final, energy=energies[-1],
                              n_steps=len(energies) + _restarted_evaluations(path),
                              converged=converged, directory=str(path))
    if config.kind == "vasp":
        incar = {"IBRION": 2, "ISIF": 3, "NSW": max_steps, "EDIFFG": -abs(fmax)}
        with _workdir("vasp", "relax", structure) as path:
            _run_vasp(config, structure, vasp_input_generator(config, incar))
            from pymatgen.io.vasp import Vasprun

            vr = Vasprun(str(_vasp_file(path, "vasprun.xml")), parse_dos=False,
                         parse_eigen=False, parse_potcar_file=False)
            steps = vr.ionic_steps
            return DftRelaxResult(structure=vr.final_structure, energy=float(steps[-1]["e_fr_energy"]),
                                  n_steps=len(steps), converged=bool(vr.converged_ionic),
                                  directory=str(path))
    raise ValueError(f"oracle kind {config.kind!r} is not a DFT code")


def _run_vasp(config: OracleConfig, structure: Structure, generator) -> None:  # noqa: ANN001
    from atomate2.vasp.files import write_vasp_input_set
    from atomate2.vasp.run import run_vasp

    write_vasp_input_set(structure, generator)
    run_vasp(vasp_cmd=config.command or "vasp_std", max_errors=config.max_errors)


def _vasp_file(path: Path, name: str) -> Path:
    for candidate in (path / name, path / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no {name} in {path}")


def _parse_vasp_static(path: Path) -> DftResult:
    """Energy, forces and stress from a VASP run's vasprun.xml, in ASE units.

    VASP prints stress in kBar with positive = compressive; ASE's positive is tensile.
    The free energy (``e_fr_energy``) is the one consistent with the forces.
    """
    from pymatgen.io.vasp import Vasprun

    vr = Vasprun(str(_vasp_file(path, "vasprun.xml")), parse_dos=False, parse_eigen=False,
                 parse_potcar_file=False)
    if not vr.converged_electronic:
        raise RuntimeError("VASP SCF did not converge")
    step = vr.ionic_steps[-1]
    stress = -np.asarray(step["stress"], dtype=float) * 0.1 * GPa
    return DftResult(energy=float(step["e_fr_energy"]), forces=np.asarray(step["forces"], float),
                     stress=stress, directory=str(path))
