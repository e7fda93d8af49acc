"""Replay finished searches cycle by cycle: where would a stopping rule have stopped, and what then?

For every cycle of every run in the stores, the top ``validation.n_structures`` clusters of that
cycle's pool are relaxed with the configuration's oracle, from that cycle's ensemble's Hessian
where ``validation.hessian`` is ``ensemble`` (the validation that would have run had the search
stopped there) and matched against the configuration's references. Then each rule is
applied to the stored cycle summaries, and the table says after which cycle it would have
stopped and whether the validation there finds the reference that the search's own last cycle
finds. No search is rerun: a rule is measured on searches that ran to ``max_cycles``.

Rules (all with the run's ``min_cycles``):

- ``current``: what the run decided itself (its stored ``converged``; for runs made before the
  held rule: top-k cluster energies moved at most ``energy_tolerance``, prediction error at most
  ``max_prediction_error``, best cluster reliable);
- ``no-new-top<k>``: none of this cycle's top k clusters is new (each lies within the clustering's
  fingerprint tolerance of one of the previous cycle's top 10), with ``+mae`` also the prediction
  error bound, with ``+rel`` the best cluster reliable, with ``+moved`` the best cluster's
  representative not stuck where it started (converged, or moved before it stopped), with
  ``+settled`` either of the two; ``+moved+start``: as ``+moved``, and a search on a prior
  compares cycle 0's clusters with those of the pool as the prior alone relaxed it (the search
  does); ``+recent+start``: as ``+moved+start``, or the best representative converged in one of
  the cycles its structure held through; ``x2``, ``x3``: two or three cycles in a row.

Each run's cost "with the search's own stopping rules" applies what the search does today to the
stored summaries: the energy rule, or the held rule
(``no-new-top1x<best_held_cycles>+recent+start``); where the run stopped earlier under the rules
it ran with and these would have gone on, it says so instead of a cost.

    python benchmarks/stopping_replay.py examples/si16.yaml --stores run_s0 run_s1 run_s2

The clusters validated are those the search's validation takes under the configuration: the
lowest, and ``validation.n_novel`` novel ones, recomputed from each cycle's pool and training set
(so runs made before novel clusters existed replay with them). ``--set validation.n_novel=0``
replays the lowest clusters alone.

``--cache FILE`` keeps each replayed oracle relaxation (JSON, by run id, cycle and candidate): run
again with the same file, the rules are applied without a single oracle call, and another
``--set`` relaxes only the clusters not relaxed before. A cache holds relaxations under one
oracle and one set of ``validation`` settings (fmax, max_steps, hessian): change those, start a
new file.

Cheap with a classical oracle (Stillinger-Weber Si16: about a minute per run on one core).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

warnings.filterwarnings("ignore")


def replay(store_path: str, cfg, cache: dict) -> list[list[dict]]:
    """Per run in the store, per cycle: what validating that cycle's clusters finds.

    The clusters are those the search's validation takes under ``cfg`` (the lowest, and
    ``validation.n_novel`` novel ones, recomputed from the cycle's pool and training set, so
    searches made before novel clusters existed replay with them too). ``cache`` maps
    ``run_id/cycle/candidate`` to a finished oracle relaxation; new ones are added to it.
    """
    from crysal_flows.analysis.clustering import cluster_low_energy
    from crysal_flows.analysis.schemas import CycleSummary
    from crysal_flows.analysis.summary import novel_clusters
    from crysal_flows.generation.schemas import PoolDocument
    from crysal_flows.labelling.schemas import TrainingSetDocument
    from crysal_flows.runs import find_runs, load_run
    from crysal_flows.store import local_store
    from crysal_flows.training.schemas import EnsembleDocument
    from crysal_flows.utils import fingerprint, structure_to_atoms
    from crysal_flows.validation.jobs import (
        _starting_hessians,
        build_reference,
        matches_reference,
        oracle_relax,
        validation_clusters,
    )

    refs = [build_reference(r) for r in cfg.references]
    an = cfg.analysis
    store = local_store(store_path, create=False)
    store.connect()
    runs = []
    for run_id in find_runs(store):
        view = load_run(store, run_id)
        rows = []
        # a search on a prior: the pool as the prior alone relaxed it, before cycle 0
        start = store.query_one(
            {
                "metadata.crysal_run": run_id,
                "metadata.crysal_step": "merge_shards",
                "metadata.crysal_cycle": -1,
            },
            properties=["uuid"],
        )
        start_fingerprints = None
        if start is not None:
            start_pool = PoolDocument.model_validate(store.get_output(start["uuid"], load=True))
            start_fingerprints = [
                cl.fingerprint
                for cl in cluster_low_energy(
                    start_pool.candidates,
                    an.energy_window,
                    an.cluster_energy_tolerance,
                    an.cluster_fingerprint_tolerance,
                )[:10]
            ]
        for s in view.summaries:
            pool = PoolDocument.model_validate(store.get_output(s["resume"]["pool"], load=True))
            by_index = {c.index: c for c in pool.candidates}
            summary = CycleSummary.model_validate({k: v for k, v in s.items() if k[0] != "@"})
            training_set = TrainingSetDocument.model_validate(
                store.get_output(s["resume"]["training_set"], load=True)
            )
            clusters = cluster_low_energy(
                pool.candidates,
                an.energy_window,
                an.cluster_energy_tolerance,
                an.cluster_fingerprint_tolerance,
            )
            summary.novel_clusters = novel_clusters(pool, clusters, training_set, cfg)
            chosen = validation_clusters(summary, cfg.validation.n_structures)
            keys = [f"{run_id}/{s['cycle']}/{cl.representative}" for cl in chosen]
            todo = [(k, cl) for k, cl in zip(keys, chosen, strict=True) if k not in cache]
            if todo:
                # from the cycle's ensemble's Hessian where validation.hessian says so
                ensemble = EnsembleDocument.model_validate(
                    store.get_output(s["resume"]["ensemble"], load=True)
                )
                structures = [by_index[cl.representative].structure for _, cl in todo]
                hessians = _starting_hessians(
                    structures, ensemble, cfg.validation.hessian, cfg.oracle
                )
                for (key, _), structure, hessian in zip(todo, structures, hessians, strict=True):
                    doc = oracle_relax(
                        structure,
                        cfg.oracle,
                        cfg.validation.fmax,
                        cfg.validation.max_steps,
                        hessian=hessian,
                    )
                    cache[key] = {
                        "calls": doc.oracle_calls,
                        "success": doc.success,
                        "energy_per_atom": doc.energy_per_atom if doc.success else None,
                        "found": bool(doc.success)
                        and any(matches_reference(doc.structure, r) for r in refs),
                    }
            done = [cache[k] for k in keys]
            energies = [d["energy_per_atom"] for d in done if d["success"]]
            rows.append(
                {
                    "run": view.name,
                    "cycle": s["cycle"],
                    "found": any(d["found"] for d in done),
                    "found_by": [
                        f"{'novel ' if cl.label_distance is not None else ''}{cl.rank}"
                        for cl, d in zip(chosen, done, strict=True)
                        if d["found"]
                    ],
                    "best": min(energies, default=None),
                    "validation_calls": sum(d["calls"] for d in done),
                    "single_points": s["oracle_single_points"],
                    "change": s.get("top_energy_change"),
                    "mae": s.get("prediction_mae"),
                    "converged": s.get("converged"),
                    "best_reliable": bool(s["clusters"]) and bool(s["clusters"][0]["reliable"]),
                    "best_moved": bool(s["clusters"])
                    and not by_index[s["clusters"][0]["representative"]].stuck,
                    "best_converged_cycle": by_index[
                        s["clusters"][0]["representative"]
                    ].converged_cycle
                    if s["clusters"]
                    else None,
                    "fingerprints": [
                        fingerprint(structure_to_atoms(by_index[c["representative"]].structure))
                        for c in s["clusters"][:10]
                    ],
                    "start_fingerprints": start_fingerprints,
                }
            )
        runs.append(rows)
    return runs


def new_in_top(prev: dict, cur: dict, k: int, tol: float) -> bool:
    """Whether one of ``cur``'s top ``k`` clusters matches none of ``prev``'s top 10."""
    return any(
        all(np.linalg.norm(fp - p) >= tol for p in prev["fingerprints"])
        for fp in cur["fingerprints"][:k]
    )


def rules(cfg) -> dict:
    """name -> predicate(rows, i): whether the rule stops after cycle ``rows[i]``."""
    an = cfg.analysis
    tol = an.cluster_fingerprint_tolerance

    def accurate(r):
        return r["mae"] is not None and r["mae"] <= an.max_prediction_error

    def recent(r, times):
        # moved by the newest ensemble, or converged by one of the cycles it held through
        c = r["best_converged_cycle"]
        return r["best_moved"] or (c is not None and c >= r["cycle"] - times + 1)

    def quiet(rows, i, k, times, start=False):
        # with ``start``, a search on a prior compares cycle 0 with the prior's own relaxation
        first = 0 if start and rows[0]["start_fingerprints"] else 1
        return i - times + 1 >= first and all(
            not new_in_top(
                rows[j - 1] if j else {"fingerprints": rows[0]["start_fingerprints"]},
                rows[j],
                k,
                tol,
            )
            for j in range(i - times + 1, i + 1)
        )

    out = {"current": lambda rows, i: bool(rows[i]["converged"])}
    for k in (1, 3, an.n_top_clusters):
        for times in (1, 2, 3):
            name = f"no-new-top{k}" + (f"x{times}" if times > 1 else "")
            out[name] = lambda rows, i, k=k, t=times: quiet(rows, i, k, t)
            out[name + "+mae"] = lambda rows, i, k=k, t=times: (
                quiet(rows, i, k, t) and accurate(rows[i])
            )
            out[name + "+rel"] = lambda rows, i, k=k, t=times: (
                quiet(rows, i, k, t) and rows[i].get("best_reliable", False)
            )
            out[name + "+moved"] = lambda rows, i, k=k, t=times: (
                quiet(rows, i, k, t) and rows[i]["best_moved"]
            )
            out[name + "+settled"] = lambda rows, i, k=k, t=times: (
                quiet(rows, i, k, t) and (rows[i]["best_moved"] or rows[i]["best_reliable"])
            )
            out[name + "+moved+start"] = lambda rows, i, k=k, t=times: (
                quiet(rows, i, k, t, start=True) and rows[i]["best_moved"]
            )
            out[name + "+recent+start"] = lambda rows, i, k=k, t=times: (
                quiet(rows, i, k, t, start=True) and recent(rows[i], t)
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="the runs' search configuration (oracle, references)")
    ap.add_argument("--stores", nargs="+", required=True, help="store directories of the runs")
    ap.add_argument(
        "--cache", help="JSON file of replayed validations: read if it exists, else written"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change a setting of the configuration, e.g. validation.n_novel=0",
    )
    args = ap.parse_args()
    import yaml

    from crysal_flows.config import load_config

    with open(args.config) as f:
        raw = yaml.safe_load(f)
    for text in args.set:
        key, sep, value = text.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {text!r}: give SECTION.KEY=VALUE")
        raw.setdefault(section, {})[name] = yaml.safe_load(value)
    cfg = load_config(raw)
    if not cfg.references:
        raise SystemExit(f"{args.config} lists no references to match against")
    cache: dict = {}
    if args.cache and os.path.exists(args.cache):
        with open(args.cache) as f:
            cache = json.load(f)
        print(f"{len(cache)} replayed oracle relaxations read from {args.cache}")
    runs = []
    try:
        for path in args.stores:
            runs += replay(path, cfg, cache)
    finally:  # what was relaxed is kept, also when interrupted
        if args.cache:
            with open(args.cache, "w") as f:
                json.dump(cache, f)
    an = cfg.analysis

    def energies(r: dict) -> bool:
        """The search's energy rule, from the stored summary (not the run's own decision)."""
        return (
            r["change"] is not None
            and r["change"] <= an.energy_tolerance
            and r["mae"] is not None
            and r["mae"] <= an.max_prediction_error
            and r["best_reliable"]
        )

    k = an.best_held_cycles  # the search's held rule, beside its energies
    held = rules(cfg).get(f"no-new-top1{f'x{k}' if k > 1 else ''}+recent+start") if k else None
    for rows in runs:
        print(
            f"{rows[0]['run']}: validating cycle 0..{rows[-1]['cycle']} finds the reference: "
            + " ".join("yes" if r["found"] else "no" for r in rows)
            + "; single points "
            + " ".join(str(r["single_points"]) for r in rows)
            + "; validation steps "
            + " ".join(str(r["validation_calls"]) for r in rows)
        )
        at = next(
            (
                i
                for i in range(len(rows))
                if rows[i]["cycle"] + 1 >= cfg.analysis.min_cycles
                and (energies(rows[i]) or (held is not None and held(rows, i)))
            ),
            None,
        )
        if at is None and rows[-1]["cycle"] + 1 < cfg.analysis.max_cycles:
            # the run stopped under the rules it ran with; these would have gone on
            print(
                f"  with the search's own stopping rules: not known, they go on past cycle "
                f"{rows[-1]['cycle']}, where the run stopped under the rules it ran with"
            )
            continue
        r = rows[len(rows) - 1 if at is None else at]
        print(
            f"  with the search's own stopping rules: after cycle {r['cycle']}, oracle cost "
            f"{r['single_points'] + r['validation_calls']} ({r['single_points']} + "
            f"{r['validation_calls']}), "
            + (f"found (by cluster {', '.join(r['found_by'])})" if r["found"] else "missed")
        )
    print()
    tally = {}
    min_cycles, max_cycles = cfg.analysis.min_cycles, cfg.analysis.max_cycles
    for name, stops in rules(cfg).items():
        cells = []
        n_stop = n_missed = saved = 0
        for rows in runs:
            eligible = [i for i in range(len(rows)) if rows[i]["cycle"] + 1 >= min_cycles]
            at = next((i for i in eligible if stops(rows, i)), None)
            # a run that met its own criterion has no rows after it: past them, nothing is known
            ended_early = rows[-1]["cycle"] + 1 < max_cycles
            if at is None:
                cells.append("?" if ended_early else "-")
                continue
            if at == len(rows) - 1 and not ended_early:
                cells.append("-")
                continue
            n_stop += 1
            saved += rows[-1]["single_points"] - rows[at]["single_points"]
            lost = rows[-1]["found"] and not rows[at]["found"]
            n_missed += lost
            cells.append(f"{rows[at]['cycle']}{'!' if lost else ''}")
        tally[name] = (n_stop, n_missed, saved)
        print(
            f"{name:22s} stops after cycle: {' '.join(f'{c:>3}' for c in cells)}   "
            f"stopped before max_cycles {n_stop}/{len(runs)}, missed {n_missed}, "
            f"single points saved {saved}"
        )
    print(
        "\n(-: ran to the end; !: stopped where validation misses what the last cycle finds; "
        "?: the run met its own criterion before this rule stopped it, and went no further)"
    )


if __name__ == "__main__":
    main()
