"""DFT oracles: a real CP2K single point through the oracle job; VASP's inputs and parsed outputs.

CP2K runs for real (Debian's cp2k and cp2k-data, installed by .ci/run; without them these tests
fail). The units are checked against the code itself: forces against a finite difference of its energies, the stress trace
against the energy change under a uniform strain.
"""

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from jobflow import run_locally

from crysal_flows.config import OracleConfig
from crysal_flows.labelling.jobs import OracleStaticMaker, gather_labels
from crysal_flows.oracles import OracleUnavailableError, check_oracle, get_oracle, oracle_identity
from crysal_flows.training.jobs import labels_to_frames
from crysal_flows.utils import atoms_to_structure

# A cheap but real setting: Si2, a coarse k-mesh and a low cutoff.
CP2K = OracleConfig(kind="cp2k", kpoint_density=8, input_settings={"cutoff": 200}, max_errors=1)


def _si2(displace=0.0, strain=0.0):
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=1)
    atoms.positions[0, 0] += displace
    atoms.set_cell(atoms.cell * (1 + strain), scale_atoms=True)
    return atoms


def _energy(atoms) -> float:
    return get_oracle(CP2K).single_point(atoms_to_structure(atoms)).energy


def test_cp2k_label_lands_in_training_data_in_ase_units(memory_store):
    structure = atoms_to_structure(_si2())
    job = OracleStaticMaker(oracle=CP2K).make(structure, cycle=0, reason="random")
    gather = gather_labels([job.output], None, cycle=0)
    run_locally([job, gather], store=memory_store, ensure_success=True, log=False)
    ts = memory_store.query_one({"uuid": gather.uuid}, load=True)["output"]
    label = ts["labels"][0]
    assert label["success"], label["error"]
    assert label["oracle"] == oracle_identity(CP2K) and label["oracle"].startswith("cp2k#")
    assert ts["oracle"] == label["oracle"]

    from crysal_flows.labelling.schemas import TrainingSetDocument

    frame = labels_to_frames(TrainingSetDocument.model_validate(ts))[0]
    # PBE Si with GTH pseudopotentials: about -107 eV per atom (4 valence electrons)
    assert -110 < frame.energy / 2 < -104
    assert abs(frame.forces.sum(axis=0)).max() < 1e-3  # momentum conserved, eV/A
    d = 0.01
    fd_force = -(_energy(_si2(d)) - _energy(_si2(-d))) / (2 * d)
    assert abs(frame.forces[0, 0]) > 0.3  # a real force to compare
    assert frame.forces[0, 0] == pytest.approx(fd_force, rel=0.02, abs=0.01)
    e = 0.005
    volume = _si2().get_volume()
    fd_trace = (_energy(_si2(strain=e)) - _energy(_si2(strain=-e))) / (2 * e) / volume
    assert np.trace(frame.stress) == pytest.approx(fd_trace, rel=0.05, abs=2e-4)  # eV/A^3, ASE sign
    # the inputs were written by atomate2's generator with the settings asked for
    text = sorted(Path("dft").glob("cp2k-static-*/cp2k.inp"))[0].read_text()
    assert "DZVP-MOLOPT-SR-GTH" in text and "GTH-PBE" in text and "STRESS_TENSOR ANALYTICAL" in text
    assert "CUTOFF 200" in text and "UKS False" in text and "&SMEAR" in text


def test_cp2k_failure_is_a_failed_label_not_a_crash():
    from crysal_flows.labelling.jobs import single_point

    bad = OracleConfig(
        kind="cp2k",
        kpoint_density=8,
        max_errors=0,
        input_settings={"cutoff": 200, "basis_and_potential": {"Si": {"basis": "NO-SUCH-BASIS"}}},
    )
    label = single_point(atoms_to_structure(_si2()), bad, cycle=0)
    assert not label.success and label.error and label.forces is None


