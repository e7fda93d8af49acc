"""Makers whose jobs raise, as jobs do on a cluster (out of memory, a lost node, a walltime).

Importable by FireWorks workers too: the tests put this folder on their PYTHONPATH.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymatgen.core import Structure

from crysal_flows.jobs import crysal_job
from crysal_flows.relaxation.jobs import RelaxShardMaker
from crysal_flows.relaxation.schemas import ShardDocument
from crysal_flows.training.jobs import TrainMemberMaker
from crysal_flows.training.schemas import MemberDocument
from crysal_flows.validation.jobs import OracleRelaxMaker
from crysal_flows.validation.schemas import OracleRelaxDocument


class InjectedFault(RuntimeError):
    """The failure a test asked for."""


@dataclass
class FailingTrainMaker(TrainMemberMaker):
    """Member ``fail_member`` (0-based) raises in every cycle."""

    fail_member: int = 0

    @crysal_job(data="checkpoint", schema=MemberDocument)
    def make(self, training_set, cycle, member, seed, previous=None, init_model=None):
        if member == self.fail_member:
            raise InjectedFault(f"member {member + 1} of cycle {cycle} ran out of memory")
        return TrainMemberMaker.make.original(
            self, training_set, cycle, member, seed, previous=previous, init_model=init_model
        )


@dataclass
class FailingRelaxMaker(RelaxShardMaker):
    """Shard ``fail_shard`` (0-based) raises in the cycles ``fail_cycles``."""

    fail_shard: int = 0
    fail_cycles: list[int] = field(default_factory=lambda: [0])

    @crysal_job(data="candidates", schema=ShardDocument)
    def make(self, pool, ensemble, cycle, shard, n_shards):
        if shard == self.fail_shard and cycle in self.fail_cycles:
            raise InjectedFault(f"shard {shard + 1} of cycle {cycle} lost its node")
        return RelaxShardMaker.make.original(self, pool, ensemble, cycle, shard, n_shards)


@dataclass
class FailingValidationMaker(OracleRelaxMaker):
    """The relaxation of the representative of cluster ``fail_rank`` raises."""

    fail_rank: int = 1

    @crysal_job(schema=OracleRelaxDocument)
    def make(
        self,
        structure: Structure,
        source_index=None,
        cluster_rank=None,
        predicted_energy_per_atom=None,
        reference=None,
        hessian=None,
        ensemble=None,
    ) -> OracleRelaxDocument:
        if cluster_rank == self.fail_rank:
            raise InjectedFault(f"validation of cluster {cluster_rank} hit its walltime")
        return OracleRelaxMaker.make.original(
            self,
            structure,
            source_index,
            cluster_rank,
            predicted_energy_per_atom,
            reference,
            hessian,
            ensemble,
        )
