"""Periodic boundaries: molecules made whole again after a simulation wrapped them into the box.

mdtraj does the imaging (:meth:`mdtraj.Trajectory.make_molecules_whole`,
which walks a spanning tree of the bond graph); this module only supplies
the bonds of CG particles and keeps the result in double precision.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import InputError

__all__ = ["make_whole"]


@lru_cache(maxsize=8)  # a reporter makes the same particles whole at every report
def _bead_topology(n_particles, bond_bytes):
    """One residue of particles with bonds, and every further molecule bonded to the particle before it."""
    import mdtraj as md
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    bonds = np.frombuffer(bond_bytes, dtype=np.int64).reshape(-1, 2)
    bonds = bonds[((bonds >= 0) & (bonds < n_particles)).all(1) & (bonds[:, 0] != bonds[:, 1])]
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n_particles, n_particles))
    labels = connected_components(graph, directed=False)[1]
    _, firsts = np.unique(labels, return_index=True)
    links = [(f - 1, f) for f in firsts if f > 0]
    top = md.Topology()
    residue = top.add_residue("CG", top.add_chain())
    atoms = [top.add_atom("X", md.element.virtual, residue) for _ in range(n_particles)]
    for i, j in [*bonds.tolist(), *links]:
        top.add_bond(atoms[i], atoms[j])
    return top


def make_whole(xyz, box_vectors, bonds=None):
    """Make molecules whole across periodic boundaries.

    Every particle is moved to the periodic image closest to the particle it
    is bonded to, walking the bonds outward from the first particle (which
    stays where it is). A particle without bonds, or the first particle of a
    further molecule, is placed closest to the particle before it, so the
    chains of a complex stay together in bead order.

    Parameters
    ----------
    xyz : array, (N, 3) or (F, N, 3), nm
    box_vectors : array, (3, 3) or (F, 3, 3), nm
        Periodic box vectors (rows), in OpenMM's reduced form.
    bonds : array of int, (n, 2), optional
        Bonds between the particles (indices into ``xyz``). Default: none
        (every particle follows the one before it).

    Returns
    -------
    ndarray, same shape as ``xyz``, float64, nm

    Examples
    --------
    >>> import numpy as np
    >>> chain = np.array([[0.1, 0, 0], [2.9, 0, 0], [2.5, 0, 0]])  # split across a 3 nm box
    >>> make_whole(chain, np.eye(3) * 3.0)[:, 0].round(2).tolist()
    [0.1, -0.1, -0.5]
    """
    import mdtraj as md

    x = np.array(xyz, dtype=np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    box = np.asarray(box_vectors, dtype=np.float64)
    if box.ndim == 2:
        box = np.broadcast_to(box, (len(x), 3, 3))
    if box.shape != (len(x), 3, 3):
        raise InputError(f"box_vectors must have shape (3, 3) or ({len(x)}, 3, 3), got {box.shape}")
    bonds = np.zeros((0, 2), np.int64) if bonds is None else np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    top = _bead_topology(x.shape[1], np.ascontiguousarray(bonds).tobytes())
    if top.n_bonds == 0:
        return x[0] if squeeze else x
    traj = md.Trajectory(x, top)
    traj.unitcell_vectors = box.astype(np.float32)
    shift = traj.make_molecules_whole().xyz.astype(np.float64) - traj.xyz
    # mdtraj works in float32: keep only which lattice vectors it added, and add them in float64
    cells = np.rint(np.einsum("fnk,fkj->fnj", shift, np.linalg.inv(box)))
    x = x + np.einsum("fnk,fkj->fnj", cells, box)
    return x[0] if squeeze else x
