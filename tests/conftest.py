import warnings

import pytest

import crysal_flows  # noqa: F401  (sets the torch.load variable before e3nn is imported)

warnings.filterwarnings("ignore")


@pytest.fixture(autouse=True)
def _fresh_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _torch_hygiene():
    import torch

    from crysal_flows.models.mace import torch_setup

    torch_setup(1)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture
def memory_store():
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    store.connect()
    return store


@pytest.fixture(scope="session")
def si_frames():
    """Stillinger-Weber labels of rattled Si8 candidates (energy, forces, stress)."""
    from crysal_flows.config import OracleConfig, PoolConfig
    from crysal_flows.generation.jobs import generate_pool
    from crysal_flows.labelling.jobs import single_point
    from crysal_flows.labelling.schemas import TrainingSetDocument
    from crysal_flows.training.jobs import labels_to_frames

    pool = generate_pool("Si8", PoolConfig(size=24, min_distance_factor=0.8), seed=5)
    labels = [single_point(c.structure, OracleConfig(), cycle=0) for c in pool.candidates]
    ok = [lab for lab in labels if lab.success]
    ts = TrainingSetDocument(
        cycle=0,
        oracle=ok[0].oracle,
        labels=ok,
        n_new=len(labels),
        n_new_failed=len(labels) - len(ok),
        n_attempted_total=len(labels),
        n_failed_total=len(labels) - len(ok),
    )
    return pool, labels_to_frames(ts)


@pytest.fixture(scope="session")
def tiny_ensemble(si_frames):
    """Two small MACE members trained for a few epochs on the Si8 labels."""
    from crysal_flows.config import TrainingConfig
    from crysal_flows.models.ensemble import Ensemble
    from crysal_flows.models.mace import torch_setup
    from crysal_flows.training.train import train_member

    torch_setup(1)
    _, frames = si_frames
    cfg = TrainingConfig(epochs=15, channels=8, min_steps=0)
    results = [train_member(frames, cfg, seed=s) for s in (1, 2)]
    return Ensemble.from_checkpoints([(r.checkpoint, r.sha256) for r in results]), results
