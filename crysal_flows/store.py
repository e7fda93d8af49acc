"""JobStores: the embedded on-disk default for local runs."""

from __future__ import annotations

from pathlib import Path

from jobflow import JobStore

__all__ = ["local_collection", "local_store"]


def local_store(path: str | Path, create: bool = True) -> JobStore:
    """An on-disk JobStore (MontyDB/sqlite) with a ``data`` store, in directory ``path``.

    No server is needed. Documents and the ``data`` store (checkpoints, pools) live in two
    collections of one database under ``path``.
    """
    path = Path(path).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"store path {path} exists and is not a directory")
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"no store at {path} (run a search first, or pass --store)")
        path.mkdir(parents=True)
    return JobStore(local_collection(path, "outputs"),
                    additional_stores={"data": local_collection(path, "data")})


def local_collection(path: str | Path, name: str, **kwargs):  # noqa: ANN201
    """A MontyStore collection of the on-disk database in directory ``path``."""
    from maggma.stores import MontyStore

    return MontyStore(name, database_path=str(Path(path).expanduser().resolve()),
                      database_name="crysal", storage="sqlite", **kwargs)
