"""Training one MACE ensemble member on oracle labels (energy, forces, stress)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crysal_flows.config import TrainingConfig
from crysal_flows.models.checkpoint import decode, encode
from crysal_flows.models.mace import (
    DTYPE,
    atomic_energies,
    average_neighbours,
    build_model,
    collate,
    graph_arrays,
)

logger = logging.getLogger(__name__)

__all__ = ["Frame", "TrainResult", "filter_outliers", "train_member"]


@dataclass
class Frame:
    """One labelled structure in plain arrays (ASE conventions: eV, eV/A, eV/A^3)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray  # 3x3
    energy_only: bool = False  # forces absurd: a lower bound on the energy, nothing else fitted
    # the prior's values on the structure (training.prior): the member learns the difference
    prior_energy: float = 0.0
    prior_forces: np.ndarray | None = None
    prior_stress: np.ndarray | None = None

    @property
    def residual(self) -> tuple[float, np.ndarray, np.ndarray]:
        """Return energy, forces and stress minus the prior's (the label itself without one)."""
        if self.prior_forces is None:
            return self.energy, np.asarray(self.forces), np.asarray(self.stress)
        return (
            self.energy - self.prior_energy,
            np.asarray(self.forces) - self.prior_forces,
            np.asarray(self.stress) - self.prior_stress,
        )

    def to_atoms(self):
        """Return the structure as ASE atoms."""
        from ase import Atoms

        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=True)


@dataclass
class TrainResult:
    """A trained member and its errors."""

    checkpoint: str
    sha256: str
    hyper: dict
    n_train: int
    n_validation: int
    epochs: int
    seconds: float
    train_rmse_energy: float  # eV/atom
    train_rmse_forces: float  # eV/A
    validation_rmse_energy: float | None
    validation_rmse_forces: float | None


def filter_outliers(frames: Sequence[Frame], n_sigma: float) -> list[Frame]:
    """Drop frames whose largest force is above mean + n_sigma * std (as the reference method)."""
    if len(frames) < 5:
        return list(frames)
    fmax = np.array([np.abs(f.forces).max() for f in frames])
    limit = fmax.mean() + n_sigma * fmax.std()
    return [f for f, m in zip(frames, fmax, strict=True) if m <= limit]


def _targets(frames: Sequence[Frame], ceiling: float) -> list[dict[str, torch.Tensor]]:
    """Return the training targets; frames above ``ceiling`` (eV/atom) are bounds at it.

    With a prior, the targets are the differences to the prior (a bound too: the prior plus the
    member must not fall below the ceiling).
    """
    out = []
    for f in frames:
        n = len(f.numbers)
        above = f.energy / n > ceiling
        bound = above or f.energy_only
        energy, forces, stress = f.residual
        if above:
            energy = ceiling * n - f.prior_energy
        out.append(
            {
                "energy": torch.tensor([energy], dtype=DTYPE),
                "forces": torch.tensor(forces, dtype=DTYPE),
                "stress": torch.tensor(np.asarray(stress).reshape(1, 3, 3), dtype=DTYPE),
                "n_atoms": torch.tensor([n], dtype=DTYPE),
                "volume_per_atom": torch.tensor([abs(np.linalg.det(f.cell)) / n], dtype=DTYPE),
                "bound": torch.tensor([bound], dtype=torch.bool),
            }
        )
    return out


def _evaluate(
    model: torch.nn.Module,
    graphs: list[dict],
    targets: list[dict],
    idx: Sequence[int],
    batch_size: int,
) -> tuple[float, float]:
    """RMSE of energy per atom and of force components on frames ``idx`` (lower bounds left out)."""
    se_e, se_f, n_e, n_f = 0.0, 0.0, 0, 0
    idx = [i for i in idx if not bool(targets[i]["bound"])]
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        batch = collate([graphs[i] for i in chunk])
        out = model(batch, training=False, compute_force=True, compute_stress=False)
        t = [targets[i] for i in chunk]
        e_ref = torch.cat([x["energy"] for x in t])
        nat = torch.cat([x["n_atoms"] for x in t])
        se_e += float((((out["energy"].detach() - e_ref) / nat) ** 2).sum())
        se_f += float(((out["forces"].detach() - torch.cat([x["forces"] for x in t])) ** 2).sum())
        n_e += len(chunk)
        n_f += int(nat.sum()) * 3
    return math.sqrt(se_e / max(n_e, 1)), math.sqrt(se_f / max(n_f, 1))


