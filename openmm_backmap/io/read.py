"""Reading structures and trajectories into canonical protein ensembles.

All coordinates returned here are in nm. PDB files (plain or gzipped, one or
many models) are parsed by OpenMM's ``PdbStructure`` model by model, so
models with different atom sets (NMR and IDP ensembles) load; mmCIF goes
through OpenMM's PDBx tokenizer and trajectories (DCD, XTC, HDF5, ...)
through mdtraj with a topology file.

Anything that is changed on the way in is reported with a
:class:`LoadWarning`: residues that are not standard amino acids (waters,
ions, ligands) are dropped, alternate locations keep the first one, atoms a
template does not know are ignored, missing atoms are masked, never invented.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import numpy as np

from ..structure import ProteinEnsemble, atom_layout, detect_segment_starts
from ..structure.errors import InputError, MissingFileError
from .canonical import Canonicalizer, ParsedResidue, assemble, group_atoms, is_hydrogen, template_rows
from .validate import check_input_file, open_text

__all__ = ["load_ensemble", "STRUCTURE_EXTENSIONS", "TRAJECTORY_EXTENSIONS", "dcd_plugin_silenced", "dcd_frames_silenced"]

_PDB_EXTENSIONS = (".pdb", ".pdb.gz", ".ent", ".ent.gz")
_CIF_EXTENSIONS = (".cif", ".cif.gz", ".pdbx", ".mmcif")
#: Structure files :func:`load_ensemble` reads without a topology.
STRUCTURE_EXTENSIONS = _PDB_EXTENSIONS + _CIF_EXTENSIONS
#: Trajectory files :func:`load_ensemble` reads through mdtraj (with a topology, except HDF5).
TRAJECTORY_EXTENSIONS = (".dcd", ".xtc", ".trr", ".h5", ".nc", ".netcdf", ".lh5", ".binpos")


def _pdb_models(path, canon):
    """Yield one :func:`group_atoms` model per MODEL of a PDB file (coordinates in Å)."""
    from openmm.app.internal.pdbstructure import PdbStructure
    from openmm.unit import angstrom

    with open_text(path) as fh, warnings.catch_warnings():
        # PdbStructure warns about repeated atoms and residue numbers; the first of each is kept below,
        # and what matters for the ensemble is reported by the Canonicalizer as a LoadWarning.
        warnings.simplefilter("ignore")
        try:
            structure = PdbStructure(fh, load_all_models=True)
        except (ValueError, AttributeError, IndexError) as err:
            raise InputError(f"{path}: not a readable PDB file ({err})") from None
    for model in structure.models:
        records = []
        for k, chain in enumerate(model.chains):
            for res in chain.residues:
                # the chain's ordinal keeps apart chains that TER separates but share an ID and residue numbers
                # (martinize2 numbers every chain from 1 under one ID)
                key = (chain.chain_id, res.number, res.insertion_code, res.name, k)
                for atom in res.atoms:  # all atoms: iterating the residue would skip other alternate locations
                    if is_hydrogen(atom.name, atom.element_symbol):
                        continue
                    canon.altlocs += len(atom.locations) - 1
                    records.append((key, atom.name, tuple(atom.position.value_in_unit(angstrom))))
        if records:
            yield group_atoms(records, canon)


def _cif_models(path, canon):
    """Yield one :func:`group_atoms` model per ``pdbx_PDB_model_num`` of an mmCIF file (coordinates in Å)."""
    # openmm.app.PDBxFile refuses models whose atom sets differ (NMR and IDP ensembles), so only its
    # tokenizer is used and the _atom_site rows are grouped into models here.
    from openmm.app.internal.pdbx.reader.PdbxReader import PdbxError, PdbxReader
    from openmm.app.internal.pdbx.reader.PdbxReader import SyntaxError as PdbxSyntaxError

    blocks = []
    with open_text(path) as fh:
        try:
            PdbxReader(fh).read(blocks)
        except (PdbxError, PdbxSyntaxError) as err:
            raise InputError(f"{path}: not a readable mmCIF file ({err})") from None
    atom_site = blocks[0].getObj("atom_site") if blocks else None
    if atom_site is None or atom_site.getRowCount() == 0:
        raise InputError(f"{path}: no _atom_site records found")
    c = {k: i for i, k in enumerate(atom_site.getAttributeList())}

    def get(row, *keys):
        for k in keys:
            if k in c and row[c[k]] not in ("?", "."):
                return row[c[k]]
        return ""

    models = {}
    for row in atom_site.getRowList():
        name = get(row, "auth_atom_id", "label_atom_id")
        if is_hydrogen(name, get(row, "type_symbol")):
            continue
        seq = get(row, "auth_seq_id", "label_seq_id")
        key = (get(row, "auth_asym_id", "label_asym_id"), int(seq) if seq.lstrip("-").isdigit() else 0,
               get(row, "pdbx_PDB_ins_code") or " ", get(row, "auth_comp_id", "label_comp_id"))
        records, seen = models.setdefault(get(row, "pdbx_PDB_model_num") or "1", ([], set()))
        if get(row, "label_alt_id") and (key, name) in seen:  # another location of an atom
            canon.altlocs += 1
            continue
        seen.add((key, name))
        records.append((key, name, (float(get(row, "Cartn_x")), float(get(row, "Cartn_y")),
                                    float(get(row, "Cartn_z")))))
    for records, _ in models.values():
        yield group_atoms(records, canon)


def _has_ext(path, exts):
    p = str(path).lower()
    return any(p.endswith(e) for e in exts)


def load_ensemble(path, topology=None, stride=1, frames=None) -> ProteinEnsemble:
    """Load a structure or trajectory as a canonical heavy-atom ensemble.

    Parameters
    ----------
    path : str or path
        PDB (single or multi-model, optionally ``.gz``), mmCIF, or any
        trajectory mdtraj reads (DCD, XTC, HDF5, ...).
    topology : str or path, optional
        Topology file (PDB) for trajectories without one.
    stride : int
        Keep every ``stride``-th frame.
    frames : slice or array of int, optional
        Frames to keep after striding.

    Returns
    -------
    ProteinEnsemble
        Coordinates in nm, canonical atom order, missing atoms NaN and masked.

    Raises
    ------
    MissingFileError, InputError
        With what was wrong and how to fix it (subclasses of FileNotFoundError and ValueError);
        an empty, truncated or corrupt file is named with its first bad frame (see
        :func:`check_input_file`).

    Warns
    -----
    LoadWarning
        For anything dropped or masked, and for a DCD cut short (only its complete frames load).

    Examples
    --------
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> ens.sequence[:3]  # doctest: +SKIP
    ['ASN', 'LEU', 'TYR']
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"input file {path!r} does not exist")
    canon = Canonicalizer(path)
    if _has_ext(path, TRAJECTORY_EXTENSIONS):
        ens = _load_trajectory(path, topology, stride, canon)
    elif _has_ext(path, _CIF_EXTENSIONS):
        ens = assemble(_stride(_cif_models(path, canon), stride), path, canon)
    elif _has_ext(path, _PDB_EXTENSIONS):
        check_input_file(path)
        ens = assemble(_stride(_pdb_models(path, canon), stride), path, canon)
    else:
        raise InputError(f"cannot read {path!r}: unknown extension; use one of "
                         f"{', '.join(STRUCTURE_EXTENSIONS + TRAJECTORY_EXTENSIONS)}")
    if frames is not None:
        ens = ens.select_frames(frames)
    return ens


