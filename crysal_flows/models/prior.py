"""A pretrained universal potential under the ensemble (``training.prior``).

The members learn a correction to the prior: each member's energy, forces and stress are the
prior's plus its own. The prior is evaluated once per structure and step, and the same values
serve every member. A MACE model file is evaluated on the whole batch at once; CHGNet and
SevenNet-0 on batches of ``BATCH_SIZE`` structures through their own models (the calculators'
settings still apply); any other ASE calculator structure by structure.
Labels always come from the oracle; the prior never replaces one.
"""

from __future__ import annotations

import functools
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from crysal_flows.config import PriorConfig

__all__ = ["BATCH_SIZE", "Prior", "PriorPrediction", "get_prior", "prior_identity"]

#: structures per model call for CHGNet and SevenNet-0. On one CPU core (48 Si16 candidates,
#: benchmarks/prior_throughput.py, beside the test suite) 8 per call evaluated 1.26x as many
#: structures per second as one by one for both; 16-64 were no better, 1 was slower
BATCH_SIZE = 8


def prior_identity(config: PriorConfig) -> str:
    """Return ``kind#<hash of its settings>``: members trained on one prior need that one."""
    settings = config.model_dump(mode="json", exclude={"kind"})
    text = json.dumps(settings, sort_keys=True, default=str).encode()
    return f"{config.kind}#{hashlib.sha1(text).hexdigest()[:10]}"


class PriorPrediction:
    """The prior on a batch of structures of one composition: arrays in ASE units."""

    def __init__(self, energy: np.ndarray, forces: np.ndarray, stress: np.ndarray) -> None:
        self.energy = energy  # (B,) eV
        self.forces = forces  # (B, N, 3) eV/A
        self.stress = stress  # (B, 3, 3) eV/A^3, positive = tensile


class Prior(ABC):
    """A universal potential evaluated on batches of structures."""

    def __init__(self, config: PriorConfig) -> None:
        self.config = config

    @property
    def identity(self) -> str:
        """Return the prior's identity (see ``prior_identity``)."""
        return prior_identity(self.config)

    @abstractmethod
    def predict(self, atoms_list: Sequence[Atoms]) -> PriorPrediction:
        """Evaluate the prior on structures with the same number of atoms."""


class CalculatorPrior(Prior):
    """A prior that is an ASE calculator, evaluated structure by structure."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__(config)
        self._calc: Calculator | None = None

    def calculator(self) -> Calculator:
        """Return the calculator, built once."""
        if self._calc is None:
            cfg = self.config
            if cfg.kind == "chgnet":
                from chgnet.model import CHGNetCalculator

                from crysal_flows.oracles.ase import chgnet_model

                self._calc = CHGNetCalculator(
                    model=chgnet_model(cfg.model), use_device="cpu", **cfg.kwargs
                )
            elif cfg.kind == "sevennet":
                try:
                    from sevenn.sevennet_calculator import SevenNetCalculator
                except ImportError as exc:
                    raise ImportError(
                        "prior 'sevennet' needs SevenNet: pip install "
                        f"'crysal_flows[sevennet]' ({exc})"
                    ) from exc
                self._calc = SevenNetCalculator(
                    cfg.model or "7net-0", **{"device": "cpu", **cfg.kwargs}
                )
            else:
                from crysal_flows.oracles.ase import import_object

                assert cfg.calculator is not None  # guaranteed by PriorConfig
                self._calc = import_object(cfg.calculator, "prior calculator")(**cfg.kwargs)
        return self._calc

    def predict(self, atoms_list: Sequence[Atoms]) -> PriorPrediction:
        """Evaluate each structure with the calculator."""
        calc = self.calculator()
        e, f, s = [], [], []
        for atoms in atoms_list:
            a = atoms.copy()
            a.calc = calc
            e.append(float(a.get_potential_energy()))
            f.append(np.asarray(a.get_forces(), dtype=float))
            s.append(np.asarray(a.get_stress(voigt=False), dtype=float))
        return PriorPrediction(np.array(e), np.stack(f), np.stack(s))


class MacePrior(Prior):
    """A MACE model file (a foundation model, or any saved MACE model), evaluated on batches."""

    def __init__(self, config: PriorConfig, device: str = "cpu") -> None:
        super().__init__(config)
        import torch

        from crysal_flows.models import mace as _mace  # noqa: F401  (mace before e3nn)

        model = torch.load(config.model, map_location=device, weights_only=False)
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.dtype = next(self.model.parameters()).dtype
        self.z_table = [int(z) for z in self.model.atomic_numbers]
        self.r_max = float(self.model.r_max)

    def predict(self, atoms_list: Sequence[Atoms]) -> PriorPrediction:
        """Evaluate the whole batch in one call of the model."""
        import torch

        from crysal_flows.models.mace import graph_batch

        batch = graph_batch(atoms_list, self.z_table, self.r_max, device=self.device)
        batch = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in batch.items()}
        batch["head"] = torch.zeros(len(atoms_list), dtype=torch.long, device=self.device)
        out = self.model(batch, training=False, compute_force=True, compute_stress=True)
        n, b = len(atoms_list[0]), len(atoms_list)
        return PriorPrediction(
            out["energy"].detach().cpu().double().numpy(),
            out["forces"].detach().cpu().double().numpy().reshape(b, n, 3),
            out["stress"].detach().cpu().double().numpy().reshape(b, 3, 3),
        )


class ChgnetPrior(CalculatorPrior):
    """CHGNet on batches of graphs: the calculator's model and its stress conversion."""

    def predict(self, atoms_list: Sequence[Atoms]) -> PriorPrediction:
        """Evaluate ``BATCH_SIZE`` structures per model call."""
        from pymatgen.io.ase import AseAtomsAdaptor

        calc = self.calculator()
        model = calc.model
        graphs = [model.graph_converter(AseAtomsAdaptor.get_structure(a)) for a in atoms_list]
        preds = model.predict_graph(graphs, task="efs", batch_size=BATCH_SIZE)
        preds = [preds] if isinstance(preds, dict) else preds
        scale = [len(a) if model.is_intensive else 1 for a in atoms_list]
        return PriorPrediction(
            np.array([float(p["e"]) * k for p, k in zip(preds, scale, strict=True)]),
            np.stack([np.asarray(p["f"], dtype=float) for p in preds]),
            np.stack([np.asarray(p["s"], dtype=float) * calc.stress_weight for p in preds]),
        )


