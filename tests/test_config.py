from pathlib import Path

import pytest

from crysal_flows.config import ConfigError, load_config

EXAMPLES = Path(__file__).parents[1] / "examples"
BASE = {"name": "t", "composition": "Si8"}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_run_here_build_a_workflow_and_are_listed(path):
    """Each example passes the checks before a run on this machine (its oracle, CP2K included,
    runs here), becomes a FireWorks workflow, and the README's table lists it."""
    from jobflow.managers.fireworks import flow_to_workflow

    from crysal_flows.flows import CrystalSearchMaker
    from crysal_flows.preflight import preflight

    cfg = load_config(path)
    preflight(cfg)
    wf = flow_to_workflow(CrystalSearchMaker(config=cfg).make())
    n = cfg.training.n_members
    assert f"train member {n}/{n} (cycle 0)" in {fw.name for fw in wf.fws}
    # the validation's settings reach its oracle jobs' maker
    from crysal_flows.flows import CycleMaker

    v = CycleMaker(config=cfg).validation_maker
    assert (v.fmax, v.symmetry_rattle, v.symmetry_window) == (
        cfg.validation.fmax,
        cfg.validation.symmetry_rattle,
        cfg.validation.symmetry_window,
    )
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert f"| `{path.name}` |" in readme, f"README.md's table of examples lacks {path.name}"


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"composition": "Xx4"}, "composition"),
        ({"composition": ""}, "composition"),
        ({"composition": "Si0"}, "composition"),
        ({"composition": "Si2.5"}, "positive integer"),
        ({"pool": {"size": -3}}, "pool.size"),
        ({"pool": {"volume_factor": float("nan")}}, "pool.volume_factor"),
        ({"pool": {"sizee": 3}}, "pool.sizee: unknown key"),
        ({"typo": 1}, "typo: unknown key"),
        ({"pool": {"size": 4}, "selection": {"n_labels": 8}}, "larger than pool.size"),
        ({"composition": "Na4Cl4"}, "silicon potential"),
        ({"oracle": {"kind": "ase"}}, "calculator"),
        ({"analysis": {"min_cycles": 5, "max_cycles": 2}}, "min_cycles"),
        ({"pool": {"volume_factor": 0.3, "min_distance_factor": 1.5}}, "cannot be placed"),
        (
            {"pool": {"min_separation": {"Si-Si": 4.0}}},
            "pool.min_separation: 8 Si atoms cannot be placed 4.0 A apart",
        ),
        ({"composition": "Si-4"}, "composition"),
        ({"relaxation": {"fmax": -0.1}}, "relaxation.fmax"),
        (
            {"relaxation": {"uncertainty_ratio": float("nan")}},
            "relaxation.uncertainty_ratio: Input should be a finite number",
        ),
        ({"training": {"n_members": 1}}, "training.n_members"),
        ({"selection": {"n_labels": 0}}, "selection.n_labels"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_input_names_field(update, message):
    with pytest.raises(ConfigError) as err:
        load_config({**BASE, **update})
    assert message in str(err.value)


def test_a_separation_the_cells_can_hold_loads():
    """The packing bound of like-pair separations refuses only what no cell of the pool holds:
    silicon's own nearest-neighbour distance passes."""
    cfg = load_config({**BASE, "pool": {"min_separation": {"Si-Si": 2.35}}})
    assert cfg.pool.min_separation == {"Si-Si": 2.35}


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_configuration_doc_is_current():
    """docs/configuration.md is generated from the models; regenerate it after changing a field."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "docs" / "make_configuration.py"
    spec = importlib.util.spec_from_file_location("make_configuration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (path.parent / "configuration.md").read_text() == module.render(), (
        "docs/configuration.md is out of date: run python docs/make_configuration.py"
    )
