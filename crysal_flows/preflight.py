"""Checks before any job runs: the configuration can run on this machine."""

from __future__ import annotations

from crysal_flows.config import ConfigError, SearchConfig
from crysal_flows.models.checkpoint import check_model_files
from crysal_flows.oracles import check_oracle
from crysal_flows.utils import parse_composition

__all__ = ["preflight"]


def preflight(config: SearchConfig, oracle: bool = True, models: bool = True) -> None:
    """Fail with a clear error, before any job runs, if ``config`` cannot run here.

    Checks that the oracle can be built (with ``oracle``; a login node may lack the DFT code) and
    that ``training.init_models`` holds member files covering the composition's elements (with
    ``models``; building the flow reads and pins them anyway, so ``crysal run`` leaves it there).

    Raises
    ------
    OracleUnavailableError
        If the oracle's code or data are missing.
    ConfigError
        If the model files cannot be used.
    """
    elements = sorted(parse_composition(config.composition))
    if oracle:
        check_oracle(config.oracle, elements)
    if models and config.training.init_models:
        try:
            check_model_files(config.training.init_models, elements)
        except ValueError as exc:
            raise ConfigError(f"training.init_models: {exc}") from None