def test_cp2k_missing_is_said_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OracleUnavailableError, match="apt install cp2k"):
        check_oracle(OracleConfig(kind="cp2k"), ["Si"])
    monkeypatch.setenv("CP2K_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("crysal_flows.oracles.cp2k._DATA_DIRS", ())
    with pytest.raises(OracleUnavailableError, match="cp2k-data"):
        from crysal_flows.oracles.cp2k import cp2k_data_dir

        cp2k_data_dir()


def test_dft_settings_are_validated_and_identify_the_oracle():
    with pytest.raises(ValueError, match="input_settings"):
        OracleConfig(kind="cp2k", kwargs={"cutoff": 400})
    with pytest.raises(ValueError, match="only used with kinds cp2k and vasp"):
        OracleConfig(kind="chgnet", input_settings={"ENCUT": 500})
    a = oracle_identity(OracleConfig(kind="cp2k"))
    # the identity of the CP2K oracle of examples/si16-cp2k.yaml before the oracles moved into
    # one package: its labels stay the same oracle's
    assert (
        oracle_identity(
            OracleConfig(kind="cp2k", kpoint_density=48, input_settings={"cutoff": 300})
        )
        == "cp2k#9456308e9a"
    )
    with pytest.raises(ValueError, match="machine setting"):  # the command is not science
        OracleConfig(kind="cp2k", command="srun cp2k.psmp")
    assert a != oracle_identity(OracleConfig(kind="cp2k", input_settings={"cutoff": 400}))
    assert a != oracle_identity(OracleConfig(kind="cp2k", kpoint_density=100))
    # labels written with the earlier space-group-reduced k-point lists carry another identity
    cfg = OracleConfig(kind="cp2k")
    old = {"input_settings": cfg.input_settings, "kpoint_density": cfg.kpoint_density}
    old_digest = hashlib.sha1(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()
    assert a.startswith("cp2k#") and a != f"cp2k#{old_digest[:10]}"


def test_vasp_inputs_for_random_structures(tmp_path):
    from atomate2.vasp.files import write_vasp_input_set

    s16 = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1)))
    vasp = get_oracle(OracleConfig(kind="vasp", input_settings={"ENCUT": 600}))
    write_vasp_input_set(
        s16, vasp.input_generator(), directory=tmp_path / "static", potcar_spec=True
    )
    from pymatgen.io.vasp import Incar, Kpoints

    incar = Incar.from_file(tmp_path / "static" / "INCAR")
    assert incar["ENCUT"] == 600 and incar["ISMEAR"] == 0 and incar["ISPIN"] == 1
    assert incar.get("NSW", 0) == 0 and incar["ISIF"] == 2  # static, stress computed
    assert (tmp_path / "static" / "POTCAR.spec").read_text().split() == ["Si"]
    kpts = Kpoints.from_file(tmp_path / "static" / "KPOINTS").kpts[0]
    # a k-point density, not a fixed mesh: the long axis gets fewer points
    assert kpts[0] < kpts[1] == kpts[2]
    write_vasp_input_set(
        s16,
        vasp.input_generator({"IBRION": 2, "ISIF": 3, "NSW": 50}),
        directory=tmp_path / "relax",
        potcar_spec=True,
    )
    relax = Incar.from_file(tmp_path / "relax" / "INCAR")
    assert relax["ISIF"] == 3 and relax["NSW"] == 50 and relax["ENCUT"] == 600


