"""The active-learning search as a dynamic jobflow flow.

``CrystalSearchMaker`` makes ``generate pool -> cycle 0``. Each cycle is made by ``CycleMaker.make``:

    select -> label (fans out, one oracle job per structure) -> gather labels
           -> train member 1..M -> gather ensemble -> relax shard 1..S -> merge shards -> analyse

``CycleMaker.analyse`` looks at the merged pool, clusters its low-energy end and applies the
stopping criterion; it returns a ``Response`` whose ``addition`` is the next cycle (from
``self.make`` with the next state) or, once converged or at ``max_cycles``, the validation flow.
Flow makers only wire jobs; every look at a value happens inside a job.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass

import numpy as np
from jobflow import Flow, Maker, OutputReference, Response

from crysal_flows.analysis.clustering import cluster_low_energy
from crysal_flows.analysis.schemas import MAX_STORED_ENERGIES, ClusterDocument, CycleSummary
from crysal_flows.config import SearchConfig
from crysal_flows.generation.jobs import PoolMaker
from crysal_flows.generation.schemas import PoolDocument
from crysal_flows.labelling.jobs import OracleStaticMaker, gather_labels, label_structures
from crysal_flows.labelling.schemas import TrainingSetDocument
from crysal_flows.jobs import crysal_job
from crysal_flows.refs import StoredOutput
from crysal_flows.relaxation.jobs import RelaxShardMaker, merge_shards, shard_indices
from crysal_flows.routing import route
from crysal_flows.schemas import SearchState
from crysal_flows.selection.jobs import select_structures
from crysal_flows.training.jobs import TrainMemberMaker, gather_ensemble
from crysal_flows.training.models import check_model_files
from crysal_flows.training.schemas import EnsembleDocument
from crysal_flows.utils import parse_composition
from crysal_flows.validation.jobs import OracleRelaxMaker, space_group, validate_minima

logger = logging.getLogger(__name__)

__all__ = ["CrystalSearchMaker", "CycleMaker", "tag_run"]


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
        ``LabelDocument``).
    run_id
        Identifier of the search run, stored with every summary and the report.
    """

    name: str = "crysal cycle"
    config: SearchConfig | None = None
    label_maker: Maker | None = None
    train_maker: Maker | None = None
    relax_maker: Maker | None = None
    validation_maker: Maker | None = None
    run_id: str = ""
    started: float | None = None

    def __post_init__(self) -> None:
        if self.config is None:
            raise ValueError("CycleMaker needs a SearchConfig")
        cfg = self.config
        if self.label_maker is None:
            self.label_maker = OracleStaticMaker(oracle=cfg.oracle, max_force=cfg.training.max_force)
        if self.train_maker is None:
            self.train_maker = TrainMemberMaker(config=cfg.training)
        if self.relax_maker is None:
            self.relax_maker = RelaxShardMaker(config=cfg.relaxation)
        if self.validation_maker is None:
            self.validation_maker = OracleRelaxMaker(oracle=cfg.oracle, fmax=cfg.validation.fmax,
                                                     max_steps=cfg.validation.max_steps)
        if not self.run_id:
            self.run_id = uuid.uuid4().hex[:12]

    def make(self, pool: OutputReference | StoredOutput,
             training_set: StoredOutput | None = None, ensemble: StoredOutput | None = None,
             state: SearchState | None = None,
             n_previous_members: int = 0) -> Flow:
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
        cfg = self.config
        state = state or SearchState()
        c = state.cycle
        select = select_structures(pool, ensemble, c, cfg.selection, cfg.seed)
        select.name = f"select (cycle {c})"
        label = label_structures(select.output, self.label_maker, c, cfg.workers)
        label.name = f"label (cycle {c})"
        gather = gather_labels(label.output, training_set, c)
        gather.name = f"gather labels (cycle {c})"
        n_members = cfg.training.n_members
        # cycle 0 may start from exported models (files checked now, their checksums pinned)
        init = []
        if ensemble is None and cfg.training.init_models:
            init = check_model_files(cfg.training.init_models,
                                     sorted(parse_composition(cfg.composition)))
        members = []
        for k in range(n_members):
            warm = cfg.training.warm_start and ensemble is not None and n_previous_members > 0
            prev = ensemble["members"][k % n_previous_members] if warm else None
            seed = int(np.random.default_rng([cfg.seed, c, k]).integers(2**31))
            kwargs = {"init_model": list(init[k % len(init)])} if init else {}
            j = self.train_maker.make(gather.output, cycle=c, member=k, seed=seed, previous=prev,
                                      **kwargs)
            j.name = f"train member {k + 1}/{n_members} (cycle {c})"
            members.append(j)
        ens = gather_ensemble([j.output for j in members], c)
        ens.name = f"gather ensemble (cycle {c})"
        n_shards = len(shard_indices(cfg.pool.size, cfg.relaxation.n_shards))
        shards = []
        for k in range(n_shards):
            j = self.relax_maker.make(pool, ens.output, cycle=c, shard=k, n_shards=n_shards)
            j.name = f"relax shard {k + 1}/{n_shards} (cycle {c})"
            shards.append(j)
        merged = merge_shards([j.output for j in shards], pool, c)
        merged.name = f"merge shards (cycle {c})"
        analyse = self.analyse(merged.output, gather.output, ens.output, state,
                               {"pool": merged.uuid, "training_set": gather.uuid,
                                "ensemble": ens.uuid})
        analyse.name = f"analyse (cycle {c})"
        route([select, *members, *shards], "ml", cfg.workers)
        route([label, gather, ens, merged, analyse], "driver", cfg.workers)
        flow = Flow([select, label, gather, *members, ens, *shards, merged, analyse],
                    output=analyse.output, name=f"cycle {c}")
        return flow

    @crysal_job(schema=CycleSummary)
    def analyse(self, pool: PoolDocument, training_set: TrainingSetDocument,
                ensemble: EnsembleDocument, state: SearchState, uuids: dict[str, str]) -> Response:
        """Cluster the pool, apply the stopping criterion and add the next cycle or validation."""
        from jobflow import CURRENT_JOB

        cfg, an = self.config, self.config.analysis
        c = state.cycle
        clusters = cluster_low_energy(pool.candidates, an.energy_window,
                                      an.cluster_energy_tolerance, an.cluster_fingerprint_tolerance)
        by_index = {cand.index: cand for cand in pool.candidates}
        cluster_docs = [
            ClusterDocument(rank=r, representative=cl.representative,
                            energy_per_atom=cl.energy_per_atom, size=len(cl.members),
                            reliable=cl.reliable,
                            space_group=space_group(by_index[cl.representative].structure)[0])
            for r, cl in enumerate(clusters[:max(an.n_top_clusters, cfg.validation.n_structures,
                                                  10)], start=1)
        ]
        top = [cl.energy_per_atom for cl in clusters[:an.n_top_clusters]]
        change = None
        if state.history and state.history[-1] and top:
            prev = state.history[-1]
            n = min(len(prev), len(top))
            change = float(max(abs(a - b) for a, b in zip(prev[:n], top[:n], strict=True)))
        mae = training_set.prediction_mae
        reasons = []
        stable = change is not None and change <= an.energy_tolerance
        reasons.append(f"top-{an.n_top_clusters} energies moved "
                       + ("n/a" if change is None else f"{change * 1000:.1f} meV/atom"))
        accurate = mae is not None and mae <= an.max_prediction_error
        reasons.append("prediction MAE " + ("n/a" if mae is None else f"{mae * 1000:.1f} meV/atom"))
        reliable = bool(clusters) and clusters[0].reliable
        converged = stable and accurate and reliable and c + 1 >= an.min_cycles
        if converged:
            decision = "converged: " + ", ".join(reasons)
        elif c + 1 >= an.max_cycles:
            decision = f"stopped at max_cycles={an.max_cycles}: " + ", ".join(reasons)
        else:
            decision = "continue: " + ", ".join(reasons)

        energies = sorted(cand.energy_per_atom for cand in pool.candidates
                          if cand.energy_per_atom is not None and math.isfinite(cand.energy_per_atom))
        sig = [cand.sigma_force for cand in pool.candidates if cand.sigma_force is not None]
        counts: dict[str, int] = {}
        for cand in pool.candidates:
            counts[cand.status.value] = counts.get(cand.status.value, 0) + 1
        val = [m.validation_rmse_energy for m in ensemble.members
               if m.validation_rmse_energy is not None]
        summary = CycleSummary(
            run_id=self.run_id, name=cfg.name, cycle=c,
            oracle_single_points=training_set.n_attempted_total,
            failed_labels=training_set.n_failed_total, training_set_size=len(training_set.labels),
            prediction_mae=mae, validation_rmse_energy=float(np.mean(val)) if val else None,
            best_energy_per_atom=energies[0] if energies else None, status_counts=counts,
            sigma_force_median=float(np.median(sig)) if sig else None,
            sigma_force_p90=float(np.percentile(sig, 90)) if sig else None,
            energies=energies[:MAX_STORED_ENERGIES], n_finite=len(energies),
            energy_quantiles={str(q): float(np.percentile(energies, q))
                              for q in (0, 5, 25, 50, 75, 95, 100)} if energies else {},
            clusters=cluster_docs, top_energy_change=change,
            converged=converged, decision=decision,
        )
        best = "n/a" if summary.best_energy_per_atom is None else f"{summary.best_energy_per_atom:.4f}"
        logger.info(
            "cycle %d | labels %d (%d failed) | best %s eV/atom | clusters %d | sigma_F median %s "
            "eV/A | %s | %s", c, summary.oracle_single_points, summary.failed_labels, best,
            len(clusters), "n/a" if summary.sigma_force_median is None
            else f"{summary.sigma_force_median:.3f}",
            " ".join(f"{k}={v}" for k, v in sorted(counts.items())), decision,
        )
        me = CURRENT_JOB.job.uuid
        next_state = state.model_copy(update={
            "cycle": c + 1, "n_labels": training_set.n_attempted_total,
            "n_failed_labels": training_set.n_failed_total,
            "history": [*state.history, top], "summaries": [*state.summaries, me],
        })
        stop = self.stops(converged, c + 1)
        summary.stop = stop
        summary.resume = {**uuids, "n_members": len(ensemble.members),
                          "next_state": next_state.model_dump(mode="json")}
        return Response(output=summary,
                        addition=self.follow_up(uuids, next_state, stop, len(ensemble.members)))

    def stops(self, converged: bool, cycles_done: int) -> bool:
        """Whether the search ends after ``cycles_done`` cycles: criterion met, or max_cycles."""
        return converged or cycles_done >= self.config.analysis.max_cycles

    def follow_up(self, uuids: dict[str, str], next_state: SearchState, stop: bool,
                  n_members: int) -> Flow:
        """The flow after a finished cycle: the next cycle, or validation and the report.

        ``uuids`` holds the finished cycle's ``pool``, ``training_set`` and ``ensemble`` job UUIDs;
        the analysis job calls this, and so does a resumed run (``crysal_flows.resume``).
        """
        cfg = self.config
        if stop:
            follow = validate_minima(
                StoredOutput(uuid=uuids["pool"]), StoredOutput(uuid=next_state.summaries[-1]),
                next_state.summaries, self.validation_maker, cfg.validation.n_structures,
                {"run_id": self.run_id, "name": cfg.name, "composition": cfg.composition},
                cfg.references, self.started, cfg.workers,
            )
            route(follow, "driver", cfg.workers)
            follow.name = "validate minima"
            flow = Flow([follow], name="validation")
            return flow
        return self.make(StoredOutput(uuid=uuids["pool"]), StoredOutput(uuid=uuids["training_set"]),
                         StoredOutput(uuid=uuids["ensemble"]), next_state,
                         n_previous_members=n_members)


