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