def _vasprun(structure, energy, forces, stress_kbar, n_scf, nelm=100) -> str:
    """A vasprun.xml as VASP writes it for a static run (the tags pymatgen reads)."""

    def rows(a):
        return "\n".join(
            f"   <v> {' '.join(f'{x:16.8f}' for x in r)} </v>" for r in np.atleast_2d(a)
        )

    def struct(name):
        return (
            f' <structure name="{name}">\n  <crystal>\n  <varray name="basis">\n'
            f"{rows(structure.lattice.matrix)}\n  </varray>\n  </crystal>\n"
            f'  <varray name="positions">\n{rows(structure.frac_coords)}\n  </varray>\n </structure>\n'
        )

    def energies(e):
        return (
            f'<energy><i name="e_fr_energy"> {e:.8f} </i><i name="e_wo_entrp"> {e - 0.01:.8f} </i>'
            f'<i name="e_0_energy"> {e - 0.005:.8f} </i></energy>'
        )

    atoms = "".join(f"<rc><c>{s.specie}</c><c>1</c></rc>" for s in structure)
    scf = "".join(f"<scstep>{energies(energy + 10.0**-k)}</scstep>" for k in range(n_scf))
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
 <generator><i name="program" type="string">vasp </i><i name="version" type="string">6.4.2 </i></generator>
 <incar><i type="int" name="ISMEAR"> 0</i><i name="SIGMA"> 0.05</i><i type="int" name="NSW"> 0</i></incar>
 <kpoints><generation param="Gamma"><v type="int" name="divisions"> 4 4 4 </v></generation>
  <varray name="kpointlist"><v> 0.0 0.0 0.0 </v></varray><varray name="weights"><v> 1.0 </v></varray>
 </kpoints>
 <parameters><separator name="electronic"><i type="int" name="NELM"> {nelm}</i></separator></parameters>
 <atominfo><array name="atoms"><set>{atoms}</set></array>
  <array name="atomtypes"><set><rc><c>{len(structure)}</c><c>Si</c><c>28.085</c><c>4.0</c><c>PAW_PBE Si 05Jan2001</c></rc></set></array>
 </atominfo>
{struct("initialpos")} <calculation>
  {scf}
{struct("").replace(' name=""', "")}  <varray name="forces">
{rows(forces)}
  </varray>
  <varray name="stress">
{rows(stress_kbar)}
  </varray>
  {energies(energy)}
 </calculation>
{struct("finalpos")}</modeling>
"""


def test_vasp_label_parsed_in_ase_units(monkeypatch, memory_store):
    """VASP cannot run here: its run is replaced by a vasprun.xml in VASP's format and units."""
    from atomate2.vasp.files import write_vasp_input_set

    from crysal_flows.oracles.vasp import VaspOracle

    forces = np.array([[0.5, -0.25, 0.125], [-0.5, 0.25, -0.125]])  # eV/A
    stress_kbar = np.array(
        [[10.0, 1.0, 0.0], [1.0, 20.0, 0.0], [0.0, 0.0, -30.0]]
    )  # + = compressive
    n_scf = {"value": 12}

    def fake_vasp(self, structure, generator):
        write_vasp_input_set(structure, generator, potcar_spec=True)
        Path("vasprun.xml").write_text(
            _vasprun(structure, -10.84, forces, stress_kbar, n_scf["value"], nelm=100)
        )

    monkeypatch.setattr(VaspOracle, "_run", fake_vasp)
    vasp = OracleConfig(kind="vasp")
    jobs = [
        OracleStaticMaker(oracle=vasp).make(atoms_to_structure(_si2()), cycle=0, reason="random")
    ]
    n_scf["value"] = 100  # NELM reached: an unconverged SCF is a failed label
    run_locally(jobs[0], store=memory_store, ensure_success=True, log=False)
    n_scf["value"] = 12
    jobs.append(
        OracleStaticMaker(oracle=vasp).make(
            atoms_to_structure(_si2(0.01)), cycle=0, reason="random"
        )
    )
    gather = gather_labels([j.output for j in jobs], None, cycle=0)
    run_locally(
        [jobs[1], gather],
        store=memory_store,
        ensure_success=True,
        log=False,
        allow_external_references=True,
    )
    ts = memory_store.query_one({"uuid": gather.uuid}, load=True)["output"]
    assert ts["n_new_failed"] == 1 and "VASP SCF did not converge" in ts["failures"][0]
    (ok,) = ts["labels"]
    assert (
        ok["success"] and ok["oracle"] == oracle_identity(vasp) and ok["oracle"].startswith("vasp#")
    )

    from ase.units import GPa

    from crysal_flows.labelling.schemas import TrainingSetDocument

    (frame,) = labels_to_frames(TrainingSetDocument.model_validate(ts))
    assert frame.energy == pytest.approx(-10.84)  # the free energy, consistent with the forces
    np.testing.assert_allclose(frame.forces, forces)
    # kBar (compressive +) -> eV/A^3 (tensile +): -0.1 GPa per kBar
    np.testing.assert_allclose(frame.stress, -stress_kbar * 0.1 * GPa)
    assert frame.stress[2, 2] > 0 > frame.stress[0, 0]
    assert sorted(Path("dft").glob("vasp-static-*/INCAR"))


