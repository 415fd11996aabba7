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
