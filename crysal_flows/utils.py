"""Small helpers shared by the steps of the search: compositions, conversions, fingerprints."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii
from pymatgen.core import Composition, Element, Lattice, Structure

__all__ = [
    "atoms_to_structure",
    "fingerprint",
    "package_versions",
    "parse_composition",
    "reference_volume",
    "space_group",
    "sphere_volume",
    "structure_to_atoms",
]

MAX_ATOMS = 512


def parse_composition(formula: str) -> dict[str, int]:
    """Parse a cell composition such as ``Si16`` or ``Na8Cl8`` into integer counts.

    Raises
    ------
    ValueError
        For unknown elements, non-integer, zero or negative amounts, or more than 512 atoms.
    """
    if not isinstance(formula, str) or not formula.strip():
        raise ValueError("composition is empty")
    try:
        comp = Composition(formula)
    except Exception as exc:  # pymatgen raises several types
        raise ValueError(f"cannot parse composition {formula!r}: {exc}") from None
    counts: dict[str, int] = {}
    for el, amount in comp.items():
        symbol = str(el)
        if not isinstance(el, Element) or symbol not in atomic_numbers or el.Z > 94:
            raise ValueError(f"unknown or unsupported element {symbol!r} in {formula!r}")
        if amount <= 0 or abs(amount - round(amount)) > 1e-8:
            raise ValueError(
                f"amount of {symbol} in {formula!r} must be a positive integer, got {amount}"
            )
        counts[symbol] = round(amount)
    if not counts:
        raise ValueError(f"composition {formula!r} has no atoms")
    if sum(counts.values()) > MAX_ATOMS:
        raise ValueError(f"composition {formula!r} has more than {MAX_ATOMS} atoms per cell")
    return counts


def sphere_volume(counts: dict[str, int]) -> float:
    """Return the summed volume (A^3) of covalent-radius spheres of ``counts``."""
    return float(
        sum(
            n * 4.0 / 3.0 * np.pi * covalent_radii[atomic_numbers[el]] ** 3
            for el, n in counts.items()
        )
    )


def reference_volume(counts: dict[str, int]) -> float:
    """Estimate a cell volume (A^3) from covalent-radius spheres at a typical packing fraction.

    A packing fraction of 0.29 gives 19.8 A^3/atom for Si (diamond: 20.0); ``pool.volume_factor``
    corrects it for other chemistries.
    """
    return sphere_volume(counts) / 0.29


def structure_key(structure: Structure, settings: str) -> str:
    """Hash of a calculation: the structure (to 1e-6 A) and a string of its settings."""
    import hashlib

    h = hashlib.sha256()
    h.update(np.asarray([site.specie.Z for site in structure], dtype=np.int64).tobytes())
    h.update(np.round(structure.cart_coords, 6).tobytes())
    h.update(np.round(structure.lattice.matrix, 6).tobytes())
    h.update(settings.encode())
    return h.hexdigest()[:32]


def structure_to_atoms(structure: Structure) -> Atoms:
    """Convert a pymatgen structure into periodic ASE atoms (no site properties)."""
    return Atoms(
        symbols=[site.specie.symbol for site in structure],
        positions=structure.cart_coords,
        cell=structure.lattice.matrix,
        pbc=True,
    )


def atoms_to_structure(atoms: Atoms) -> Structure:
    """Convert ASE atoms into a pymatgen structure."""
    return Structure(
        Lattice(np.asarray(atoms.cell.array)),
        atoms.get_chemical_symbols(),
        atoms.positions,
        coords_are_cartesian=True,
    )


def fingerprint(
    atoms: Atoms, r_max: float = 6.0, n_bins: int = 60, width: float = 0.15
) -> np.ndarray:
    """Return a model-independent structure fingerprint: smeared partial pair distributions.

    Distances are measured in units of the cube root of the volume per atom, so the fingerprint does
    not change under uniform scaling. Each element pair contributes one Gaussian-smeared histogram
    of neighbour distances per atom; the concatenation is normalised to unit length. It is stable
    across cycles, unlike descriptors taken from a model that is retrained every cycle.
    """
    from matscipy.neighbours import neighbour_list

    n = len(atoms)
    scale = (atoms.get_volume() / n) ** (1.0 / 3.0)
    scaled = atoms.copy()
    scaled.set_cell(atoms.cell.array / scale, scale_atoms=True)
    cutoff = r_max / 2.7  # ~ 2.2 neighbour shells in units of (V/atom)^(1/3)
    i, j, d = neighbour_list("ijd", scaled, cutoff)
    numbers = scaled.numbers
    species = sorted(set(numbers))
    grid = np.linspace(0.5, cutoff, n_bins)
    blocks = []
    for a_idx, za in enumerate(species):
        for zb in species[a_idx:]:
            mask = ((numbers[i] == za) & (numbers[j] == zb)) | (
                (numbers[i] == zb) & (numbers[j] == za)
            )
            dd = d[mask]
            hist = np.exp(-((grid[None, :] - dd[:, None]) ** 2) / (2 * (width / 2.7) ** 2)).sum(0)
            blocks.append(hist / max(n, 1))
    vec = np.concatenate(blocks)
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else vec


def space_group(structure: Structure, symprec: float = 0.1) -> tuple[str, int]:
    """Space group symbol and number, or ('P1', 1) if spglib fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        return sga.get_space_group_symbol(), sga.get_space_group_number()
    except Exception:  # spglib can fail on distorted cells
        return "P1", 1


#: The packages whose releases shape a search's numbers (models, optimisers, structures, oracles).
PACKAGES = (
    "crysal_flows",
    "torch",
    "mace-torch",
    "e3nn",
    "ase",
    "pymatgen",
    "numpy",
    "scipy",
    "spglib",
    "pyxtal",
    "matscipy",
    "chgnet",
    "sevenn",
)


def package_versions() -> dict[str, str]:
    """Return the installed release of each of ``PACKAGES`` (those not installed are left out).

    The same search repeats itself exactly for one set of releases, not across them: a new release
    of one of them sent examples/si16.yaml down another path (docs/benchmarks.md).
    """
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