class SevennetPrior(CalculatorPrior):
    """SevenNet-0 on batches of graphs: the calculator's model, switched to batched input."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__(config)
        self._batched = None

    def predict(self, atoms_list: Sequence[Atoms]) -> PriorPrediction:
        """Evaluate ``BATCH_SIZE`` structures per model call (a TorchScript file: one by one)."""
        calc = self.calculator()
        if self.config.kwargs.get("file_type", "checkpoint") != "checkpoint":
            return super().predict(atoms_list)
        import copy

        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        if self._batched is None:
            self._batched = copy.deepcopy(calc.model)  # the calculator keeps unbatched input
            self._batched.set_is_batch_data(True)
        e, f, s = [], [], []
        for start in range(0, len(atoms_list), BATCH_SIZE):
            chunk = atoms_list[start : start + BATCH_SIZE]
            graphs = [
                AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, calc.cutoff))
                for a in chunk
            ]
            out = self._batched(Batch.from_data_list(graphs).to(calc.device))
            e.append(out[KEY.PRED_TOTAL_ENERGY].detach().cpu().double().numpy().reshape(-1))
            forces = out[KEY.PRED_FORCE].detach().cpu().double().numpy()
            f.extend(np.split(forces, np.cumsum([len(a) for a in chunk])[:-1]))
            # SevenNet's stress is (xx, yy, zz, xy, yz, zx), compressive positive
            v = -out[KEY.PRED_STRESS].detach().cpu().double().numpy().reshape(-1, 6)
            s.extend(
                np.array([[a[0], a[3], a[5]], [a[3], a[1], a[4]], [a[5], a[4], a[2]]]) for a in v
            )
        return PriorPrediction(np.concatenate(e), np.stack(f), np.stack(s))


@functools.lru_cache(maxsize=4)
def _cached(text: str, device: str) -> Prior:
    config = PriorConfig.model_validate_json(text)
    kinds = {"chgnet": ChgnetPrior, "sevennet": SevennetPrior}
    if config.kind == "mace":
        return MacePrior(config, device)
    return kinds.get(config.kind, CalculatorPrior)(config)


def get_prior(config: PriorConfig, device: str = "cpu") -> Prior:
    """Return the prior of ``config``, loaded once per process."""
    return _cached(config.model_dump_json(), device)
