"""Force-field bond lengths for the reference-free bond check (openmm_backmap.run.relax.systems)."""

import numpy as np

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
    cases.append((["GLY", "PRO", "HIS", "ALA", "CYS"], None))  # histidine: the System path
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
