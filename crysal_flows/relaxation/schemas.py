"""Output documents of ML relaxation."""

from __future__ import annotations

from pydantic import BaseModel, Field

from crysal_flows.schemas import Candidate

__all__ = ["ShardDocument"]


class ShardDocument(BaseModel):
    """One relaxed shard of the pool. ``candidates`` goes to the ``data`` store."""

    cycle: int = Field(..., description="Cycle index.")
    shard: int = Field(..., description="Shard index.")
    n_shards: int = Field(..., description="Shards in all.")
    candidates: list[Candidate] = Field(..., description="The shard's candidates after relaxation.")
    seconds: float = Field(..., description="Wall time of the relaxation, s.")
    steps: int = Field(..., description="FIRE steps taken in all.")
    status_counts: dict[str, int] = Field(..., description="Candidates per stop status.")
