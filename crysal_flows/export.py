"""Structure files of a run's minima (``crysal results --export DIR``): CIF and POSCAR.

Both hold the cell the search relaxed, atom for atom (the space group is in the file name).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

__all__ = ["export_candidates", "export_minima", "minimum_filename"]


def minimum_filename(report: dict[str, Any], minimum: dict[str, Any]) -> str:
    """``<run>_<rank>_<E>eV-per-atom_<space group>``, safe on every filesystem."""
    sg = minimum["space_group_symbol"].replace("/", "_")
    energy = f"{minimum['energy_per_atom']:.4f}eV-per-atom"
    name = f"{report['name']}_rank{minimum['rank']:02d}_{energy}_{sg}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _write(structure: Structure, stem: Path, comment: str) -> list[Path]:
    """Write ``stem.cif`` and the POSCAR ``stem.vasp`` (whose first line is ``comment``)."""
    from pymatgen.io.cif import CifWriter
    from pymatgen.io.vasp import Poscar

    CifWriter(structure).write_file(f"{stem}.cif")
    Poscar(structure, comment=comment).write_file(f"{stem}.vasp")
    return [Path(f"{stem}.cif"), Path(f"{stem}.vasp")]


def export_minima(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """Write every minimum of a report as ``.cif`` and POSCAR (``.vasp``) files."""
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
        paths += _write(structure, stem, comment)
    return paths


def export_candidates(
    store: Any, run_id: str, summary: dict[str, Any], directory: str | Path, name: str
) -> list[Path]:
    """Write the representatives of a cycle's low-energy clusters (ML-relaxed, not validated).

    For a run still in progress: the structures the search holds best so far, named by cycle,
    cluster rank and the ensemble's energy (``eV-per-atom-ML``).
    """
    from crysal_flows.jobs import Step
    from crysal_flows.store import step_outputs

    c = summary["cycle"]
    pools = [
        d
        for d in step_outputs(store, run_id, Step.MERGE_SHARDS, load=True)
        if (d.get("metadata") or {}).get("crysal_cycle") == c
    ]
    if not pools:
        raise LookupError(f"run {run_id} has no pool of cycle {c} in the store")
    by_index = {cand["index"]: cand for cand in pools[-1]["output"]["candidates"]}
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for cl in summary["clusters"]:
        cand = by_index[cl["representative"]]
        structure = Structure.from_dict(cand["structure"])
        sg = cl["space_group"].replace("/", "_")
        stem = out / re.sub(
            r"[^A-Za-z0-9._-]+",
            "_",
            (
                f"{name}_cycle{c}_cluster{cl['rank']:02d}_{cl['energy_per_atom']:.4f}eV-per-atom-ML_"
                f"{sg}"
            ),
        )
        comment = (
            f"{name} cycle {c} cluster {cl['rank']}: {cl['energy_per_atom']:.6f} eV/atom "
            f"(ensemble, not validated), candidate {cand['index']}, {cand['status']}"
        )
        paths += _write(structure, stem, comment)
    return paths
