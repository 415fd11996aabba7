"""load_ensemble: PDB, mmCIF and trajectories into canonical heavy-atom ensembles (openmm_backmap.io.read)."""

import gzip
import warnings

import numpy as np
import pytest

from openmm_backmap.io import LoadWarning, load_ensemble

PDB_LINE = "{rec:<6}{i:>5} {name:<4}{alt}{res:>3} {chain}{num:>4}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          {el:>2}\n"


def _write_pdb(path, models):
    """models: list of lists of (resname, resnum, atomname, xyz Å, alt, record)."""
    with open(path, "w") as fh:
        for m, atoms in enumerate(models):
            fh.write(f"MODEL     {m + 1:4d}\n")
            for i, (res, num, name, xyz, alt, rec) in enumerate(atoms):
                fh.write(PDB_LINE.format(rec=rec, i=i + 1, name=name if len(name) == 4 else " " + name, alt=alt,
                                         res=res, chain="A", num=num, x=xyz[0], y=xyz[1], z=xyz[2], el=name[0]))
            fh.write("ENDMDL\n")
        fh.write("END\n")


def _gly(num, origin):
    o = np.asarray(origin, float)
    return [("GLY", num, "N", o, " ", "ATOM"), ("GLY", num, "CA", o + [1.45, 0, 0], " ", "ATOM"),
            ("GLY", num, "C", o + [2.0, 1.4, 0], " ", "ATOM"), ("GLY", num, "O", o + [1.5, 2.5, 0], " ", "ATOM")]


def test_trpcage_fixture_loads_in_canonical_order(trpcage):
    assert trpcage.n_residues == 20
    assert trpcage.sequence[:3] == ["ASN", "LEU", "TYR"]
    assert trpcage.mask.all()
    assert trpcage.segment_start.tolist() == [True] + [False] * 19
    # nm: a C-alpha/C-alpha distance is ~0.38
    d = np.linalg.norm(np.diff(trpcage.ca_xyz[0], axis=0), axis=-1)
    assert np.allclose(d, 0.38, atol=0.02)


def test_models_with_different_atom_sets_load_model_by_model(tmp_path):
    m1 = _gly(1, [0, 0, 0]) + _gly(2, [3.3, 0.5, 0])
    m2 = [a for a in m1 if not (a[1] == 2 and a[2] == "O")]  # model 2 lacks O of residue 2
    path = tmp_path / "ens.pdb"
    _write_pdb(path, [m1, m2])
    with pytest.warns(LoadWarning, match="missing"):
        ens = load_ensemble(path)
    assert ens.n_frames == 2
    assert ens.mask[0].all()
    assert ens.mask[1].sum() == ens.n_atoms - 1
    assert np.isnan(ens.xyz[1, 7]).all()


