"""Hand-off to other engines: a relaxed backmapped structure as a ready-to-run all-atom system.

:func:`export_system` takes relaxed frames (heavy atoms, with or without
hydrogens, from whichever relaxer produced them) and rebuilds the force-field
System of the OpenMM relaxer on them (:func:`~.systems.build_force_field_system`:
terminal OXT, disulfides, hydrogens, the force field and implicit solvent). It
then writes that System for another engine:

* ``'gromacs'``: ``PREFIX_gromacs.top`` and ``PREFIX_gromacs.gro``; the topology also defines TIP3P water (``SOL``) and
  Na+/Cl- (``NA``, ``CL``) for ``gmx solvate`` and ``gmx genion`` (:data:`GROMACS_SOLVENT_FORCEFIELD`);
* ``'amber'``: ``PREFIX_amber.prmtop`` and ``PREFIX_amber.inpcrd``;
* ``'openmm'``: ``PREFIX_openmm.xml`` (:class:`openmm.XmlSerializer`) and ``PREFIX_openmm.pdb``.

:func:`export_paths` makes these names, for this function and for
``convert --export`` alike (PREFIX: the output without its extension), so
the CLI's ``OUT_amber.prmtop`` is the Python API's name too.

Several frames give one topology and one coordinate file per frame,
``PREFIX_gromacs_0.gro``, ``PREFIX_gromacs_1.gro`` ... (zero-padded): each is a starting
structure for its own run, which is what a hand-off of backmapped frames is
for. ParmEd (:func:`parmed.openmm.load_topology`) translates the System into
the GROMACS and AMBER formats.
"""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np

from ...io import AtomicOutput, check_writable
from ...structure import InputError, detect_segment_starts
from ...structure.constants import EXPORT_FORMATS, IMPLICIT_SOLVENT_FILES
from .systems import DEFAULT_FORCEFIELD, build_force_field_system, read_heavy_topology

__all__ = ["export_system", "export_paths", "AMBER_RADII", "GRO_PADDING_NM", "GROMACS_SOLVENT_FORCEFIELD"]

#: AMBER GB radius set of each OpenMM implicit-solvent file (OpenMM's files take their radii from these sets):
#: the prmtop carries them, and the matching ``igb`` (gbn2: 8, obc2: 5, obc1: 2, gbn: 7, hct: 1) goes in the mdin.
AMBER_RADII = {"implicit/gbn2.xml": "mbondi3", "implicit/obc2.xml": "mbondi2", "implicit/obc1.xml": "mbondi2",
               "implicit/gbn.xml": "bondi", "implicit/hct.xml": "mbondi"}
#: Space (nm) between the protein and each face of the rectangular box written into ``.gro`` files.
GRO_PADDING_NM = 1.0
#: OpenMM file whose water (TIP3P) and Na+/Cl- parameters the GROMACS ``.top`` defines as the molecule types
#: ``SOL``, ``NA`` and ``CL`` (none of them in ``[ molecules ]``: ``gmx solvate`` and ``gmx genion`` add them):
#: the water model of AMBER ff14SB, as OpenMM's ``amber14-all.xml`` + ``amber14/tip3p.xml`` pair it.
GROMACS_SOLVENT_FORCEFIELD = "amber14/tip3p.xml"


