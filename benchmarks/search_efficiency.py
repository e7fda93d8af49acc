"""Oracle cost of the active-learning search against random structure search, on the same pool.

For each system and seed, in one run:

1. the active-learning search (``CrystalSearchMaker``, run as ``crysal run`` runs it: members and
   shards side by side in ``--processes`` worker processes; the result does not depend on it);
2. the random-structure-search baseline on the *same* pool (the search's cycle-0 pool, same
   generator, same seed): a random subset of ``--baseline-size`` candidates (48; 0: all) is
   relaxed with the oracle (BFGS on positions and cell, as the search's validation), counting
   oracle calls, and matched against the ground state;
3. the ground state: the system's known prototype relaxed with the oracle, matched with pymatgen's
   StructureMatcher (as the search's report does).

Baseline cost. Relaxing the candidates in a random order until the first one reaches the ground
state costs, in expectation over all orders of the N relaxed candidates of which K succeed,

    E[cost] = sum_{i fails} c_i / (K + 1) + sum_{i succeeds} c_i / K

(a failing candidate comes before every success with probability 1/(K+1); a succeeding one is the
first success with probability 1/K). This is exact for the relaxed candidates, no sampling; for a
random subset of the pool it estimates the pool's expectation (the same success rate and cost per
candidate, up to sampling noise: the table gives K/N). With K = 0 the baseline did not find the
ground state at all; the table then shows the cost of the relaxed candidates (">"): a lower bound
for them, an estimate of one for the pool.

    python benchmarks/search_efficiency.py Si16 Na8Cl8 Ga8As8 Al4O6 --seeds 0 1 2
    python benchmarks/search_efficiency.py Si8 --oracle stillinger_weber --quick     # minutes
    python benchmarks/search_efficiency.py Si16 --transfer Si32    # and Si32 from the Si16 models
    python benchmarks/search_efficiency.py --report out_a out_b --out merged   # merge runs

An interrupted run started again with the same ``--out`` skips the systems and seeds already in
its ``results.json``.

With ``--prior chgnet`` (or ``sevennet``) it also runs, on the same pools and oracle, the
universal-potential prescreen (relax the pool with the prior alone, oracle-relax its lowest
``validation.n_structures`` distinct minima) and the search on that prior.

Writes ``results.json``, ``cost.png`` (every method and seed: its oracle calls and the best oracle
energy it reached) and, for every search, the ``crysal plot`` figures under ``runs/`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

# one core per process (set before numpy loads its BLAS): the oracle's relaxations otherwise spread
# OpenMP/BLAS threads over both cores and slow a second benchmark process beside this one
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

warnings.filterwarnings("ignore")


def prototype(system: str):
    """The known ground-state prototype of ``system`` as a pymatgen Structure (primitive cell)."""
    from ase.build import bulk
    from pymatgen.core import Lattice, Structure

    from crysal_flows.utils import atoms_to_structure

    if system.startswith("Si"):
        return atoms_to_structure(bulk("Si", "diamond", a=5.43))
    if system.startswith("Na") and "Cl" in system:
        return atoms_to_structure(bulk("NaCl", "rocksalt", a=5.64))
    if system.startswith("Ga") and "As" in system:
        return atoms_to_structure(bulk("GaAs", "zincblende", a=5.65))
    if system.startswith("Al") and "O" in system:
        # corundum, hexagonal setting: Al 12c (0, 0, 0.3523), O 18e (0.3064, 0, 1/4)
        return Structure.from_spacegroup(
            "R-3c", Lattice.hexagonal(4.76, 12.99), ["Al", "O"], [[0, 0, 0.3523], [0.3064, 0, 0.25]]
        ).get_primitive_structure()
    raise ValueError(f"no prototype known for {system}: Si*, Na*Cl*, Ga*As*, Al*O*")


PROTOTYPE_NAMES = {"Si": "diamond", "Na": "rocksalt", "Ga": "zincblende", "Al": "corundum"}


def polytypes(system: str) -> dict:
    """Other stackings of the prototype's tetrahedral network, by name (primitive cells).

    An oracle may put one of them at or below the prototype: CHGNet puts hexagonal diamond
    Si 0.3-0.5 meV/atom below cubic diamond, wurtzite GaAs 0.7-0.9 above zincblende (primitive
    and 16-atom cells). Where it does, the oracle's lowest known structure is the polytype, and
    a method that reaches it has found the ground state as much as one that reaches the
    prototype (``ground_states``).
    """
    from pymatgen.core import Lattice, Structure

    if system.startswith("Si"):
        return {
            "hexagonal diamond": Structure.from_spacegroup(
                "P6_3/mmc", Lattice.hexagonal(3.84, 6.33), ["Si"], [[1 / 3, 2 / 3, 1 / 16]]
            )
        }
    if system.startswith("Ga") and "As" in system:
        return {
            "wurtzite": Structure.from_spacegroup(
                "P6_3mc",
                Lattice.hexagonal(3.99, 6.56),
                ["Ga", "As"],
                [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.375]],
            )
        }
    return {}


def ground_states(system: str, oracle: str, fmax: float = 0.05, max_steps: int = 300) -> list:
    """The structures that count as the ground state of ``system`` under ``oracle``, relaxed by it.

    The prototype (``prototype``) first, then each polytype the oracle puts at or below it
    (``polytypes``), as ``(name, OracleRelaxDocument)``. Matching any of them (``reached``) is a
    find, for every method alike.
    """
    from crysal_flows.config import OracleConfig
    from crysal_flows.validation.jobs import oracle_relax

    kind = OracleConfig(kind=oracle)
    first = oracle_relax(prototype(system), kind, fmax, max_steps)
    states = [(PROTOTYPE_NAMES[system[:2]], first)]
    for name, structure in polytypes(system).items():
        doc = oracle_relax(structure, kind, fmax, max_steps)
        if doc.success and doc.energy_per_atom <= first.energy_per_atom:
            states.append((name, doc))
    return states


def _matches(structure, ground_state, energy_per_atom: float | None = None) -> bool:
    """Whether ``structure`` is the ground state: a Structure (StructureMatcher alone), or the
    list of ``ground_states``, matched as the search's report matches its references (with the
    oracle energies within ``MATCH_ENERGY_TOL`` where ``energy_per_atom`` is given: a saddle of
    the same topology, such as Si's P6/mmm beside hexagonal diamond, is not a find)."""
    from crysal_flows.validation.jobs import matches_reference

    if isinstance(ground_state, list):
        return reached(structure, energy_per_atom, ground_state) is not None
    return bool(matches_reference(structure, ground_state))


