"""Pictures of a search run (``crysal plot``): what the search found and how it got there.

Four PNGs, each readable on its own:

- ``energy.png``: energy per atom against oracle calls: the lowest oracle energy among the labels
  so far and, once validated, the oracle-relaxed minima (oracle values, filled markers), beside
  the best energy the ensemble predicts in the pool after each cycle (an ML estimate, open
  markers), and the reference structures' oracle energies;
- ``cycles.png``: per cycle, the ensemble's force uncertainty over the pool and the pool's
  energy distribution (box: quartiles, whiskers: 5th-95th percentile);
- ``statuses.png``: per cycle, where the candidates' ML relaxations stopped;
- ``minima.png``: the distinct minima the validation found, above the lowest, with their space
  groups and the references they match.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from crysal_flows.runs import RunView

__all__ = ["STATUS_COLOURS", "plot_run"]

#: one colour per relaxation status, the same in every figure
STATUS_COLOURS = {
    "converged": "#1b9e77",
    "stalled": "#66a61e",
    "max_steps": "#e6ab02",
    "uncertain": "#d95f02",
    "not_relaxed": "#7570b3",
    "failed": "#e7298a",
    "new": "#999999",
}
ORACLE, ML, REFERENCE = "#1f4e9c", "#d95f02", "#555555"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 11,
            "axes.titlesize": 12,
            "legend.fontsize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def _title(run: RunView) -> str:
    state = "finished" if run.finished else "in progress"
    return f"{run.name or run.run_id} ({run.composition or '?'}), run {run.run_id}, {state}"


def _oracle_curve(run: RunView) -> tuple[list[int], list[float]]:
    """Oracle calls so far and the lowest oracle label energy among them, label by label."""
    xs, ys, best = [], [], math.inf
    for k, lab in enumerate(sorted(run.labels, key=lambda lab: lab["cycle"] or 0), start=1):
        e = lab["energy_per_atom"]
        if lab["success"] and e is not None and math.isfinite(e):
            best = min(best, e)
        if math.isfinite(best):
            xs.append(k)
            ys.append(best)
    return xs, ys


#: the pool-energy panel of cycles.png shows at most this many eV/atom above the lowest energy
ENERGY_VIEW = 1.5
ENERGY_HOLE = 1.0  # eV/atom under the oracle energies or the pools' 5th percentiles: a model's hole


def _references(run: RunView) -> dict[str, float]:
    """Return the report's oracle-relaxed reference energies (eV/atom) that were computed."""
    refs = (run.report or {}).get("references") or {}
    return {label: e for label, e in refs.items() if e is not None}


def energy_view(ml: list[float], oracle: list[float]) -> tuple[float, float, float | None] | None:
    """Return the bottom and top of energy.png's axis, and the ML estimate left below it.

    ``ml`` are the ensemble's best pool energies per cycle, ``oracle`` the oracle energies that
    must show (the labels after the first cycle, the best minimum, the references). An ML
    estimate more than ``ENERGY_HOLE`` below every oracle energy sits in a hole of an early
    ensemble (an Al4O6 cycle 0 at -13.5 eV/atom, 5.7 below corundum): it is left off the axis,
    which would otherwise squash every other point, and returned (the lowest, else None).
    """
    ml = [v for v in ml if math.isfinite(v)]
    oracle = [v for v in oracle if math.isfinite(v)]
    floor = min(oracle) - ENERGY_HOLE if oracle else -math.inf
    hole = min((v for v in ml if v < floor), default=None)
    values = [v for v in ml if v >= floor] + oracle
    if not values:
        return None
    low, high = min(values), max(values)
    pad = max(0.08 * (high - low), 0.02)
    return low - 2 * pad, high + 2.5 * pad, hole  # room above for the point labels


def _focus_energy_axis(
    ax: Any, run: RunView, xs: list[int], ys: list[float], shown: list[dict[str, Any]]
) -> None:
    """Limit the energy axis to where the search is decided, from the first cycle's end down.

    The first random labels lie eV/atom above everything that follows and would squash it; the
    curve above the limit is clipped, with an arrow and its highest value written. An early
    ensemble's hole below it (see :func:`energy_view`) is written at the bottom.
    """
    r = run.report or {}
    refs = list(_references(run).values())
    minima = [m["energy_per_atom"] for m in (r.get("minima") or [])[:1]]
    first = run.summaries[0]["oracle_single_points"] if run.summaries else 0
    later = [y for x, y in zip(xs, ys, strict=True) if x >= first]
    view = energy_view([c["best_energy_per_atom"] for c in shown], [*minima, *refs, *later])
    if view is None or not ys:
        return
    bottom, top, hole = view
    ax.set_ylim(bottom, top)
    if max(ys) > top:
        ax.annotate(
            f"↑ the first labels, up to {max(ys):+.2f} eV/atom",
            (xs[0], top),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=8,
            color="#777777",
        )
    if hole is not None:
        deepest = next(c for c in shown if c["best_energy_per_atom"] == hole)
        ax.annotate(
            f"↓ c{deepest['cycle']}: {hole:.2f} eV/atom (ML)",
            (deepest["oracle_single_points"], bottom),
            textcoords="offset points",
            xytext=(-2, 4),
            ha="right",  # left of the dashed line, which falls to it from the next cycle
            fontsize=8,
            color=ML,
        )


