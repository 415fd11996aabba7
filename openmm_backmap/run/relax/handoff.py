"""Hand-off to other engines: a relaxed backmapped structure as a ready-to-run all-atom system.

:func:`export_system` takes relaxed frames (heavy atoms, with or without
hydrogens, from whichever relaxer produced them) and rebuilds the force-field
System of the OpenMM relaxer on them (:func:`~.systems.build_force_field_system`:
terminal OXT, disulfides, hydrogens, the force field and implicit solvent). It
then writes that System for another engine:

* ``'gromacs'``: ``PREFIX.top`` and ``PREFIX.gro``;
* ``'amber'``: ``PREFIX.prmtop`` and ``PREFIX.inpcrd``;
* ``'openmm'``: ``PREFIX.xml`` (:class:`openmm.XmlSerializer`) and ``PREFIX.pdb``.

Several frames give one topology and one coordinate file per frame,
``PREFIX_0.gro``, ``PREFIX_1.gro`` ... (zero-padded): each is a starting
structure for its own run, which is what a hand-off of backmapped frames is
for. ParmEd (:func:`parmed.openmm.load_topology`) translates the System into
the GROMACS and AMBER formats.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ...io import AtomicOutput, check_writable
from ...structure import InputError, detect_segment_starts
from ...structure.constants import EXPORT_FORMATS, IMPLICIT_SOLVENT_FILES
from .systems import DEFAULT_FORCEFIELD, build_force_field_system, read_heavy_topology

__all__ = ["export_system", "export_paths", "AMBER_RADII", "GRO_PADDING_NM"]

#: AMBER GB radius set of each OpenMM implicit-solvent file (OpenMM's files take their radii from these sets):
#: the prmtop carries them, and the matching ``igb`` (gbn2: 8, obc2: 5, obc1: 2, gbn: 7, hct: 1) goes in the mdin.
AMBER_RADII = {"implicit/gbn2.xml": "mbondi3", "implicit/obc2.xml": "mbondi2", "implicit/obc1.xml": "mbondi2",
               "implicit/gbn.xml": "bondi", "implicit/hct.xml": "mbondi"}
#: Space (nm) between the protein and each face of the rectangular box written into ``.gro`` files.
GRO_PADDING_NM = 1.0


def export_paths(fmt, prefix, n_frames=1):
    """The files :func:`export_system` writes: the topology, then one coordinate file per frame.

    Raises
    ------
    InputError
        ``fmt`` is not one of :data:`~openmm_backmap.structure.constants.EXPORT_FORMATS`.

    Examples
    --------
    >>> export_paths('gromacs', 'out/relaxed', 2)
    ['out/relaxed.top', 'out/relaxed_0.gro', 'out/relaxed_1.gro']
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    prefix = os.fspath(prefix)
    top_ext, xyz_ext = EXPORT_FORMATS[fmt]
    if n_frames == 1:
        return [prefix + top_ext, prefix + xyz_ext]
    width = len(str(n_frames - 1))
    return [prefix + top_ext] + [f"{prefix}_{i:0{width}d}{xyz_ext}" for i in range(n_frames)]


def _heavy_atoms(traj):
    """(heavy-atom trajectory in canonical order, its sequence, chain ids, residue numbers) of ``traj``."""
    keep = [a.index for a in traj.topology.atoms
            if a.name != "OXT" and (a.element is None or a.element.symbol != "H")]
    heavy = traj if len(keep) == traj.n_atoms else traj.atom_slice(keep)
    sequence, chain_ids, numbers, _ = read_heavy_topology(heavy.topology)
    return heavy, sequence, chain_ids, numbers


def _given_hydrogens(traj, ffs):
    """Where ``traj`` has every atom of ``ffs.topology_h`` (same residues and names, as a relaxer that kept its
    hydrogens writes them): for each of them its index in ``traj``; otherwise None."""
    if traj.n_atoms != ffs.topology_h.getNumAtoms():
        return None
    by_name = {(a.residue.index, a.name): a.index for a in traj.topology.atoms}
    index = [by_name.get((a.residue.index, a.name)) for a in ffs.topology_h.atoms()]
    return None if None in index else np.asarray(index, dtype=np.int64)


def _without_implicit_solvent(system):
    """A copy of ``system`` without its implicit-solvent force: the GROMACS and AMBER formats have no place for it
    (AMBER gets its radii instead, and the GB model is chosen in its input file)."""
    import openmm

    system = openmm.XmlSerializer.clone(system)
    for i in reversed(range(system.getNumForces())):
        if isinstance(system.getForce(i), (openmm.CustomGBForce, openmm.GBSAOBCForce)):
            system.removeForce(i)
    return system


