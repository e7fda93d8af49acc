"""What ``validation.n_labels`` adds to a finished search: its last cycle's deep labels, relaxed.

Validation changes nothing before it, so the labels a finished search would have validated
beside its clusters follow from its store: those more than ``validation.label_margin`` below the
last cycle's best cluster (``crysal_flows.analysis.summary.deep_labels``), for every run in the
store. Each is relaxed and matched as ``pool_basins.py`` does (the configuration's oracle and
validation settings; BFGS's default Hessian, not the ensemble's: an upper bound on the steps)::

    python benchmarks/deep_labels.py CONFIG STORE [CONFIG STORE ...]
"""

from __future__ import annotations

import argparse

import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", metavar="CONFIG STORE")
    args = ap.parse_args()
    if len(args.pairs) % 2:
        ap.error("give a configuration and a store for each search")

    from pool_basins import relax_and_match

    from crysal_flows.analysis.schemas import CycleSummary
    from crysal_flows.analysis.summary import deep_labels
    from crysal_flows.config import load_config
    from crysal_flows.labelling.schemas import TrainingSetDocument
    from crysal_flows.runs import find_runs, load_run
    from crysal_flows.store import local_store
    from crysal_flows.validation.jobs import build_reference

    for cfg_file, store_dir in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        with open(cfg_file) as f:
            cfg = load_config(yaml.safe_load(f))
        try:
            js = local_store(store_dir, create=False)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise SystemExit(str(exc)) from None
        js.connect()
        refs = {r.label: build_reference(r) for r in cfg.references}
        for run_id in find_runs(js):
            view = load_run(js, run_id)
            if not view.summaries:
                print(f"run {view.name} ({run_id}): no finished cycle")
                continue
            summary = CycleSummary.model_validate(view.summaries[-1])
            ts = TrainingSetDocument.model_validate(
                js.get_output(summary.resume.training_set, load=True)
            )
            deep = deep_labels(summary.clusters, ts, cfg)
            print(
                f"run {view.name} ({run_id}): last cycle {summary.cycle}, best cluster "
                f"{summary.clusters[0].energy_per_atom:.4f} eV/atom (ML); deep labels: {len(deep)}"
            )
            for d in deep:
                r, found = relax_and_match(d.structure, cfg, refs)
                end = f"{r.energy_per_atom:.4f} eV/atom" if r.success else f"failed ({r.error})"
                print(
                    f"  label {d.key[:8]} (cycle {d.cycle}, {d.reason}) {d.energy_per_atom:.4f} "
                    f"eV/atom, {d.below_best:.3f} below -> {end} in {r.oracle_calls} steps "
                    f"{', '.join(found)}"
                )


if __name__ == "__main__":
    main()