def plot_energy(run: RunView, path: Path) -> Path:
    """Energy per atom against oracle calls (see the module's docstring)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    xs, ys = _oracle_curve(run)
    if xs:
        ax.step(
            xs, ys, where="post", color=ORACLE, lw=2, label="lowest oracle energy among the labels"
        )
    shown = [s for s in run.summaries if s.get("best_energy_per_atom") is not None]
    cyc = [(s["oracle_single_points"], s["best_energy_per_atom"]) for s in shown]
    if cyc:
        ax.plot(
            *zip(*cyc, strict=True),
            "o--",
            color=ML,
            mfc="white",
            mew=2,
            ms=8,
            label="best ensemble energy in the pool (ML estimate), per cycle",
        )
        for (x, y), s in zip(cyc, shown, strict=True):
            ax.annotate(
                f"c{s['cycle']}",
                (x, y),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=9,
                color=ML,
            )
    r = run.report
    if r is not None and r.get("minima"):
        n0, cost = r["oracle_single_points"], r["oracle_cost"]
        best = r["minima"][0]
        ax.plot(
            [n0, cost],
            [ys[-1] if ys else best["energy_per_atom"], best["energy_per_atom"]],
            color=ORACLE,
            lw=1,
            ls=":",
        )
        ax.plot(
            [cost],
            [best["energy_per_atom"]],
            "*",
            color=ORACLE,
            ms=18,
            label=f"best oracle-relaxed minimum ({best['space_group_symbol']}), "
            f"after {r['validation_steps']} validation steps",
        )
    for label, e in _references(run).items():  # in the legend: a label on the line would sit
        # on the ensemble's estimates, which end up at the reference when the search works
        ax.axhline(
            e, color=REFERENCE, ls="--", lw=1, label=f"{label}: {e:.4f} eV/atom (oracle-relaxed)"
        )
    if r is not None:
        edge = r["oracle_single_points"] + 0.5
        ax.axvline(edge, color="#bbbbbb", lw=1, ls=":")
        ax.annotate(
            "validation",
            (edge, 1.0),
            xycoords=("data", "axes fraction"),
            textcoords="offset points",
            xytext=(3, -12),
            fontsize=9,
            color="#777777",
        )
    _focus_energy_axis(ax, run, xs, ys, shown)
    ax.set_xlabel("oracle calls (single points, then validation steps)")
    ax.set_ylabel("energy (eV/atom)")
    ax.set_title(_title(run))
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside lower center", frameon=False, fontsize=9)
    else:
        ax.text(0.5, 0.5, "no finished cycle yet", ha="center", transform=ax.transAxes)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pool_energy_view(
    quantiles: list[dict[str, float]], references: list[float]
) -> tuple[float, float]:
    """Return the bottom and top of the axis of the pool energies' box plots.

    The lowest candidate of a cycle sets the bottom unless it lies ``ENERGY_HOLE`` below the
    lowest 5th percentile and every reference: then it sits in a hole of an early ensemble (an
    Al4O6 cycle 0 put one at -13.5 eV/atom, 5.7 below corundum), which would leave every box off
    the axis, and it is written at the bottom with an arrow.
    The top stops above the upper quartiles, and at most ``ENERGY_VIEW`` above the bottom
    (where half the pool is collapsed or exploded cells, its quartile lies eV above the minima).
    """
    floor = min([q["5"] for q in quantiles] + references) - ENERGY_HOLE
    low = min(
        v
        for v in [q["0"] for q in quantiles] + [q["5"] for q in quantiles] + references
        if v >= floor
    )
    top = max(q["75"] for q in quantiles)
    top = min(top + max(0.5 * (top - low), 0.2), low + ENERGY_VIEW)
    return low, top


def _box(q: dict[str, float], pos: int) -> dict[str, Any]:
    return {
        "med": q["50"],
        "q1": q["25"],
        "q3": q["75"],
        "whislo": q["5"],
        "whishi": q["95"],
        "fliers": [q["0"], q["100"]],
        "label": str(pos),
    }


def plot_cycles(run: RunView, path: Path) -> Path:
    """Force uncertainty and pool energies per cycle, as box plots of their percentiles."""
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 5.0), constrained_layout=True)
    cycles = [s["cycle"] for s in run.summaries]
    sig = [(s["cycle"], s.get("sigma_force_quantiles")) for s in run.summaries]
    if all(q for _, q in sig) and sig:
        a1.bxp(
            [_box(q, c) for c, q in sig],
            positions=cycles,
            showfliers=True,
            patch_artist=True,
            boxprops={"facecolor": "#fbe3d1"},
            medianprops={"color": ML},
        )
    else:  # runs of earlier versions stored the median and 90th percentile only
        a1.plot(
            cycles,
            [s.get("sigma_force_median") for s in run.summaries],
            "o-",
            color=ML,
            label="median",
        )
        a1.plot(
            cycles,
            [s.get("sigma_force_p90") for s in run.summaries],
            "s--",
            color=ML,
            label="90th percentile",
        )
        a1.legend(frameon=False)
    a1.set_yscale("log")
    a1.set_xlabel("cycle")
    a1.set_ylabel("ensemble force spread $\\sigma_F$ (eV/Å)")
    a1.set_title("uncertainty over the pool after each cycle")
    en = [
        (s["cycle"], s.get("energy_quantiles")) for s in run.summaries if s.get("energy_quantiles")
    ]
    if en:
        # the low-energy end is what the search is about (see pool_energy_view); values off
        # the axis are written at its edge
        low, top = pool_energy_view([q for _, q in en], list(_references(run).values()))
        bottom = low - 0.05 * (top - low)
        a2.set_ylim(bottom, top)
        for c, q in en:
            if q["0"] < low:  # in a hole of the ensemble
                a2.annotate(
                    f"↓ {q['0']:.1f}",
                    (c, bottom),
                    textcoords="offset points",
                    xytext=(5, 4),
                    ha="left",
                    fontsize=8,
                    color="#777777",
                )
            if q["100"] > top:
                a2.annotate(
                    f"↑ {q['100']:.1f}",
                    (c, top),
                    textcoords="offset points",
                    xytext=(5, -11),
                    ha="left",
                    fontsize=8,
                    color="#777777",
                )
        a2.bxp(
            [_box(q, c) for c, q in en],
            positions=[c for c, _ in en],
            showfliers=True,
            patch_artist=True,
            boxprops={"facecolor": "#d6e2f3"},
            medianprops={"color": ORACLE},
        )
    refs = [
        a2.axhline(e, color=REFERENCE, ls="--", lw=1, label=f"{label}: {e:.4f} eV/atom (oracle)")
        for label, e in _references(run).items()
    ]
    if refs:  # below the axes: a label on the line would sit on the lowest boxes
        a2.legend(
            handles=refs, loc="upper right", bbox_to_anchor=(1.0, -0.12), frameon=False, fontsize=9
        )
    a2.set_xlabel("cycle")
    a2.set_ylabel("ensemble energy (eV/atom)")
    a2.set_title("pool energies (ML) after each cycle")
    for ax in (a1, a2):
        ax.set_xticks(cycles)
    fig.suptitle(
        f"{_title(run)}\nboxes: quartiles; whiskers: 5th to 95th percentile; circles: "
        "lowest and highest",
        fontsize=11,
    )
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_statuses(run: RunView, path: Path) -> Path:
    """Stacked bars: where the candidates' relaxations stopped, per cycle."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.6), constrained_layout=True)
    cycles = [s["cycle"] for s in run.summaries]
    bottom = [0] * len(cycles)
    for status, colour in STATUS_COLOURS.items():
        counts = [s["status_counts"].get(status, 0) for s in run.summaries]
        if any(counts):
            ax.bar(cycles, counts, bottom=bottom, color=colour, label=status.replace("_", " "))
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set_xticks(cycles)
    ax.set_xlabel("cycle")
    ax.set_ylabel("candidates")
    ax.set_title(f"where the ML relaxations stopped\n{_title(run)}")
    if cycles:
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_minima(run: RunView, path: Path) -> Path:
    """Return the validated minima above the lowest, with space groups and reference matches."""
    plt = _pyplot()
    minima = (run.report or {}).get("minima") or []
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * max(len(minima), 2)), constrained_layout=True)
    if not minima:
        ax.text(
            0.5,
            0.5,
            "no validated minimum yet"
            if not run.finished
            else "every validation relaxation failed",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    else:
        ys = list(range(len(minima)))[::-1]
        de = [m["energy_above_best"] * 1000 for m in minima]
        colours = [ORACLE if m["matches"] else "#8da0cb" for m in minima]
        ax.hlines(ys, 0, de, color=colours, lw=3)
        ax.scatter(de, ys, color=colours, s=60, zorder=3)
        for y, m, d in zip(ys, minima, de, strict=True):
            match = f"  = {', '.join(m['matches'])}" if m["matches"] else ""
            ax.annotate(
                f"{m['space_group_symbol']} ({m['space_group_number']}), "
                f"{m['energy_per_atom']:.4f} eV/atom{match}",
                (d, y),
                textcoords="offset points",
                xytext=(9, -4),
                fontsize=10,
            )
        ax.set_yticks(ys, [f"#{m['rank']}" for m in minima])
        ax.set_xlabel("oracle energy above the lowest minimum (meV/atom)")
        ax.set_xlim(-0.03 * max(max(de) * 1.6, 10), max(max(de) * 1.6, 10))
        ax.set_ylim(-0.7, len(minima) - 0.3)
    ax.set_title(f"minima relaxed with the oracle\n{_title(run)}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_run(run: RunView, directory: str | Path) -> list[Path]:
    """Write the run's four PNGs into ``directory``; returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return [
        plot_energy(run, out / "energy.png"),
        plot_cycles(run, out / "cycles.png"),
        plot_statuses(run, out / "statuses.png"),
        plot_minima(run, out / "minima.png"),
    ]