def _flush_c_stdio():
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)  # the plugin's printf text still in the C library's buffer
    except Exception:  # noqa: BLE001 - no C library to flush (Windows): nothing buffered there to lose
        pass


@contextlib.contextmanager
def dcd_plugin_silenced(path):
    """Inside this block, what mdtraj's DCD reader prints on the process's standard output is dropped.

    mdtraj reads DCD files with VMD's ``dcdplugin``, C code that prints
    ``dcdplugin) detected standard 32-bit DCD file ...`` lines with
    ``printf`` whenever it opens one; Python cannot catch that, so file
    descriptor 1 points at the null device for the duration of the block
    (Python's and C's buffers are flushed on the way in and out). Other
    files leave standard output alone. Only reading calls belong inside: a
    thread writing to standard output meanwhile would be silenced too.

    Examples
    --------
    >>> with dcd_plugin_silenced("run.xtc"):  # not a DCD: nothing changes
    ...     print("still shown")
    still shown
    """
    if not os.fspath(path).lower().endswith(".dcd"):
        yield
        return
    try:
        sys.stdout.flush()
    except (AttributeError, ValueError, OSError):  # no stdout, or closed
        pass
    _flush_c_stdio()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1: nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def dcd_frames_silenced(path, frames):
    """Iterate ``frames`` (e.g. ``mdtraj.iterload(path, ...)``) with each read inside :func:`dcd_plugin_silenced`
    and what the loop body prints shown as usual.

    Examples
    --------
    >>> list(dcd_frames_silenced("run.dcd", iter([1, 2])))
    [1, 2]
    """
    frames = iter(frames)
    end = object()
    while True:
        with dcd_plugin_silenced(path):
            item = next(frames, end)
        if item is end:
            return
        yield item


