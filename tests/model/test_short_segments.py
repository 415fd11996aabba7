"""Chains and segments of 1, 2 and 3 residues, and collinear C-alphas, get every covalent bond right.

With two C-alphas (or three on a line) the local frame of a residue has no plane; it used to fall
back to a fixed frame unrelated to the chain, which put N of a 2-residue chain's second residue
2-6 Å from its CA. The checks run through the TorchScript model files: the shipped model (its
forward holds the fix, so it had to be re-exported) and a tiny model scripted from the code.
"""

from pathlib import Path

import numpy as np
import pytest

from openmm_backmap.model import load_model

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "ca2aa.pt"
TOLERANCE = 0.10  # relative deviation from the template bond length


@pytest.fixture(scope="module", params=["shipped", "tiny"])
def model(request, tiny_ca_model):
    if request.param == "shipped":
        if not SHIPPED.exists():
            pytest.skip("models/ca2aa.pt not present")
        return load_model(SHIPPED, device="cpu")
    return load_model(tiny_ca_model, device="cpu")


@pytest.fixture(scope="module")
def template_lengths(model, trpcage):
    """Bond lengths (nm) the model builds for Trp-cage as one chain, by (residue, atom, atom)."""
    out = model.backmap(trpcage.ca_xyz, sequence=trpcage.sequence, segment_start=trpcage.segment_start,
                        deterministic=True)
    return _bond_lengths(out)


def _bond_lengths(result, frame=0):
    xyz = result.xyz[frame]
    lengths = {}
    for a, b in result.topology.bonds:
        key = (a.residue.index, a.name, b.residue.index, b.name)
        lengths[key] = float(np.linalg.norm(xyz[a.index] - xyz[b.index]))
    return lengths


def _starts(n, *starts):
    seg = np.zeros(n, dtype=bool)
    seg[[0, *starts]] = True
    return seg


def _collinear(n, direction):
    d = np.asarray(direction, dtype=np.float64)
    return (np.arange(n)[:, None] * 0.38 * d / np.linalg.norm(d) + [1.0, 2.0, 3.0]).astype(np.float32)


CASES = {
    "1 residue": (1, ()),
    "2 residues": (2, ()),
    "3 residues": (3, ()),
    "break leaving 2 residues first": (8, (2,)),
    "break leaving 2 residues last": (8, (6,)),
    "2-residue segment inside": (20, (6, 8)),
    "1-residue segment inside": (20, (6, 7)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_short_segments_have_template_bonds(model, template_lengths, trpcage, case):
    n, starts = CASES[case]
    seg = _starts(n, *starts)
    out = model.backmap(trpcage.ca_xyz[:, :n], sequence=trpcage.sequence[:n], segment_start=seg,
                        samples=2, seed=3)
    for frame in range(2):
        got = _bond_lengths(out, frame)
        # a segment's first residue is bonded to nothing before it
        assert not any(ra != rb and seg[max(ra, rb)] for ra, _, rb, _ in got)
        bad = {k: (round(v, 4), round(template_lengths[k], 4)) for k, v in got.items()
               if abs(v / template_lengths[k] - 1) > TOLERANCE}
        assert len(got) > 5 * n and not bad, f"{case}: bonds off their template length: {bad}"


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("direction", [(1, 0, 0), (1, 2, 3)])
def test_collinear_c_alphas_have_template_bonds(model, template_lengths, trpcage, n, direction):
    out = model.backmap(_collinear(n, direction)[None], sequence=trpcage.sequence[:n], deterministic=True)
    got = _bond_lengths(out)
    assert np.isfinite(out.xyz).all()
    bad = {k: (round(v, 4), round(template_lengths[k], 4)) for k, v in got.items()
           if abs(v / template_lengths[k] - 1) > TOLERANCE}
    assert not bad, f"bonds off their template length: {bad}"
