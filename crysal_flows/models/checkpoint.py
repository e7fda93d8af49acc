"""The checkpoint format of an ensemble member, in the store and on disk.

A checkpoint is ``torch.save`` of ``{"hyper": ..., "state_dict": ...}``: the hyper-parameters that
rebuild the MACE model (:func:`crysal_flows.models.mace.build_model`) and its weights. In the
store it is base64 text beside the SHA-256 of the bytes, checked whenever it is loaded; a member
file (``crysal models``, ``training.init_models``) holds the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "SUFFIX",
    "check_model_files",
    "decode",
    "encode",
    "export_members",
    "model_files",
    "read_model_file",
]

SUFFIX = ".pt"


def _pack(raw: bytes) -> tuple[str, str]:
    return base64.b64encode(raw).decode("ascii"), hashlib.sha256(raw).hexdigest()


def _unpack(checkpoint: str, sha256: str | None, what: str = "model checkpoint") -> bytes:
    raw = base64.b64decode(checkpoint.encode("ascii"))
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise ValueError(f"{what} is corrupt: its SHA-256 does not match the stored one")
    return raw


def encode(model: torch.nn.Module, hyper: dict[str, Any]) -> tuple[str, str]:
    """Return a model as ``(base64 checkpoint, sha256)``."""
    buffer = io.BytesIO()
    torch.save({"hyper": hyper, "state_dict": model.state_dict()}, buffer)
    return _pack(buffer.getvalue())


def decode(checkpoint: str, sha256: str | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint, verifying its checksum if given."""
    from crysal_flows.models.mace import build_model

    payload = torch.load(
        io.BytesIO(_unpack(checkpoint, sha256)), map_location="cpu", weights_only=False
    )
    model = build_model(payload["hyper"])
    model.load_state_dict(payload["state_dict"])
    return model, payload["hyper"]


def model_files(path: str | Path) -> list[Path]:
    """Return the member files at ``path``: the file, or a directory's ``*.pt`` files, sorted.

    Raises
    ------
    ValueError
        If the path does not exist or a directory holds no member file.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(p.glob(f"*{SUFFIX}"))
        if not files:
            raise ValueError(
                f"{p} holds no model files (*{SUFFIX}); export a run's ensemble with "
                "'crysal models --run NAME -o DIR'"
            )
        return files
    if not p.exists():
        raise ValueError(f"{p} does not exist")
    return [p]


def read_model_file(path: str | Path, sha256: str | None = None) -> tuple[str, str]:
    """Return a member file as ``(checkpoint, sha256)``, the form of checkpoints in the store.

    Raises
    ------
    ValueError
        If the file cannot be read, or its SHA-256 is not ``sha256`` (the file changed).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read model file {path}: {exc.strerror}") from None
    checkpoint, digest = _pack(raw)
    if sha256 is not None and digest != sha256:
        raise ValueError(
            f"model file {path} changed since the search was built "
            f"(SHA-256 {digest[:12]}..., expected {sha256[:12]}...)"
        )
    return checkpoint, digest


def _hyper(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
        hyper = payload["hyper"]
        payload["state_dict"]
    except Exception as exc:
        raise ValueError(
            f"{path} is not a crysal_flows model file ({type(exc).__name__}); export "
            "one with 'crysal models'"
        ) from None
    return hyper


def check_model_files(path: str | Path, elements: Sequence[str]) -> list[tuple[str, str]]:
    """Check that ``path`` holds loadable member files covering ``elements``.

    Returns
    -------
    list of (str, str)
        Each file's absolute path and SHA-256, in order.
    """
    from ase.data import chemical_symbols

    out = []
    for f in model_files(path):
        checkpoint, sha = read_model_file(f)
        hyper = _hyper(f, _unpack(checkpoint, None))
        known = [chemical_symbols[int(z)] for z in hyper["z_table"]]
        missing = sorted(set(elements) - set(known))
        if missing:
            raise ValueError(
                f"model file {f} knows {', '.join(known)} but not {', '.join(missing)}"
            )
        out.append((str(f.resolve()), sha))
    return out


def export_members(
    members: Sequence[Any], directory: str | Path, metadata: dict[str, Any] | None = None
) -> list[Path]:
    """Write ensemble members (``MemberDocument``-like, checkpoints loaded) as files.

    Writes ``member_<k>.pt`` for each member and ``models.json`` describing them.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    for m in members:
        raw = _unpack(m.checkpoint, m.sha256, f"checkpoint of member {m.member + 1}")
        path = out / f"member_{m.member + 1}{SUFFIX}"
        path.write_bytes(raw)
        paths.append(path)
        rows.append(
            {
                "file": path.name,
                "sha256": m.sha256,
                "cycle": m.cycle,
                "seed": m.seed,
                "n_train": m.n_train,
                "train_rmse_energy": m.train_rmse_energy,
                "validation_rmse_energy": m.validation_rmse_energy,
            }
        )
    (out / "models.json").write_text(json.dumps({**(metadata or {}), "members": rows}, indent=1))
    return paths