def _stride(models, stride):
    for i, m in enumerate(models):
        if i % stride == 0:
            yield m


def _load_trajectory(path, topology, stride, canon):
    import mdtraj as md

    if topology is None:
        if not path.lower().endswith(".h5"):
            raise InputError(f"{path!r} is a trajectory without a topology; pass one with -t/--topology "
                             "(a PDB of the same atoms)")
        traj = md.load(path, stride=stride)
    else:
        topology = os.fspath(topology)
        if not os.path.exists(topology):
            raise MissingFileError(f"topology file {topology!r} does not exist")
        top = md.load_topology(topology)
        check_input_file(path)
        try:
            with dcd_plugin_silenced(path):
                traj = md.load(path, top=top, stride=stride)
        except ValueError as err:
            raise InputError(f"{path!r} does not match topology {topology!r} ({err}); "
                             "pass the topology the trajectory was written with") from None
        except RuntimeError as err:  # mdtraj's compiled readers report damaged frame data this way
            raise InputError(f"{path}: frame data cannot be decoded ({str(err).splitlines()[0]}); the file is "
                             "damaged") from None
    # mdtraj's readers join consecutive atoms of one chain, number and name into one residue, so two residues of
    # one name and number in a row (insertion codes lost, numbering wrapped) come back as one residue with every
    # atom name twice, and the second would be dropped without a word. Its atoms are grouped again here by the
    # rule the PDB and mmCIF readers use (group_atoms), which splits such residues and warns; the atom's index
    # rides in the coordinate slot of the records.
    records = []
    for res in traj.topology.residues:
        chain = res.chain.chain_id if getattr(res.chain, "chain_id", None) else chr(65 + res.chain.index % 26)
        key = (chain, res.resSeq, " ", res.name, res.chain.index)
        records += [(key, atom.name, (atom.index, 0, 0)) for atom in res.atoms
                    if not is_hydrogen(atom.name, atom.element.symbol if atom.element is not None else "")]
    residues, names, index = group_atoms(records, canon)
    heavy = index[:, 0].astype(np.int64)
    seq, kept, amaps = canon.residue_map(residues, names)
    if not seq:
        raise InputError(f"{path}: no standard amino-acid residues found")
    lay = atom_layout(seq)
    rows, src = template_rows(seq, amaps)
    xyz = np.full((traj.n_frames, lay.n_atoms, 3), np.nan, dtype=np.float32)
    xyz[:, rows] = traj.xyz[:, heavy[src]]
    present = np.zeros(lay.n_atoms, dtype=bool)
    present[rows] = True
    mask = np.repeat(present[None], traj.n_frames, axis=0)
    canon.report(int((~present).sum()) * traj.n_frames, traj.n_frames if (~present).any() else 0)
    chain_ids = [residues[k].chain for k in kept]
    # the median over frames decides the segments; 50 frames are plenty and keep long trajectories cheap
    starts = detect_segment_starts(xyz[:50], mask[:50], seq, chain_ids)
    return ProteinEnsemble(seq, xyz, mask, starts, chain_ids, [residues[k].number for k in kept],
                           np.asarray(traj.time, dtype=np.float64), path)
