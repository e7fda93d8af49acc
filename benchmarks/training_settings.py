"""Training settings compared on a finished search's labels: how well does each predict the next?

The labels a search collected before cycle K train an ensemble with each setting (from scratch,
the members' seeds 0, 1, 2, one thread); the labels of cycle K, which that search chose with the
ensemble of cycle K-1 and had not yet trained on, are the test. Printed per setting:

- ``min``: the ensemble-mean energy error (MAE, meV/atom) on cycle K's ``minimum`` labels, the
  lowest minima of the pool: the error the stopping rule bounds (``max_prediction_error``);
- ``low``: energy MAE and force RMSE on the test labels within 0.5 eV/atom of the lowest;
- ``sigmaF``: the median ensemble spread of the generalised forces over the test labels (eV/A),
  what the uncertainty stop compares;
- ``train``: the members' RMSE on their own training labels;
- the wall time of training the three members one after another.

    python benchmarks/training_settings.py run_store 5 '{"default": {}, "c16": {"channels": 16}}'

The store is a finished ``crysal run`` (its first run); the settings are ``training:`` keys.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import mace  # noqa: F401,E402  (before e3nn: torch >= 2.6 weights-only loading)
import numpy as np  # noqa: E402
import torch  # noqa: E402

SEEDS = (0, 1, 2)


def main() -> None:
    from crysal_flows.config import TrainingConfig
    from crysal_flows.labelling.schemas import TrainingSetDocument
    from crysal_flows.models.ensemble import Ensemble
    from crysal_flows.runs import find_runs, load_run
    from crysal_flows.store import local_store
    from crysal_flows.training.jobs import labels_to_frames
    from crysal_flows.training.train import train_member

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("store", help="directory of a finished crysal run's store")
    p.add_argument("cycle", type=int, help="K: train on cycles < K, test on cycle K")
    p.add_argument("settings", help='JSON: {"name": {training keys}, ...}')
    args = p.parse_args()
    torch.set_num_threads(1)

    store = local_store(args.store, create=False)
    store.connect()
    view = load_run(store, find_runs(store)[0])
    last = view.summaries[-1]
    ts = TrainingSetDocument.model_validate(
        store.get_output(last["resume"]["training_set"], load=True)
    )
    train = [lab for lab in ts.labels if lab.success and lab.cycle < args.cycle]
    test = [lab for lab in ts.labels if lab.success and lab.cycle == args.cycle]
    if not train or not test:
        raise SystemExit(f"no labels before or in cycle {args.cycle} in {args.store}")
    f_train = labels_to_frames(ts.model_copy(update={"labels": train}))
    f_test = labels_to_frames(ts.model_copy(update={"labels": test}))
    atoms = [f.to_atoms() for f in f_test]
    n = np.array([len(a) for a in atoms])
    e_ref = np.array([f.energy for f in f_test]) / n
    minimum = np.array([lab.reason == "minimum" for lab in test])
    low = e_ref < e_ref.min() + 0.5
    print(
        f"{view.name}: {len(f_train)} labels of cycles < {args.cycle} train, "
        f"{len(f_test)} of cycle {args.cycle} test ({int(minimum.sum())} minima, "
        f"{int(low.sum())} within 0.5 eV/atom of the lowest)",
        flush=True,
    )
    for name, keys in json.loads(args.settings).items():
        cfg = TrainingConfig(**keys)
        t0 = time.perf_counter()
        members = [train_member(f_train, cfg, seed=s) for s in SEEDS]
        seconds = time.perf_counter() - t0
        ens = Ensemble.from_checkpoints([(m.checkpoint, m.sha256) for m in members])
        pred = ens.predict(atoms)
        err = np.abs(pred.mean_energy / n - e_ref)
        f_low = np.concatenate(
            [
                (pred.mean_forces[i][: n[i]] - f.forces).ravel()
                for i, f in enumerate(f_test)
                if low[i]
            ]
        )
        sig = pred.sigma_generalised_force([a.get_volume() for a in atoms])
        e_min = f"{err[minimum].mean() * 1000:5.1f}" if minimum.any() else "  n/a"
        print(
            f"{name:12s} min E {e_min} | low E {err[low].mean() * 1000:5.1f} "
            f"F {np.sqrt((f_low**2).mean()):.3f} | sigmaF {np.median(sig):.3f} | "
            f"train E {np.mean([m.train_rmse_energy for m in members]) * 1000:5.1f} "
            f"F {np.mean([m.train_rmse_forces for m in members]):.3f} | {seconds:4.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
