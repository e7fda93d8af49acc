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
    "SpaceGroupChoice",
    "centring",
    "compatible_space_groups",
    "generate_candidate",
    "min_distance_ok",
    "push_apart",
    "separation_table",
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


# lattice points per conventional cell, by the first letter of the Hermann-Mauguin symbol
_CENTRING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}


def centring(sg: int) -> int:
    """Lattice points in the conventional cell of space group ``sg`` (R groups: hexagonal axes)."""
    from pyxtal.symmetry import Group

    return _CENTRING[Group(sg).symbol[0]]


def compatible_space_groups(counts: dict[str, int]) -> list[int]:
    """Space groups (1-230) in which PyXtal can place these atom counts in the conventional cell."""
    return list(SpaceGroupChoice.for_counts(counts).conventional)


@dataclass(frozen=True)
class SpaceGroupChoice:
    """The space groups that can hold one cell's atom counts, and in which cell.

    ``conventional``: the counts fit the group's conventional cell. ``primitive``: centred groups
    (A, B, C, I, R, F) whose conventional cell cannot hold the counts but whose primitive cell
    can, e.g. corundum's R-3c for Al4O6 (10 atoms; the hexagonal cell holds 30).
    """

    conventional: tuple[int, ...]
    primitive: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conventional or self.primitive)

    @classmethod
    def for_counts(cls, counts: dict[str, int]) -> SpaceGroupChoice:
        """Find the groups holding ``counts`` in their conventional or only their primitive cell."""
        from pyxtal.symmetry import Group

        numbers = list(counts.values())
        conventional, primitive = [], []
        for sg in range(1, 231):
            group = Group(sg)  # built once per group: it is the slow part
            if group.check_compatible(numbers)[0]:
                conventional.append(sg)
                continue
            m = _CENTRING[group.symbol[0]]
            if m > 1 and group.check_compatible([n * m for n in numbers])[0]:
                primitive.append(sg)
        return cls(tuple(conventional), tuple(primitive))


def _pair_targets(
    numbers: np.ndarray, i: np.ndarray, j: np.ndarray, factor: float, min_separation
) -> np.ndarray:
    """Smallest allowed distance of each pair (i, j).

    ``factor`` times the summed covalent radii, or the pair's entry in ``min_separation``
    ({(Z1, Z2): A}, either order) where that is larger.
    """
    radii = covalent_radii[numbers]
    target = factor * (radii[i] + radii[j])
    zi, zj = numbers[i], numbers[j]
    for (z1, z2), d in (min_separation or {}).items():
        pair = ((zi == z1) & (zj == z2)) | ((zi == z2) & (zj == z1))
        target = np.where(pair, np.maximum(target, d), target)
    return target


def _cutoff(numbers: np.ndarray, factor: float, min_separation) -> float:
    return max([2 * factor * covalent_radii[numbers].max(), *(min_separation or {}).values()])


def separation_table(
    pairs: dict[str, float] | None, elements: set[str] | None = None
) -> dict[tuple[int, int], float]:
    """``{"O-O": 2.2}`` as ``{(8, 8): 2.2}``; a pair is two element symbols joined by "-".

    A distance must lie in (0, 10] A; with ``elements``, a pair naming another element is refused
    too.
    """
    table = {}
    for key, d in (pairs or {}).items():
        parts = key.split("-")
        if len(parts) != 2 or any(p not in atomic_numbers for p in parts):
            raise ValueError(f"min_separation key {key!r} is not a pair of elements like 'O-O'")
        if not 0 < d <= 10:
            raise ValueError(f"min_separation[{key!r}] = {d} A: must be in (0, 10]")
        if elements is not None and not set(parts) <= elements:
            raise ValueError(
                f"min_separation: {key!r} names an element not in the composition "
                f"({', '.join(sorted(elements))})"
            )
        table[(atomic_numbers[parts[0]], atomic_numbers[parts[1]])] = float(d)
    return table


def min_distance_ok(
    atoms: Atoms, factor: float, min_separation: dict[tuple[int, int], float] | None = None
) -> bool:
    """Whether every pair is at least its smallest allowed distance apart.

    That is ``factor`` times the summed covalent radii, or the pair's entry in ``min_separation``
    (see `separation_table`) where larger.
    """
    from matscipy.neighbours import neighbour_list

    i, j, d = neighbour_list("ijd", atoms, _cutoff(atoms.numbers, factor, min_separation))
    target = _pair_targets(atoms.numbers, i, j, factor, min_separation)
    return bool(np.all(d >= target - 1e-9))


def push_apart(
    atoms: Atoms,
    factor: float,
    max_iter: int = 300,
    min_separation: dict[tuple[int, int], float] | None = None,
) -> bool:
    """Move too-close atoms apart in place (AIRSS-style repair); return whether it succeeded."""
    from matscipy.neighbours import neighbour_list

    cutoff = _cutoff(atoms.numbers, factor, min_separation)
    for _ in range(max_iter):
        i, j, d, vec = neighbour_list("ijdD", atoms, cutoff)
        target = _pair_targets(atoms.numbers, i, j, factor, min_separation)
        close = d < target
        if not close.any():
            return True
        shift = np.zeros_like(atoms.positions)
        # each pair is seen from both sides; move each atom half the deficit (plus a margin)
        deficit = (target[close] - d[close]) * 0.55 + 1e-3
        unit = vec[close] / np.maximum(d[close], 1e-6)[:, None]
        np.add.at(shift, i[close], -unit * deficit[:, None])
        atoms.positions += shift
    return min_distance_ok(atoms, factor, min_separation)


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


