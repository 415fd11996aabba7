"""Reference-free quality checks (openmm_backmap.evaluation.quality)."""

import numpy as np
import pytest

from openmm_backmap.evaluation.quality import frame_quality
from openmm_backmap.structure import InputError


def _lengths(xyz, bonds):
    return np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1)


def test_clash_and_bond_checks(trpcage):
    lay = trpcage.layout
    x = trpcage.xyz[0].astype(np.float64)
    bonds = lay.bonds(trpcage.segment_start)
    r0 = _lengths(x, bonds)
    bad = x.copy()
    bad[lay.residue_start[13]:lay.residue_start[14]] += x[lay.index(12, "CA")] - x[lay.index(13, "CA")] + 0.01
    frames = np.stack([x, bad, np.full_like(x, np.nan)])
    clash, ok = frame_quality(frames, trpcage.sequence, trpcage.segment_start, r0)
    assert clash[0] == 0.0 and clash[1] > 0.0 and np.isnan(clash[2])
    assert ok[0] == 100.0 and 0.0 < ok[1] < 100.0 and np.isnan(ok[2])  # residue 14's peptide bonds stretched
    r0_unknown = r0.copy()
    r0_unknown[:] = np.nan
    assert np.isnan(frame_quality(x, trpcage.sequence, trpcage.segment_start, r0_unknown)[1]).all()
    assert np.isnan(frame_quality(x, trpcage.sequence, trpcage.segment_start)[1]).all()  # no lengths given
    with pytest.raises(InputError, match="bond lengths"):
        frame_quality(x, trpcage.sequence, trpcage.segment_start, r0[:-1])


def _rotated_about(x, a, b, moving, angle_deg):
    """``x`` with atoms ``moving`` turned by ``angle_deg`` about the axis through atoms a -> b."""
    axis = (x[b] - x[a]) / np.linalg.norm(x[b] - x[a])
    t = np.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k  # Rodrigues
    out = x.copy()
    out[moving] = (x[moving] - x[b]) @ rot.T + x[b]
    return out


def test_stereo_defects_find_d_residues_and_non_proline_cis_peptides(trpcage, side_chain_through_plane):
    """Mirror-image side chains and cis peptide bonds keep every bond length, so frame_quality cannot see them."""
    from openmm_backmap.evaluation.quality import stereo_defects

    lay, seq = trpcage.layout, trpcage.sequence
    x = trpcage.xyz[0].astype(np.float64)
    d, cis = stereo_defects(x, seq, trpcage.segment_start)
    assert d.shape == cis.shape == (1, len(seq)) and not d.any() and not cis.any()
    mirrored = side_chain_through_plane(trpcage, 3)  # residue 4 (index 3): a D residue, bonds unchanged
    # the rest of the chain turned 180 degrees about the peptide bond 6 -> 7 (to a LEU) and 11 -> 12 (to a PRO)
    after_leu = np.arange(lay.residue_start[6], lay.n_atoms)
    after_pro = np.arange(lay.residue_start[11], lay.n_atoms)
    assert seq[6] != "PRO" and seq[11] == "PRO"
    flipped = _rotated_about(mirrored, lay.index(5, "C"), lay.index(6, "N"), after_leu, 180.0)
    flipped = _rotated_about(flipped, lay.index(10, "C"), lay.index(11, "N"), after_pro, 180.0)
    bonds = lay.bonds(trpcage.segment_start)
    np.testing.assert_allclose(_lengths(flipped, bonds), _lengths(x, bonds), atol=1e-9)
    d, cis = stereo_defects(np.stack([x, flipped]), seq, trpcage.segment_start)
    assert np.flatnonzero(d[1]).tolist() == [3] and np.flatnonzero(cis[1]).tolist() == [6]  # cis-Pro is normal
    assert not d[0].any() and not cis[0].any()
    # a chain break before residue 7 has no peptide bond to judge; missing coordinates judge nothing
    seg = np.asarray(trpcage.segment_start).copy()
    seg[6] = True
    assert not stereo_defects(flipped, seq, seg)[1].any()
    gone = flipped.copy()
    gone[lay.index(3, "CB")] = np.nan
    assert not stereo_defects(gone, seq, trpcage.segment_start)[0].any()