def reached(structure, energy_per_atom: float | None, states: list) -> str | None:
    """The name of the ground state (``ground_states``) that ``structure`` matches, or None."""
    from crysal_flows.validation.jobs import matches_reference

    for name, doc in states:
        if matches_reference(structure, doc.structure, energy_per_atom, doc.energy_per_atom):
            return name
    return None


def search_config(system: str, seed: int, oracle: str, quick: bool, ref_file: str) -> dict:
    """The search of one system: examples/si16.yaml's settings with a pool of 192, and the oracle.

    The pool is 4x examples/si16.yaml's: relaxing it with the ensemble costs seconds per cycle
    against minutes of training, and with 48 candidates the search missed diamond Si16 under
    CHGNet on seeds 0 and 1, where 192 found it on both.
    """
    from crysal_flows.utils import parse_composition

    n_atoms = sum(parse_composition(system).values())
    cfg: dict[str, Any] = {
        "name": f"{system}-{seed}",
        "composition": system,
        "seed": seed,
        "pool": {"size": 192},
        "selection": {"n_labels": 16, "n_labels_first": 32},
        "training": {"n_members": 3, "epochs": 100, "warm_start_epochs": 40},
        "relaxation": {"max_steps": 150, "patience": 40, "n_shards": 2},
        "analysis": {
            "min_cycles": 3,
            "max_cycles": 6,
            "energy_tolerance": 0.01,
            "max_prediction_error": 0.03,
        },
        "validation": {"n_structures": 5},
        "oracle": {"kind": oracle},
        "references": [{"label": PROTOTYPE_NAMES[system[:2]], "file": ref_file}],
    }
    if quick:
        cfg.update(
            pool={"size": 16},
            selection={"n_labels": 8, "n_labels_first": 16},
            training={"n_members": 2, "epochs": 30, "warm_start_epochs": 15},
            relaxation={"max_steps": 80, "patience": 30, "n_shards": 2},
            analysis={
                "min_cycles": 2,
                "max_cycles": 3,
                "energy_tolerance": 0.02,
                "max_prediction_error": 0.05,
            },
            validation={"n_structures": 3},
        )
    if n_atoms > 24:
        cfg["relaxation"]["batch_size"] = 32
    return cfg


def prior_search_config(cfg: dict, prior: str, changes: dict | None = None) -> dict:
    """The search on a prior: the same search with ``training.prior``, as examples/quick-prior.yaml
    differs from examples/quick.yaml. Its cycle 0 starts from the prior's relaxation of the pool,
    not from an ensemble trained on random cells, so it labels ``selection.n_labels`` there, not
    ``n_labels_first``, and it may stop after its first cycle (``analysis.min_cycles`` 1) when
    those labels show the prior was right. ``changes`` ({"section.key": value}) apply last."""
    pcfg = json.loads(json.dumps(cfg))
    pcfg["name"] = f"{cfg['name']}-{prior}"
    pcfg["training"]["prior"] = {"kind": prior}
    pcfg["selection"]["n_labels_first"] = pcfg["selection"]["n_labels"]
    pcfg["analysis"]["min_cycles"] = 1
    for key, value in (changes or {}).items():
        section, _, name = key.partition(".")
        pcfg.setdefault(section, {})[name] = value
    return pcfg


def run_search(cfg: dict, store_dir: Path) -> tuple[dict, list[dict], float]:
    """The active-learning search, as ``crysal run`` runs it; its report, summaries, wall time."""
    from crysal_flows.config import load_config
    from crysal_flows.flows import CrystalSearchMaker
    from crysal_flows.local import run_flow
    from crysal_flows.store import local_store

    config = load_config(cfg)
    store = local_store(store_dir)
    t0 = time.perf_counter()
    run_flow(
        CrystalSearchMaker(config=config).make(),
        store=store,
        processes=PROCESSES,
        ensure_success=True,
        log=False,
        root_dir=str(store_dir / "jobs"),
    )
    seconds = time.perf_counter() - t0
    store.connect()
    report = store.query_one({"metadata.crysal_step": "report"}, load=True)["output"]
    summaries = sorted(
        (d["output"] for d in store.query({"metadata.crysal_step": "analyse"}, load=True)),
        key=lambda s: s["cycle"],
    )
    store.close()
    return report, summaries, seconds


def run_baseline(
    cfg: dict,
    ground_state,
    fmax: float,
    max_steps: int,
    size: int | None = None,
) -> dict:
    """Relax the search's pool (or a random subset of ``size``) with the oracle; cost and success.

    The subset is drawn with the search's seed, without replacement; the expected cost over the
    orders of the subset then estimates the pool's (same success rate, same cost per candidate).
    """
    from many_minima import expected_first_hit  # benchmarks/, beside this script

    from crysal_flows.config import load_config
    from crysal_flows.generation.jobs import generate_pool
    from crysal_flows.validation.jobs import oracle_relax

    config = load_config(cfg)
    pool = generate_pool(config.composition, config.pool, config.seed)
    n = len(pool.candidates)
    picked = (
        range(n)
        if size is None or size >= n
        else sorted(np.random.default_rng([config.seed, 11]).choice(n, size, replace=False))
    )
    t0 = time.perf_counter()
    rows = []
    for j, i in enumerate(picked):
        cand = pool.candidates[i]
        doc = oracle_relax(cand.structure, config.oracle, fmax, max_steps)
        ok = bool(doc.success and _matches(doc.structure, ground_state, doc.energy_per_atom))
        rows.append(
            {
                "index": int(i),
                "calls": doc.oracle_calls,
                "success": ok,
                "energy_per_atom": doc.energy_per_atom if doc.success else None,
            }
        )
        print(
            f"  baseline {j + 1}/{len(picked)} (candidate {i}): {doc.oracle_calls} calls, "
            f"{'ground state' if ok else 'other'}"
            f"{'' if doc.energy_per_atom is None else f', {doc.energy_per_atom:.4f} eV/atom'}",
            flush=True,
        )
    costs = np.array([r["calls"] for r in rows], dtype=float)
    hits = np.array([r["success"] for r in rows])
    k = int(hits.sum())
    expected = expected_first_hit(costs, hits) if k else None
    return {
        "candidates": rows,
        "n_success": k,
        "expected_cost": expected,
        "pool_size": n,
        "total_cost": float(costs.sum()),
        "seconds": time.perf_counter() - t0,
    }


