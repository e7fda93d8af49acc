"""Oracles behind one interface (:class:`~crysal_flows.oracles.base.Oracle`).

``get_oracle(config)`` builds the oracle of a search's ``oracle:`` section: an ASE calculator
(:mod:`.ase`: Stillinger-Weber, CHGNet, any calculator by import path) or a DFT code through
atomate2 and custodian (:mod:`.cp2k`, :mod:`.vasp`). Labelling, validation and the report use
nothing else.
"""

from __future__ import annotations

from crysal_flows.config import OracleConfig
from crysal_flows.oracles.base import Oracle, OracleUnavailableError, Relaxation, SinglePoint

__all__ = [
    "Oracle",
    "OracleUnavailableError",
    "Relaxation",
    "SinglePoint",
    "check_oracle",
    "get_oracle",
    "oracle_identity",
]


def get_oracle(config: OracleConfig) -> Oracle:
    """Return the oracle of ``config``."""
    if config.kind == "cp2k":
        from crysal_flows.oracles.cp2k import Cp2kOracle

        return Cp2kOracle(config)
    if config.kind == "vasp":
        from crysal_flows.oracles.vasp import VaspOracle

        return VaspOracle(config)
    from crysal_flows.oracles.ase import AseOracle

    return AseOracle(config)


def oracle_identity(config: OracleConfig) -> str:
    """Return the identity string of the oracle of ``config``."""
    return get_oracle(config).identity


def check_oracle(config: OracleConfig, elements: list[str] | None = None) -> None:
    """Fail early, before any job runs, when the oracle cannot be built or run here."""
    get_oracle(config).check(elements)
