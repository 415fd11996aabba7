"""Residue-slot tables and template geometry of the C-alpha -> atoms step.

Every residue is a row of ``MAX_HEAVY_ATOMS_PER_RESIDUE`` atom slots in the
canonical order of its template (N, CA, C, O, CB, ...). The tables here say
which slots exist, how each side-chain atom is placed from three earlier
ones (Z-matrix), and which chi angle turns it; :func:`fit_geometry` measures
the bond lengths, angles and torsion offsets of those placements on
reference structures. Lengths in Å, angles in radians.
"""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import torch

from ...structure import AMINO_ACIDS, TEMPLATES
from ...structure.constants import ANGSTROM_PER_NM, MAX_HEAVY_ATOMS_PER_RESIDUE
from ..geometry import bond_angle, dihedral, local_frames, place_atom, wrap_angle

__all__ = ["MAX_ATOMS", "N_TYPES", "BACKBONE_BOND_ANGSTROM", "BACKBONE_ANGLE_DEG", "peptide_unit", "residue_tables",
           "ensemble_to_slots", "fit_geometry", "default_geometry"]

MAX_ATOMS = MAX_HEAVY_ATOMS_PER_RESIDUE
N_TYPES = len(AMINO_ACIDS)
#: Ideal backbone bond lengths (Engh & Huber), Å.
BACKBONE_BOND_ANGSTROM = {"CA-C": 1.525, "C-N": 1.329, "N-CA": 1.458, "C-O": 1.231}
#: Ideal backbone bond angles (Engh & Huber), degrees.
BACKBONE_ANGLE_DEG = {"CA-C-N": 116.2, "C-N-CA": 121.7, "CA-C-O": 120.1, "N-CA-C": 111.0}


def peptide_unit(cis: bool) -> np.ndarray:
    """Ideal C, O, N(i+1), CA(i+1) of a peptide unit (Å) in its canonical frame.

    CA(i) is the origin, CA(i+1) lies on +x and the unit in the xy plane with
    C at y > 0; ``cis`` chooses omega = 0 instead of 180 degrees.

    Examples
    --------
    >>> unit = peptide_unit(cis=False)
    >>> round(float(unit[3, 0]), 2)  # trans C-alpha distance, Å
    3.8
    """
    rad = math.radians
    bond, angle = BACKBONE_BOND_ANGSTROM, BACKBONE_ANGLE_DEG
    f = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    ca = f(0.0, 0.0, 0.0)
    c = f(bond["CA-C"], 0.0, 0.0)
    n = c + bond["C-N"] * f(-math.cos(rad(angle["CA-C-N"])), math.sin(rad(angle["CA-C-N"])), 0.0)
    o = c + bond["C-O"] * f(-math.cos(rad(angle["CA-C-O"])), -math.sin(rad(angle["CA-C-O"])), 0.0)
    one = torch.ones((), dtype=torch.float64)
    ca2 = place_atom(ca, c, n, one * bond["N-CA"], one * rad(angle["C-N-CA"]), one * (0.0 if cis else math.pi))
    frame = local_frames(ca, ca2, c)
    return (torch.stack([c, o, n, ca2]) @ frame.T).numpy()


def residue_tables() -> dict:
    """Per residue-type slot tables (numpy) describing the templates for the builder.

    Returns
    -------
    dict
        ``valid`` (20, 14) which slots exist, ``zm`` (20, 14, 3) the three
        reference slots placing each atom, ``chi`` (20, 14) the chi angle
        turning it (0: none), ``level`` (20, 14) its build order,
        ``chi_def`` (20, 4, 4) and ``chi_valid`` (20, 4) the chi angles'
        atoms, and ``n_levels``.

    Examples
    --------
    >>> tabs = residue_tables()
    >>> int(tabs["valid"][AMINO_ACIDS.index("TRP")].sum()), int(tabs["chi_valid"][AMINO_ACIDS.index("GLY")].sum())
    (14, 0)
    """
    valid = np.zeros((N_TYPES, MAX_ATOMS), dtype=bool)
    zm = np.zeros((N_TYPES, MAX_ATOMS, 3), dtype=np.int64)
    chi = np.zeros((N_TYPES, MAX_ATOMS), dtype=np.int64)
    level = np.zeros((N_TYPES, MAX_ATOMS), dtype=np.int64)
    chi_def = np.zeros((N_TYPES, 4, 4), dtype=np.int64)
    chi_valid = np.zeros((N_TYPES, 4), dtype=bool)
    for t, name in enumerate(AMINO_ACIDS):
        tpl = TEMPLATES[name]
        idx = {a: i for i, a in enumerate(tpl.atoms)}
        valid[t, :len(tpl.atoms)] = True
        if "CB" in idx:
            zm[t, 4] = (idx["C"], idx["N"], idx["CA"])  # CB: torsion C-N-CA-CB fixes L chirality
        lev = {"N": 0, "CA": 0, "C": 0, "O": 0, "CB": 0}
        for atom, a, b, c, k in tpl.zmatrix:
            s = idx[atom]
            zm[t, s] = (idx[a], idx[b], idx[c])
            chi[t, s] = k
            lev[atom] = lev[c] + 1
            level[t, s] = lev[atom]
            if k and not chi_valid[t, k - 1]:
                chi_valid[t, k - 1] = True
                chi_def[t, k - 1] = (idx[a], idx[b], idx[c], s)
    return dict(valid=valid, zm=zm, chi=chi, level=level, chi_def=chi_def, chi_valid=chi_valid,
                n_levels=int(level.max()))


