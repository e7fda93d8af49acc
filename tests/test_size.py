"""Size: a pool of 10,000 candidates runs through the stores with every document far below
MongoDB's 16 MB limit; pools, training sets and checkpoints go to the ``data`` store (GridFS in
production, see fw_configs/jobflow.yaml)."""

import bson
import pytest
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore

from crysal_flows.config import load_config
from crysal_flows.flows import CrystalSearchMaker

MONGO_LIMIT = 16 * 1024 * 1024


def _bson_size(doc: dict) -> int:
    return len(bson.BSON.encode({k: v for k, v in doc.items() if k != "_id"}))


@pytest.mark.slow
def test_pool_of_10000_through_the_stores():
    cfg = load_config(
        {
            "name": "big",
            "composition": "Si2",
            "seed": 0,
            "pool": {"size": 10_000, "symmetric_fraction": 0.0},
            "selection": {"n_labels": 4, "n_labels_first": 8},
            "training": {"n_members": 2, "epochs": 2, "channels": 4, "min_steps": 0},
            "relaxation": {"max_steps": 2, "n_shards": 2, "batch_size": 2000},
            "analysis": {"min_cycles": 1, "max_cycles": 1, "energy_window": 0.05},
            "validation": {"n_structures": 1, "max_steps": 5},
        }
    )
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    run_locally(CrystalSearchMaker(config=cfg).make(), store=store, ensure_success=True, log=False)

    docs = list(store.docs_store.query({}))
    assert any(d["name"] == "crysal report" for d in docs)
    # documents do not grow with the pool: the largest stays under 1 MB at 10,000 candidates
    largest = max(docs, key=_bson_size)
    assert _bson_size(largest) < 1024 * 1024, (largest["name"], _bson_size(largest))
    # the pools live in the data store (each object there is one blob, chunked by GridFS)
    merged = store.query_one({"name": {"$regex": "^merge shards"}}, load=True)
    assert len(merged["output"]["candidates"]) == 10_000
    raw = store.docs_store.query_one({"name": {"$regex": "^merge shards"}})
    assert "blob_uuid" in str(raw["output"]["candidates"])
    blobs = [_bson_size(d) for d in store.additional_stores["data"].query({})]
    # a 10,000-candidate pool is several MB: too big to keep in a job document for long
    assert max(blobs) > 1024 * 1024
    summary = store.query_one({"name": {"$regex": "^analyse"}})["output"]
    assert summary["n_finite"] > 9000 and len(summary["energies"]) == 1000
    assert summary["energy_quantiles"]["0"] == summary["energies"][0]
    assert all(_bson_size(d) < MONGO_LIMIT for d in docs)