def test_waters_ligands_and_altlocs_warn_once_each(tmp_path):
    atoms = _gly(1, [0, 0, 0])
    atoms.append(("GLY", 1, "CA", np.array([9.0, 9, 9]), "B", "ATOM"))  # second altloc
    atoms.append(("HOH", 50, "O", np.array([5.0, 5, 5]), " ", "HETATM"))
    atoms.append(("HOH", 51, "O", np.array([6.0, 5, 5]), " ", "HETATM"))
    path = tmp_path / "x.pdb.gz"
    plain = tmp_path / "x.pdb"
    _write_pdb(plain, [atoms])
    path.write_bytes(gzip.compress(plain.read_bytes()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ens = load_ensemble(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, LoadWarning)]
    assert any("dropped 2 residue(s)" in m and "HOH x2" in m for m in messages)
    assert any("alternate locations" in m for m in messages)
    assert ens.n_residues == 1
    assert np.allclose(ens.xyz[0, 1], [0.145, 0, 0])  # first altloc kept, in nm


def _ala(num, origin):
    o = np.asarray(origin, float)
    return [(r if r != "GLY" else "ALA", n, nm, x, alt, rec) for r, n, nm, x, alt, rec in _gly(num, o)] + [
        ("ALA", num, "CB", o + [1.9, -1.0, 0], " ", "ATOM")]


def test_repeated_residue_numbers_are_residues_of_their_own(tmp_path):
    """Insertion codes lost (mdtraj's PDB writer drops them: antibody loops 100, 100A, 100B ...): every residue is
    kept, in file order, with a warning; a second residue of the same name and number right after the first too."""
    atoms = _ala(99, [0, 0, 0]) + _gly(100, [3.3, 0.5, 0]) + _ala(100, [6.6, 1.0, 0]) + _gly(100, [9.9, 1.5, 0]) \
        + _gly(100, [13.2, 2.0, 0]) + _ala(101, [16.5, 2.5, 0])
    path = tmp_path / "icodes_lost.pdb"
    _write_pdb(path, [atoms])
    with pytest.warns(LoadWarning, match="2 residue.s. repeat the chain, number"):
        ens = load_ensemble(path)
    assert ens.sequence == ["ALA", "GLY", "ALA", "GLY", "GLY", "ALA"]
    assert ens.mask.all()
    assert ens.segment_start.tolist() == [True] + [False] * 5
    assert np.allclose(ens.xyz[0, ens.layout.ca_index, 0], np.arange(6) * 0.33 + 0.145)


def test_a_trajectory_keeps_two_residues_of_one_name_and_number_in_its_topology(tmp_path, tests_data):
    """mdtraj's PDB reader joins two residues of one chain, number and name in a row into one (every atom name
    twice), and the second residue was lost without a word on the trajectory path: trp-cage with GLY11 numbered
    10 read as 19 residues. The topology's atoms are grouped as the PDB reader groups them, with its warning."""
    import mdtraj as md

    lines = (tests_data / "trpcage.pdb").read_text().splitlines()
    top = tmp_path / "top.pdb"
    top.write_text("\n".join(ln[:22] + "  10" + ln[26:] if ln.startswith("ATOM") and ln[17:20] == "GLY"
                             and int(ln[22:26]) == 11 else ln for ln in lines) + "\n")
    md.load(str(tests_data / "trpcage.pdb")).save_dcd(str(tmp_path / "traj.dcd"))
    reference = load_ensemble(tests_data / "trpcage.pdb")
    with pytest.warns(LoadWarning, match="1 residue.s. repeat the chain, number"):
        ens = load_ensemble(tmp_path / "traj.dcd", topology=top)
    assert ens.sequence == reference.sequence and ens.mask.all()
    assert np.abs(ens.xyz - reference.xyz).max() < 1e-5
    assert list(ens.residue_numbers[8:12]) == [9, 10, 10, 12]


def test_a_residue_listed_apart_joins_itself_and_duplicate_atoms_warn(tmp_path):
    first, second = _gly(1, [0, 0, 0]), _gly(2, [3.3, 0.5, 0])
    atoms = first[:2] + second + [("GLY", 2, "O", np.array([9.0, 9, 9]), " ", "ATOM")] + first[2:]
    path = tmp_path / "apart.pdb"
    _write_pdb(path, [atoms])
    with pytest.warns(LoadWarning, match="1 atom record.s. repeat an atom name"):
        ens = load_ensemble(path)
    assert ens.sequence == ["GLY", "GLY"]
    assert ens.mask.all()
    assert not np.allclose(ens.xyz[0, 7], [0.9, 0.9, 0.9])  # the first O of residue 2 kept


def test_aliases_oxt_and_chain_breaks_from_geometry(tmp_path):
    a = [(r if r != "GLY" else "HSD", n, nm, x, alt, rec) for r, n, nm, x, alt, rec in _gly(1, [0, 0, 0])]
    a = [("HSD", 1, nm, x, alt, rec) for _, _, nm, x, alt, rec in _gly(1, [0, 0, 0])]
    b = _gly(2, [3.3, 0.5, 0])  # bonded: C(1)-N(2) ~ 1.4 Å
    c = _gly(3, [30.0, 0, 0]) + [("GLY", 3, "OXT", np.array([31.0, 3, 0]), " ", "ATOM")]  # far away: a break
    path = tmp_path / "x.pdb"
    _write_pdb(path, [a + b + c])
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ens = load_ensemble(path)
    assert ens.sequence[0] == "HIS"
    assert ens.segment_start.tolist() == [True, False, True]
    assert ens.n_atoms == 4 + 6 + 4 + 4  # HIS has 10 heavy atoms; its missing side chain is masked
    assert (~ens.mask).sum() == 6


def test_mmcif_models_with_different_atom_sets_load(tmp_path):
    """openmm.app.PDBxFile refuses such files; NMR and IDP ensembles in mmCIF have them."""
    rows = []
    for model in (1, 2):
        for num, origin in ((1, [0, 0, 0]), (2, [3.3, 0.5, 0])):
            for _, _, name, xyz, _, _ in _gly(num, origin):
                if model == 2 and num == 2 and name == "O":
                    continue
                rows.append(f"ATOM {len(rows) + 1} {name[0]} {name} . GLY A {num} ? {xyz[0]:.3f} {xyz[1]:.3f} "
                            f"{xyz[2]:.3f} 'GLY' {model}")
    header = ["data_x", "loop_"] + [f"_atom_site.{c}" for c in (
        "group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id", "auth_asym_id",
        "auth_seq_id", "pdbx_PDB_ins_code", "Cartn_x", "Cartn_y", "Cartn_z", "auth_comp_id", "pdbx_PDB_model_num")]
    path = tmp_path / "ens.cif"
    path.write_text("\n".join(header + rows + ["#", ""]))
    with pytest.warns(LoadWarning, match="missing"):
        ens = load_ensemble(path)
    assert ens.sequence == ["GLY", "GLY"] and ens.n_frames == 2
    assert ens.mask[0].all() and ens.mask[1].sum() == ens.n_atoms - 1
    np.testing.assert_allclose(ens.xyz[0, 5], [0.475, 0.05, 0.0], atol=1e-6)  # CA of residue 2, nm


def test_bad_inputs_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_ensemble(tmp_path / "missing.pdb")
    bad = tmp_path / "x.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="unknown extension"):
        load_ensemble(bad)
    traj = tmp_path / "x.dcd"
    traj.write_bytes(b"")
    with pytest.raises(ValueError, match="topology"):
        load_ensemble(traj)


TRAIN_FILES = [
    ("md/trpcage/trpcage_train.dcd", "md/trpcage/trpcage.pdb", 20),
    ("md/adk/adk_dims.xtc", "md/adk/adk.pdb", 214),
    ("md/ntl9/ntl9_train.xtc", "md/ntl9/ntl9.pdb", 52),
    ("idp/PED00153/PED00153e007.pdb.gz", None, 100),
    ("idp/PED00142/PED00142e025.pdb.gz", None, 120),
    ("chains/1FAS.cif.gz", None, 61),
    ("chains/6yfy.cif.gz", None, None),
    ("chains/3hsy.pdb.gz", None, None),
    ("chains/wrong_hydrogens.pdb.gz", None, 2),
]


@pytest.mark.parametrize("path,top,n_res", TRAIN_FILES)
def test_every_kind_of_training_file_loads(shared_data, path, top, n_res):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        ens = load_ensemble(shared_data / "train" / path, topology=shared_data / "train" / top if top else None,
                            stride=50 if path.endswith((".dcd", ".xtc")) else 1)
    if n_res is not None:
        assert ens.n_residues == n_res
    assert ens.n_frames >= 1
    assert ens.ca_mask.mean() > 0.99
    # heavy atoms only, nm: bonded CA-CA distances ~0.38 nm inside segments
    d = np.linalg.norm(np.diff(ens.ca_xyz[0], axis=0), axis=-1)[~ens.segment_start[1:]]
    d = d[np.isfinite(d)]
    assert np.median(d) == pytest.approx(0.38, abs=0.02)


def test_all_training_chains_load(shared_data):
    files = sorted((shared_data / "train" / "chains").glob("*.gz"))
    assert len(files) > 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        for f in files:
            assert load_ensemble(f).n_residues >= 1, f


def test_frame_torn_where_the_others_are_continuous_warns(trpcage):
    """One corrupt frame (a chain break the other frames lack) is kept, named in a LoadWarning, and found by
    torn_frames (as in PED00153 e011: five models have bonds of up to 20 nm)."""
    from openmm_backmap.structure.segments import detect_segment_starts, torn_frames

    lay = trpcage.layout
    xyz = np.repeat(trpcage.xyz, 4, axis=0).copy()
    xyz[2, lay.residue_start[10]:] += np.array([2.0, 0.0, 0.0])
    mask = np.ones(xyz.shape[:2], bool)
    with pytest.warns(LoadWarning, match=r"1 of 4 frame\(s\) have a covalent bond longer than 0.3 nm \(first: "
                                         r"frame 2, C of .* 10 - N of .* 11"):
        starts = detect_segment_starts(xyz, mask, trpcage.sequence, ["A"] * trpcage.n_residues)
    assert starts.tolist() == trpcage.segment_start.tolist()  # the median frame decides the segments
    ens = trpcage.__class__(trpcage.sequence, xyz, mask, starts, ["A"] * trpcage.n_residues,
                            list(range(1, trpcage.n_residues + 1)))
    assert torn_frames(ens).tolist() == [2]
    assert torn_frames(trpcage).tolist() == []


def test_chains_that_share_an_id_and_numbers_stay_apart(tmp_path, tests_data):
    """martinize2 numbers every chain from 1 under one chain ID, with TER between them: no residue may merge."""
    lines = [ln for ln in open(tests_data / "trpcage.pdb") if ln.startswith("ATOM")]
    first = [ln for ln in lines if int(ln[22:26]) <= 10]
    second = [ln[:22] + f"{int(ln[22:26]) - 10:4d}" + ln[26:] for ln in lines if int(ln[22:26]) > 10]
    (tmp_path / "two.pdb").write_text("".join(first) + "TER\n" + "".join(second) + "TER\nEND\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        ens = load_ensemble(tmp_path / "two.pdb")
    assert ens.n_residues == 20 and ens.residue_numbers == list(range(1, 11)) * 2