@dataclass
class CrystalSearchMaker(Maker):
    """The whole search: generate the pool, then cycles until converged, then validation."""

    name: str = "crysal search"
    config: SearchConfig | None = None
    cycle_maker: CycleMaker | None = None
    pool_maker: Maker | None = None

    def make(self, config: SearchConfig | None = None) -> Flow:
        """Make the flow of a search (``config`` overrides the maker's)."""
        cfg = config or self.config
        if cfg is None:
            raise ValueError("CrystalSearchMaker needs a SearchConfig")
        cycle_maker = self.cycle_maker or CycleMaker(config=cfg, started=time.time())
        pool_maker = self.pool_maker or PoolMaker(config=cfg.pool)
        pool = pool_maker.make(cfg.composition, seed=cfg.seed)
        pool.name = "generate pool"
        route(pool, "driver", cfg.workers)
        first = cycle_maker.make(pool.output)
        # the run's name first: FireWorks' web GUI cuts long workflow names short
        flow = Flow([pool, first], output=first.output,
                    name=f"{cfg.name} ({cfg.composition}) {self.name} {cycle_maker.run_id}")
        tag_run(flow, cycle_maker.run_id)
        return flow


def tag_run(flow: Flow, run_id: str) -> None:
    """Put the run id in every job's metadata, also of jobs added at run time."""
    flow.update_metadata({"crysal_run": run_id}, dynamic=True)
