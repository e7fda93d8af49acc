"""References to finished jobs' outputs that the receiving job loads itself.

jobflow does not allow a dynamically added flow to hold references to jobs outside it. A cycle only
needs outputs of jobs that finished before the job that adds it (the previous cycle's pool,
training set and ensemble), so those travel as a ``StoredOutput`` (a uuid and an attribute path,
a few bytes in the job document) and are loaded from the running job's store. The ordering is
guaranteed by the addition itself: added jobs run after the job that added them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from crysal_flows.mson import MSONModel

__all__ = ["StoredOutput", "load"]


class StoredOutput(MSONModel):
    """The output of a finished job, or an item of it, to be loaded from the JobStore."""

    uuid: str = Field(..., description="UUID of the job whose output this is.")
    path: list[str | int] = Field(default_factory=list, description="Attributes/indices into it.")

    def __getitem__(self, item: str | int) -> StoredOutput:
        return StoredOutput(uuid=self.uuid, path=[*self.path, item])

    def attr(self, name: str) -> StoredOutput:
        """Return a reference to an attribute of the output."""
        return self[name]

    def resolve(self, store: Any = None) -> Any:
        """Load the output (with its ``data``-store parts) and follow the path."""
        from jobflow import CURRENT_JOB

        store = store or CURRENT_JOB.store
        if store is None:
            raise RuntimeError("StoredOutput can only be resolved inside a running job")
        from monty.json import MontyDecoder

        data = MontyDecoder().process_decoded(store.get_output(self.uuid, which="last", load=True))
        for key in self.path:
            data = (
                data[key] if isinstance(key, int) or isinstance(data, dict) else getattr(data, key)
            )
        return data


def load(value: Any) -> Any:
    """Return ``value``, loading it first if it is a ``StoredOutput``."""
    return value.resolve() if isinstance(value, StoredOutput) else value
