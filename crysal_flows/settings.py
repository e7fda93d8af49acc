"""Machine settings, apart from the science: threads, devices, DFT commands, stores, workers.

Set with ``CRYSAL_*`` environment variables (``CRYSAL_WORKERS__ML=a100`` for nested keys) or the
same keys in ``~/.crysal.yaml``; the variables win. None of these is part of a search
configuration or of its hash: a run started with one MPI command resumes under another.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SETTINGS", "CrysalSettings", "WorkersConfig", "apply_torch_settings", "load_settings"]

_CONFIG_FILE = Path("~/.crysal.yaml").expanduser()


class WorkersConfig(BaseModel):
    """Which FireWorks worker category runs each kind of job (its ``_category``).

    A ``my_fworker_*.yaml`` with ``category: <name>`` pulls only the jobs of that category; a
    worker without a category pulls every job. Read where the workflow is built (``crysal
    submit``); ``crysal run`` ignores it.
    """

    model_config = ConfigDict(extra="forbid")

    ml: str = Field(
        "gpu",
        min_length=1,
        description="Ensemble training, ML relaxation shards and "
        "selection (which evaluates the ensemble): the GPU worker.",
    )
    oracle: str = Field(
        "cpu",
        min_length=1,
        description="Oracle single points and validation relaxations (DFT): the CPU worker.",
    )
    driver: str = Field(
        "cpu",
        min_length=1,
        description="Light bookkeeping jobs: pool generation, "
        "gathering, merging, analysis, fan-out and the report.",
    )

    def as_dict(self) -> dict:
        """Serialise for job inputs (monty's protocol)."""
        return {
            "@module": type(self).__module__,
            "@class": type(self).__name__,
            **self.model_dump(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> WorkersConfig:
        """Rebuild from :meth:`as_dict`."""
        return cls.model_validate({k: v for k, v in d.items() if not k.startswith("@")})


class CrysalSettings(BaseSettings):
    """Settings of the machine the jobs run on (or, for ``workers``, where they are submitted)."""

    model_config = SettingsConfigDict(
        env_prefix="CRYSAL_", env_nested_delimiter="__", extra="forbid"
    )

    torch_threads: int = Field(
        1,
        ge=1,
        description="Torch threads per process. One is fastest on small CPU nodes that "
        "run other work beside it.",
    )
    processes: int | None = Field(
        None,
        ge=1,
        description="Worker processes of 'crysal run' that train ensemble members and relax "
        "shards side by side (--processes overrides it). Default: the cores this process may "
        "use, divided by torch_threads.",
    )
    device: str = Field("cpu", description="Torch device for training and relaxation (cpu, cuda).")
    store: str = Field(
        "crysal_store",
        description="Directory of the local on-disk JobStore of "
        "'crysal run', 'crysal results' and 'crysal status' (--store overrides it).",
    )
    cp2k_command: str | None = Field(
        None,
        description="The command that runs CP2K, e.g. 'srun cp2k.psmp'. Default: a CP2K "
        "binary found on PATH, under 'mpirun -np <dft_nproc>' for the MPI builds.",
    )
    vasp_command: str = Field(
        "vasp_std", description="The command that runs VASP, e.g. 'srun vasp_std'."
    )
    dft_nproc: int = Field(2, ge=1, description="MPI processes of the default CP2K command.")
    workers: WorkersConfig = Field(
        default_factory=WorkersConfig, description="FireWorks worker categories of the jobs."
    )

    @classmethod
    def load(cls) -> CrysalSettings:
        """Read ~/.crysal.yaml (if any) under the environment variables."""
        values = {}
        if _CONFIG_FILE.exists():
            values = yaml.safe_load(_CONFIG_FILE.read_text()) or {}
        env = cls()
        explicit = {k: getattr(env, k) for k in env.model_fields_set}
        return cls(**{**values, **explicit})


def load_settings() -> CrysalSettings:
    """Return the settings as the environment and ~/.crysal.yaml give them now."""
    return CrysalSettings.load()


SETTINGS = load_settings()


def apply_torch_settings() -> None:
    """Apply the thread count and MACE's dtype to this process."""
    from crysal_flows.models.mace import torch_setup

    torch_setup(SETTINGS.torch_threads)