def run_prescreen(cfg: dict, prior: str, ground_state, fmax: float, max_steps: int) -> dict:
    """The universal-potential shortcut on the search's pool: relax every candidate with the prior
    alone (FIRE with the cell, as the search relaxes), then oracle-relax the lowest
    ``validation.n_structures`` distinct minima; its oracle cost is those relaxations' steps.

    Candidates whose cells exploded or collapsed under the prior are dropped as failed (the same
    sanity checks as the search's relaxations), not validated.
    """
    from crysal_flows.config import PriorConfig
    from crysal_flows.models.ensemble import Ensemble
    from crysal_flows.models.prior import get_prior

    alone = Ensemble([], [], prior=get_prior(PriorConfig(kind=prior)))
    return {"prior": prior, **relax_and_validate(cfg, alone, prior, ground_state, fmax, max_steps)}


def relax_and_validate(
    cfg: dict,
    model,
    name: str,
    ground_state,
    fmax: float,
    max_steps: int,
    uncertainty_stop: bool = True,
) -> dict:
    """Relax the configuration's pool with ``model`` alone (an ensemble: a prior, or members
    trained elsewhere), then oracle-relax the lowest ``validation.n_structures`` distinct minima:
    no labels, only validation. ``uncertainty_stop=False``: every candidate relaxes to the
    end, since no label will follow where the members disagree. Returns the cost (validation
    steps), whether the ground state was among them, the best oracle energy and the validated
    minima with their space groups."""
    from crysal_flows.analysis.clustering import cluster_low_energy
    from crysal_flows.config import load_config
    from crysal_flows.generation.jobs import generate_pool
    from crysal_flows.relaxation.relax import relax_batched
    from crysal_flows.utils import atoms_to_structure, space_group, structure_to_atoms
    from crysal_flows.validation.jobs import oracle_relax

    config = load_config(cfg)
    pool = generate_pool(config.composition, config.pool, config.seed)
    update = {"max_steps": max_steps, "fmax": fmax, "patience": max_steps}
    if not uncertainty_stop:
        update.update(uncertainty_ratio=math.inf, energy_trust=None, uncertainty_quantile=None)
    relax = config.relaxation.model_copy(update=update)
    t0 = time.perf_counter()
    outcomes = relax_batched(
        [structure_to_atoms(c.structure) for c in pool.candidates],
        model,
        relax,
        pool.reference_volume,
    )
    relaxed_s = time.perf_counter() - t0
    cands = [
        c.model_copy(
            update={
                "structure": atoms_to_structure(o.best_atoms),
                "energy_per_atom": o.energy / pool.n_atoms,
                "status": o.status,
            }
        )
        for c, o in zip(pool.candidates, outcomes, strict=True)
    ]
    an = config.analysis
    clusters = cluster_low_energy(
        cands, an.energy_window, an.cluster_energy_tolerance, an.cluster_fingerprint_tolerance
    )
    rows = []
    for cl in clusters[: config.validation.n_structures]:
        doc = oracle_relax(cands[cl.representative].structure, config.oracle, fmax, max_steps)
        ok = doc.success and doc.structure is not None
        rows.append(
            {
                "index": cl.representative,
                "model_energy_per_atom": cl.energy_per_atom,
                "calls": doc.oracle_calls,
                "energy_per_atom": doc.energy_per_atom,
                "space_group": space_group(doc.structure)[0] if ok else None,
                "success": bool(ok and _matches(doc.structure, ground_state, doc.energy_per_atom)),
            }
        )
        print(
            f"  {name} {len(rows)}/{config.validation.n_structures} (candidate "
            f"{cl.representative}, {cl.energy_per_atom:.4f} eV/atom): "
            f"{doc.oracle_calls} calls, {'ground state' if rows[-1]['success'] else 'other'}",
            flush=True,
        )
    ok = [r["energy_per_atom"] for r in rows if r["energy_per_atom"] is not None]
    return {
        "found": any(r["success"] for r in rows),
        "cost": sum(r["calls"] for r in rows),
        "best": min(ok) if ok else None,
        "validated": rows,
        "failed": sum(o.status.value == "failed" for o in outcomes),
        "statuses": {
            st: sum(o.status.value == st for o in outcomes)
            for st in {o.status.value for o in outcomes}
        },
        "relax_seconds": relaxed_s,  # the pool's relaxation alone (prior or frozen ensemble)
        "seconds": time.perf_counter() - t0,
    }


PROCESSES = 1  # worker processes of the search (--processes)

METHODS = {  # key: (label, colour)
    "random": ("random structure search (expected cost)", "#e6ab02"),
    "prescreen": ("universal-potential prescreen", "#d95f02"),
    "scratch": ("active learning from scratch", "#1f4e9c"),
    "prior": ("active learning on the prior", "#1b9e77"),
}
SEED_MARKERS = "osD^vP"
METHOD_SIZES = {"random": 16, "prescreen": 13, "scratch": 10, "prior": 7}


