"""Random candidates: PyXtal in compatible space groups, tiled supercells, random cells."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from crysal_flows.utils import reference_volume

logger = logging.getLogger(__name__)

__all__ = [
    "GeneratedCandidate",
    "compatible_space_groups",
    "generate_candidate",
    "min_distance_ok",
    "push_apart",
    "space_groups_by_tiling",
]


@dataclass
class GeneratedCandidate:
    """One generated structure and how it was made."""

    atoms: Atoms
    origin: str
    space_group: int | None
    attempts: int


def _gcd(counts: dict[str, int]) -> int:
    return math.gcd(*counts.values())


def compatible_space_groups(counts: dict[str, int]) -> list[int]:
    """Space groups (1-230) in which PyXtal can place these atom counts in the conventional cell."""
    from pyxtal.symmetry import Group

    numbers = list(counts.values())
    groups = []
    for sg in range(1, 231):
        compatible, _ = Group(sg).check_compatible(numbers)
        if compatible:
            groups.append(sg)
    return groups


def min_distance_ok(atoms: Atoms, factor: float) -> bool:
    """Whether every pair is farther apart than ``factor`` times the summed covalent radii."""
    from matscipy.neighbours import neighbour_list

    radii = covalent_radii[atoms.numbers]
    cutoff = 2 * factor * radii.max()
    i, j, d = neighbour_list("ijd", atoms, cutoff)
    return bool(np.all(d >= factor * (radii[i] + radii[j]) - 1e-9))


def push_apart(atoms: Atoms, factor: float, max_iter: int = 300) -> bool:
    """Move too-close atoms apart in place (AIRSS-style repair); return whether it succeeded."""
    from matscipy.neighbours import neighbour_list

    radii = covalent_radii[atoms.numbers]
    cutoff = 2 * factor * radii.max()
    for _ in range(max_iter):
        i, j, d, vec = neighbour_list("ijdD", atoms, cutoff)
        target = factor * (radii[i] + radii[j])
        close = d < target
        if not close.any():
            return True
        shift = np.zeros_like(atoms.positions)
        # each pair is seen from both sides; move each atom half the deficit (plus a margin)
        deficit = (target[close] - d[close]) * 0.55 + 1e-3
        unit = vec[close] / np.maximum(d[close], 1e-6)[:, None]
        np.add.at(shift, i[close], -unit * deficit[:, None])
        atoms.positions += shift
    return min_distance_ok(atoms, factor)


def _scale_to_volume(atoms: Atoms, volume: float) -> Atoms:
    factor = (volume / atoms.get_volume()) ** (1.0 / 3.0)
    atoms.set_cell(atoms.cell.array * factor, scale_atoms=True)
    return atoms


def _split_into_three(n: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """Return a random ordered factorisation n = a*b*c."""
    options = [
        (a, b, n // (a * b))
        for a in range(1, n + 1)
        if n % a == 0
        for b in range(1, n // a + 1)
        if (n // a) % b == 0
    ]
    return options[rng.integers(len(options))]


def _pyxtal_atoms(sg: int, counts: dict[str, int], rng: np.random.Generator) -> Atoms | None:
    from pyxtal import pyxtal

    crystal = pyxtal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            crystal.from_random(
                3,
                sg,
                list(counts),
                list(counts.values()),
                random_state=int(rng.integers(2**31)),
                max_count=5,
            )
        except Exception as exc:  # PyXtal raises several exception types for impossible placements
            logger.debug("pyxtal failed in space group %d: %s", sg, exc)
            return None
    if not crystal.valid:
        return None
    atoms = crystal.to_ase()
    atoms.pbc = True
    return atoms


def _random_cell_atoms(counts: dict[str, int], rng: np.random.Generator) -> Atoms:
    """AIRSS/CrySPY-style: random lengths (ratio <= 3), angles (60-120 deg) and sites."""
    from ase.geometry import cellpar_to_cell

    while True:
        lengths = rng.uniform(1.0, 3.0, size=3)
        angles = rng.uniform(60.0, 120.0, size=3)
        try:
            cell = cellpar_to_cell([*lengths, *angles])
        except ValueError:
            continue
        if np.linalg.det(cell) > 0.3 * np.prod(lengths):  # not too flat
            break
    symbols = [el for el, n in counts.items() for _ in range(n)]
    return Atoms(
        symbols=symbols, scaled_positions=rng.random((len(symbols), 3)), cell=cell, pbc=True
    )


def generate_candidate(
    counts: dict[str, int],
    rng: np.random.Generator,
    space_groups: dict[int, list[int]],
    symmetric_fraction: float,
    supercell_fraction: float | None,
    volume_factor: float,
    volume_spread: float,
    min_distance_factor: float,
    max_attempts: int,
) -> GeneratedCandidate:
    """Generate one candidate; retries until the distance constraint holds.

    Parameters
    ----------
    space_groups
        Compatible space groups for each number of formula units that divides the cell's
        (key ``z`` means ``counts // z`` atoms are placed and the result is tiled ``z`` times).
    supercell_fraction
        Probability that a symmetric candidate is tiled from a sub-cell (of at least 4 atoms);
        ``None``: the whole cell and each such sub-cell are equally likely.

    Raises
    ------
    RuntimeError
        If no valid candidate was found in ``max_attempts`` attempts.
    """
    n_atoms = sum(counts.values())
    v_ref = reference_volume(counts) * volume_factor
    # What kind of candidate this is is drawn once, so that kinds that are rejected more often
    # (random cells) keep their share of the pool.
    symmetric = rng.random() < symmetric_fraction
    tilings = [z for z in space_groups if z > 1 and space_groups[z] and n_atoms // z >= 4]
    z = 1
    if symmetric and tilings:
        n = len(tilings)
        fraction = n / (n + 1) if supercell_fraction is None else supercell_fraction
        if rng.random() < fraction:
            # uniform over the tilings (the same draws as before for a single tiling, e.g. Si8)
            z = int(rng.choice(tilings, p=np.full(n, 1.0 / n)))
    for attempt in range(1, max_attempts + 1):
        volume = v_ref * rng.uniform(1 - volume_spread, 1 + volume_spread)
        if symmetric:
            sub_counts = {el: n // z for el, n in counts.items()}
            sg = int(rng.choice(space_groups[z]))
            atoms = _pyxtal_atoms(sg, sub_counts, rng)
            if atoms is None or len(atoms) * z != n_atoms:
                continue
            origin = f"pyxtal sg {sg}"
            if z > 1:
                reps = _split_into_three(z, rng)
                atoms = atoms.repeat(reps)
                origin += f" tiled {reps[0]}x{reps[1]}x{reps[2]}"
            space_group: int | None = sg
        else:
            atoms = _random_cell_atoms(counts, rng)
            origin, space_group = "random cell", None
        atoms = _scale_to_volume(atoms, volume)
        if not symmetric:
            push_apart(atoms, min_distance_factor)
        atoms.wrap()
        if min_distance_ok(atoms, min_distance_factor):
            order = np.argsort(
                [atomic_numbers[s] for s in atoms.get_chemical_symbols()], kind="stable"
            )
            return GeneratedCandidate(atoms[order], origin, space_group, attempt)
    raise RuntimeError(
        f"no candidate of {counts} satisfied min_distance_factor={min_distance_factor} in "
        f"{max_attempts} attempts: lower pool.min_distance_factor or raise pool.volume_factor"
    )


def space_groups_by_tiling(
    counts: dict[str, int], supercell_fraction: float | None
) -> dict[int, list[int]]:
    """Compatible space groups for the cell (key 1) and each divisor of its formula units."""
    result = {1: compatible_space_groups(counts)}
    if supercell_fraction is None or supercell_fraction > 0:
        g = _gcd(counts)
        for z in range(2, g + 1):
            if g % z == 0:
                result[z] = compatible_space_groups({el: n // z for el, n in counts.items()})
    return result
