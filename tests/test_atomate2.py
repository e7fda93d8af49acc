"""An atomate2 maker as the oracle: atomate2's CHGNet static job labels a whole search."""

import numpy as np
import pytest
from configs import TINY
from jobflow import run_locally

from crysal_flows.config import OracleConfig, load_config
from crysal_flows.flows import CrystalSearchMaker, CycleMaker
from crysal_flows.labelling.atomate2 import Atomate2LabelMaker
from crysal_flows.oracles import get_oracle


@pytest.mark.slow
def test_search_labelled_by_an_atomate2_maker(memory_store):
    from atomate2.forcefields.jobs import ForceFieldStaticMaker

    cfg = load_config(
        {
            **TINY,
            "oracle": {"kind": "chgnet"},
            "analysis": {"min_cycles": 1, "max_cycles": 2},
            "validation": {"n_structures": 1, "max_steps": 30},
        }
    )
    labels = Atomate2LabelMaker(
        static_maker=ForceFieldStaticMaker(force_field_name="CHGNet"), oracle_name="chgnet-atomate2"
    )
    flow = CrystalSearchMaker(config=cfg, cycle_maker=CycleMaker(config=cfg, label_maker=labels))
    run_locally(flow.make(), store=memory_store, log=False)

    docs = list(memory_store.query({"metadata.crysal_step": "oracle_single_point"}, load=True))
    assert len(docs) == 8 + 4  # every label, and only the labels (not atomate2's task documents)
    ok = [d["output"] for d in docs if d["output"]["success"]]
    assert ok and all(o["oracle"].startswith("chgnet-atomate2#") for o in ok)
    # in ASE units, the same numbers as the project's own CHGNet oracle on the same structure
    from pymatgen.core import Structure

    own = get_oracle(OracleConfig(kind="chgnet"))
    for o in ok[:2]:
        sp = own.single_point(Structure.from_dict(o["structure"]))
        assert o["energy"] == pytest.approx(sp.energy, abs=1e-4)
        np.testing.assert_allclose(o["forces"], sp.forces, atol=1e-4)
        np.testing.assert_allclose(o["stress"], sp.stress, atol=1e-5)  # kBar converted, sign too
    report = memory_store.query_one({"metadata.crysal_step": "report"}, load=True)["output"]
    assert report["oracle_single_points"] == 12 and report["minima"]
    calcs = list(memory_store.query({"metadata.crysal_step": "oracle_calculation"}))
    assert len(calcs) == 12 and all(c["metadata"]["crysal_run"] for c in calcs)
