"""Oracles: the expensive reference calculations (DFT, or cheap stand-ins) behind one interface.

An oracle here is anything that gives an ASE calculator; its identity string is stored with every
label so that labels of different oracles are never mixed in one training set.
"""

from __future__ import annotations

import hashlib
import functools
import importlib
import json
from typing import Any

from ase.calculators.calculator import Calculator

from crysal_flows.config import OracleConfig

__all__ = ["OracleUnavailableError", "check_oracle", "get_calculator", "oracle_identity"]


class OracleUnavailableError(RuntimeError):
    """The oracle's code is not installed or cannot be loaded."""


def oracle_identity(config: OracleConfig) -> str:
    """A stable identity string of the oracle and its settings."""
    name = config.calculator if config.kind == "ase" else config.kind
    if config.is_dft:
        # what changes the numbers (not the command or the number of processes)
        settings: dict[str, Any] = {"input_settings": config.input_settings,
                                    "kpoint_density": config.kpoint_density}
        if config.kind == "cp2k":
            from crysal_flows.labelling.dft import CP2K_KPOINT_SCHEME

            settings["kpoints"] = CP2K_KPOINT_SCHEME
    elif config.kwargs:
        settings = config.kwargs
    else:
        return str(name)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return f"{name}#{digest[:10]}"


def _stillinger_weber(kwargs: dict[str, Any]) -> Calculator:
    try:
        from matscipy.calculators.manybody import Manybody
        from matscipy.calculators.manybody.explicit_forms import StillingerWeber
        from matscipy.calculators.manybody.explicit_forms.stillinger_weber import (
            Stillinger_Weber_PRB_31_5262_Si,
        )
    except ImportError as exc:
        raise OracleUnavailableError(
            f"oracle 'stillinger_weber' needs matscipy: pip install matscipy ({exc})"
        ) from exc
    if kwargs:
        raise ValueError(f"oracle 'stillinger_weber' takes no kwargs, got {sorted(kwargs)}")
    return Manybody(**StillingerWeber(Stillinger_Weber_PRB_31_5262_Si))


@functools.lru_cache(maxsize=2)
def _chgnet_model(model_name: str | None):  # noqa: ANN202
    """The packaged CHGNet model, loaded once per process (loading costs more than a label)."""
    from chgnet.model import CHGNet

    return CHGNet.load(model_name=model_name or "0.3.0", verbose=False)


def _chgnet(kwargs: dict[str, Any]) -> Calculator:
    try:
        from chgnet.model import CHGNetCalculator
    except ImportError as exc:
        raise OracleUnavailableError(
            f"oracle 'chgnet' needs CHGNet: pip install chgnet ({exc})"
        ) from exc
    kwargs = {"use_device": "cpu", **kwargs}
    if "model" not in kwargs:
        kwargs["model"] = _chgnet_model(kwargs.pop("model_name", None))
    return CHGNetCalculator(**kwargs)


def _ase(path: str, kwargs: dict[str, Any]) -> Calculator:
    module_name, _, class_name = path.partition(":")
    if not class_name:
        raise ValueError(f"oracle calculator {path!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OracleUnavailableError(f"cannot import oracle module {module_name!r}: {exc}") from exc
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise OracleUnavailableError(f"module {module_name!r} has no {class_name!r}") from None
    return cls(**kwargs)


def get_calculator(config: OracleConfig) -> Calculator:
    """Build a fresh ASE calculator for the oracle (not for DFT kinds: see :mod:`.dft`)."""
    if config.is_dft:
        raise ValueError(f"oracle kind {config.kind!r} runs through atomate2, not a calculator")
    if config.kind == "stillinger_weber":
        return _stillinger_weber(config.kwargs)
    if config.kind == "chgnet":
        return _chgnet(config.kwargs)
    assert config.calculator is not None  # guaranteed by OracleConfig
    return _ase(config.calculator, config.kwargs)


def check_oracle(config: OracleConfig, elements: list[str] | None = None) -> None:
    """Fail early, before any job runs, when the oracle cannot be built or run here."""
    if config.is_dft:
        from crysal_flows.labelling.dft import check_dft

        check_dft(config, elements)
        return
    get_calculator(config)
