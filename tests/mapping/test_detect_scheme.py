"""Finding the bead scheme of CG particles (openmm_backmap.mapping.detection)."""

import warnings

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.io import load_ensemble
from openmm_backmap.mapping import coarsen, com_mapping, consecutive_deviation, detect_scheme, martini_mapping
from openmm_backmap.mapping.schemes import bead_residues
from openmm_backmap.structure.constants import CA_SCHEME_MAX_DEVIATION_NM, COM_SCHEME_MIN_DEVIATION_NM


def _ca_and_com(ens):
    return ens.ca_xyz, com_mapping(ens.sequence).apply_present(ens.xyz, ens.mask)


def _guess(ens, xyz):
    return detect_scheme(["CA"] * ens.n_residues, xyz, segment_start=ens.segment_start)


def test_c_alpha_and_centre_of_mass_beads_of_trpcage(trpcage, tests_data):
    frag = load_ensemble(tests_data / "t0872_fragment.pdb")
    for ens in (trpcage, frag):
        ca, com = _ca_and_com(ens)
        g = _guess(ens, ca)
        assert g.scheme == "ca" and g.certain
        g = _guess(ens, com)
        assert g.scheme == "com" and g.certain
        # the message carries the numbers
        med, within, n = consecutive_deviation(com, ens.segment_start)
        assert f"by {med * 10:.2f} Å" in g.evidence and f"over {n} pairs" in g.evidence and "within 3.80" in g.evidence


def test_the_statistic_is_robust(trpcage):
    ca = trpcage.ca_xyz[0].astype(np.float64)
    med, within, n = consecutive_deviation(ca)
    assert med < 0.01 and n == 19  # an all-atom MD frame: 0.07 Å
    rng = np.random.default_rng(0)
    # a CG simulation on soft 0.38 nm bonds (k = 8000 kJ/mol/nm^2, sd 0.018 nm) is still C-alpha beads
    steps = rng.normal(size=(400, 3))
    steps *= (0.38 + rng.normal(0, 0.0177, 400))[:, None] / np.linalg.norm(steps, axis=1, keepdims=True)
    assert detect_scheme(["CA"] * 401, np.vstack([np.zeros(3), steps.cumsum(0)])).scheme == "ca"
    # cis peptides (2.9 Å), one chain break and a few wild pairs do not move the median
    x = np.vstack([np.zeros(3), np.cumsum(steps / np.linalg.norm(steps, axis=1, keepdims=True) * 0.38, 0)])
    x[200:] += 3.0
    x[[50, 51]] = x[[49, 52]]
    d = np.diff(x[:20], axis=0)
    x[1:20] = x[0] + np.cumsum(d / np.linalg.norm(d, axis=1, keepdims=True) * 0.29, 0)
    seg = np.zeros(401, dtype=bool)
    seg[[0, 200]] = True
    g = detect_scheme(["CA"] * 401, x, segment_start=seg)
    assert g.scheme == "ca" and g.certain
    # between the two limits: the nearer verdict, unsure
    mid = (CA_SCHEME_MAX_DEVIATION_NM + COM_SCHEME_MIN_DEVIATION_NM) / 2
    g = detect_scheme(["CA"] * 401, np.vstack([np.zeros(3), np.cumsum(steps / np.linalg.norm(
        steps, axis=1, keepdims=True) * (0.38 + mid * 0.9), 0)]))
    assert g.scheme == "ca" and not g.certain and "unsure" in g.evidence


def test_too_little_to_tell():
    assert detect_scheme(["CA"], np.zeros((1, 3))).scheme is None
    assert detect_scheme(["CA", "CA"], None).scheme is None
    with pytest.raises(ValueError, match="2 names but positions of shape"):
        detect_scheme(["CA", "CA"], np.zeros((3, 3)))


