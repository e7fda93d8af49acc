"""Write docs/configuration.md from the search configuration's pydantic models.

Run ``python docs/make_configuration.py`` after changing a field; a test checks the file is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from crysal_flows.config import ReferenceStructure, SearchConfig
from crysal_flows.settings import CrysalSettings, WorkersConfig

HEADER = """# Search configuration

A search is one YAML file validated by `crysal_flows.config.SearchConfig`. Unknown keys are
errors. `crysal check FILE` validates a file without running it. Generated from the models' field
descriptions by `docs/make_configuration.py`.
"""


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    return f"`{value!r}`"


def _table(model: type[BaseModel], sections: list[tuple[str, type[BaseModel]]]) -> list[str]:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections.append((f"`{name}`", annotation))
            rows.append(f"| `{name}` | section | see below |")
            continue
        rows.append(f"| `{name}` | {_default(field)} | {field.description or ''} |")
    return rows


def render() -> str:
    """Return the whole of docs/configuration.md."""
    sections: list[tuple[str, type[BaseModel]]] = []
    out = [HEADER, "## Top level", "", *_table(SearchConfig, sections), ""]
    sections.append(("`references` items", ReferenceStructure))
    for title, model in sections:
        out += [f"## {title}", ""]
        if model.__doc__:
            out += [" ".join(model.__doc__.split()).replace("``", "`"), ""]
        out += [*_table(model, []), ""]
    out += [MACHINE, "| setting | variable | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in CrysalSettings.model_fields.items():
        if name == "workers":
            for kind, sub in WorkersConfig.model_fields.items():
                out.append(
                    f"| `workers.{kind}` | `CRYSAL_WORKERS__{kind.upper()}` | "
                    f"{_default(sub)} | {sub.description} |"
                )
            continue
        out.append(
            f"| `{name}` | `CRYSAL_{name.upper()}` | {_default(field)} | {field.description} |"
        )
    return "\n".join(out) + "\n"


MACHINE = """## Machine settings (not part of a search)

Where and how the jobs run is no part of the search configuration, nor of the hash that a
resumed run is matched by. Set these as environment variables or as the same keys in
`~/.crysal.yaml` (the variables win); `crysal submit --category ml=a100` overrides a worker
category for one workflow. A configuration that still has `store`, `workers` or
`oracle.command` is refused with a message that says where each went.
"""


if __name__ == "__main__":
    target = Path(__file__).with_name("configuration.md")
    target.write_text(render())
    sys.stdout.write(f"wrote {target}\n")