def _pyxtal_atoms(
    sg: int, counts: dict[str, int], rng: np.random.Generator, primitive: bool = False
) -> Atoms | None:
    """Place ``counts`` at random in group ``sg`` (``primitive``: in its primitive cell)."""
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
                conventional=not primitive,
                random_state=int(rng.integers(2**31)),
                max_count=5,
            )
        except Exception as exc:  # PyXtal raises several exception types for impossible placements
            logger.debug("pyxtal failed in space group %d: %s", sg, exc)
            return None
    if not crystal.valid:
        return None
    if primitive:
        from pymatgen.io.ase import AseAtomsAdaptor

        # PyXtal builds the conventional cell (counts times the centring); keep one lattice point
        structure = crystal.to_pymatgen().get_primitive_structure(tolerance=0.01)
        if len(structure) != sum(counts.values()):
            return None
        atoms = AseAtomsAdaptor.get_atoms(structure)
    else:
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
    space_groups: dict[int, SpaceGroupChoice],
    symmetric_fraction: float,
    supercell_fraction: float | None,
    volume_factor: float,
    volume_spread: float,
    min_distance_factor: float,
    max_attempts: int,
    min_separation: dict[tuple[int, int], float] | None = None,
) -> GeneratedCandidate:
    """Generate one candidate; retries until the distance constraint holds.

    Parameters
    ----------
    space_groups
        Compatible space groups for the cell (key 1) and each sub-cell (key ``z``: ``counts // z``
        atoms are placed and the result is tiled ``z`` times), from `space_groups_by_tiling`.
        The group is drawn uniformly from a cell's conventional and primitive choices together.
    supercell_fraction
        Probability that a symmetric candidate is tiled from a sub-cell (of at least 4 atoms);
        ``None``: the whole cell and each such sub-cell are equally likely.
    min_separation
        Smallest distances of element pairs, ``{(Z1, Z2): A}``, where larger than
        ``min_distance_factor`` gives (see `separation_table`).

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
    tilings = [z for z in space_groups if z > 1 and space_groups[z]]
    z = 1
    if symmetric and tilings:
        n = len(tilings)
        fraction = n / (n + 1) if supercell_fraction is None else supercell_fraction
        if rng.random() < fraction:
            # uniform over the tilings (the same draws as before for a single tiling, e.g. Si8)
            z = int(rng.choice(tilings, p=np.full(n, 1.0 / n)))
    primitive = False
    if symmetric:
        choice = space_groups[z]
        n_conv, n_prim = len(choice.conventional), len(choice.primitive)
        # Whether the group is a centred one in its primitive cell is drawn from a child stream,
        # so a candidate in a conventional cell is the one drawn before primitive cells existed
        # (the pools measured in docs/benchmarks.md keep those candidates).
        child = rng.spawn(1)[0]
        if n_prim and child.random() < n_prim / (n_conv + n_prim):
            primitive, rng = True, child
        groups = choice.primitive if primitive else choice.conventional
    for attempt in range(1, max_attempts + 1):
        volume = v_ref * rng.uniform(1 - volume_spread, 1 + volume_spread)
        if symmetric:
            sub_counts = {el: n // z for el, n in counts.items()}
            sg = int(rng.choice(groups))
            atoms = _pyxtal_atoms(sg, sub_counts, rng, primitive)
            if atoms is None or len(atoms) * z != n_atoms:
                continue
            origin = f"pyxtal sg {sg}" + (" primitive cell" if primitive else "")
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
            push_apart(atoms, min_distance_factor, min_separation=min_separation)
        atoms.wrap()
        if min_distance_ok(atoms, min_distance_factor, min_separation):
            order = np.argsort(
                [atomic_numbers[s] for s in atoms.get_chemical_symbols()], kind="stable"
            )
            return GeneratedCandidate(atoms[order], origin, space_group, attempt)
    raise RuntimeError(
        f"no candidate of {counts} satisfied min_distance_factor={min_distance_factor}"
        + (" and pool.min_separation" if min_separation else "")
        + f" in {max_attempts} attempts: lower pool.min_distance_factor"
        + (" or pool.min_separation" if min_separation else "")
        + " or raise pool.volume_factor"
    )


def space_groups_by_tiling(
    counts: dict[str, int], supercell_fraction: float | None
) -> dict[int, SpaceGroupChoice]:
    """Space groups for the cell and its sub-cells.

    Key 1: the cell; key ``z``: a sub-cell of the cell's formula units divided by ``z``, of at
    least 4 atoms (none if ``supercell_fraction`` is 0).
    """
    result = {1: SpaceGroupChoice.for_counts(counts)}
    if supercell_fraction is None or supercell_fraction > 0:
        g = _gcd(counts)
        n_atoms = sum(counts.values())
        for z in range(2, g + 1):
            if g % z == 0 and n_atoms // z >= 4:
                result[z] = SpaceGroupChoice.for_counts({el: n // z for el, n in counts.items()})
    return result