def export_system(relaxed, fmt, prefix, *, forcefield=DEFAULT_FORCEFIELD, implicit=None, ph=7.0,
                  nonbonded_cutoff=None, segment_start=None, force=False) -> list:
    """Write relaxed frames as a ready-to-run all-atom system for GROMACS, AMBER or OpenMM.

    The force-field System is built with the OpenMM relaxer's own code
    (:func:`~openmm_backmap.run.relax.build_force_field_system`) on the first
    frame: terminal OXT, disulfides and hydrogens (pH ``ph``) are added, and
    the same hydrogens serve every frame. Frames that carry hydrogens (a
    relaxation with ``keep_hydrogens``) keep their own positions for them;
    heavy-atom frames (any relaxer) get OXT and hydrogens placed from their
    template geometry (:meth:`~openmm_backmap.run.relax.ForceFieldSystem.full_positions`),
    so minimise before dynamics, as with any structure one did not equilibrate.

    What each engine gets:

    * GROMACS: ``.top`` (parameters included, no ``#include``) and ``.gro``
      (nm, 3 decimals), the protein centred in a rectangular box
      :data:`GRO_PADDING_NM` larger than it on each side. GROMACS has no implicit solvent: the
      topology holds the force field without it.
    * AMBER: ``.prmtop`` and ``.inpcrd`` (no box). With implicit solvent the
      prmtop carries the matching radius set (:data:`AMBER_RADII`); pick the
      ``igb`` it names in the mdin.
    * OpenMM: the exact System, implicit solvent and nonbonded cutoff
      included, as XML (:class:`openmm.XmlSerializer`) and the all-atom
      structure as PDB.

    GROMACS and AMBER files hold no cutoff: the ``.mdp``/``mdin`` choose it.

    Parameters
    ----------
    relaxed : mdtraj.Trajectory
        Relaxed frames: canonical heavy atoms (``convert --minimize``'s output
        read with mdtraj), or all atoms with hydrogens (``--keep-hydrogens``).
    fmt : {'gromacs', 'amber', 'openmm'}
    prefix : str or path
        Output names without extension (see :func:`export_paths`); missing
        directories are created.
    forcefield : str or sequence of str
        OpenMM force-field file(s) (default: the relaxer's, AMBER ff14SB).
    implicit : str, optional
        Implicit-solvent file or name (``'gbn2'``, ``'obc2'``, ``'vacuum'``);
        None: vacuum.
    ph : float
        For the hydrogens added.
    nonbonded_cutoff : float, optional
        nm (CutoffNonPeriodic) in the OpenMM System; None: no cutoff.
    segment_start : array of bool, optional
        Chain starts and breaks (default: from the chains and the peptide-bond
        lengths of the frames).
    force : bool
        Overwrite existing files.

    Returns
    -------
    list of str
        The files written: the topology (or System XML), then the coordinates of each frame.

    Raises
    ------
    InputError
        Unknown format, residues that are not standard amino acids with their
        heavy atoms, a prefix that cannot be written to.
    OutputExistsError
        A file exists and ``force`` is not set.

    Examples
    --------
    >>> import mdtraj as md
    >>> export_system(md.load('relaxed.pdb'), 'gromacs', 'relaxed')  # doctest: +SKIP
    ['relaxed.top', 'relaxed.gro']
    """
    import openmm
    import openmm.app as app
    import openmm.unit as u
    import parmed

    paths = export_paths(fmt, prefix, max(relaxed.n_frames, 1))
    if relaxed.n_frames == 0:
        raise InputError("no frames to export")
    for path in paths:
        check_writable(path, force=force)
    heavy, sequence, chain_ids, numbers = _heavy_atoms(relaxed)
    xyz = np.asarray(heavy.xyz, dtype=np.float64)
    if not np.isfinite(xyz).all():
        raise InputError("the frames have missing (NaN) coordinates; only complete structures can be exported")
    if segment_start is None:
        segment_start = detect_segment_starts(xyz, np.ones(xyz.shape[:2], dtype=bool), sequence, chain_ids)
    implicit = IMPLICIT_SOLVENT_FILES.get(implicit, implicit) if isinstance(implicit, str) else implicit
    ffs = build_force_field_system(sequence, segment_start, xyz[0], chain_ids, numbers, forcefield, implicit, ph,
                                   nonbonded_cutoff=nonbonded_cutoff)
    given = _given_hydrogens(relaxed, ffs)
    frames = [np.asarray(relaxed.xyz[f], dtype=np.float64)[given] if given is not None else ffs.full_positions(x)
              for f, x in enumerate(xyz)]

    os.makedirs(os.path.dirname(os.path.abspath(paths[0])), exist_ok=True)
    with contextlib.ExitStack() as files:  # every file under its partial name; all renamed once all are written
        tmp = [files.enter_context(AtomicOutput(p)) for p in paths]
        if fmt == "openmm":
            with open(tmp[0], "w", encoding="utf-8") as fh:
                fh.write(openmm.XmlSerializer.serialize(ffs.system))
            for path, pos in zip(tmp[1:], frames):
                with open(path, "w", encoding="utf-8") as fh:
                    app.PDBFile.writeFile(ffs.topology_h, pos * u.nanometer, fh, keepIds=True)
            return paths
        structure = parmed.openmm.load_topology(ffs.topology_h, _without_implicit_solvent(ffs.system),
                                                xyz=frames[0] * 10.0)
        if fmt == "amber":
            structure = parmed.amber.AmberParm.from_structure(structure)
            if implicit in AMBER_RADII:
                parmed.tools.changeRadii(structure, AMBER_RADII[implicit]).execute()
        structure.save(tmp[0], format=fmt, overwrite=True)
        for path, pos in zip(tmp[1:], frames):
            if fmt == "gromacs":  # centred in a box GRO_PADDING_NM larger than the protein on each side
                size_nm = np.ptp(pos, axis=0) + 2 * GRO_PADDING_NM
                pos = pos + size_nm / 2 - (pos.min(axis=0) + pos.max(axis=0)) / 2
                structure.box = [*(10.0 * size_nm), 90.0, 90.0, 90.0]
            structure.coordinates = pos * 10.0  # parmed works in Å
            structure.save(path, format="gro" if fmt == "gromacs" else "rst7", overwrite=True)
    return paths