def test_martini_beads_by_name(tests_data, trpcage):
    frag = load_ensemble(tests_data / "t0872_fragment.pdb")
    for scheme in ("martini3", "martini2"):
        m = martini_mapping(frag.sequence, scheme)
        res = bead_residues(m)
        g = detect_scheme(m.bead_names, m.apply(frag.xyz)[0], [frag.sequence[r] for r in res], res)
        assert g.scheme == scheme and g.certain, g
        assert "36 of 36 residues" in g.evidence
    # Trp-cage has no ALA: its TRP and TYR tell the two apart
    out = coarsen(trpcage, "martini3")["martini3"]
    top = out[1]
    g = detect_scheme([a.name for a in top.atoms], out[0][0], [a.residue.name for a in top.atoms],
                      [a.residue.index for a in top.atoms])
    assert g.scheme == "martini3" and g.certain
    # without residues: Martini 3, unsure; with SCD dummies: Martini 2; water and ions ride along
    assert detect_scheme(["BB", "SC1", "BB"]) == ("martini3", detect_scheme(["BB", "SC1", "BB"]).evidence, False)
    g = detect_scheme(["BB", "SC1", "SC2", "SC3", "BB", "SC1"], None, ["HSD", "HSD", "HSD", "HSD", "ALA", "ALA"],
                      [0, 0, 0, 0, 1, 1])
    assert g.scheme == "martini3" and g.certain and "2 of 2 residues" in g.evidence  # CHARMM's HSD is a HIS
    g = detect_scheme(["BB", "SC1", "SCD1", "BB", "W", "NA"], None, ["GLU", "GLU", "GLU", "GLY", "W", "ION"],
                      [0, 0, 0, 1, 2, 3])
    assert g.scheme == "martini2" and g.certain and "SCD" in g.evidence


def test_martinize2_output_is_martini3(tests_data, tmp_path):
    pytest.importorskip("vermouth")
    import shutil
    import subprocess

    if shutil.which("martinize2") is None:
        pytest.skip("martinize2 is not on the PATH")
    subprocess.run(["martinize2", "-f", str(tests_data / "trpcage.pdb"), "-x", "cg.pdb", "-o", "t.top", "-ff",
                    "martini3001", "-ss", "C", "-maxwarn", "10"], cwd=tmp_path, check=True, capture_output=True)
    t = md.load(str(tmp_path / "cg.pdb"), standard_names=False)
    atoms = list(t.topology.atoms)
    g = detect_scheme([a.name for a in atoms], t.xyz[0], [a.residue.name for a in atoms],
                      [a.residue.index for a in atoms])
    assert g.scheme == "martini3" and g.certain


def _shared_ensembles(shared_data):
    casp = sorted((shared_data / "eval" / "chains" / "casp").glob("*.pdb.gz"))
    assert len(casp) == 24
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CASP files lack END records
        for path in casp:
            yield path.name, load_ensemble(path)
        md_dir = shared_data / "eval" / "md"
        for top, trj in [("trpcage/trpcage.pdb", "trpcage/trpcage_eval.dcd"), ("ntl9/ntl9.pdb", "ntl9/ntl9_eval.xtc"),
                         ("lysozyme/1am7.pdb", "lysozyme/1am7.xtc"), ("adk/adk.pdb", "adk/adk_dims2.xtc")]:
            yield trj, load_ensemble(md_dir / trj, topology=md_dir / top, stride=10)
        yield "2EQQ", load_ensemble(shared_data / "eval" / "nmr" / "2EQQ.pdb.gz")
        for idp in sorted((shared_data / "eval" / "idp").glob("*/*.pdb.gz")):
            yield idp.name, load_ensemble(idp, stride=10)


def test_casp_targets_and_eval_ensembles_told_apart(shared_data):
    """C-alpha and centre-of-mass versions of the 24 CASP targets and the eval/ ensembles: no error, all certain,
    frame by frame for the ensembles."""
    n = 0
    for name, ens in _shared_ensembles(shared_data):
        ca, com = _ca_and_com(ens)
        for f in range(0, ens.n_frames, max(1, ens.n_frames // 5)):
            assert _guess(ens, ca[f])[::2] == ("ca", True), (name, f, _guess(ens, ca[f]))
            assert _guess(ens, com[f])[::2] == ("com", True), (name, f, _guess(ens, com[f]))
            n += 1
    assert n >= 24 + 4
