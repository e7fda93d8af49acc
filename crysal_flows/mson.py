"""Pydantic models that survive jobflow/FireWorks serialisation of job inputs.

Job inputs (Makers and their arguments) are serialised with monty's ``as_dict``, which leaves a
plain pydantic model as an object that FireWorks then writes as its ``str()``. Models passed to jobs
derive from :class:`MSONModel`, which gives them ``as_dict``/``from_dict`` with ``@module`` and
``@class`` keys, so they come back as the same model in the worker.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["MSONModel"]


class MSONModel(BaseModel):
    """A pydantic model with monty's ``as_dict``/``from_dict`` protocol."""

    def as_dict(self) -> dict[str, Any]:
        """Serialise to a JSON-ready dict tagged with the model's module and class."""
        return {
            "@module": type(self).__module__,
            "@class": type(self).__name__,
            **self.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MSONModel:
        """Rebuild the model from :meth:`as_dict`'s output."""
        return cls.model_validate({k: v for k, v in d.items() if not k.startswith("@")})

    def to_json(self) -> str:
        """Serialise to JSON (monty's protocol)."""
        return self.model_dump_json()
