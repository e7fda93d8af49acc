"""The oracle interface: what labelling, validation and the report ask of an oracle.

An oracle is the expensive reference calculation (DFT, or a cheap stand-in). Every oracle gives

- ``identity``: a stable string naming the oracle and the settings that change its numbers, stored
  with every label, so labels of different oracles are never mixed in one training set;
- ``check(elements)``: fail early, before any job runs, when it cannot run here;
- ``single_point(structure)``: energy, forces and stress in ASE units (eV, eV/A, eV/A^3, positive
  stress is tensile);
- ``relax(structure, fmax, max_steps)``: a relaxation of positions and cell that counts every
  energy/force evaluation, the oracle cost of validation.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymatgen.core import Structure

from crysal_flows.config import OracleConfig

__all__ = ["Oracle", "OracleUnavailableError", "Relaxation", "SinglePoint"]


class OracleUnavailableError(RuntimeError):
    """The oracle's code is not installed or cannot be loaded here."""


@dataclass
class SinglePoint:
    """One oracle evaluation in ASE units."""

    energy: float  # eV
    forces: np.ndarray  # (n_atoms, 3) eV/A
    stress: np.ndarray  # (3, 3) eV/A^3, positive = tensile


@dataclass
class Relaxation:
    """An oracle relaxation of positions and cell."""

    structure: Structure
    energy: float  # eV
    n_steps: int  # energy/force evaluations, each one an oracle call
    converged: bool


class Oracle(ABC):
    """An oracle built from its configuration; subclasses implement one kind."""

    #: whether this is a DFT code run through atomate2 and custodian (its labels take minutes)
    is_dft: bool = False
    #: whether ``relax`` takes a starting Hessian (``hessian=``, in ``FrechetCellFilter``
    #: coordinates; see ``crysal_flows.relaxation.hessian``): ASE-driven oracles do, DFT codes
    #: relaxing with their own optimisers do not
    uses_hessian: bool = False

    def __init__(self, config: OracleConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        """The oracle's name in its identity (the kind, or the calculator's import path)."""
        return self.config.kind

    def identity_settings(self) -> dict[str, Any]:
        """Return the settings that change the oracle's numbers (empty: the name is enough)."""
        return dict(self.config.kwargs)

    @property
    def identity(self) -> str:
        """``name`` alone, or ``name#<hash of identity_settings>``."""
        settings = self.identity_settings()
        if not settings:
            return self.name
        text = json.dumps(settings, sort_keys=True, default=str).encode()
        return f"{self.name}#{hashlib.sha1(text).hexdigest()[:10]}"

    def check(self, elements: list[str] | None = None) -> None:  # noqa: B027 (optional override)
        """Raise :class:`OracleUnavailableError` when the oracle cannot run here."""

    @abstractmethod
    def single_point(self, structure: Structure) -> SinglePoint:
        """Energy, forces and stress of ``structure``."""

    @abstractmethod
    def relax(self, structure: Structure, fmax: float, max_steps: int) -> Relaxation:
        """Relax positions and cell until the largest force is below ``fmax`` (eV/A).

        Oracles with ``uses_hessian`` also take ``hessian``, the starting Hessian (or ``None``).
        """
