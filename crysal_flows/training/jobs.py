"""Ensemble training: one job per MACE member, gathered into the cycle's ensemble."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from jobflow import Maker

from crysal_flows.config import PriorConfig, TrainingConfig
from crysal_flows.jobs import crysal_job
from crysal_flows.labelling.schemas import TrainingSetDocument
from crysal_flows.models.checkpoint import decode, read_model_file
from crysal_flows.models.prior import prior_identity
from crysal_flows.progress import Progress
from crysal_flows.settings import apply_torch_settings
from crysal_flows.training.schemas import EnsembleDocument, MemberDocument
from crysal_flows.training.train import Frame, train_member

logger = logging.getLogger(__name__)

__all__ = ["TrainMemberMaker", "gather_ensemble", "labels_to_frames", "prior_ensemble"]


def labels_to_frames(training_set: TrainingSetDocument, prior: str | None = None) -> list[Frame]:
    """Turn successful labels into training frames, with the values of the prior ``prior``.

    Raises
    ------
    ValueError
        If a label lacks that prior's values (the training set was gathered without it).
    """
    frames = []
    for label in training_set.labels:
        s = label.structure
        extra = {}
        if prior is not None:
            if label.prior != prior:
                raise ValueError(
                    f"label {label.key[:8]} has no values of the prior {prior} "
                    f"(it has {label.prior}); gather the labels with that prior"
                )
            extra = {
                "prior_energy": float(label.prior_energy),
                "prior_forces": np.asarray(label.prior_forces),
                "prior_stress": np.asarray(label.prior_stress),
            }
        frames.append(
            Frame(
                numbers=np.array([site.specie.Z for site in s]),
                positions=s.cart_coords,
                cell=s.lattice.matrix,
                energy=float(label.energy),
                forces=np.zeros((len(s), 3)) if label.energy_only else np.asarray(label.forces),
                stress=np.zeros((3, 3)) if label.energy_only else np.asarray(label.stress),
                energy_only=label.energy_only,
                **extra,
            )
        )
    return frames


@dataclass
class TrainMemberMaker(Maker):
    """Train one MACE ensemble member (a GPU job on a cluster)."""

    name: str = "train member"
    config: TrainingConfig = field(default_factory=TrainingConfig)

    @crysal_job(data="checkpoint", schema=MemberDocument)
    def make(
        self,
        training_set: TrainingSetDocument,
        cycle: int,
        member: int,
        seed: int,
        previous: MemberDocument | None = None,
        init_model: list[str] | None = None,
    ) -> MemberDocument:
        """Train member ``member`` of cycle ``cycle``.

        From scratch, from ``previous``, or from ``init_model`` (``[path, sha256]`` of an
        exported member file).
        """
        apply_torch_settings()
        init = (previous.checkpoint, previous.sha256) if previous is not None else None
        if init is None and init_model is not None:
            init = read_model_file(init_model[0], sha256=init_model[1])
            logger.info("cycle %d: member %d starts from %s", cycle, member + 1, init_model[0])
        prior = prior_identity(self.config.prior) if self.config.prior else None
        frames = labels_to_frames(training_set, prior)
        tracker: list[Progress] = []

        def progress(done: int, total: int) -> None:
            if not tracker:  # the number of epochs is known once training starts
                tracker.append(
                    Progress(f"cycle {cycle}: training member {member + 1}", total, "epochs")
                )
            if done < total:  # the finished member gets its own line below
                tracker[0].update(done)

        result = train_member(
            frames, self.config, seed=seed, init_checkpoint=init, progress=progress, prior=prior
        )
        model, _ = decode(result.checkpoint, result.sha256)
        n_params = sum(p.numel() for p in model.parameters())
        logger.info(
            "cycle %d: member %d trained on %d structures in %.0f s (%d epochs), RMSE E %.3f "
            "eV/atom, F %.3f eV/A (train)%s",
            cycle,
            member + 1,
            result.n_train,
            result.seconds,
            result.epochs,
            result.train_rmse_energy,
            result.train_rmse_forces,
            ""
            if result.validation_rmse_energy is None
            else f", E {result.validation_rmse_energy:.3f}, "
            f"F {result.validation_rmse_forces:.3f} (held out)",
        )
        return MemberDocument(
            cycle=cycle,
            member=member,
            seed=seed,
            warm_started=init is not None,
            checkpoint=result.checkpoint,
            sha256=result.sha256,
            n_parameters=n_params,
            n_train=result.n_train,
            n_validation=result.n_validation,
            epochs=result.epochs,
            seconds=result.seconds,
            train_rmse_energy=result.train_rmse_energy,
            train_rmse_forces=result.train_rmse_forces,
            validation_rmse_energy=result.validation_rmse_energy,
            validation_rmse_forces=result.validation_rmse_forces,
            lowest_label_energy_per_atom=min(f.energy / len(f.numbers) for f in frames),
        )


@crysal_job(data="checkpoint", schema=EnsembleDocument, gather=True)
def gather_ensemble(
    members: list[MemberDocument | None], cycle: int, prior: PriorConfig | None = None
) -> EnsembleDocument:
    """Collect the members that trained; fails only if fewer than two did.

    With a ``prior``, the members are corrections to it, and the ensemble document names it.
    """
    ok = [m for m in members if m is not None]
    if len(ok) < 2:
        raise RuntimeError(
            f"cycle {cycle}: only {len(ok)} of {len(members)} ensemble members "
            "trained; an ensemble needs at least two"
        )
    if len(ok) < len(members):
        logger.warning(
            "cycle %d: %d of %d members failed to train; going on with %d",
            cycle,
            len(members) - len(ok),
            len(members),
            len(ok),
        )
    return EnsembleDocument(cycle=cycle, members=ok, n_requested=len(members), prior=prior)


@crysal_job(schema=EnsembleDocument)
def prior_ensemble(prior: PriorConfig) -> EnsembleDocument:
    """Return the ensemble of the prior alone (no members): it relaxes the pool before cycle 0."""
    return EnsembleDocument(cycle=-1, members=[], n_requested=0, prior=prior)
