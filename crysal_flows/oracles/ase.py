"""Oracles that are ASE calculators: Stillinger-Weber (Si), CHGNet, any calculator by import path.

Cheap stand-ins for DFT in tests and benchmarks, or a user's own calculator. Relaxations are BFGS
on positions and cell (ASE's ``FrechetCellFilter``), counting every calculator call.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator
from pymatgen.core import Structure

from crysal_flows.oracles.base import Oracle, OracleUnavailableError, Relaxation, SinglePoint
from crysal_flows.utils import atoms_to_structure, structure_to_atoms

__all__ = ["AseOracle", "chgnet_model"]


def _stillinger_weber(kwargs: dict[str, Any]) -> Calculator:
    try:
        from matscipy.calculators.manybody import Manybody
        from matscipy.calculators.manybody.explicit_forms import StillingerWeber
        from matscipy.calculators.manybody.explicit_forms.stillinger_weber import (
            Stillinger_Weber_PRB_31_5262_Si,
        )
    except ImportError as exc:
        raise OracleUnavailableError(
            f"oracle 'stillinger_weber' needs matscipy: pip install matscipy ({exc})"
        ) from exc
    if kwargs:
        raise ValueError(f"oracle 'stillinger_weber' takes no kwargs, got {sorted(kwargs)}")
    return Manybody(**StillingerWeber(Stillinger_Weber_PRB_31_5262_Si))


@functools.lru_cache(maxsize=2)
def chgnet_model(model_name: str | None = None):
    """Return the packaged CHGNet model, loaded once per process (it costs more than a label)."""
    from chgnet.model import CHGNet

    return CHGNet.load(model_name=model_name or "0.3.0", verbose=False)


def _chgnet(kwargs: dict[str, Any]) -> Calculator:
    try:
        from chgnet.model import CHGNetCalculator
    except ImportError as exc:
        raise OracleUnavailableError(
            f"oracle 'chgnet' needs CHGNet: pip install chgnet ({exc})"
        ) from exc
    kwargs = {"use_device": "cpu", **kwargs}
    if "model" not in kwargs:
        kwargs["model"] = chgnet_model(kwargs.pop("model_name", None))
    # the calculator prints "CHGNet will run on cpu", once per label or relaxation
    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNetCalculator(**kwargs)


def import_object(path: str, what: str) -> Any:
    """Return the object at ``'package.module:Name'``; a clear error naming ``what`` otherwise."""
    module_name, _, name = path.partition(":")
    if not name:
        raise ValueError(f"{what} {path!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OracleUnavailableError(f"cannot import {what} module {module_name!r}: {exc}") from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise OracleUnavailableError(f"module {module_name!r} has no {name!r}") from None


_FACTORIES: dict[str, Callable[[dict[str, Any]], Calculator]] = {
    "stillinger_weber": _stillinger_weber,
    "chgnet": _chgnet,
}


class AseOracle(Oracle):
    """An oracle that is an ASE calculator."""

    @property
    def name(self) -> str:
        """The kind, or for kind ``ase`` the calculator's import path."""
        return self.config.calculator if self.config.kind == "ase" else self.config.kind

    def calculator(self) -> Calculator:
        """Build a fresh calculator."""
        if self.config.kind == "ase":
            assert self.config.calculator is not None  # guaranteed by OracleConfig
            return import_object(self.config.calculator, "oracle calculator")(**self.config.kwargs)
        return _FACTORIES[self.config.kind](self.config.kwargs)

    def check(self, elements: list[str] | None = None) -> None:
        """Build the calculator once: an import or keyword error shows before any job runs."""
        self.calculator()

    def single_point(self, structure: Structure) -> SinglePoint:
        """Energy, forces and stress from the calculator."""
        atoms = structure_to_atoms(structure)
        atoms.calc = self.calculator()
        return SinglePoint(
            energy=float(atoms.get_potential_energy()),
            forces=np.asarray(atoms.get_forces(), dtype=float),
            stress=np.asarray(atoms.get_stress(voigt=False), dtype=float),
        )

    uses_hessian = True

    def relax(
        self,
        structure: Structure,
        fmax: float,
        max_steps: int,
        hessian: np.ndarray | None = None,
    ) -> Relaxation:
        """BFGS on positions and cell (``FrechetCellFilter``), counting the calculator's calls.

        ``hessian`` replaces BFGS's starting Hessian (70 eV/A^2 times the identity), in the
        filter's coordinates (``crysal_flows.relaxation.hessian.model_hessian``).
        """
        from ase.filters import FrechetCellFilter
        from ase.optimize import BFGS

        atoms = structure_to_atoms(structure)
        atoms.calc = self.calculator()
        calls = [0]
        original = atoms.calc.calculate

        def counted(*args, **kwargs):
            calls[0] += 1
            return original(*args, **kwargs)

        atoms.calc.calculate = counted
        filt = FrechetCellFilter(atoms)
        opt = BFGS(filt, logfile=None, maxstep=0.2)
        if hessian is not None:
            hessian = np.array(hessian, dtype=float)  # a copy: BFGS updates it in place
            n = 3 * len(filt)
            if hessian.shape != (n, n):
                raise ValueError(f"starting Hessian of shape {hessian.shape}, expected {(n, n)}")
            opt.H0 = hessian
        converged = bool(opt.run(fmax=fmax, steps=max_steps))
        return Relaxation(
            structure=atoms_to_structure(atoms),
            energy=float(atoms.get_potential_energy()),
            n_steps=calls[0],
            converged=converged,
        )
