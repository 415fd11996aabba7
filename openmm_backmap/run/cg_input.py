"""What the CG particles of a simulation or file are: residues, chains, segments, bonds, bead scheme.

Both front ends (:class:`~openmm_backmap.run.reporter.BackmapReporter` and
:func:`~openmm_backmap.run.conversion.convert_trajectory`) read their CG
topology here with :func:`prepare_cg_input`: it picks the shipped model of
the beads' scheme when none is given (or checks the given one against them
with :func:`check_scheme`), finds the residues (:func:`cg_sequence`; for
Martini beads :func:`martini_beads`) and hands back the particles in the
model's order with what the pipeline needs.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from ..mapping import SCHEMES, detect_scheme, martini_mapping
from ..model import SCHEME_MODELS, load_model, shipped_model_path
from ..structure import (InputError, LoadWarning, canonical_residue_name, make_whole, segment_starts_from_distances,
                         warn_modified_residues)
from .cg_chains import ChainBreaks, check_bead_spacing, find_chain_breaks, system_bonds

__all__ = ["cg_particle_info", "chain_breaks", "cg_sequence", "check_scheme", "martini_beads", "prepare_cg_input",
           "SchemeOverrideWarning", "CGInput"]

_MARTINI_SCHEMES = ("martini3", "martini2")
#: Names of the dummy charge beads of polarisable Martini 2 set-ups start so (``SCD``, ``SCD1`` ...).
_DUMMY_BEAD = "SCD"
#: martinize2 ``-go`` names its virtual Go sites so (``-go-atomname``, default ``CA``), one per BB, in its residue.
_GO_SITE = "CA"
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


def cg_particle_info(topology, particles=None, xyz=None, box_vectors=None, system=None, scheme="ca", where=""):
    """Residue names, chains, chain breaks and bonds of CG particles, from an OpenMM or mdtraj topology.

    Parameters
    ----------
    topology : openmm.app.Topology or mdtraj.Topology
    particles : sequence of int, optional
        The CG particles (default: all), in bead order.
    xyz : array, (N, 3), nm, optional
        Positions of the particles, used to find chain breaks where neither
        bonds nor records tell (:func:`~openmm_backmap.run.cg_chains.find_chain_breaks`).
    box_vectors : array, (3, 3), nm, optional
        The periodic box of ``xyz``: molecules are made whole before the
        distances are measured.
    system : openmm.System, optional
        Its bonds and constraints join particles too (engines keep chain
        bonds there rather than in the topology:
        :func:`~openmm_backmap.run.cg_chains.system_bonds`).
    scheme : str
        The bead scheme, for the break distance of one bead per residue.
    where : str
        Prefix of warnings.

    Returns
    -------
    dict
        ``sequence`` (canonical names, or None when the particles are not one
        standard residue each), ``names`` (residue names as in the topology),
        ``bad_names`` (non-standard ones), ``one_per_residue``,
        ``segment_start`` (with ``xyz``; else chain starts), ``chain_breaks`` (the
        :class:`~openmm_backmap.run.cg_chains.ChainBreaks` behind it, with
        ``xyz``), ``chain_start`` (True where a topology chain starts),
        ``chain_ids``, ``residue_numbers``, ``atom_names`` and
        ``residue_index``, ``chain_index`` (per particle: its name, its
        residue's and its chain's index in the topology), ``bonded`` (the
        topology or the System joins some of the particles), ``bonds``
        ((n, 2) indices into ``particles``: those bonds, or, where there are
        none, consecutive particles of a chain; what
        :func:`~openmm_backmap.structure.make_whole` follows).

    Examples
    --------
    >>> import mdtraj as md  # doctest: +SKIP
    >>> cg_particle_info(md.load_topology('ca.pdb'))['sequence'][:2]  # doctest: +SKIP
    ['ASN', 'LEU']
    """
    reader = _residue_info_openmm if hasattr(topology, "getNumAtoms") else _residue_info_mdtraj
    atoms, bonds_all, res_info = reader(topology)
    if system is not None:
        bonds_all = bonds_all + [tuple(b) for b in system_bonds(system).tolist()]
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
    bonds = {(min(pos[i], pos[j]), max(pos[i], pos[j])) for i, j in bonds_all if i in pos and j in pos and i != j}
    bonds = np.array(sorted(bonds), dtype=np.int64).reshape(-1, 2)
    n = len(particles)
    chain_index = np.array([i[2] for i in info], dtype=np.int64)
    chain_start = np.ones(n, dtype=bool)
    chain_start[1:] = chain_index[1:] != chain_index[:-1]
    has_bonds = bool(len(bonds))
    if not has_bonds:
        k = np.flatnonzero(chain_index[1:] == chain_index[:-1])
        bonds = np.stack([k, k + 1], axis=1)
    out = {
        "sequence": [str(c) for c in canon] if (one_per_residue and not bad and n) else None,
        "names": names,
        "bad_names": bad,
        "one_per_residue": one_per_residue,
        "segment_start": chain_start.copy(),
        "chain_breaks": None,
        "chain_start": chain_start,
        "chain_ids": [i[3] for i in info],
        "atom_names": [str(atoms[p].name) for p in particles],
        "residue_index": [r.index for r in residues],
        "chain_index": chain_index,
        "residue_numbers": [i[1] for i in info],
        "bonded": has_bonds,
        "bonds": bonds,
    }
    if xyz is not None and one_per_residue:
        out["chain_breaks"] = chain_breaks(out, np.arange(n), xyz, scheme, box_vectors, where)
        out["segment_start"] = out["chain_breaks"].segment_start
    return out


def chain_breaks(info, chain_bead, xyz, scheme, box_vectors=None, where="", whole_bonds=None) -> ChainBreaks:
    """The chain breaks of residues whose chain beads are ``chain_bead`` (indices into the particles of ``info``).

    Molecules are made whole in ``box_vectors`` along ``whole_bonds``
    (default ``info['bonds']``; indices into the particles) first; then :func:`~openmm_backmap.run.cg_chains.find_chain_breaks`
    weighs the bonds (where the topology or System has any), the chains and
    residue numbers, and the distances.

    Examples
    --------
    >>> info = cg_particle_info(md.load_topology('cg.pdb'))  # doctest: +SKIP
    >>> chain_breaks(info, np.arange(len(info['names'])), xyz, 'com').segment_start  # doctest: +SKIP
    """
    chain_bead = np.asarray(chain_bead, dtype=np.int64)
    x = None if xyz is None else np.asarray(xyz, dtype=np.float64)
    if x is not None and box_vectors is not None and len(x) > 1:
        x = make_whole(x, box_vectors, info["bonds"] if whole_bonds is None else whole_bonds)
    labels = [f"{info['names'][k]} {info['residue_numbers'][k]} ({info['chain_ids'][k]})" for k in chain_bead]
    return find_chain_breaks(chain_bead, np.asarray(info["chain_index"])[chain_bead],
                             [info["residue_numbers"][k] for k in chain_bead],
                             info["bonds"] if info["bonded"] else None, x, scheme, labels, where)


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
    expected = model.scheme
    if expected is None:
        return None
    name = model.metadata.get("name") or model.path or "the model"
    if scheme is not None:
        if scheme != expected:
            raise InputError(f"{where}the beads are {_SCHEME_LABELS[scheme]} (scheme={scheme!r}) but {name} takes "
                             f"{_SCHEME_LABELS[expected]}{_no_model(scheme)}")
        _warn_overridden(scheme, _detect(info, xyz, sequence), where)
        return scheme
    guess = _detect(info, xyz, sequence)
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
        return (f"; give a model that takes {_SCHEME_LABELS[scheme]}, or none to use the shipped one "
                f"({SCHEME_MODELS[scheme]})")
    return f"; no shipped model takes {_SCHEME_LABELS[scheme]} (shipped: {', '.join(SCHEME_MODELS)})"


def martini_beads(info, scheme="martini3", xyz=None, box_vectors=None, sequence=None, where=""):
    """The protein's Martini beads among CG particles, residue by residue in the model's order.

    A residue is protein when it has Martini beads (``BB``, ``SC1`` ...) or
    an amino-acid name. Each residue's beads must be those of ``scheme`` for
    its type (:func:`openmm_backmap.mapping.martini_mapping`); beads of a
    residue in another order are reordered to the model's: ``BB``, ``SC1``, ``SC2`` ... per residue, in
    the order the residues first appear. Other particles are left out:

    - Go-model virtual sites (particles named ``CA`` in protein residues, as
      ``martinize2 -go`` adds them on every ``BB``) and dummy charge beads
      (``SCD``... of polarisable Martini 2 set-ups), with one
      :class:`LoadWarning` each saying how many;
    - particles of other molecules (water ``W``, ions, lipids ...), silently.

    Chain breaks follow the ``BB`` beads (:func:`chain_breaks`): a new chain
    of the topology; consecutive ``BB`` not bonded, where the topology or
    System bonds any; else a jump in residue numbers, or ``BB`` farther apart
    than ``SCHEME_BREAK_NM`` (0.5 nm; after making the molecule whole in
    ``box_vectors``).

    Parameters
    ----------
    info : dict
        :func:`cg_particle_info` of the particles.
    scheme : {'martini3', 'martini2'}
    xyz : array, (N, 3), nm, optional
        Positions of the particles, for chain breaks.
    box_vectors : array, (3, 3), nm, optional
        Periodic box of ``xyz``.
    sequence : list of str, optional
        Residue names to use instead of the topology's, one per protein residue.
    where : str
        Prefix of messages (e.g. the file).

    Returns
    -------
    dict
        ``order`` (indices into the particles of ``info``, model order),
        ``sequence`` (canonical names), ``segment_start``, ``chain_ids`` and
        ``residue_numbers`` (per residue), ``bonds`` ((n, 2) indices into
        ``order``: each side-chain bead to its ``BB``, consecutive ``BB`` of a
        chain; what :func:`~openmm_backmap.structure.make_whole` follows).

    Raises
    ------
    InputError
        A residue with a missing, unknown or repeated bead (naming residue
        and bead), or a residue name that is no amino acid.

    Examples
    --------
    >>> beads = martini_beads(cg_particle_info(md.load_topology('cg.pdb')), 'martini3')  # doctest: +SKIP
    >>> beads['sequence'][:2], len(beads['order'])  # doctest: +SKIP
    (['ASN', 'LEU'], 46)
    """
    names = [str(n).strip().upper() for n in info["atom_names"]]
    res_names = info["names"]
    amino = [canonical_residue_name(r) is not None for r in res_names]
    with_beads = {res for name, res in zip(names, info["residue_index"]) if name == "BB" or name.startswith("SC")}
    residues, go, dummies = {}, 0, 0  # residue index -> rows of its beads, in the order residues first appear
    for k, (name, res) in enumerate(zip(names, info["residue_index"])):
        if res not in with_beads and not amino[k]:
            continue  # water, ions, other molecules
        if name == _GO_SITE and amino[k]:
            go += 1
        elif name.startswith(_DUMMY_BEAD):
            dummies += 1
        else:
            residues.setdefault(res, []).append(k)
    if go:
        warnings.warn(f"{where}left out {go} Go-model virtual sites (particles named {_GO_SITE} in protein residues, "
                      "as martinize2 -go adds them); the backmapping uses the Martini beads", LoadWarning, stacklevel=3)
    if dummies:
        warnings.warn(f"{where}left out {dummies} dummy charge beads ({_DUMMY_BEAD}...) of a polarisable Martini "
                      "set-up; the backmapping uses the other beads", LoadWarning, stacklevel=3)
    rows = list(residues.values())
    if not rows:
        raise InputError(f"{where}no protein beads: no particles named BB or SC1 ... in amino-acid residues")
    if sequence is not None and len(sequence) != len(rows):
        raise InputError(f"{where}sequence has {len(sequence)} names but the Martini beads form {len(rows)} residues")
    given = [res_names[r[0]] for r in rows] if sequence is None else list(sequence)
    warn_modified_residues(given, f"{where}CG topology")
    canon, order, bb, expected = [], [], [], {}
    for name, r in zip(given, rows):
        label = f"residue {res_names[r[0]]} {info['residue_numbers'][r[0]]} (chain {info['chain_ids'][r[0]]})"
        c = canonical_residue_name(str(name))
        if c is None:
            raise InputError(f"{where}{label} has Martini beads, but {name} is neither a standard amino acid nor a "
                             "modified residue with a known parent")
        if c not in expected:
            expected[c] = martini_mapping([c], scheme).bead_names
        want, have = expected[c], {}
        for k in r:
            if names[k] not in want:
                raise InputError(f"{where}{label}: bead {names[k]} is not one of {scheme}'s {c} beads "
                                 f"({', '.join(want)})")
            if names[k] in have:
                raise InputError(f"{where}{label}: bead {names[k]} appears twice")
            have[names[k]] = k
        missing = [b for b in want if b not in have]
        if missing:
            raise InputError(f"{where}{label}: bead {missing[0]} is missing ({scheme}'s {c} has {', '.join(want)})")
        bb.append(len(order))
        canon.append(c)
        order += [have[b] for b in want]
    order = np.array(order, dtype=np.int64)
    bb = np.array(bb, dtype=np.int64)
    chain = np.asarray(info["chain_index"])[order[bb]]
    new_chain = np.r_[True, chain[1:] != chain[:-1]]
    owner = np.repeat(bb, np.diff(np.r_[bb, len(order)]))  # the BB of every bead
    side = np.flatnonzero(owner != np.arange(len(order)))
    links = np.flatnonzero(~new_chain[1:])  # residues i, i + 1 of one chain
    bonds = np.concatenate([np.stack([owner[side], side], 1), np.stack([bb[links], bb[links + 1]], 1)])
    breaks = chain_breaks(info, order[bb], xyz, scheme, box_vectors, where, whole_bonds=order[bonds])
    breaks = dataclasses.replace(breaks, chain_bead=bb)  # from here on the beads come in the model's order
    first = order[bb]
    return {"order": order, "sequence": canon, "segment_start": breaks.segment_start, "chain_breaks": breaks,
            "chain_ids": [info["chain_ids"][k] for k in first],
            "residue_numbers": [info["residue_numbers"][k] for k in first], "bonds": bonds}


@dataclass
class CGInput:
    """The CG particles of a topology as the model takes them: what :func:`prepare_cg_input` found.

    Attributes
    ----------
    model : Backmapper
        The model given, or the shipped model of the beads' scheme.
    scheme : str or None
        The beads' scheme (None for a per-system model, or where it cannot be told).
    particles : ndarray of int
        Indices of the particles in the topology, in the model's bead order.
    bonds : ndarray, (n, 2)
        Bonds between them (indices into ``particles``) to make the molecule whole across periodic boundaries.
    sequence, segment_start, chain_ids, residue_numbers : optional
        Per residue, for :class:`~openmm_backmap.run.pipeline.BackmapPipeline`.
    note : str or None
        With the shipped model: one line saying which model backmaps which beads, and why.
    chain_breaks : ChainBreaks or None
        Where the chains break and on what evidence (transferable models; per-system models bring their own).

    Examples
    --------
    >>> cg = prepare_cg_input(top, xyz, model=None)  # doctest: +SKIP
    >>> pipe = BackmapPipeline('aa.pdb', len(cg.particles), options, **cg.pipeline_kwargs())  # doctest: +SKIP
    """

    model: object
    scheme: str | None
    particles: np.ndarray
    bonds: np.ndarray
    sequence: list | None = None
    segment_start: np.ndarray | None = None
    chain_ids: list | None = None
    residue_numbers: list | None = None
    note: str | None = None
    chain_breaks: ChainBreaks | None = None

    def pipeline_kwargs(self) -> dict:
        """``sequence``, ``segment_start``, ``chain_ids``, ``residue_numbers`` and ``chain_breaks`` for the
        pipeline."""
        return dict(sequence=self.sequence, segment_start=self.segment_start, chain_ids=self.chain_ids,
                    residue_numbers=self.residue_numbers, chain_breaks=self.chain_breaks)


def prepare_cg_input(topology, xyz, box_vectors=None, particles=None, model=None, scheme=None, sequence=None,
                     device=None, where="", fix_count="", fix_names="", system=None) -> CGInput:
    """Pick or check the model for CG particles, and order them as it takes them.

    Without a model, the scheme of the beads (``scheme`` when given, else
    found by :func:`openmm_backmap.mapping.detect_scheme`) picks the
    shipped model (:func:`openmm_backmap.model.shipped_model_path`), and
    :attr:`CGInput.note` says which. A given model is checked against the
    beads (:func:`check_scheme`). Martini beads then go through
    :func:`martini_beads` (protein beads only, in the model's order), one
    bead per residue through :func:`cg_sequence`.

    Parameters
    ----------
    topology : openmm.app.Topology or mdtraj.Topology
    xyz : array, (N, 3) or (F, N, 3), nm
        Positions of all the topology's particles (a frame or a few).
    box_vectors : array, (3, 3), nm, optional
        The periodic box of the first frame (molecules are made whole before chain breaks are measured).
    particles : sequence of int, optional
        The CG particles (default: all).
    model : str, path or Backmapper, optional
        Default: the shipped model of the beads' scheme.
    scheme : str, optional
        What the beads are; overrides the detection.
    sequence : list of str, optional
        Residue names, where the topology's are not amino acids.
    device : str, optional
        Torch device of the model.
    where, fix_count, fix_names : str
        Prefix of messages, and the hints of :func:`cg_sequence`.
    system : openmm.System, optional
        The simulation's System: its bonds and constraints are evidence of
        where chains run (:mod:`~openmm_backmap.run.cg_chains`).

    Returns
    -------
    CGInput

    Raises
    ------
    InputError
        Beads the model does not take, a scheme without a shipped model (``martini2``: pass a model), bad
        residues or beads.
    MissingFileError
        The shipped model of the scheme is missing from the installation.

    Examples
    --------
    >>> cg = prepare_cg_input(md.load_topology('cg.pdb'), md.load('cg.pdb').xyz)  # doctest: +SKIP
    >>> print(cg.note)  # doctest: +SKIP
    Martini 3 beads (Martini bead names ...): backmapping with the shipped model martini3.pt
    """
    x = np.asarray(xyz, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    p = np.arange(x.shape[1], dtype=np.int64) if particles is None else np.asarray(particles, dtype=np.int64)
    frames = x[:, p]
    info = cg_particle_info(topology, p, system=system)
    _check_units(info, frames[0], where)
    note = None
    if model is None:
        model, scheme, note = _shipped_model(info, frames, scheme, sequence, device, where)
    else:
        model = load_model(model, device=device)
        scheme = check_scheme(info, frames, model, scheme, where, sequence)
    if model.scheme in _MARTINI_SCHEMES:
        beads = martini_beads(info, model.scheme, frames[0], box_vectors, sequence, where)
        return CGInput(model, scheme, p[beads["order"]], beads["bonds"], beads["sequence"], beads["segment_start"],
                       beads["chain_ids"], beads["residue_numbers"], note, beads["chain_breaks"])
    if sequence is None:
        sequence = cg_sequence(info, model, where, fix_count, fix_names)
    ca_level = info["one_per_residue"] and sequence is not None and len(sequence) == len(p)
    breaks = None
    if model.transferable and sequence is not None and len(sequence) == len(p):
        breaks = chain_breaks(info, np.arange(len(p)), frames[0], scheme or model.scheme, box_vectors, where)
    return CGInput(model, scheme, p, info["bonds"], sequence, None if breaks is None else breaks.segment_start,
                   info["chain_ids"] if ca_level else None, info["residue_numbers"] if ca_level else None, note, breaks)


def _detect(info, xyz, sequence=None):
    """:func:`~openmm_backmap.mapping.detect_scheme` on the particles (positions count only for residues)."""
    residues = info["one_per_residue"] and (info["sequence"] is not None or sequence is not None)
    return detect_scheme(info["atom_names"], xyz if residues else None, info["names"], info["residue_index"],
                         info["chain_start"])


class SchemeOverrideWarning(LoadWarning):
    """The scheme a user gave contradicts what the beads clearly are; the run follows the user's word."""


def _warn_overridden(scheme, guess, where):
    """A loud warning when the user's scheme contradicts a certain detection (the run follows the user)."""
    if guess.certain and guess.scheme is not None and guess.scheme != scheme:
        warnings.warn(f"{where}scheme={scheme!r} was given, but the CG particles are clearly "
                      f"{_SCHEME_LABELS[guess.scheme]}: {guess.evidence}. The backmapping follows the given scheme; "
                      f"expect broken chemistry unless they really are {_SCHEME_LABELS[scheme]}",
                      SchemeOverrideWarning, stacklevel=4)


def _check_units(info, xyz, where):
    """Stop on residues' beads spaced ten times too close or too far (:func:`~.cg_chains.check_bead_spacing`)."""
    names = [str(n).strip().upper() for n in info["atom_names"]]
    if "BB" in names:
        beads = np.array([k for k, n in enumerate(names) if n == "BB"], dtype=np.int64)
    elif info["one_per_residue"] and info["sequence"] is not None:
        beads = np.arange(len(names))
    else:
        return  # beads that are not residues (ultra-coarse) have no standard spacing
    check_bead_spacing(beads, np.asarray(info["chain_index"])[beads], xyz, where)


def _shipped_model(info, xyz, scheme, sequence, device, where):
    """(model, scheme, note): the shipped model of the beads' scheme, found or given."""
    if scheme is not None:
        why = f"scheme={scheme!r} given"
        _warn_overridden(scheme, _detect(info, xyz, sequence), where)
    else:
        guess = _detect(info, xyz, sequence)
        scheme, why = guess.scheme or "ca", guess.evidence
        if guess.scheme is not None and not guess.certain:
            warnings.warn(f"{where}the CG particles may not be {_SCHEME_LABELS[scheme]}: {why}. If they are other "
                          f"beads, say so with scheme=... (convert: --scheme)", LoadWarning, stacklevel=3)
    label = _SCHEME_LABELS.get(scheme, scheme)
    try:
        path = shipped_model_path(scheme)
    except InputError as err:
        raise InputError(f"{where}the CG particles are {label} ({why}): {err}") from None
    model = load_model(path, device=device)
    return model, scheme, f"{where}{label} ({why}): backmapping with the shipped model {SCHEME_MODELS[scheme]} " \
                          f"({path})"