def _split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Training and held-out indices: mace's random split, drawn from each member's own seed.

    (The reference implementation shares one split between all members, which makes the members
    less independent.) No held-out frames when ``fraction`` is 0 or there are fewer than 2 frames.
    """
    if fraction <= 0 or n < 2:
        return list(range(n)), []
    import tempfile

    from mace.data import random_train_valid_split

    with tempfile.TemporaryDirectory() as tmp:  # it writes large splits' indices to a file
        return random_train_valid_split(list(range(n)), fraction, seed, work_dir=tmp)


def train_member(
    frames: Sequence[Frame],
    config: TrainingConfig,
    seed: int,
    init_checkpoint: tuple[str, str] | None = None,
    z_table: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    prior: str | None = None,
) -> TrainResult:
    """Train one ensemble member.

    Each member draws its own validation split from ``seed`` (see ``_split``).

    Parameters
    ----------
    frames
        Labelled structures; outliers are filtered here, and labels more than
        ``config.max_energy_above_min`` eV/atom above the lowest are lower bounds on the energy.
    init_checkpoint
        ``(checkpoint, sha256)`` of a previous member to warm-start from; trained for
        ``config.warm_start_epochs`` instead of ``config.epochs``.
    z_table
        Atomic numbers the model knows; default: those in ``frames``.
    progress
        Called as ``progress(epochs_done, epochs)`` after every epoch.
    prior
        Identity of the prior the frames carry values of: the member learns the difference, and
        its hyper-parameters name the prior (it is only ever used on top of it).
    """
    t0 = time.perf_counter()
    per_atom = np.array([f.energy / len(f.numbers) for f in frames])
    ceiling = float(per_atom.min()) + config.max_energy_above_min
    frames = filter_outliers(frames, config.outlier_sigma)
    n_fit = sum(f.energy / len(f.numbers) <= ceiling and not f.energy_only for f in frames)
    if n_fit < 2:
        raise ValueError(
            f"cannot train on {n_fit} labelled structure(s) within "
            f"{config.max_energy_above_min} eV/atom of the lowest; need at least 2"
        )
    rng = np.random.default_rng(seed)
    train_idx, val_idx = _split(len(frames), config.validation_fraction, seed)

    if init_checkpoint is not None:
        model, hyper = decode(*init_checkpoint)
        hyper = {**hyper, "seed": seed}
        epochs = config.warm_start_epochs
    else:
        z = (
            sorted({int(x) for f in frames for x in f.numbers})
            if z_table is None
            else list(z_table)
        )

        # reference energies and scales from the frames that are fitted, not the lower bounds
        def fitted(f: Frame) -> bool:
            return f.energy / len(f.numbers) <= ceiling and not f.energy_only

        train_frames = [frames[i] for i in train_idx if fitted(frames[i])]
        train_frames = train_frames or [f for f in frames if fitted(f)]
        e0 = atomic_energies(
            [f.numbers for f in train_frames], [f.residual[0] for f in train_frames], z
        )
        graphs0 = [graph_arrays(f.to_atoms(), z, config.r_max) for f in train_frames]
        force_rms = float(
            np.sqrt(np.mean(np.concatenate([f.residual[1].ravel() for f in train_frames]) ** 2))
        )
        hyper = {
            **config.model_dump(
                include={
                    "r_max",
                    "channels",
                    "max_l",
                    "max_ell",
                    "num_interactions",
                    "correlation",
                    "num_bessel",
                    "radial_mlp",
                    "pair_repulsion",
                }
            ),
            "z_table": z,
            "atomic_energies": e0,
            "avg_num_neighbors": average_neighbours(graphs0),
            "scale": max(force_rms, 0.1),
            "shift": 0.0,
            "seed": seed,
            "prior": prior,
        }
        model = build_model(hyper)
        epochs = config.epochs

    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    min_steps = config.min_steps // 2 if init_checkpoint is not None else config.min_steps
    epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    graphs = [graph_arrays(f.to_atoms(), hyper["z_table"], hyper["r_max"]) for f in frames]
    targets = _targets(frames, ceiling)
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs, eta_min=config.learning_rate * 0.05
    )
    bs = config.batch_size
    # held-out frames that are fitted: lower bounds say nothing about which state fits best (an
    # all-bounds split would score 0 and freeze the first state evaluated)
    fitted_val = [i for i in val_idx if not bool(targets[i]["bound"])]
    best_state, best_loss = None, math.inf
    for epoch in range(epochs):
        perm = [train_idx[k] for k in rng.permutation(len(train_idx))]
        for start in range(0, len(perm), bs):
            chunk = perm[start : start + bs]
            batch = collate([graphs[i] for i in chunk])
            t = [targets[i] for i in chunk]
            out = model(batch, training=True, compute_force=True, compute_stress=True)
            nat = torch.cat([x["n_atoms"] for x in t])
            bound = torch.cat([x["bound"] for x in t])
            e_err = (out["energy"] - torch.cat([x["energy"] for x in t])) / nat
            # lower bounds: only a prediction below the ceiling is an error
            e_err = torch.where(bound, torch.clamp(e_err, max=0.0), e_err)
            fitted = (~bound).to(DTYPE)
            f_err = (out["forces"] - torch.cat([x["forces"] for x in t])) * fitted[batch["batch"]][
                :, None
            ]
            s_err = (out["stress"] - torch.cat([x["stress"] for x in t])) * fitted[:, None, None]
            # the virial per atom: the cell's generalised force that the relaxation follows
            v_err = s_err * torch.cat([x["volume_per_atom"] for x in t])[:, None, None]
            loss = (
                config.energy_weight * (e_err**2).mean()
                + config.forces_weight * (f_err**2).mean()
                + config.virial_weight * (v_err**2).mean()
                + config.stress_weight * (s_err**2).mean()
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
        scheduler.step()
        if progress is not None:
            progress(epoch + 1, epochs)
        if fitted_val and (epoch >= epochs // 2) and (epoch % 5 == 4 or epoch == epochs - 1):
            ve, vf = _evaluate(model, graphs, targets, val_idx, bs)
            score = config.energy_weight * ve**2 + config.forces_weight * vf**2
            if score < best_loss:
                best_loss = score
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    tr_e, tr_f = _evaluate(model, graphs, targets, train_idx, bs)
    va_e, va_f = _evaluate(model, graphs, targets, fitted_val, bs) if fitted_val else (None, None)
    checkpoint, sha = encode(model, hyper)
    return TrainResult(
        checkpoint=checkpoint,
        sha256=sha,
        hyper=hyper,
        n_train=len(train_idx),
        n_validation=len(val_idx),
        epochs=epochs,
        seconds=time.perf_counter() - t0,
        train_rmse_energy=tr_e,
        train_rmse_forces=tr_f,
        validation_rmse_energy=va_e,
        validation_rmse_forces=va_f,
    )
