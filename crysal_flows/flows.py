"""The active-learning search as a dynamic jobflow flow; this module only wires jobs.

``CrystalSearchMaker`` makes ``generate pool -> cycle 0``. ``CycleMaker.make`` makes each cycle:

    select -> label (fans out, one oracle job per structure) -> gather labels
           -> train member 1..M -> gather ensemble -> relax shard 1..S -> merge shards -> analyse

``CycleMaker.analyse`` hands the merged pool to :func:`crysal_flows.analysis.summary.analyse_cycle`,
which clusters it and applies the stopping rule, and adds what follows: the next cycle (from
``self.make`` with the next state) or, once converged or at ``max_cycles``, the validation flow.
Every job carries ``metadata.crysal_run``, ``crysal_step`` and ``crysal_cycle``.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from jobflow import Flow, Maker, OutputReference, Response

from crysal_flows.analysis.schemas import CycleSummary, ResumePoint
from crysal_flows.analysis.summary import analyse_cycle, cycle_line
from crysal_flows.config import ConfigError, SearchConfig
from crysal_flows.generation.jobs import PoolMaker
from crysal_flows.generation.schemas import PoolDocument
from crysal_flows.jobs import Step, crysal_job, tag
from crysal_flows.labelling.jobs import OracleStaticMaker, gather_labels, label_structures
from crysal_flows.labelling.schemas import TrainingSetDocument
from crysal_flows.models.checkpoint import check_model_files
from crysal_flows.refs import StoredOutput
from crysal_flows.relaxation.jobs import RelaxShardMaker, merge_shards, shard_indices
from crysal_flows.routing import route
from crysal_flows.schemas import SearchState
from crysal_flows.selection.jobs import select_structures
from crysal_flows.settings import SETTINGS, WorkersConfig
from crysal_flows.training.jobs import TrainMemberMaker, gather_ensemble, prior_ensemble
from crysal_flows.training.schemas import EnsembleDocument
from crysal_flows.utils import parse_composition
from crysal_flows.validation.jobs import OracleRelaxMaker, validate_minima

logger = logging.getLogger(__name__)

__all__ = ["CrystalSearchMaker", "CycleMaker", "initial_state", "new_run_id", "tag_run"]


def new_run_id() -> str:
    """Return a fresh run identifier."""
    return uuid.uuid4().hex[:12]


def initial_state(config: SearchConfig, run_id: str, started: float | None = None) -> SearchState:
    """Return the state cycle 0 starts from, with ``training.init_models`` checked and pinned.

    Raises
    ------
    ConfigError
        If the model files cannot be read or do not cover the composition's elements.
    """
    init: list[tuple[str, str]] = []
    if config.training.init_models:
        try:
            init = check_model_files(
                config.training.init_models, sorted(parse_composition(config.composition))
            )
        except ValueError as exc:
            raise ConfigError(f"training.init_models: {exc}") from None
    return SearchState(run_id=run_id, started=started, init_models=init)


@dataclass
class CycleMaker(Maker):
    """One active-learning cycle; ``analyse`` adds the next one.

    Parameters
    ----------
    config
        The search configuration.
    label_maker, train_maker, relax_maker, validation_maker
        Sub-makers, built from ``config`` unless given; swap ``label_maker`` and
        ``validation_maker`` for other oracles (e.g. atomate2 DFT makers wrapped to return
        ``LabelDocument`` / ``OracleRelaxDocument``).
    workers
        FireWorks worker categories of the jobs (default: the machine settings').
    """

    name: str = "crysal cycle"
    config: SearchConfig | None = None
    label_maker: Maker | None = None
    train_maker: Maker | None = None
    relax_maker: Maker | None = None
    validation_maker: Maker | None = None
    workers: WorkersConfig = field(default_factory=lambda: SETTINGS.workers)

    def __post_init__(self) -> None:
        if self.config is None:
            raise ValueError("CycleMaker needs a SearchConfig")
        cfg = self.config
        if self.label_maker is None:
            self.label_maker = OracleStaticMaker(
                oracle=cfg.oracle, max_force=cfg.training.max_force
            )
        if self.train_maker is None:
            self.train_maker = TrainMemberMaker(config=cfg.training)
        if self.relax_maker is None:
            self.relax_maker = RelaxShardMaker(config=cfg.relaxation)
        if self.validation_maker is None:
            self.validation_maker = OracleRelaxMaker(
                oracle=cfg.oracle,
                fmax=cfg.validation.fmax,
                max_steps=cfg.validation.max_steps,
                symmetry_rattle=cfg.validation.symmetry_rattle,
                symmetry_window=cfg.validation.symmetry_window,
            )

    def make(
        self,
        pool: OutputReference | StoredOutput,
        training_set: StoredOutput | None = None,
        ensemble: StoredOutput | None = None,
        state: SearchState | None = None,
        n_previous_members: int = 0,
    ) -> Flow:
        """Wire one cycle.

        Parameters
        ----------
        pool
            Reference to the pool (``PoolDocument``) as the previous cycle left it: an
            ``OutputReference`` in cycle 0, a ``StoredOutput`` later (see ``crysal_flows.refs``).
        training_set, ensemble
            The previous cycle's training set and ensemble (None in cycle 0).
        state
            The small state carried between cycles.
        n_previous_members
            Members of the previous ensemble (for warm starts).
        """
        cfg, workers = self.config, self.workers
        state = state or SearchState()
        c = state.cycle
        select = select_structures(pool, ensemble, c, cfg.selection, cfg.seed, training_set)
        select.name = f"select (cycle {c})"
        label = label_structures(select.output, self.label_maker, c, workers)
        label.name = f"label (cycle {c})"
        gather = gather_labels(label.output, training_set, c, cfg.training.prior)
        gather.name = f"gather labels (cycle {c})"
        n_members = cfg.training.n_members
        # cycle 0 may start from exported models, pinned by checksum in the state
        init = state.init_models if c == 0 else []
        warm = cfg.training.warm_start and ensemble is not None and n_previous_members > 0
        members = []
        for k in range(n_members):
            prev = ensemble["members"][k % n_previous_members] if warm else None
            seed = int(np.random.default_rng([cfg.seed, c, k]).integers(2**31))
            kwargs = {"init_model": list(init[k % len(init)])} if init else {}
            j = self.train_maker.make(
                gather.output, cycle=c, member=k, seed=seed, previous=prev, **kwargs
            )
            j.name = f"train member {k + 1}/{n_members} (cycle {c})"
            members.append(j)
        ens = gather_ensemble([j.output for j in members], c, cfg.training.prior)
        ens.name = f"gather ensemble (cycle {c})"
        n_shards = len(shard_indices(cfg.pool.size, cfg.relaxation.n_shards))
        shards = []
        for k in range(n_shards):
            j = self.relax_maker.make(pool, ens.output, cycle=c, shard=k, n_shards=n_shards)
            j.name = f"relax shard {k + 1}/{n_shards} (cycle {c})"
            shards.append(j)
        merged = merge_shards([j.output for j in shards], pool, c)
        merged.name = f"merge shards (cycle {c})"
        # cycle 0 on a prior compares with the pool as the prior relaxed it
        start = pool if c == 0 and cfg.training.prior is not None else None
        analyse = self.analyse(
            merged.output,
            gather.output,
            ens.output,
            state,
            {"pool": merged.uuid, "training_set": gather.uuid, "ensemble": ens.uuid},
            start,
        )
        analyse.name = f"analyse (cycle {c})"
        for jobs, step in (
            (select, Step.SELECT),
            (label, Step.LABEL),
            (gather, Step.GATHER_LABELS),
            (members, Step.TRAIN_MEMBER),
            (ens, Step.GATHER_ENSEMBLE),
            (shards, Step.RELAX_SHARD),
            (merged, Step.MERGE_SHARDS),
            (analyse, Step.ANALYSE),
        ):
            tag(jobs, step, c)
        # what the cycle will do, for 'crysal status' while it runs
        n_labels = (
            cfg.selection.n_labels
            if c
            else (cfg.selection.n_labels_first or cfg.selection.n_labels)
        )
        select.metadata["crysal_plan"] = {
            "labels": n_labels,
            "members": n_members,
            "shards": n_shards,
        }
        route([select, *members, *shards], "ml", workers)
        route([label, gather, ens, merged, analyse], "driver", workers)
        return Flow(
            [select, label, gather, *members, ens, *shards, merged, analyse],
            output=analyse.output,
            name=f"cycle {c}",
        )

    @crysal_job(schema=CycleSummary)
    def analyse(
        self,
        pool: PoolDocument,
        training_set: TrainingSetDocument,
        ensemble: EnsembleDocument,
        state: SearchState,
        uuids: dict[str, str],
        start_pool: PoolDocument | None = None,
    ) -> Response:
        """Summarise the cycle and add what follows: the next cycle, or validation."""
        from jobflow import CURRENT_JOB

        summary = analyse_cycle(
            pool,
            training_set,
            ensemble,
            state,
            self.config,
            CURRENT_JOB.job.uuid,
            uuids,
            start_pool,
        )
        logger.info(cycle_line(summary))
        return Response(output=summary, addition=self.follow_up(summary.resume, summary.stop))

    def start(self, pool: OutputReference | StoredOutput, state: SearchState) -> Flow:
        """Return cycle 0, after a relaxation of the pool with the prior alone if there is one.

        That relaxation is the universal-potential prescreen; cycle 0 then labels the low-energy
        end of it (not random candidates), and the prior's error on those labels is the first
        prediction error the stopping rule sees.
        """
        cfg, prior = self.config, self.config.training.prior
        if prior is None:
            return self.make(pool, state=state)
        alone = prior_ensemble(prior)
        alone.name = "prior ensemble"
        n_shards = len(shard_indices(cfg.pool.size, cfg.relaxation.n_shards))
        shards = []
        for k in range(n_shards):
            j = self.relax_maker.make(pool, alone.output, cycle=-1, shard=k, n_shards=n_shards)
            j.name = f"relax shard {k + 1}/{n_shards} (prior)"
            shards.append(j)
        merged = merge_shards([j.output for j in shards], pool, -1)
        merged.name = "merge shards (prior)"
        tag(alone, Step.GATHER_ENSEMBLE, -1)
        tag(shards, Step.RELAX_SHARD, -1)
        tag(merged, Step.MERGE_SHARDS, -1)
        route(shards, "ml", self.workers)
        route([alone, merged], "driver", self.workers)
        first = self.make(merged.output, ensemble=alone.output, state=state)
        return Flow([alone, *shards, merged, first], output=first.output, name="prior and cycle 0")

    def follow_up(self, resume: ResumePoint, stop: bool) -> Flow:
        """Return the flow after a finished cycle: the next cycle, or validation and the report.

        The analysis job calls this, and so does a resumed run (``crysal_flows.resume``).
        """
        cfg, state = self.config, resume.next_state
        if stop:
            follow = validate_minima(
                StoredOutput(uuid=resume.pool),
                StoredOutput(uuid=state.summaries[-1]),
                state.summaries,
                self.validation_maker,
                cfg.validation.n_structures,
                {"run_id": state.run_id, "name": cfg.name, "composition": cfg.composition},
                cfg.references,
                state.started,
                self.workers,
                ensemble_uuid=resume.ensemble,
                hessian=cfg.validation.hessian,
            )
            follow.name = "validate minima"
            tag(follow, Step.VALIDATE)
            route(follow, "driver", self.workers)
            return Flow([follow], name="validation")
        return self.make(
            StoredOutput(uuid=resume.pool),
            StoredOutput(uuid=resume.training_set),
            StoredOutput(uuid=resume.ensemble),
            state,
            n_previous_members=resume.n_members,
        )


@dataclass
class CrystalSearchMaker(Maker):
    """The whole search: generate the pool, then cycles until converged, then validation."""

    name: str = "crysal search"
    config: SearchConfig | None = None
    cycle_maker: CycleMaker | None = None
    pool_maker: Maker | None = None

    def make(
        self,
        config: SearchConfig | None = None,
        run_id: str | None = None,
        started: float | None = None,
    ) -> Flow:
        """Make the flow of a search (``config`` overrides the maker's).

        Parameters
        ----------
        run_id
            Identifier of the run (default: a new one); every job's ``metadata.crysal_run``.
        started
            When the run started (default: now), for the report's wall time.
        """
        cfg = config or self.config
        if cfg is None:
            raise ValueError("CrystalSearchMaker needs a SearchConfig")
        run_id = run_id or new_run_id()
        state = initial_state(cfg, run_id, time.time() if started is None else started)
        cycle_maker = self.cycle_maker or CycleMaker(config=cfg)
        pool_maker = self.pool_maker or PoolMaker(config=cfg.pool)
        pool = pool_maker.make(cfg.composition, seed=cfg.seed)
        pool.name = "generate pool"
        tag(pool, Step.POOL)
        route(pool, "driver", cycle_maker.workers)
        first = cycle_maker.start(pool.output, state)
        # the run's name first: FireWorks' web GUI cuts long workflow names short
        flow = Flow(
            [pool, first],
            output=first.output,
            name=f"{cfg.name} ({cfg.composition}) {self.name} {run_id}",
        )
        tag_run(flow, run_id, cfg.name)
        return flow


def tag_run(flow: Flow, run_id: str, name: str) -> None:
    """Put the run's id and name in every job's metadata, also of jobs added at run time."""
    flow.update_metadata({"crysal_run": run_id, "crysal_name": name}, dynamic=True)