def _points(r: dict) -> list[tuple[str, float, float, bool]]:
    """(method, oracle calls, best oracle energy above the ground state in meV/atom, found)."""
    gs, pts = r["ground_state_energy"], []
    b = r["baseline"]
    energies = [c["energy_per_atom"] for c in b["candidates"] if c["energy_per_atom"] is not None]
    if b["n_success"]:
        pts.append(("random", b["expected_cost"], 0.0, True))
    elif energies:
        pts.append(("random", b["total_cost"], (min(energies) - gs) * 1000, False))

    def gap(best: float | None, found: bool) -> float:
        # a method that found the ground state is at it: its relaxation of the same structure
        # differs from the reference's by round-off only (a few 0.001 meV/atom, either sign)
        return 0.0 if found else (math.nan if best is None else (best - gs) * 1000)

    def best(report: dict) -> float | None:
        return min((m["energy_per_atom"] for m in report["minima"]), default=None)

    pts.append(
        ("scratch", r["search"]["oracle_cost"], gap(best(r["search"]), r["found"]), r["found"])
    )
    if "prescreen" in r and r["prescreen"]["best"] is not None:
        ps = r["prescreen"]
        pts.append(("prescreen", ps["cost"], gap(ps["best"], ps["found"]), ps["found"]))
    if "prior_search" in r:
        p = r["prior_search"]
        pts.append(
            ("prior", p["search"]["oracle_cost"], gap(best(p["search"]), p["found"]), p["found"])
        )
    return pts


def _energy_gap_limits(ax) -> None:
    """At least -10 to 50 meV/atom on an energy-above-the-ground-state axis: where every method
    found the ground state (all at 0) matplotlib would zoom in on nothing."""
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -10.0), max(high, 50.0))


