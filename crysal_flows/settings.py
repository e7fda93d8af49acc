"""Machine settings (not science): threads, device. Set with ``CRYSAL_*`` variables or ~/.crysal.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SETTINGS", "CrysalSettings", "apply_torch_settings"]

_CONFIG_FILE = Path("~/.crysal.yaml").expanduser()


class CrysalSettings(BaseSettings):
    """Settings of the machine the jobs run on."""

    model_config = SettingsConfigDict(env_prefix="CRYSAL_", extra="forbid")

    torch_threads: int = Field(
        1, ge=1, description="Torch threads per process. One is fastest on small CPU nodes that "
        "run other work beside it."
    )
    device: str = Field("cpu", description="Torch device for training and relaxation (cpu, cuda).")

    @classmethod
    def load(cls) -> CrysalSettings:
        """Read ~/.crysal.yaml (if any) under the environment variables."""
        values = {}
        if _CONFIG_FILE.exists():
            values = yaml.safe_load(_CONFIG_FILE.read_text()) or {}
        env = cls()
        explicit = {k: getattr(env, k) for k in env.model_fields_set}
        return cls(**{**values, **explicit})


SETTINGS = CrysalSettings.load()


def apply_torch_settings() -> None:
    """Apply the thread count and MACE's dtype to this process."""
    from crysal_flows.mace_utils import torch_setup

    torch_setup(SETTINGS.torch_threads)
