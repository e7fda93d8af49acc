"""Any atomate2 single-point maker as the oracle of the labels.

atomate2's makers (VASP, CP2K, the force fields, ...) return task documents whose ``output``
holds ``energy`` (eV), ``forces`` (eV/A) and ``stress`` (kBar, positive = compressive).
``Atomate2LabelMaker`` runs the maker's job and turns its task document into this project's
``LabelDocument`` (ASE units), so it can be the ``label_maker`` of a ``CycleMaker``::

    from atomate2.vasp.jobs.core import StaticMaker
    label_maker = Atomate2LabelMaker(static_maker=StaticMaker(), oracle_name="vasp-pbe")

See docs/python.md for a whole search built this way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase.units import GPa
from jobflow import Flow, Maker
from pymatgen.core import Structure

from crysal_flows.jobs import Step, crysal_job, tag
from crysal_flows.labelling.jobs import checked_label, label_key
from crysal_flows.labelling.schemas import LabelDocument

__all__ = ["Atomate2LabelMaker", "task_to_label"]


@crysal_job(schema=LabelDocument, gather=True)
def task_to_label(
    task: Any, structure: Structure, identity: str, max_force: float, **meta: Any
) -> LabelDocument:
    """Turn an atomate2 task document into a label (a failed one if the job did not complete)."""
    meta["key"] = label_key(structure, identity, max_force)
    if task is None:
        return LabelDocument(
            structure=structure,
            oracle=identity,
            success=False,
            error="the atomate2 job did not complete",
            **meta,
        )
    out = task.output if hasattr(task, "output") else task["output"]

    def get(name: str) -> Any:
        return getattr(out, name) if hasattr(out, name) else out[name]

    try:
        energy, forces = float(get("energy")), np.asarray(get("forces"), dtype=float)
        stress = -np.asarray(get("stress"), dtype=float) * 0.1 * GPa  # kBar (+ compressive) -> ASE
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        return LabelDocument(
            structure=structure,
            oracle=identity,
            success=False,
            error=f"no energy, forces and stress in the task document: {exc}",
            **meta,
        )
    return checked_label(structure, identity, energy, forces, stress, max_force, **meta)


@dataclass
class Atomate2LabelMaker(Maker):
    """Label a structure with an atomate2 single-point maker.

    Parameters
    ----------
    static_maker
        The atomate2 maker of the single point (``make(structure)`` returns a job whose output
        is a task document).
    oracle_name
        Name of the oracle in every label's identity; the maker's settings are hashed into it,
        so labels of other settings are never mixed into one training set.
    max_force
        Labels with a force component above this (eV/A) fail, as with every oracle.
    """

    name: str = "oracle single point"
    static_maker: Maker | None = None
    oracle_name: str = "atomate2"
    max_force: float = 50.0

    @property
    def identity(self) -> str:
        """Return ``oracle_name#<hash of the maker's settings>``."""
        settings = self.static_maker.as_dict() if self.static_maker is not None else {}
        settings = {k: v for k, v in settings.items() if k not in ("name", "@version")}
        text = json.dumps(settings, sort_keys=True, default=str).encode()
        return f"{self.oracle_name}#{hashlib.sha1(text).hexdigest()[:10]}"

    def make(
        self,
        structure: Structure,
        cycle: int = 0,
        source_index: int | None = None,
        reason: str = "",
        predicted_energy_per_atom: float | None = None,
        predicted_sigma_energy: float | None = None,
    ) -> Flow:
        """Return the flow of the atomate2 job and its conversion into a ``LabelDocument``."""
        if self.static_maker is None:
            raise ValueError("Atomate2LabelMaker needs a static_maker")
        static = self.static_maker.make(structure)
        label = task_to_label(
            static.output,
            structure,
            self.identity,
            self.max_force,
            cycle=cycle,
            source_index=source_index,
            reason=reason,
            predicted_energy_per_atom=predicted_energy_per_atom,
            predicted_sigma_energy=predicted_sigma_energy,
        )
        label.name = f"{self.name}: to label"
        tag(static, Step.ORACLE_CALCULATION)  # its document is atomate2's, not a label
        return Flow([static, label], output=label.output, name=self.name)