def ensemble_to_slots(ensemble):
    """Canonical ensemble -> (xyz (F, R, 14, 3) Å, mask (F, R, 14)) residue-slot arrays.

    Slots a residue does not have, or atoms missing from a frame, are NaN in
    ``xyz`` and False in ``mask``.

    Examples
    --------
    >>> xyz, mask = ensemble_to_slots(trpcage)  # doctest: +SKIP
    >>> xyz.shape, int(mask.sum()) == trpcage.n_atoms  # doctest: +SKIP
    ((1, 20, 14, 3), True)
    """
    lay = ensemble.layout
    f, r = ensemble.n_frames, ensemble.n_residues
    xyz = np.full((f, r, MAX_ATOMS, 3), np.nan, dtype=np.float32)
    mask = np.zeros((f, r, MAX_ATOMS), dtype=bool)
    slot = np.arange(lay.n_atoms) - lay.residue_start[lay.atom_residue]
    xyz[:, lay.atom_residue, slot] = ensemble.xyz * ANGSTROM_PER_NM
    mask[:, lay.atom_residue, slot] = ensemble.mask
    return xyz, mask



def fit_geometry(slot_xyz: list, slot_mask: list, slot_types: list) -> dict:
    """Template bond lengths, angles (radians) and torsion offsets from reference structures.

    Parameters
    ----------
    slot_xyz, slot_mask, slot_types : lists of arrays
        Residue-slot coordinates (F, R, 14, 3) in Å, masks (F, R, 14) and types (R,).

    Returns
    -------
    dict
        Lists ``bond``, ``angle``, ``offset`` of shape (20, 14) (zeros where a
        slot was never seen) and ``pro_cd_n``, the proline CD-N bond (Å).

    Examples
    --------
    >>> x, m = ensemble_to_slots(trpcage)  # doctest: +SKIP
    >>> geo = fit_geometry([x], [m], [trpcage.residue_types])  # doctest: +SKIP
    >>> np.asarray(geo["bond"]).shape  # doctest: +SKIP
    (20, 14)
    """
    tabs = residue_tables()
    bond = np.zeros((N_TYPES, MAX_ATOMS), dtype=np.float64)
    angle = np.zeros_like(bond)
    offset = np.zeros_like(bond)
    acc = {k: [[[] for _ in range(MAX_ATOMS)] for _ in range(N_TYPES)] for k in ("b", "a", "t")}
    for xyz, mask, types in zip(slot_xyz, slot_mask, slot_types):
        x = torch.as_tensor(xyz, dtype=torch.float64)
        for t in np.unique(types):
            sel = np.nonzero(types == t)[0]
            xr = x[:, sel]
            mr = mask[:, sel]
            for s in range(4, MAX_ATOMS):
                if not tabs["valid"][t, s]:
                    continue
                a, bb, c = tabs["zm"][t, s]
                k = tabs["chi"][t, s]
                ok = mr[..., a] & mr[..., bb] & mr[..., c] & mr[..., s]
                if k:
                    da, db, dc, dd = tabs["chi_def"][t, k - 1]
                    ok &= mr[..., da] & mr[..., db] & mr[..., dc] & mr[..., dd]
                if not ok.any():
                    continue
                P = [xr[..., i, :][torch.from_numpy(ok)] for i in (a, bb, c, s)]
                acc["b"][t][s].append(torch.linalg.vector_norm(P[3] - P[2], dim=-1).numpy())
                acc["a"][t][s].append(bond_angle(P[1], P[2], P[3]).numpy())
                tor = dihedral(*P)
                if k:
                    Q = [xr[..., i, :][torch.from_numpy(ok)] for i in tabs["chi_def"][t, k - 1]]
                    tor = wrap_angle(tor - dihedral(*Q))
                acc["t"][t][s].append(tor.numpy())
    for t in range(N_TYPES):
        for s in range(4, MAX_ATOMS):
            if acc["b"][t][s]:
                bond[t, s] = np.median(np.concatenate(acc["b"][t][s]))
                angle[t, s] = np.median(np.concatenate(acc["a"][t][s]))
                tv = np.concatenate(acc["t"][t][s])
                offset[t, s] = math.atan2(np.sin(tv).mean(), np.cos(tv).mean())
    pro = AMINO_ACIDS.index("PRO")
    cdn = []
    for xyz, mask, types in zip(slot_xyz, slot_mask, slot_types):
        sel = np.nonzero(types == pro)[0]
        ok = mask[:, sel, 0] & mask[:, sel, 6]
        cdn.append(np.linalg.norm(xyz[:, sel, 0] - xyz[:, sel, 6], axis=-1)[ok])
    cdn = np.concatenate(cdn) if cdn else np.zeros(0)
    return {"bond": bond.tolist(), "angle": angle.tolist(), "offset": offset.tolist(),
            "pro_cd_n": float(np.median(cdn)) if len(cdn) else 1.473}


def default_geometry() -> dict:
    """Template geometry shipped with the package (``data/ideal_geometry.json``).

    Medians over the training chains, written by ``examples/fit_template_geometry.py``;
    trained models carry their own fitted copy as buffers.

    Examples
    --------
    >>> np.asarray(default_geometry()["bond"]).shape
    (20, 14)
    """
    return json.loads((resources.files("openmm_backmap") / "data" / "ideal_geometry.json").read_text())
