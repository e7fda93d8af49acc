"""Ensemble members as files: exported from a finished run, read to start another search from them.

A member file holds the same bytes as a checkpoint in the store (``torch.save`` of the MACE
hyper-parameters and weights; see ``crysal_flows.mace_utils.model_to_checkpoint``). Starting a search
from the models of a smaller cell of the same chemistry (Si16 -> Si46) is the transfer the
configuration key ``training.init_models`` gives.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["check_model_files", "export_members", "last_ensemble", "model_files", "read_model_file"]

SUFFIX = ".pt"


def model_files(path: str | Path) -> list[Path]:
    """The member files at ``path``: the file itself, or a directory's ``*.pt`` files, sorted.

    Raises
    ------
    ValueError
        If the path does not exist or a directory holds no member file.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(p.glob(f"*{SUFFIX}"))
        if not files:
            raise ValueError(f"{p} holds no model files (*{SUFFIX}); export a run's ensemble with "
                             "'crysal models --run NAME -o DIR'")
        return files
    if not p.exists():
        raise ValueError(f"{p} does not exist")
    return [p]


def read_model_file(path: str | Path, sha256: str | None = None) -> tuple[str, str]:
    """A member file as ``(checkpoint, sha256)``, the form of checkpoints in the store.

    Raises
    ------
    ValueError
        If the file cannot be read, or its SHA-256 is not ``sha256`` (the file changed).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read model file {path}: {exc.strerror}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ValueError(f"model file {path} changed since the search was built "
                         f"(SHA-256 {digest[:12]}..., expected {sha256[:12]}...)")
    return base64.b64encode(raw).decode("ascii"), digest


def _hyper(path: Path) -> dict[str, Any]:
    import torch

    try:
        payload = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False)
        hyper = payload["hyper"]
        payload["state_dict"]  # noqa: B018
    except OSError as exc:
        raise ValueError(f"cannot read model file {path}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means: not a member file)
        raise ValueError(f"{path} is not a crysal_flows model file ({type(exc).__name__}); export "
                         "one with 'crysal models'") from None
    return hyper


def check_model_files(path: str | Path, elements: Sequence[str]) -> list[tuple[str, str]]:
    """Check that ``path`` holds loadable member files covering ``elements``.

    Returns
    -------
    list of (str, str)
        Each file's absolute path and SHA-256, in order.
    """
    out = []
    for f in model_files(path):
        hyper = _hyper(f)
        missing = sorted(set(elements) - {_symbol(z) for z in hyper["z_table"]})
        if missing:
            known = ", ".join(_symbol(z) for z in hyper["z_table"])
            raise ValueError(f"model file {f} knows {known} but not {', '.join(missing)}")
        _, sha = read_model_file(f)
        out.append((str(f.resolve()), sha))
    return out


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def export_members(members: Sequence[Any], directory: str | Path,
                   metadata: dict[str, Any] | None = None) -> list[Path]:
    """Write ensemble members (``MemberDocument``-like, checkpoints loaded) as files.

    Writes ``member_<k>.pt`` for each member and ``models.json`` describing them.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    for m in members:
        raw = base64.b64decode(m.checkpoint.encode("ascii"))
        if hashlib.sha256(raw).hexdigest() != m.sha256:
            raise ValueError(f"checkpoint of member {m.member + 1} is corrupt (SHA-256 mismatch)")
        path = out / f"member_{m.member + 1}{SUFFIX}"
        path.write_bytes(raw)
        paths.append(path)
        rows.append({"file": path.name, "sha256": m.sha256, "cycle": m.cycle, "seed": m.seed,
                     "n_train": m.n_train, "train_rmse_energy": m.train_rmse_energy,
                     "validation_rmse_energy": m.validation_rmse_energy})
    (out / "models.json").write_text(json.dumps({**(metadata or {}), "members": rows}, indent=1))
    return paths


def last_ensemble(store: Any, run_id: str) -> Any:
    """The last cycle's ``EnsembleDocument`` of run ``run_id`` in a connected JobStore, or None."""
    from crysal_flows.training.schemas import EnsembleDocument

    docs = list(store.query({"metadata.crysal_run": run_id, "name": {"$regex": "^gather ensemble"}},
                            load=True))
    if not docs:
        return None
    return EnsembleDocument.model_validate(max(docs, key=lambda d: d["output"]["cycle"])["output"])