def _plain_log_axis(ax) -> None:
    """A logarithmic x axis labelled 20, 50, 100, 200, ... instead of powers of ten; where the
    axis spans less than a factor of 4 (all costs alike), evenly spaced round ticks (120, 130,
    ...) are labelled instead, else such an axis would show one label or none (a cost of 139
    between ticks at 100 and 200)."""
    from matplotlib.ticker import FuncFormatter, Locator, LogLocator, MaxNLocator

    class _Ticks(Locator):
        def __init__(self, minor: bool):
            self.minor = minor

        def __call__(self):
            low, high = self.axis.get_view_interval()
            return self.tick_values(low, high)

        def tick_values(self, vmin, vmax):
            if 0 < vmin and vmax / vmin < 4:
                even = MaxNLocator(6, steps=[1, 2, 2.5, 5, 10])
                return [] if self.minor else even.tick_values(vmin, vmax)
            log = LogLocator(subs="auto" if self.minor else (1.0,))
            return log.tick_values(vmin, vmax)

    def minor(x: float, _) -> str:
        return f"{x:g}" if f"{x:g}"[0] in "25" else ""

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(_Ticks(minor=False))
    ax.xaxis.set_minor_locator(_Ticks(minor=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(minor))


def _grey_key(label: str, **style):
    """A grey legend entry (a round marker, no line unless ``style`` says) for a marker style."""
    from matplotlib.lines import Line2D

    return Line2D(
        [], [], **{"color": "#555555", "marker": "o", "ls": "none", "ms": 10, **style}, label=label
    )


def _seed_handles(seeds: list[int]) -> list:
    """Legend entries telling the seeds apart by marker."""
    from matplotlib.lines import Line2D

    return [
        Line2D(
            [],
            [],
            color="#555555",
            marker=SEED_MARKERS[k % len(SEED_MARKERS)],
            ls="none",
            mfc="white",
            ms=9,
            label=f"seed {s}",
        )
        for k, s in enumerate(seeds)
    ]


def _plots(results: list[dict], out: Path, sources: list[Path] | None = None) -> None:
    """cost.png: each method and seed, its oracle calls and the best oracle energy it reached;
    and for every search its own figures (``crysal plot``) under runs/."""
    from matplotlib.lines import Line2D

    from crysal_flows.plots import _pyplot

    plt = _pyplot()
    systems = sorted({r["system"] for r in results})
    fig, axes = plt.subplots(
        1,
        len(systems),
        figsize=(5.6 * len(systems) + 4.4, 5.0),
        squeeze=False,
        constrained_layout=True,
    )
    seeds = sorted({r["seed"] for r in results})
    shown = {point[0] for r in results for point in _points(r)}
    for ax, system in zip(axes[0], systems, strict=True):
        for r in (r for r in results if r["system"] == system):
            marker = SEED_MARKERS[seeds.index(r["seed"]) % len(SEED_MARKERS)]
            for method, x, y, found in _points(r):
                colour = METHODS[method][1]
                ax.plot(
                    [x],
                    [y],
                    marker,
                    ms=METHOD_SIZES[method],  # where two coincide, the smaller sits inside
                    mew=2,
                    color=colour,
                    mfc=colour if found else "white",
                    ls="none",
                )
        ax.axhline(0, color="#555555", ls="--", lw=1)
        _plain_log_axis(ax)
        _energy_gap_limits(ax)
        ax.set_xlabel("oracle calls (single points + relaxation steps)")
        ax.set_ylabel("best oracle energy above the ground state (meV/atom)")
        ax.set_title(system)
    handles = [
        Line2D([], [], color=c, marker="o", ls="none", ms=9, label=label)
        for method, (label, c) in METHODS.items()
        if method in shown  # only the methods this run measured
    ]
    handles += _seed_handles(seeds)
    handles += [
        _grey_key("filled: found the ground state", ms=9),
        _grey_key("open: missed it (random search: all its oracle calls)", ms=9, mfc="white"),
    ]
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.savefig(out / "cost.png", dpi=120)
    plt.close(fig)
    _run_plots(results, out, sources or [out])


def _run_plots(results: list[dict], out: Path, sources: list[Path]) -> None:
    """The ``crysal plot`` figures of every search whose store is in one of ``sources``, to
    ``out``/runs."""
    from crysal_flows.plots import plot_run
    from crysal_flows.runs import load_run
    from crysal_flows.store import local_store

    for r in results:
        runs = [("_scratch", "", r["search"])]
        if "prior_search" in r:
            kind = r["prior_search"]["config"]["training"]["prior"]["kind"]
            runs.append((f"_{kind}", f"_{kind}", r["prior_search"]["search"]))
        for name, suffix, report in runs:
            store_name = f"store_{r['system']}_{r['seed']}{suffix}"
            path = next((d / store_name for d in sources if (d / store_name).exists()), None)
            if path is None:
                continue
            store = local_store(path, create=False)
            store.connect()
            try:
                view = load_run(store, report["run_id"])
            finally:
                store.close()
            plot_run(view, out / "runs" / f"{r['system']}_{r['seed']}{name}")


def _table(results: list[dict]) -> str:
    head = (
        f"{'system':<8} {'seed':>4} {'found':>5} {'cycles':>6} {'single pts':>10} "
        f"{'valid.':>6} {'AL cost':>7} {'RS hits':>7} {'RS cost':>8} {'RS/AL':>6} "
        f"{'AL wall':>8} {'RS wall':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        s, b = r["search"], r["baseline"]
        al = s["oracle_single_points"] + s["validation_steps"]
        rs = b["expected_cost"]
        rs_txt = f"{rs:.0f}" if rs is not None else f">{b['total_cost']:.0f}"
        ratio = (rs if rs is not None else b["total_cost"]) / al
        # a ratio only means something when the search found the ground state
        ratio_txt = ((">" if rs is None else "") + f"{ratio:.1f}") if r["found"] else "n/a"
        lines.append(
            f"{r['system']:<8} {r['seed']:>4} {'yes' if r['found'] else 'no':>5} {s['cycles']:>6} "
            f"{s['oracle_single_points']:>10} {s['validation_steps']:>6} {al:>7} "
            f"{b['n_success']:>3}/{len(b['candidates']):<3} {rs_txt:>8} "
            f"{ratio_txt:>6} {r['search_seconds'] / 60:>7.1f}m "
            f"{b['seconds'] / 60:>7.1f}m"
        )
    for system in sorted({r["system"] for r in results}):
        rs = [r for r in results if r["system"] == system]
        rs_hits = sum(r["baseline"]["n_success"] > 0 for r in rs)
        lines.append(
            f"{system}: active learning found the ground state in "
            f"{sum(r['found'] for r in rs)}/{len(rs)} seeds; random search (its "
            f"relaxed candidates) in {rs_hits}/{len(rs)}"
        )
    return "\n".join(lines)


SUMMARY_KEYS = (
    "cycle",
    "sigma_force_median",
    "sigma_force_p90",
    "sigma_force_quantiles",
    "energies",
    "energy_quantiles",
    "best_energy_per_atom",
    "oracle_single_points",
    "status_counts",
    "prediction_mae",
    "top_energy_change",
    "decision",
)


def _summaries(summaries: list[dict]) -> list[dict]:
    return [{k: s.get(k) for k in SUMMARY_KEYS} for s in summaries]


def _write_config(cfg: dict, path: Path) -> None:
    """The search's configuration as a YAML file beside its store: ``crysal run`` repeats the
    search from it, and ``benchmarks/many_minima.py`` regenerates its pool."""
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _scratch_and_random(
    system: str, seed: int, cfg: dict, states: list, args: argparse.Namespace, out: Path
) -> dict:
    """The search from scratch and random structure search on its pool: one results row."""
    gs = states[0][1]
    print(f"{system} seed {seed}: active-learning search", flush=True)
    _write_config(cfg, out / f"config_{system}_{seed}.yaml")
    report, summaries, seconds = run_search(cfg, out / f"store_{system}_{seed}")
    found = bool(report["found"])
    print(
        f"{system} seed {seed}: found={found}, cost {report['oracle_cost']} "
        f"({report['oracle_single_points']} single points + "
        f"{report['validation_steps']} validation steps), {seconds / 60:.1f} min; "
        "random-search baseline on the same pool",
        flush=True,
    )
    baseline = run_baseline(cfg, states, args.fmax, args.max_steps, args.baseline_size or None)
    return {
        "system": system,
        "seed": seed,
        "oracle": args.oracle,
        "found": found,
        "ground_state_energy": gs.energy_per_atom,
        "search": report,
        "summaries": _summaries(summaries),
        "search_seconds": seconds,
        "baseline": baseline,
        "config": cfg,
    }


def _prior_table(results: list[dict]) -> str:
    """The four methods side by side: random search, the prescreen, the search from scratch and
    on the prior (cost: oracle calls; for random search its expectation)."""
    head = (
        f"{'system':<8} {'seed':>4} | {'RS found':>8} {'RS cost':>8} | {'PS found':>8} "
        f"{'PS cost':>7} | {'AL found':>8} {'AL cost':>7} | {'AL+prior':>8} {'cost':>6} "
        f"{'cycles':>6} {'wall':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if "prescreen" not in r:
            continue
        b, ps, s = r["baseline"], r["prescreen"], r["search"]
        rs = (
            f"{b['expected_cost']:.0f}"
            if b["expected_cost"] is not None
            else f">{b['total_cost']:.0f}"
        )
        p = r.get("prior_search")
        prior_txt = (
            (
                f"{'yes' if p['found'] else 'no':>8} {p['search']['oracle_cost']:>6} "
                f"{p['search']['cycles']:>6} {p['search_seconds'] / 60:>6.1f}m"
            )
            if p
            else ""
        )
        lines.append(
            f"{r['system']:<8} {r['seed']:>4} | {'yes' if b['n_success'] else 'no':>8} {rs:>8} | "
            f"{'yes' if ps['found'] else 'no':>8} {ps['cost']:>7} | "
            f"{'yes' if r['found'] else 'no':>8} {s['oracle_cost']:>7} | {prior_txt}"
        )
    return "\n".join(lines)


def run_transfer(args: argparse.Namespace, results: list[dict], out: Path) -> list[dict]:
    """The larger cell: searched from scratch and from the smaller cell's exported models, its
    pool relaxed by the smaller cell's ensemble alone and validated, and by random search."""
    from crysal_flows.config import OracleConfig
    from crysal_flows.models.checkpoint import export_members
    from crysal_flows.store import last_ensemble, local_store
    from crysal_flows.validation.jobs import oracle_relax

    small, large = args.systems[0], args.transfer
    gs = oracle_relax(prototype(large), OracleConfig(kind=args.oracle), args.fmax, args.max_steps)
    ref_file = out / f"ground_state_{large}.json"
    ref_file.write_text(gs.structure.to_json())
    rows = []
    for r in (r for r in results if r["system"] == small):
        seed = r["seed"]
        store = local_store(out / f"store_{small}_{seed}")
        store.connect()
        ensemble = last_ensemble(store, r["search"]["run_id"])
        store.close()
        models = out / f"models_{small}_{seed}"
        export_members(ensemble.members, models, {"run_id": r["search"]["run_id"]})
        for start in (s for s in ("scratch", "transfer") if s in args.transfer_starts):
            cfg = _large_config(large, seed, args, ref_file)
            cfg["name"] = f"{large}-{seed}-{start}"
            if start == "transfer":
                cfg["training"]["init_models"] = str(models)
            print(f"{large} seed {seed}: search from {start}", flush=True)
            report, _, seconds = run_search(cfg, out / f"store_{large}_{seed}_{start}")
            rows.append(
                {
                    "system": large,
                    "seed": seed,
                    "start": start,
                    "found": bool(report["found"]),
                    "cycles": report["cycles"],
                    "single_points": report["oracle_single_points"],
                    "validation_steps": report["validation_steps"],
                    "cost": report["oracle_cost"],
                    "seconds": seconds,
                    "best": min((m["energy_per_atom"] for m in report["minima"]), default=None),
                    "ground_state": gs.energy_per_atom,
                    "history": report["history"],
                    "minima": [
                        {
                            "space_group": m["space_group_symbol"],
                            "energy_per_atom": m["energy_per_atom"],
                            "matches": m["matches"],
                        }
                        for m in report["minima"]
                    ],
                }
            )
            (out / f"transfer_{large}.json").write_text(json.dumps(rows, indent=1))
            print(_transfer_table(rows[-1:]), flush=True)
        cfg = _large_config(large, seed, args, ref_file)
        if "frozen" in args.transfer_starts:
            rows.append(_frozen_transfer(cfg, ensemble, small, large, seed, gs, args))
            (out / f"transfer_{large}.json").write_text(json.dumps(rows, indent=1))
            print(_transfer_table(rows[-1:]), flush=True)
        if "random" not in args.transfer_starts:
            continue
        print(f"{large} seed {seed}: random structure search on the same pool", flush=True)
        b = run_baseline(cfg, gs.structure, args.fmax, args.max_steps, args.baseline_size or None)
        rows.append(
            {
                **b,
                "system": large,
                "seed": seed,
                "start": "random",
                "found": b["n_success"] > 0,
                "ground_state": gs.energy_per_atom,
            }
        )
        (out / f"transfer_{large}.json").write_text(json.dumps(rows, indent=1))
        print(_transfer_table(rows[-1:]), flush=True)
    _transfer_plot(rows, out)
    return rows


def _large_config(large: str, seed: int, args: argparse.Namespace, ref_file: Path) -> dict:
    """The larger cell's search configuration: the smaller one's settings (``--pool`` too)."""
    cfg = search_config(large, seed, args.oracle, args.quick, str(ref_file))
    cfg["validation"].update(max_steps=args.max_steps, fmax=args.fmax)
    if args.pool:
        cfg["pool"]["size"] = args.pool
    return cfg


def _frozen_transfer(cfg: dict, ensemble, small: str, large: str, seed: int, gs, args) -> dict:
    """The paper's transfer: the small cell's last ensemble relaxes the large cell's pool, and
    only validation calls the oracle on the large cell. One row of transfer_<large>.json."""
    from crysal_flows.models.ensemble import load_ensemble

    print(f"{large} seed {seed}: the {small} ensemble alone, then validation", flush=True)
    cfg = {**cfg, "name": f"{large}-{seed}-frozen"}
    frozen = relax_and_validate(
        cfg,
        load_ensemble(ensemble),
        f"{small} ensemble",
        gs.structure,
        args.fmax,
        args.max_steps,
        uncertainty_stop=False,
    )
    return {
        "system": large,
        "seed": seed,
        "start": "frozen",
        "found": frozen["found"],
        "cycles": 0,
        "single_points": 0,
        "validation_steps": frozen["cost"],
        "cost": frozen["cost"],
        "seconds": frozen["seconds"],
        "best": frozen["best"],
        "ground_state": gs.energy_per_atom,
        "history": [],
        "statuses": frozen["statuses"],
        "minima": [
            {
                "space_group": v["space_group"],
                "energy_per_atom": v["energy_per_atom"],
                "matches": ["ground state"] if v["success"] else [],
            }
            for v in sorted(
                (v for v in frozen["validated"] if v["energy_per_atom"] is not None),
                key=lambda v: v["energy_per_atom"],
            )
        ],
    }


TRANSFER_STARTS = {  # start: (label, colour)
    "scratch": ("search from scratch", METHODS["scratch"][1]),
    "transfer": ("search from the smaller cell's models", "#7570b3"),
    "frozen": ("the smaller cell's ensemble alone, then validation", "#e7298a"),
}


def _transfer_plot(rows: list[dict], out: Path) -> None:
    """transfer_<larger>.png: left, the ensemble's best pool energy per cycle (an ML estimate, open
    markers on a line) against the labels so far, and what each search and random search found
    with the oracle (filled: the ground state) against all their oracle calls; right, the
    ensemble's median force spread per cycle. Colours tell the starts apart, markers the seeds."""
    from matplotlib.lines import Line2D

    from crysal_flows.plots import _pyplot

    baselines = [r for r in rows if r["start"] == "random"]
    rows = [r for r in rows if r["start"] in TRANSFER_STARTS]
    if not rows:
        return
    plt = _pyplot()
    seeds = sorted({r["seed"] for r in rows})
    if any(r["history"] for r in rows):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5.4), layout="constrained")
    else:  # no search per cycle (the frozen ensemble and random search only): no spread panel
        fig, a1 = plt.subplots(figsize=(8, 5.4), layout="constrained")
        a2 = None
    for r in rows:
        colour = TRANSFER_STARTS[r["start"]][1]
        marker = SEED_MARKERS[seeds.index(r["seed"]) % len(SEED_MARKERS)]
        hist, gs = r["history"], r["ground_state"]
        labels = [h["labels"] for h in hist]
        a1.plot(
            labels,
            [(h["best_energy_per_atom"] - gs) * 1000 for h in hist],
            marker=marker,
            ls="-",
            lw=1.2,
            color=colour,
            mfc="white",
            ms=7,
        )
        if r["best"] is not None:
            a1.plot(
                [r["cost"]],
                [0.0 if r["found"] else (r["best"] - gs) * 1000],  # found: at it, no round-off
                marker,
                ms=11,
                mew=2,
                color=colour,
                mfc=colour if r["found"] else "white",
            )
        if a2 is None:
            continue
        a2.plot(
            labels,
            [h["sigma_force_median"] for h in hist],
            marker=marker,
            ls="-",
            color=colour,
            ms=7,
        )
    colours = {k: v[1] for k, v in TRANSFER_STARTS.items()}
    for b in baselines:
        marker = SEED_MARKERS[seeds.index(b["seed"]) % len(SEED_MARKERS)]
        found = b["n_success"] > 0
        energies = [
            c["energy_per_atom"] for c in b["candidates"] if c["energy_per_atom"] is not None
        ]
        if not energies:
            continue
        a1.plot(
            [b["expected_cost"] if found else b["total_cost"]],
            [0.0 if found else (min(energies) - b["ground_state"]) * 1000],
            marker,
            ms=11,
            mew=2,
            color=METHODS["random"][1],
            mfc=METHODS["random"][1] if found else "white",
        )
        colours["random"] = METHODS["random"][1]
    a1.axhline(0, color="#555555", ls="--", lw=1)
    _plain_log_axis(a1)
    a1.set_xlabel("oracle calls (single points + relaxation steps)")
    a1.set_ylabel("best energy above the ground state (meV/atom)")
    a1.set_title(
        f"{rows[0]['system']}: "
        + ("ensemble estimate per cycle and oracle result" if a2 else "what each method found")
    )
    a1.margins(x=0.08)
    _energy_gap_limits(a1)
    if a2 is not None:
        a2.set_xlabel("oracle labels")
        a2.set_ylabel("median ensemble force spread over the pool (eV/\u00c5)")
        a2.set_title("the ensemble's uncertainty per cycle")
        a2.set_ylim(bottom=0)
    handles = [
        Line2D([], [], color=c, marker="s", ls="none", ms=9, label=label)
        for key, (label, c) in TRANSFER_STARTS.items()
        if any(r["start"] == key for r in rows)
    ]
    if "random" in colours:
        handles.append(
            Line2D(
                [],
                [],
                color=colours["random"],
                marker="s",
                ls="none",
                ms=9,
                label=METHODS["random"][0],
            )
        )
    handles += _seed_handles(seeds)
    if a2 is not None:
        handles.append(
            _grey_key(
                "line, open: the ensemble's best pool energy (ML), after each cycle's labels",
                ls="-",
                mfc="white",
                ms=7,
            )
        )
    handles += [
        _grey_key("filled: oracle found the ground state, at the total cost", mew=2),
        _grey_key(
            "open, alone: missed it; best oracle minimum, at the total cost", mew=2, mfc="white"
        ),
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncols=1 if a2 is None else 2, frameon=False
    )
    fig.savefig(out / f"transfer_{rows[0]['system']}.png", dpi=120)
    plt.close(fig)


def _transfer_table(rows: list[dict]) -> str:
    """One line per search and per random-search baseline of the larger cell, and under each
    search the space groups of the minima it validated (meV/atom above the ground state)."""
    head = (
        f"{'system':<8} {'seed':>4} {'start':<9} {'found':>5} {'cycles':>6} {'single pts':>10} "
        f"{'valid.':>6} {'cost':>6} {'wall':>7} {'best - GS (meV/atom)':>21}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["start"] == "random":  # relaxed candidates' expected cost; all of them if no hit
            e = [c["energy_per_atom"] for c in r["candidates"] if c["energy_per_atom"] is not None]
            gap = f"{(min(e) - r['ground_state']) * 1000:.1f}" if e else ""
            cost = (
                f"{r['expected_cost']:.0f}"
                if r["expected_cost"] is not None
                else f">{r['total_cost']:.0f}"
            )
            lines.append(
                f"{r['system']:<8} {r['seed']:>4} {'random':<9} "
                f"{'yes' if r['found'] else 'no':>5} {'':>6} "
                f"{str(r['n_success']) + '/' + str(len(r['candidates'])) + ' hits':>10} "
                f"{'':>6} {cost:>6} {r['seconds'] / 60:>6.1f}m {gap:>21}"
            )
            continue
        gap = "" if r["best"] is None else f"{(r['best'] - r['ground_state']) * 1000:.1f}"
        lines.append(
            f"{r['system']:<8} {r['seed']:>4} {r['start']:<9} "
            f"{'yes' if r['found'] else 'no':>5} {r['cycles']:>6} {r['single_points']:>10} "
            f"{r['validation_steps']:>6} {r['cost']:>6} {r['seconds'] / 60:>6.1f}m {gap:>21}"
        )
        if r.get("minima"):
            lines.append(
                "    minima: "
                + ", ".join(
                    f"{m['space_group']} {(m['energy_per_atom'] - r['ground_state']) * 1000:+.1f}"
                    + (f" ({'/'.join(m['matches'])})" if m["matches"] else "")
                    for m in r["minima"]
                )
            )
    return "\n".join(lines)


def _setting(text: str) -> dict:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"{text!r}: give SECTION.KEY=VALUE")
    return {key: yaml.safe_load(value)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("systems", nargs="*", help="compositions, e.g. Si16 Na8Cl8 Ga8As8 Al4O6")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--oracle", default="chgnet", choices=["chgnet", "stillinger_weber"])
    ap.add_argument("--quick", action="store_true", help="small pools and few cycles (minutes)")
    ap.add_argument("--fmax", type=float, default=0.05, help="oracle relaxation threshold, eV/A")
    ap.add_argument("--max-steps", type=int, default=300, help="oracle relaxation steps (both)")
    ap.add_argument("--pool", type=int, default=None, help="pool size of the search (default 192)")
    ap.add_argument(
        "--baseline-size",
        type=int,
        default=48,
        help="candidates of the pool the "
        "random-search baseline relaxes with the oracle (a random subset; 0: all)",
    )
    ap.add_argument("--out", default="benchmark_results", help="output directory")
    ap.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes that train members and relax shards side by side (default: "
        "the cores available; 1 beside another benchmark)",
    )
    ap.add_argument(
        "--prior",
        choices=["chgnet", "sevennet"],
        help="also the universal-potential "
        "prescreen and the search on this prior, on the same pools (never the oracle)",
    )
    ap.add_argument(
        "--set",
        type=_setting,
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="change a setting of every search, e.g. relaxation.energy_trust=0.2",
    )
    ap.add_argument(
        "--prior-set",
        type=_setting,
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="change a setting of the search on the prior only (after --set)",
    )
    ap.add_argument(
        "--transfer",
        metavar="LARGER",
        help="then search this larger cell of the "
        "first system (e.g. Si46) from scratch and from the first system's models, "
        "relax its pool with the first system's ensemble alone and validate, and relax it "
        "for random search, for each seed (see --transfer-starts)",
    )
    ap.add_argument(
        "--transfer-starts",
        nargs="+",
        default=["scratch", "transfer", "frozen", "random"],
        choices=["scratch", "transfer", "frozen", "random"],
        help="which of the larger cell's methods to run (default: all): the searches from "
        "scratch and from the models, the frozen ensemble, random search",
    )
    ap.add_argument(
        "--report",
        nargs="+",
        metavar="DIR",
        help="only print the table and draw "
        "the plots of earlier runs' results.json in these directories, merged, "
        "to --out",
    )
    args = ap.parse_args()
    global PROCESSES
    from crysal_flows.local import default_processes

    PROCESSES = args.processes or default_processes()
    args.set = {k: v for d in (args.set or []) for k, v in d.items()}
    args.prior_set = {k: v for d in (args.prior_set or []) for k, v in d.items()}
    if args.prior and args.prior == args.oracle:
        ap.error("the prior must not be the oracle")
    out = Path(args.out).resolve()
    if args.report:
        results = [
            r for d in args.report for r in json.loads((Path(d) / "results.json").read_text())
        ]
        out.mkdir(parents=True, exist_ok=True)
        _plots(results, out, [Path(d).resolve() for d in args.report])
        print(_table(results))
        if any("prescreen" in r for r in results):
            print()
            print(_prior_table(results))
        transfer = [
            r
            for d in args.report
            for f in sorted(Path(d).glob("transfer*.json"))
            for r in json.loads(f.read_text())
        ]
        for large in sorted({r["system"] for r in transfer}):
            rows = [r for r in transfer if r["system"] == large]
            _transfer_plot(rows, out)
            print()
            print(_transfer_table(rows))
        return
    if not args.systems:
        ap.error("give at least one system (or --report DIR...)")

    from crysal_flows.config import OracleConfig
    from crysal_flows.models.mace import torch_setup
    from crysal_flows.oracles import check_oracle

    torch_setup(1)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("crysal_flows").setLevel(logging.INFO)  # the search's progress per cycle
    out.mkdir(parents=True, exist_ok=True)
    check_oracle(OracleConfig(kind=args.oracle))
    # results of an earlier, interrupted run in --out are kept and their searches not repeated
    done = out / "results.json"
    results = json.loads(done.read_text()) if done.exists() else []
    for system in args.systems:
        have = {(r["system"], r["seed"]) for r in results}
        if all((system, seed) in have for seed in args.seeds):
            continue
        states = ground_states(system, args.oracle, args.fmax, args.max_steps)
        gs = states[0][1]
        if not gs.success:
            raise RuntimeError(f"the oracle could not relax the {system} prototype: {gs.error}")
        ref_file = out / f"ground_state_{system}.json"
        ref_file.write_text(gs.structure.to_json())
        others = []
        for name, doc in states:
            print(
                f"{system}: ground state ({name}) at {doc.energy_per_atom:.4f} eV/atom with "
                f"{args.oracle}",
                flush=True,
            )
            if doc is not gs:  # a polytype the oracle puts at or below the prototype
                path = out / f"ground_state_{system}_{name.replace(' ', '_')}.json"
                path.write_text(doc.structure.to_json())
                others.append({"label": name, "file": str(path)})
        for seed in args.seeds:
            row = next((r for r in results if r["system"] == system and r["seed"] == seed), None)
            cfg = search_config(system, seed, args.oracle, args.quick, str(ref_file))
            cfg["references"] += others
            cfg["validation"]["max_steps"] = args.max_steps
            cfg["validation"]["fmax"] = args.fmax
            if args.pool:
                cfg["pool"]["size"] = args.pool
            for key, value in (args.set or {}).items():  # --set relaxation.energy_trust=0.2
                section, _, name = key.partition(".")
                cfg.setdefault(section, {})[name] = value
            if row is None:
                row = _scratch_and_random(system, seed, cfg, states, args, out)
                results.append(row)
                (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
                print(_table(results[-1:]), flush=True)
            else:
                print(
                    f"{system} seed {seed}: search and random search in {done} already", flush=True
                )
            if args.prior and "prescreen" not in row:
                print(f"{system} seed {seed}: the {args.prior} prescreen", flush=True)
                row["prescreen"] = run_prescreen(cfg, args.prior, states, args.fmax, args.max_steps)
                (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
            if args.prior and "prior_search" not in row:
                print(f"{system} seed {seed}: the search on a {args.prior} prior", flush=True)
                pcfg = prior_search_config(cfg, args.prior, args.prior_set)
                _write_config(pcfg, out / f"config_{system}_{seed}_{args.prior}.yaml")
                report, summaries, seconds = run_search(
                    pcfg, out / f"store_{system}_{seed}_{args.prior}"
                )
                row["prior_search"] = {
                    "search": report,
                    "summaries": _summaries(summaries),
                    "search_seconds": seconds,
                    "config": pcfg,
                    "found": bool(report["found"]),
                }
                (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
            if args.prior:
                print(_prior_table([row]), flush=True)
    _plots(results, out)
    print()
    print(_table(results))
    if any("prescreen" in r for r in results):
        print()
        print(_prior_table(results))
    if args.transfer:
        transfer = run_transfer(args, results, out)
        print()
        print(_transfer_table(transfer))
    print(
        f"\nwritten: {out / 'results.json'}, {out / 'cost.png'}, {out}/runs/*/*.png"
        + (
            f", {out}/transfer_{args.transfer}.json, {out}/transfer_{args.transfer}.png"
            if args.transfer
            else ""
        )
    )


if __name__ == "__main__":
    main()
