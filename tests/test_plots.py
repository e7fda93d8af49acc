"""The figures' axes: what a reader sees of a run."""

import pytest

from crysal_flows.plots import ENERGY_HOLE, energy_view, pool_energy_view


def _q(lowest, p5=-7.6, p25=-7.1, p75=-6.6):
    return {"0": lowest, "5": p5, "25": p25, "50": -6.8, "75": p75, "95": -5.0, "100": 90.0}


def test_pool_energy_axis_shows_the_lowest_minima():
    """The lowest candidate of each cycle is on the axis, as is the reference."""
    low, top = pool_energy_view([_q(-7.70), _q(-7.77)], [-7.86])
    assert low == pytest.approx(-7.86)
    assert -6.6 < top <= low + 1.5


def test_pool_energy_axis_ignores_a_hole_of_the_ensemble():
    """Cycle 0 of an Al4O6 search put one candidate at -13.5 eV/atom, 5.7 below corundum: the
    axis stays on the boxes and the reference (the figure writes the hole's value at the bottom)."""
    quantiles = [_q(-13.55), _q(-7.66), _q(-7.74)]
    low, top = pool_energy_view(quantiles, [-7.86])
    assert low == pytest.approx(-7.86) and top > -6.6
    # a minimum within ENERGY_HOLE below the pool and reference still sets the bottom
    deep = -7.6 - ENERGY_HOLE + 0.05
    low, _ = pool_energy_view([_q(deep)], [])
    assert low == pytest.approx(deep)


def test_energy_axis_leaves_out_a_hole_of_an_early_ensemble():
    """energy.png: the same cycle-0 hole as above would squash the oracle's curve and the later
    cycles' estimates into a line; it is left off the axis and returned, to be written there."""
    bottom, top, hole = energy_view([-13.55, -7.66, -7.74], [-7.86, -7.2, -7.5])
    assert hole == pytest.approx(-13.55)
    assert -8.1 < bottom < -7.86 and top > -7.2
    # an estimate within ENERGY_HOLE below the oracle's energies stays on the axis
    bottom, _, hole = energy_view([-7.86 - ENERGY_HOLE + 0.05], [-7.86])
    assert hole is None and bottom < -7.86 - ENERGY_HOLE + 0.05
