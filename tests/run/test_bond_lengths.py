"""Force-field bond lengths for the reference-free bond check (openmm_backmap.run.relax.systems)."""

import numpy as np
import pytest

from openmm_backmap.run.relax.systems import build_force_field_system, reference_bond_lengths
from openmm_backmap.structure import atom_layout


def test_a_lone_residue_still_gets_its_bond_check(trpcage):
    seg = trpcage.segment_start.copy()
    seg[[0, 1, 5, 6, 19]] = True  # residues 0, 5 and 19 alone in their segments: no force-field template
    r0 = reference_bond_lengths(trpcage.sequence, seg, trpcage.xyz[0])
    assert np.isfinite(r0).all()


def test_segments_get_their_lengths_from_one_system_each(trpcage):
    """A condensate's identical chains cost one small System: per segment, the lengths the whole System gives."""
    seq = list(trpcage.sequence) * 3
    seg = np.zeros(len(seq), dtype=bool)
    seg[[0, 20, 40]] = True
    x = np.concatenate([trpcage.xyz[0] + k * 3.0 for k in range(3)])
    got = reference_bond_lengths(seq, seg, x)
    whole = build_force_field_system(seq, seg, x).bond_lengths(atom_layout(seq).bonds(seg))
    np.testing.assert_allclose(got, whole, atol=1e-7)


def test_template_table_gives_the_systems_numbers(tiny_ca_backmapper):
    """Issue 23, item 10: the per-template table (no OpenMM System) gives exactly the System's lengths."""
    from openmm_backmap.run.relax import bond_table, systems

    rng = np.random.default_rng(4)
    names = ["ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "ILE", "LEU", "LYS", "MET", "PHE", "PRO", "SER",
             "THR", "TRP", "TYR", "VAL"]
    cases = [(list(rng.choice(names, n)), seg) for n, seg in ((12, None), (30, None), (9, [0, 4]))]
    cases.append((["GLY", "PRO", "HIS", "ALA", "CYS"], None))  # histidine (HID here) and a free cysteine
    for seq, starts in cases:
        seg = None if starts is None else np.isin(np.arange(len(seq)), starts)
        k = np.arange(len(seq))
        ca = np.stack([0.23 * np.cos(np.radians(100 * k)), 0.23 * np.sin(np.radians(100 * k)), 0.15 * k], 1)
        xyz = tiny_ca_backmapper.backmap(ca[None].astype(np.float32), seq, seg, seed=1).xyz[0]
        key = systems._cache_key(seq, seg, systems.DEFAULT_FORCEFIELD)
        systems._BOND_LENGTHS.clear()
        table = reference_bond_lengths(seq, seg, xyz)
        systems._BOND_LENGTHS.clear()
        saved, bond_table._TABLE = bond_table._TABLE, {}  # no table: an OpenMM System per segment, as before
        try:
            built = reference_bond_lengths(seq, seg, xyz)
        finally:
            bond_table._TABLE = saved
            systems._BOND_LENGTHS.pop(key, None)
        np.testing.assert_array_equal(table, built)
    assert bond_table.template_bond_lengths(tuple(names[:4]), (True,) + (False,) * 3,
                                          (systems.DEFAULT_FORCEFIELD,)) is not None  # the table is used


def _table_and_system(seq, seg, xyz, monkeypatch):
    """(lengths from the table, System builds it took; lengths from OpenMM Systems, as without a table)."""
    from openmm_backmap.run.relax import bond_table, systems

    built = []
    real = systems.build_force_field_system
    monkeypatch.setattr(systems, "build_force_field_system", lambda *a, **k: built.append(1) or real(*a, **k))
    systems._BOND_LENGTHS.clear()
    table = reference_bond_lengths(seq, seg, xyz)
    n_built = len(built)
    systems._BOND_LENGTHS.clear()
    saved, bond_table._TABLE = bond_table._TABLE, {}  # no table: an OpenMM System per segment, as before
    try:
        return table, n_built, reference_bond_lengths(seq, seg, xyz)
    finally:
        bond_table._TABLE = saved
        systems._BOND_LENGTHS.clear()


def test_histidine_variants_and_disulfides_come_from_the_table(tiny_ca_backmapper, monkeypatch):
    """Issue 23: a protein with histidine or a disulfide built an OpenMM System for the bond check (~0.9 CPU-s for
    100 residues). The table holds HID, HIE and CYX, picked as OpenMM picks them, with the System's numbers."""
    import importlib.util
    from pathlib import Path

    from openmm_backmap.run.relax import bond_table

    spec = importlib.util.spec_from_file_location(
        "build_bond_length_table", Path(__file__).resolve().parents[2] / "benchmarks" / "build_bond_length_table.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)  # its edits make HIE and CYX structures
    for kind, where in builder.EDITED:
        seq, edit = builder._edited(kind, where)
        k = np.arange(len(seq))
        ca = np.stack([0.23 * np.cos(np.radians(100 * k)), 0.23 * np.sin(np.radians(100 * k)), 0.15 * k], 1)
        xyz = edit(tiny_ca_backmapper.backmap(ca[None].astype(np.float32), seq, seed=1).xyz[0].astype(np.float64))
        templates = bond_table.residue_templates(seq, xyz)
        assert kind in templates
        table, n_built, system = _table_and_system(seq, None, xyz, monkeypatch)
        assert n_built == 0, f"{kind} at {where}: an OpenMM System was built"
        np.testing.assert_array_equal(table, system)


def test_real_proteins_with_histidines_and_disulfides(shared_data, monkeypatch):
    """Antibody chains of the training corpus (histidines in real hydrogen-bond networks, disulfides): the
    table's lengths equal the Systems', and no System is built."""
    from openmm_backmap.io import load_ensemble
    from openmm_backmap.run.relax import bond_table

    seen = set()
    for name in ("1AHW_r_b", "6OC3_l_b"):  # 1AHW: one HIE (NE2 in a hydrogen bond), two HID, four CYX
        path = shared_data / "train" / "corpus" / "antibody" / f"{name}.pdb.gz"
        if not path.exists():
            pytest.skip(f"{path} not found")
        ens = load_ensemble(path)
        xyz = ens.xyz[0].astype(np.float64)
        if not np.isfinite(xyz).all():
            continue
        for a, b in zip(*[np.r_[np.flatnonzero(ens.segment_start), len(ens.sequence)][i:] for i in (0, 1)]):
            seq = list(ens.sequence[a:b])
            lay = atom_layout(list(ens.sequence))
            x = xyz[lay.residue_start[a]:lay.residue_start[a] + atom_layout(seq).n_atoms]
            seen.update(bond_table.residue_templates(seq, x))
            table, n_built, system = _table_and_system(seq, None, x, monkeypatch)
            assert n_built == 0, name
            np.testing.assert_array_equal(table, system)
    assert {"HID", "HIE", "CYX"} <= seen, seen