def test_cp2k_validation_relaxation_counts_every_force_evaluation():
    """The final validation: CP2K's own cell optimisation through the oracle relax job."""
    from crysal_flows.validation.jobs import oracle_relax

    start = atoms_to_structure(_si2(displace=0.15, strain=0.03))
    doc = oracle_relax(start, CP2K, fmax=0.05, max_steps=3)
    assert doc.success, doc.error
    text = sorted(Path("dft").glob("cp2k-relax-*/cp2k.out"))[0].read_text()
    evaluations = text.count("ENERGY| Total FORCE_EVAL")
    assert doc.oracle_calls == evaluations >= 2
    assert "CELL_OPT" in text.upper() and doc.structure.lattice.volume != pytest.approx(
        start.lattice.volume, rel=1e-6
    )
    # lower than where it started (the start's energy is the first evaluation)
    assert doc.energy_per_atom < _energy(_si2(displace=0.15, strain=0.03)) / 2


def test_cp2k_kpoints_are_the_full_gamma_mesh_reduced_by_time_reversal_only():
    from crysal_flows.oracles.cp2k import cp2k_kpoints

    cubic = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True))
    k = cp2k_kpoints(cubic, 48)
    assert sum(k.kpts_weights) == 4 * 4 * 4  # every mesh point counted once
    assert len(k.kpts) == 36  # (64 + 8 self-inverse points) / 2: time reversal, nothing more
    assert tuple(k.kpts[0]) != (0.0, 0.0, 0.0)  # pymatgen would read a leading Gamma as Gamma only
    pts = {tuple(p) for p in k.kpts}
    assert not any(tuple(-x if abs(x) != 0.5 else x for x in p) in pts - {p} for p in pts)


@pytest.mark.parametrize("cells, density, n_kpoints", [(1, 48, 36), (2, 8, 1)])
def test_cp2k_input_smears_and_mixes_with_kpoints_and_at_gamma_alone(
    cells, density, n_kpoints, monkeypatch, tmp_path
):
    """A large cell's mesh is Gamma alone; it once got OT with neither smearing nor mixing."""
    from atomate2.cp2k.files import write_cp2k_input_set

    from crysal_flows.oracles.cp2k import cp2k_data_dir, cp2k_kpoints

    monkeypatch.setenv("PMG_CP2K_DATA_DIR", str(cp2k_data_dir()))
    monkeypatch.chdir(tmp_path)
    cell = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True)) * (cells, cells, cells)
    assert len(cp2k_kpoints(cell, density).kpts) == n_kpoints
    oracle = get_oracle(OracleConfig(kind="cp2k", kpoint_density=density))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "kpoints not supported with OT": none
        warnings.filterwarnings("ignore", message="Unable to validate")
        write_cp2k_input_set(cell, oracle.input_generator(cell))
    text = Path("cp2k.inp").read_text().upper()
    assert "&OT" not in text and "&DIAGONALIZATION" in text
    assert "&SMEAR" in text and "FERMI_DIRAC" in text and "ELEC_TEMP 500" in text
    assert "BROYDEN_MIXING" in text and "ALPHA 0.3" in text
    assert ("&KPOINTS" in text) == (n_kpoints > 1)


def test_cp2k_symmetric_cell_gets_zero_forces_and_isotropic_stress():
    """A symmetry-reduced k-list broke both (0.055 eV/A, sheared stress on cubic diamond)."""
    cubic = atoms_to_structure(bulk("Si", "diamond", a=5.43, cubic=True))
    cfg = OracleConfig(kind="cp2k", kpoint_density=48, input_settings={"cutoff": 200}, max_errors=1)
    r = get_oracle(cfg).single_point(cubic)
    assert np.abs(r.forces).max() < 1e-3
    s = r.stress
    assert np.abs(s - np.diag(np.diag(s))).max() < 1e-4
    assert np.ptp(np.diag(s)) < 1e-4
    assert abs(s[0, 0]) > 1e-3  # a real, non-zero pressure at 5.43 A with these settings
