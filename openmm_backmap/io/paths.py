"""Output paths: which formats can be written, overwrite checks, and the topology PDB beside a trajectory.

PDB text is written by OpenMM's :class:`openmm.app.PDBFile` (coordinates in
Å inside the file, nm everywhere else).
"""

from __future__ import annotations

import os

import numpy as np

from ..structure.constants import ANGSTROM_PER_NM
from ..structure.errors import InputError, OutputExistsError

__all__ = ["WRITER_EXTENSIONS", "TOPOLOGY_REMARK", "writer_format", "as_mdtraj_topology", "pdb_topology", "topology_pdb_text",
           "write_pdb_model",
           "write_topology_pdb", "topology_path_for", "check_output_path"]

#: Output formats :class:`~openmm_backmap.io.TrajectoryWriter` writes, by file extension.
WRITER_EXTENSIONS = (".dcd", ".xtc", ".pdb", ".h5")

#: First line of the topology PDB files written beside trajectories.
TOPOLOGY_REMARK = "REMARK   1 openmm-backmap topology"


def writer_format(path) -> str:
    """The output format of ``path`` by its extension (``'dcd'``, ``'xtc'``, ``'pdb'`` or ``'h5'``).

    Examples
    --------
    >>> writer_format('out/run1.DCD')
    'dcd'
    """
    p = os.fspath(path).lower()
    for ext in WRITER_EXTENSIONS:
        if p.endswith(ext):
            return ext[1:]
    raise InputError(f"cannot write {os.fspath(path)!r}: unknown output extension; use one of "
                     f"{', '.join(WRITER_EXTENSIONS)}")


def as_mdtraj_topology(topology):
    """An mdtraj Topology of an mdtraj or OpenMM topology.

    Examples
    --------
    >>> from openmm_backmap.structure import build_topology
    >>> as_mdtraj_topology(build_topology(['GLY']).to_openmm()).n_atoms
    4
    """
    import mdtraj as md

    if isinstance(topology, md.Topology):
        return topology
    if hasattr(topology, "atoms") and hasattr(topology, "getNumAtoms"):  # openmm.app.Topology
        return md.Topology.from_openmm(topology)
    raise TypeError(f"topology must be an mdtraj or OpenMM Topology, got {type(topology).__name__}")


def pdb_topology(topology):
    """The OpenMM Topology :func:`write_pdb_model` writes, with a chain letter for chains that have no identifier.

    Examples
    --------
    >>> import mdtraj as md
    >>> top = md.Topology()
    >>> atom = top.add_atom('CA', md.element.carbon, top.add_residue('GLY', top.add_chain()))
    >>> [c.id for c in pdb_topology(top).chains()]
    ['A']
    """
    top = as_mdtraj_topology(topology)
    omm = top.to_openmm()
    for chain, omm_chain in zip(top.chains, omm.chains()):
        if not chain.chain_id:
            omm_chain.id = chr(ord("A") + chain.index % 26)
    return omm


def write_pdb_model(fh, omm_topology, xyz_nm, model=None):
    """Write one structure's ATOM/TER records (inside MODEL/ENDMDL when ``model`` is given) to ``fh``.

    Residue numbers and chain identifiers of the topology are kept where
    they fit the PDB columns.

    Parameters
    ----------
    fh : text file
    omm_topology : openmm.app.Topology
    xyz_nm : array, (A, 3), nm
    model : int, optional
        MODEL number.

    Raises
    ------
    InputError
        A coordinate does not fit the PDB format (\\|x\\| >= 10000 Å).

    Examples
    --------
    >>> import io, numpy as np
    >>> from openmm_backmap.structure import build_topology
    >>> fh = io.StringIO()
    >>> write_pdb_model(fh, build_topology(['GLY']).to_openmm(), np.zeros((4, 3)))
    >>> fh.getvalue().splitlines()[1][:26]
    'ATOM      2  CA  GLY A   1'
    """
    from openmm.app import PDBFile

    try:
        PDBFile.writeModel(omm_topology, np.asarray(xyz_nm, dtype=np.float64) * ANGSTROM_PER_NM, fh,
                           modelIndex=model, keepIds=True)
    except ValueError as err:  # PDBFile's fixed-width overflow
        raise InputError(f"coordinates do not fit the PDB format (|x| < 10000 Å): {err}") from None


