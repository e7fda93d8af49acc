"""Structure files of a run's minima (``crysal results --export DIR``): CIF and POSCAR."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

__all__ = ["export_minima", "minimum_filename"]


def minimum_filename(report: dict[str, Any], minimum: dict[str, Any]) -> str:
    """``<run>_<rank>_<E>eV-per-atom_<space group>``, safe on every filesystem."""
    sg = minimum["space_group_symbol"].replace("/", "_")
    energy = f"{minimum['energy_per_atom']:.4f}eV-per-atom"
    name = f"{report['name']}_rank{minimum['rank']:02d}_{energy}_{sg}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def export_minima(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """Write every minimum of a report as ``.cif`` and POSCAR (``.vasp``) files."""
    from pymatgen.io.cif import CifWriter
    from pymatgen.io.vasp import Poscar

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in report["minima"]:
        structure = Structure.from_dict(m["structure"])
        stem = out / minimum_filename(report, m)
        comment = (
            f"{report['name']} rank {m['rank']}: {m['energy_per_atom']:.6f} eV/atom "
            f"({report['oracle']}), {m['space_group_symbol']}"
        )
        CifWriter(structure, symprec=0.1).write_file(f"{stem}.cif")
        Poscar(structure, comment=comment).write_file(f"{stem}.vasp")
        paths += [Path(f"{stem}.cif"), Path(f"{stem}.vasp")]
    return paths
