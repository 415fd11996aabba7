"""Which cysteines of a heavy-atom structure form disulfides."""

from __future__ import annotations

import numpy as np

from .constants import DISULFIDE_CB_NM, DISULFIDE_NM, METAL_SITE_CB_NM
from .templates import atom_layout

__all__ = ["disulfide_bonds"]


def disulfide_bonds(sequence, xyz) -> np.ndarray:
    """SG-SG atom pairs (n, 2) of the disulfides of one heavy-atom frame in canonical order.

    Two cysteines are bonded when their SG atoms are closer than ``DISULFIDE_NM`` (0.25 nm), or when their CB
    atoms are closer than ``DISULFIDE_CB_NM`` (0.43 nm) and neither has a third cysteine with CB within
    ``METAL_SITE_CB_NM`` (0.50 nm; three or four cysteines that close hold a metal). The CB rule finds the
    disulfides of a backmapped structure, whose SG atoms are placed residue by residue. Each cysteine gets at
    most one partner, the nearest first.

    Parameters
    ----------
    sequence : sequence of str
        Canonical residue names.
    xyz : array, (A, 3), nm

    Returns
    -------
    ndarray of int, (n, 2)
        Atom indices of the bonded SG pairs.

    Examples
    --------
    >>> from openmm_backmap.structure import atom_layout
    >>> lay = atom_layout(["CYS", "GLY", "CYS"])
    >>> xyz = np.zeros((lay.n_atoms, 3)) + np.arange(lay.n_atoms)[:, None]  # every atom far from the others
    >>> xyz[lay.index(2, "CB")] = xyz[lay.index(0, "CB")] + [0.38, 0.0, 0.0]
    >>> disulfide_bonds(["CYS", "GLY", "CYS"], xyz).tolist() == [[lay.index(0, "SG"), lay.index(2, "SG")]]
    True
    """
    lay = atom_layout(sequence)
    cys = [r for r, name in enumerate(lay.sequence) if name == "CYS"]
    if len(cys) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    xyz = np.asarray(xyz, dtype=np.float64)
    sg = np.array([lay.index(r, "SG") for r in cys])
    cb = np.array([lay.index(r, "CB") for r in cys])
    d_sg = np.linalg.norm(xyz[sg][:, None] - xyz[sg][None], axis=-1)
    d_cb = np.linalg.norm(xyz[cb][:, None] - xyz[cb][None], axis=-1)
    np.fill_diagonal(d_cb, np.inf)
    np.fill_diagonal(d_sg, np.inf)
    crowded = (d_cb < METAL_SITE_CB_NM).sum(1) > 1
    ok = (d_sg < DISULFIDE_NM) | ((d_cb < DISULFIDE_CB_NM) & ~crowded[:, None] & ~crowded[None, :])
    pairs, taken = [], set()
    for k in np.argsort(np.where(ok, d_cb, np.inf), axis=None):
        i, j = np.unravel_index(k, d_cb.shape)
        if not ok[i, j]:
            break
        if i < j and i not in taken and j not in taken:
            pairs.append((int(sg[i]), int(sg[j])))
            taken.update((i, j))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)