def export_paths(fmt, prefix, n_frames=1):
    """The files :func:`export_system` writes: the topology, then one coordinate file per frame.

    The one naming rule of an export, for the Python API and ``convert
    --export`` alike: ``{prefix}_{fmt}`` and the format's extensions, where
    ``convert`` passes its output without the extension (``run.dcd`` ->
    ``run_amber.prmtop``).

    Raises
    ------
    InputError
        ``fmt`` is not one of :data:`~openmm_backmap.structure.constants.EXPORT_FORMATS`.

    Examples
    --------
    >>> export_paths('amber', 'out/run')
    ['out/run_amber.prmtop', 'out/run_amber.inpcrd']
    >>> export_paths('gromacs', 'out/relaxed', 2)
    ['out/relaxed_gromacs.top', 'out/relaxed_gromacs_0.gro', 'out/relaxed_gromacs_1.gro']
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    prefix = f"{os.fspath(prefix)}_{fmt}"
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


def _gromacs_solvent(forcefield_file=GROMACS_SOLVENT_FORCEFIELD):
    """(``[ atomtypes ]`` lines, ``[ moleculetype ]`` blocks) of water (``SOL``: OW, HW1, HW2, SETTLE unless
    ``-DFLEXIBLE``) and Na+/Cl- (``NA``, ``CL``), with the parameters OpenMM gives them from ``forcefield_file``."""
    import math

    import openmm
    import openmm.app as app
    import openmm.unit as u

    top = app.Topology()
    chain = top.addChain()
    water = top.addResidue("HOH", chain)
    o, h1, h2 = (top.addAtom(n, app.Element.getBySymbol(e), water) for n, e in (("O", "O"), ("H1", "H"), ("H2", "H")))
    top.addBond(o, h1)
    top.addBond(o, h2)
    for name, symbol in (("NA", "Na"), ("CL", "Cl")):
        top.addAtom(name, app.Element.getBySymbol(symbol), top.addResidue(name, chain))
    system = app.ForceField(forcefield_file).createSystem(top, nonbondedMethod=app.NoCutoff, constraints=None,
                                                          rigidWater=False, removeCMMotion=False)
    forces = {type(f): f for f in system.getForces()}
    nb = forces[openmm.NonbondedForce]
    params = [[v.value_in_unit(unit) for v, unit in zip(nb.getParticleParameters(i),
                                                         (u.elementary_charge, u.nanometer, u.kilojoule_per_mole))]
              for i in range(system.getNumParticles())]
    mass = [system.getParticleMass(i).value_in_unit(u.dalton) for i in range(system.getNumParticles())]
    _, _, r0, k_bond = forces[openmm.HarmonicBondForce].getBondParameters(0)
    r0, k_bond = r0.value_in_unit(u.nanometer), k_bond.value_in_unit(u.kilojoule_per_mole / u.nanometer**2)
    _, _, _, theta0, k_angle = forces[openmm.HarmonicAngleForce].getAngleParameters(0)
    theta0, k_angle = theta0.value_in_unit(u.radian), k_angle.value_in_unit(u.kilojoule_per_mole / u.radian**2)

    types = [("OW", 8, 0), ("HW", 1, 1), ("NA", 11, 3), ("CL", 17, 4)]  # (name, atomic number, particle)
    atomtypes = [f"{name:<8s} {z:3d} {mass[i]:10.6f} 0.00000000  A  {params[i][1] if params[i][2] else 0.0:.8f}"
                 f"  {params[i][2]:.8f}" for name, z, i in types]
    atom = "{:5d} {:>4s} 1 {:>4s} {:>4s} {:5d} {:11.6f} {:10.6f}"
    blocks = [
        f"[ moleculetype ]\n; water ({forcefield_file}): gmx solvate adds it\nSOL  2\n\n[ atoms ]\n"
        + "\n".join(atom.format(i + 1, t, "SOL", n, 1, params[i][0], mass[i])
                    for i, (t, n) in enumerate((("OW", "OW"), ("HW", "HW1"), ("HW", "HW2"))))
        + f"\n\n#ifdef FLEXIBLE\n[ bonds ]\n1 2 1 {r0:.6f} {k_bond:.4f}\n1 3 1 {r0:.6f} {k_bond:.4f}\n\n"
        f"[ angles ]\n2 1 3 1 {math.degrees(theta0):.6f} {k_angle:.6f}\n#else\n"
        f"[ settles ]\n1 1 {r0:.6f} {2 * r0 * math.sin(theta0 / 2):.6f}\n\n"
        "[ exclusions ]\n1 2 3\n2 1 3\n3 1 2\n#endif\n"]
    for name, _, i in types[2:]:
        blocks.append(f"[ moleculetype ]\n; ion ({forcefield_file}): gmx genion adds it\n{name}  1\n\n[ atoms ]\n"
                      + atom.format(1, name, name, name, 1, params[i][0], mass[i]) + "\n")
    return atomtypes, blocks


def _add_gromacs_solvent(path, final_path):
    """Add water and ions (:func:`_gromacs_solvent`) to the ParmEd ``.top`` at ``path``: their atom types at the end
    of ``[ atomtypes ]``, their molecule types before ``[ system ]``; the header names the file ``final_path``
    (ParmEd wrote ``path``, the partial name, there)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    atomtypes, blocks = _gromacs_solvent()
    first_molecule = text.index("[ moleculetype ]")
    used = re.findall(r"^\s*(\S+)", text[text.index("[ atomtypes ]"):first_molecule], flags=re.M)
    if {t.split()[0] for t in atomtypes} & set(used):  # ParmEd names its types element + number (N1, C2 ...)
        raise AssertionError(f"atom type names of the water and ions already used in {path}")
    system = text.index("[ system ]")
    text = (text[:first_molecule].rstrip("\n") + "\n" + "\n".join(atomtypes) + "\n\n\n"
            + text[first_molecule:system] + "\n\n".join(blocks) + "\n" + text[system:])
    text = text.replace(f"File {path} ", f"File {final_path} ", 1)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


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
      topology holds the force field without it, and defines TIP3P water (``SOL``) and the ions
      ``NA`` and ``CL`` of :data:`GROMACS_SOLVENT_FORCEFIELD`, unused until ``gmx solvate`` and
      ``gmx genion`` add them.
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
        Output name without extension: the files are ``PREFIX_<fmt>.<ext>``
        (see :func:`export_paths`), as ``convert -o PREFIX.pdb --export``
        names them; missing directories are created.
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
    ['relaxed_gromacs.top', 'relaxed_gromacs.gro']
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
        if fmt == "gromacs":
            _add_gromacs_solvent(tmp[0], paths[0])
        for path, pos in zip(tmp[1:], frames):
            if fmt == "gromacs":  # centred in a box GRO_PADDING_NM larger than the protein on each side
                size_nm = np.ptp(pos, axis=0) + 2 * GRO_PADDING_NM
                pos = pos + size_nm / 2 - (pos.min(axis=0) + pos.max(axis=0)) / 2
                structure.box = [*(10.0 * size_nm), 90.0, 90.0, 90.0]
            structure.coordinates = pos * 10.0  # parmed works in Å
            structure.save(path, format="gro" if fmt == "gromacs" else "rst7", overwrite=True)
    return paths
