"""What the CG particles of a simulation or file are: residues, chains, segments, bonds, bead scheme.

Both front ends (:class:`~openmm_backmap.run.reporter.BackmapReporter` and
:func:`~openmm_backmap.run.conversion.convert_trajectory`) read their CG
topology here and check it against the model with :func:`check_scheme`
(the kind of beads) and :func:`cg_sequence` (the residues).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..mapping import SCHEMES, detect_scheme
from ..structure import (InputError, LoadWarning, canonical_residue_name, make_whole, segment_starts_from_distances,
                         warn_modified_residues)

__all__ = ["cg_particle_info", "cg_sequence", "check_scheme", "model_scheme", "SCHEME_MODELS"]

#: The shipped model of every bead scheme, by file name in the package data. convert and the reporter do not pick
#: a model by scheme yet: this is where the centre-of-mass and Martini models go once they ship.
SCHEME_MODELS = {"ca": "ca2aa.pt"}
_SCHEME_LABELS = {"ca": "C-alpha beads", "com": "residue centre-of-mass beads", "martini3": "Martini 3 beads",
                  "martini2": "Martini 2 beads"}


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
        ``segment_start``, ``chain_start`` (True where a topology chain
        starts), ``chain_ids``, ``residue_numbers``, ``atom_names`` and
        ``residue_index`` (per particle: its name and its residue's index in
        the topology), ``bonds``
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
    chain_start = np.ones(n, dtype=bool)
    chain_start[1:] = chain_index[1:] != chain_index[:-1]
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
        "chain_start": chain_start,
        "chain_ids": [i[3] for i in info],
        "atom_names": [str(atoms[p].name) for p in particles],
        "residue_index": [r.index for r in residues],
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


def model_scheme(model):
    """The bead scheme a model takes: ``metadata['scheme']`` of a transferable model (``'ca'`` when it has none, as
    the shipped ``ca2aa.pt``), None for a per-system model (its beads are its own).

    Examples
    --------
    >>> model_scheme(load_model(None))  # doctest: +SKIP
    'ca'
    """
    return model.scheme


def check_scheme(info, xyz, model, scheme=None, where="", sequence=None):
    """Check that the CG particles are the kind of beads the model takes; returns their scheme.

    The scheme is ``scheme`` when given (the user's word overrides the
    detection), else found by :func:`openmm_backmap.mapping.detect_scheme`
    from the particle names and positions (positions only count for
    particles that are residues: standard residue names, or a ``sequence``
    the user gave). A clear mismatch (centre-of-mass
    beads given to a C-alpha model, Martini beads, or the reverse) raises
    InputError with the numbers; an unsure one warns (:class:`LoadWarning`).
    Backmapping the wrong kind of beads would silently give broken chemistry.

    Parameters
    ----------
    info : dict
        :func:`cg_particle_info` of the particles.
    xyz : array, (N, 3) or (F, N, 3), nm
        Their positions (a frame or a few).
    model : Backmapper
    scheme : str, optional
        What the beads are (one of ``openmm_backmap.mapping.SCHEMES``).
    where : str
        Prefix of messages (e.g. the file).
    sequence : list of str, optional
        Residue names the user gave for the particles.

    Returns
    -------
    str or None
        The scheme of the beads; None for a per-system model or when the
        input cannot tell.

    Examples
    --------
    >>> check_scheme(cg_particle_info(top, xyz=com), com, load_model(None))  # doctest: +SKIP
    InputError: the CG particles look like residue centre-of-mass beads, but the model takes C-alpha beads: ...
    """
    if scheme is not None and scheme not in SCHEMES:
        raise InputError(f"unknown bead scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    expected = model_scheme(model)
    if expected is None:
        return None
    name = model.metadata.get("name") or model.path or "the model"
    if scheme is not None:
        if scheme != expected:
            raise InputError(f"{where}the beads are {_SCHEME_LABELS[scheme]} (scheme={scheme!r}) but {name} takes "
                             f"{_SCHEME_LABELS[expected]}{_no_model(scheme)}")
        return scheme
    residues = info["one_per_residue"] and (info["sequence"] is not None or sequence is not None)
    guess = detect_scheme(info["atom_names"], xyz if residues else None, info["names"], info["residue_index"],
                          info["chain_start"])
    if guess.scheme is None or guess.scheme == expected:
        return guess.scheme
    msg = (f"{where}the CG particles look like {_SCHEME_LABELS[guess.scheme]}, but {name} takes "
           f"{_SCHEME_LABELS[expected]}: {guess.evidence}. Backmapping them with this model gives broken "
           f"chemistry{_no_model(guess.scheme)}. If they are {_SCHEME_LABELS[expected]} after all, say so with "
           f"scheme={expected!r} (convert: --scheme {expected})")
    if guess.certain:
        raise InputError(msg)
    warnings.warn(msg, LoadWarning, stacklevel=3)
    return guess.scheme


def _no_model(scheme):
    if scheme in SCHEME_MODELS:
        return f"; give a model that takes {_SCHEME_LABELS[scheme]}"
    return f"; no shipped model takes {_SCHEME_LABELS[scheme]} yet (shipped: {', '.join(SCHEME_MODELS)})"