def topology_pdb_text(topology, xyz_nm=None, title=None) -> str:
    """PDB text of one structure of ``topology``: the topology file beside a trajectory, or a model file's topology.

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology
    xyz_nm : array, (A, 3), nm, optional
        Coordinates to write (zeros if not given).
    title : str, optional
        Added to the first REMARK line.

    Returns
    -------
    str

    Examples
    --------
    >>> from openmm_backmap.structure import build_topology
    >>> topology_pdb_text(build_topology(['GLY'])).splitlines()[0]
    'REMARK   1 openmm-backmap topology'
    """
    import io

    from openmm.app import PDBFile

    top = pdb_topology(topology)
    n_atoms = top.getNumAtoms()
    xyz = np.zeros((n_atoms, 3)) if xyz_nm is None else np.asarray(xyz_nm, dtype=np.float64).reshape(-1, 3)
    if len(xyz) != n_atoms:
        raise InputError(f"{len(xyz)} coordinates for a topology of {n_atoms} atoms")
    out = io.StringIO()
    out.write(TOPOLOGY_REMARK + (f" for {title}" if title else "") + "\n")
    write_pdb_model(out, top, xyz)
    PDBFile.writeFooter(top, out)
    return out.getvalue()


def write_topology_pdb(path, topology, xyz_nm=None, title=None):
    """Write :func:`topology_pdb_text` to ``path`` (the topology file beside a trajectory).

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> from openmm_backmap.structure import build_topology
    >>> write_topology_pdb('/tmp/ga.pdb', build_topology(['GLY', 'ALA']))  # doctest: +SKIP
    '/tmp/ga.pdb'
    """
    text = topology_pdb_text(topology, xyz_nm, title)
    with open(path, "w") as fh:
        fh.write(text)
    return os.fspath(path)


def _is_own_topology(path) -> bool:
    try:
        with open(path) as fh:
            return fh.readline().startswith(TOPOLOGY_REMARK)
    except (OSError, UnicodeDecodeError):
        return False


def topology_path_for(path, append=False, force=False):
    """Where :class:`~openmm_backmap.io.TrajectoryWriter` puts the topology PDB of trajectory ``path``.

    ``<stem>.pdb`` unless that file exists and was not written by
    openmm-backmap (e.g. the input structure), then ``<stem>_topology.pdb``.

    Parameters
    ----------
    path : str or path
        The trajectory.
    append, force : bool
        As given to the writer; ``force`` lets the second name be overwritten.

    Returns
    -------
    str or None
        None for PDB trajectories (they carry their topology).

    Raises
    ------
    OutputExistsError
        Both names hold files openmm-backmap did not write, and ``force`` is not set.

    Examples
    --------
    >>> topology_path_for('/nonexistent/run.xtc')
    '/nonexistent/run.pdb'
    >>> topology_path_for('/nonexistent/run.pdb') is None
    True
    """
    path = os.fspath(path)
    if writer_format(path) == "pdb":
        return None
    stem = path[: -len(os.path.splitext(path)[1])]
    candidates = [stem + ".pdb", stem + "_topology.pdb"]
    for c in candidates:
        if not os.path.exists(c) or _is_own_topology(c):
            return c
    if force:
        return candidates[1]
    raise OutputExistsError(f"{candidates[0]} and {candidates[1]} exist and were not written by openmm-backmap; "
                            "use --force to overwrite the second, or choose another output name")


def check_output_path(path, append=False, force=False) -> str:
    """Check that :class:`~openmm_backmap.io.TrajectoryWriter` could write ``path``, before any work is done.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    InputError
        Unknown extension, or ``path`` is a directory.
    OutputExistsError
        ``path`` exists and neither ``append`` nor ``force`` is set.

    Examples
    --------
    >>> check_output_path('out.mol2')
    Traceback (most recent call last):
    ...
    openmm_backmap.structure.errors.InputError: cannot write 'out.mol2': unknown output extension; use one of .dcd, .xtc, .pdb, .h5
    """
    path = os.fspath(path)
    writer_format(path)
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory; give an output file name")
    if os.path.exists(path) and not (append or force):
        raise OutputExistsError(f"{path} already exists; use --force (force=True) to overwrite it or "
                                "--append (append=True) to add frames to it")
    return path
