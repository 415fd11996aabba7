"""What the CG particles of a simulation or file are: residues, chains, segments, bonds.

Both front ends (:class:`~openmm_backmap.run.reporter.BackmapReporter` and
:func:`~openmm_backmap.run.conversion.convert_trajectory`) read their CG
topology here and check it against the model with :func:`cg_sequence`.
"""

from __future__ import annotations

import numpy as np

from ..structure import (InputError, canonical_residue_name, make_whole, segment_starts_from_distances,
                         warn_modified_residues)

__all__ = ["cg_particle_info", "cg_sequence"]


def _residue_info_openmm(topology):
    def info(r):
        number = int(r.id) if str(r.id).lstrip("-").isdigit() else r.index + 1
        return r.name, number, r.chain.index, (r.chain.id or chr(65 + r.chain.index % 26))[:1]

    return list(topology.atoms()), [(a.index, b.index) for a, b in topology.bonds()], info


def _residue_info_mdtraj(topology):
    def info(r):
        chain = r.chain
        return r.name, int(r.resSeq), chain.index, (getattr(chain, "chain_id", None) or chr(65 + chain.index % 26))[:1]

    return list(topology.atoms), [(a.index, b.index) for a, b in topology.bonds], info


def cg_particle_info(topology, particles=None, xyz=None, box_vectors=None):
    """Residue names, chains, segments and bonds of CG particles, from an OpenMM or mdtraj topology.

    Parameters
    ----------
    topology : openmm.app.Topology or mdtraj.Topology
    particles : sequence of int, optional
        The CG particles (default: all), in bead order.
    xyz : array, (N, 3), nm, optional
        Positions of the particles, used to find chain breaks when the
        topology has no bonds between them
        (:func:`~openmm_backmap.structure.segment_starts_from_distances`).
    box_vectors : array, (3, 3), nm, optional
        The periodic box of ``xyz``: molecules are made whole before the
        distances are measured.

    Returns
    -------
    dict
        ``sequence`` (canonical names, or None when the particles are not one
        standard residue each), ``names`` (residue names as in the topology),
        ``bad_names`` (non-standard ones), ``one_per_residue``,
        ``segment_start``, ``chain_ids``, ``residue_numbers``, ``bonds``
        ((n, 2) indices into ``particles``: the topology's bonds, or, where it
        has none, consecutive particles of a chain; what
        :func:`~openmm_backmap.structure.make_whole` follows).

    Examples
    --------
    >>> import mdtraj as md  # doctest: +SKIP
    >>> cg_particle_info(md.load_topology('ca.pdb'))['sequence'][:2]  # doctest: +SKIP
    ['ASN', 'LEU']
    """
    reader = _residue_info_openmm if hasattr(topology, "getNumAtoms") else _residue_info_mdtraj
    atoms, bonds_all, res_info = reader(topology)
    particles = range(len(atoms)) if particles is None else particles
    particles = [int(p) for p in particles]
    pos = {p: k for k, p in enumerate(particles)}
    residues = [atoms[p].residue for p in particles]
    one_per_residue = len({id(r) for r in residues}) == len(residues)
    info = [res_info(r) for r in residues]
    names = [i[0] for i in info]
    canon = [canonical_residue_name(nm) for nm in names]
    if one_per_residue:
        warn_modified_residues(names, "CG topology")
    bad = sorted({nm for nm, c in zip(names, canon) if c is None})
    bonds = np.array([(pos[i], pos[j]) for i, j in bonds_all if i in pos and j in pos], dtype=np.int64).reshape(-1, 2)
    n = len(particles)
    chain_index = np.array([i[2] for i in info], dtype=np.int64)
    seg = np.zeros(n, dtype=bool)
    if len(bonds):
        bonded = {(min(i, j), max(i, j)) for i, j in bonds}
        seg[1:] = [(k - 1, k) not in bonded for k in range(1, n)]
    else:
        k = np.flatnonzero(chain_index[1:] == chain_index[:-1])
        bonds = np.stack([k, k + 1], axis=1)
        if xyz is not None and n > 1:
            x = np.asarray(xyz, dtype=np.float64)
            if box_vectors is not None:
                x = make_whole(x, box_vectors, bonds)
            seg = segment_starts_from_distances(np.linalg.norm(np.diff(x, axis=0), axis=1))
    if n:
        seg[0] = True
        seg[1:] |= chain_index[1:] != chain_index[:-1]
    return {
        "sequence": [str(c) for c in canon] if (one_per_residue and not bad and n) else None,
        "names": names,
        "bad_names": bad,
        "one_per_residue": one_per_residue,
        "segment_start": seg,
        "chain_ids": [i[3] for i in info],
        "residue_numbers": [i[1] for i in info],
        "bonds": bonds,
    }


def cg_sequence(info, model, where="", fix_count="", fix_names=""):
    """The residue sequence a model needs from CG particle info (:func:`cg_particle_info`).

    A transferable (C-alpha) model needs one particle per residue with
    standard residue names; raises InputError saying what is wrong, followed
    by the caller's hint on how to fix it. For a per-system model whose beads
    are not residues, returns None (nothing to check).

    Examples
    --------
    >>> cg_sequence(info, load_model(None), fix_names='; pass sequence=[...]')  # doctest: +SKIP
    ['ASN', 'LEU', ...]
    """
    sequence = info["sequence"]
    if model.transferable and sequence is None:
        if not info["one_per_residue"]:
            raise InputError(f"{where}the CG particles are not one per residue; a C-alpha model needs one particle "
                             f"per residue{fix_count}")
        raise InputError(f"{where}residue names {', '.join(info['bad_names'][:6])} are neither standard amino acids nor "
                         f"modified residues with a known parent, so the C-alpha model cannot know the sequence"
                         f"{fix_names}")
    if not model.transferable and sequence is not None and len(sequence) != model.n_beads:
        return None  # beads are not residues
    return sequence
