"""Checking input files before a reader sees them.

mdtraj's compiled DCD and XTC readers do not report damage: a DCD cut short
loads the complete frames with at most a line on stdout, a DCD frame whose
record markers are broken is skipped (later frames shift down), and a bad
XTC frame header stops the reader with a bare ``RuntimeError`` or crashes
the process (a negative ``smallidx`` segfaults the decompressor). OpenMM's
DCDFile and XTCFile only write. So the file layouts are walked here, with
numpy and ``struct``, and damage becomes an :class:`InputError` that names
the file and the first bad frame.

What is checked is the framing, not the numbers: a flipped bit inside a
coordinate or a compressed XTC block cannot be seen without decoding it.

A DCD cut inside its last frames gives a :class:`LoadWarning` that states
how many complete frames there are, and only those load (mdtraj reads
exactly them): a simulation that was stopped or crashed leaves such a file,
its complete frames are the data the user wants, and frame ``i`` of the
output is still frame ``i`` of the input. A cut XTC raises instead, because
mdtraj's XTC reader fails on the partial frame rather than stopping before it.
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings

import numpy as np

from ..structure.errors import InputError, LoadWarning

__all__ = ["check_input_file", "open_text", "complete_frames"]

#: XTC frame magic numbers: 1995 (32-bit byte count), 2023 (64-bit byte count, GROMACS 2023+ for huge systems).
_XTC_MAGIC = (1995, 2023)
#: xdrfile's ``magicints`` table has 73 entries and decoding starts at index 9 (FIRSTIDX).
_XTC_SMALLIDX_RANGE = (9, 73)
#: Systems of at most this many atoms are stored as plain floats, without compression.
_XTC_UNCOMPRESSED_MAX_ATOMS = 9


def open_text(path):
    """Open a (possibly gzipped) text file, replacing undecodable bytes.

    Examples
    --------
    >>> with open_text('tests/data/trpcage.pdb') as fh:  # doctest: +SKIP
    ...     fh.readline()[:6]
    'ATOM  '
    """
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def check_input_file(path):
    """Check that a PDB, DCD or XTC file is whole before a reader sees it.

    Other formats pass unchecked.

    Parameters
    ----------
    path : str or path

    Raises
    ------
    InputError
        The file is empty, not of its extension's format, cut short (XTC) or
        has a corrupt frame; the message names the file, the first bad frame
        and how many frames come before it.

    Warns
    -----
    LoadWarning
        A DCD is cut short: the message gives the number of complete frames,
        which are the ones a reader loads.

    Examples
    --------
    >>> check_input_file('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> check_input_file('empty.pdb')  # doctest: +SKIP
    Traceback (most recent call last):
    InputError: empty.pdb: holds no ATOM or HETATM records: it is empty or not a PDB file
    """
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith((".pdb", ".pdb.gz", ".ent", ".ent.gz")):
        _check_pdb(path)
    elif lower.endswith(".dcd"):
        _check_dcd(path)
    elif lower.endswith(".xtc"):
        _check_xtc(path)


def _check_pdb(path):
    """A PDB must hold coordinates and end whole.

    A file cut at a random byte ends inside a line (an ATOM record too short
    to hold its coordinates: an error), inside a model (MODEL without
    ENDMDL: an error naming the model, since the readers would load it with
    atoms missing), or at a line boundary, which only the missing END record
    shows (a warning: hand-made files sometimes omit END).
    """
    n_atoms, models, open_model, last, ended = 0, 0, False, "", False
    try:
        with open_text(path) as fh:
            for line in fh:
                record = line[:6]
                if record in ("ATOM  ", "HETATM"):
                    n_atoms += 1
                elif record == "MODEL ":
                    models += 1
                    open_model = True
                elif record.rstrip() == "ENDMDL":
                    open_model = False
                if line.strip():
                    last = line.rstrip("\r\n")
                    ended = last.startswith("END")
    except (OSError, EOFError) as err:  # gzip raises these for a file that is not gzip
        raise InputError(f"{path}: not a readable PDB file ({err})") from None
    if not n_atoms:
        raise InputError(f"{path}: holds no ATOM or HETATM records: it is empty or not a PDB file")
    if last.startswith(("ATOM  ", "HETATM")) and len(last) < 54:
        raise InputError(f"{path}: cut short inside an atom record (its last line has no complete coordinates); "
                         "the file is truncated: write it again or remove the partial last line and model")
    if open_model:
        raise InputError(f"{path}: cut short: model {models} has no ENDMDL record (models 1-{models - 1} are "
                         f"complete); remove the partial last model or write the file again")
    if not ended:
        warnings.warn(f"{os.path.basename(path)}: no END record at the end of the file; if it was cut short, "
                      "the last model may lack atoms", LoadWarning, stacklevel=3)


def _dcd_layout(path):
    """(byte order, frames in the header, fixed atoms, first frame's offset, record lengths of a frame, bytes per
    frame, atoms) of a DCD file; raises InputError for a header that is not a whole DCD header."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(92)
    if len(head) < 92:
        raise InputError(f"{path}: {size} bytes is too short for a DCD header: the file is empty or cut short")
    order = next((o for o in "<>" if struct.unpack(o + "i", head[:4])[0] == 84), None)
    if order is None or head[4:8] != b"CORD" or struct.unpack(order + "i", head[88:92])[0] != 84:
        raise InputError(f"{path}: not a DCD file (no 'CORD' header record)")
    icntrl = struct.unpack(order + "20i", head[8:88])
    n_header, n_fixed, has_cell, has_4d = icntrl[0], icntrl[8], icntrl[10], icntrl[11]
    with open(path, "rb") as fh:
        fh.seek(92)
        raw = fh.read(12)
        if len(raw) < 12:
            raise InputError(f"{path}: the DCD header is cut short")
        title_bytes, n_titles = struct.unpack(order + "2i", raw[:8])
        offset = 92 + 4 + title_bytes + 4
        fh.seek(offset)
        raw = fh.read(12)
    if len(raw) < 12 or struct.unpack(order + "3i", raw)[::2] != (4, 4) or title_bytes != 4 + 80 * n_titles:
        raise InputError(f"{path}: the DCD header's title or atom-count record is corrupt")
    n_atoms = struct.unpack(order + "3i", raw)[1]
    # per frame: [unit cell record of 6 doubles], then x, y, z (and w for 4D) records; each record is framed by
    # 4-byte markers holding its length
    lengths = ([48] if has_cell else []) + [4 * n_atoms] * (4 if has_4d else 3)
    frame_bytes = sum(lengths) + 8 * len(lengths)
    return order, n_header, n_fixed, offset + 12, lengths, frame_bytes, n_atoms


def _check_dcd(path):
    size = os.path.getsize(path)
    order, n_header, n_fixed, start, lengths, frame_bytes, n_atoms = _dcd_layout(path)
    if n_fixed:  # the first frame then differs in size from the rest; rare enough to leave to the reader
        return
    markers = np.repeat(lengths, 2)
    n_complete, rest = divmod(size - start, frame_bytes)
    if not n_complete:
        raise InputError(f"{path}: the DCD holds no complete frame ({size} bytes, {n_atoms} atoms per frame)")
    # int32 words of every complete frame; the markers sit at fixed word offsets
    words = np.memmap(path, dtype=order + "i4", mode="r", offset=start, shape=(n_complete, frame_bytes // 4))
    at, cols = 0, []
    for n in lengths:
        cols += [at, at + 1 + n // 4]
        at += 2 + n // 4
    bad = np.flatnonzero((words[:, cols] != markers).any(axis=1))
    del words  # release the map (Windows cannot delete a mapped file)
    if bad.size:
        raise InputError(f"{path}: DCD frame {bad[0]} is corrupt (broken record markers); the {bad[0]} frames "
                         "before it are readable: write the trajectory again or cut it before that frame")
    if rest or (n_header and n_complete < n_header):
        promised = f"the header promises {n_header} frames, " if n_header else ""
        partial = f" and {rest} bytes of a partial one" if rest else ""
        warnings.warn(f"{path}: the file is cut short: {promised}it holds {n_complete} complete frames{partial}; "
                      f"loading frames 0-{n_complete - 1} only", LoadWarning, stacklevel=3)


def _xtc_error(path, frame, what):
    return InputError(f"{path}: XTC frame {frame} is {what}; the {frame} frames before it are readable: write the "
                      "trajectory again or cut it before that frame")


def _walk_xtc(path):
    """(complete frames, byte offset after the last of them, problem) of an XTC file: problem is None for a whole
    file, else (frame, what) with ``what`` ``'cut short'`` for a file that ends inside its last frame."""
    size = os.path.getsize(path)
    n_atoms, offset, frame = None, 0, 0
    with open(path, "rb") as fh:
        while offset < size:
            head = fh.read(92)
            if len(head) < 56:
                return frame, offset, (frame, "cut short")
            magic, natoms = struct.unpack(">2i", head[:8])
            if magic not in _XTC_MAGIC:
                return frame, offset, (frame, "corrupt (no XTC magic number)" if frame else "not XTC data")
            lsize = struct.unpack(">i", head[52:56])[0]
            if natoms <= 0 or lsize != natoms or natoms != (n_atoms or natoms):
                return frame, offset, (frame, f"corrupt (atom counts {natoms} and {lsize}; frame 0 has "
                                              f"{n_atoms or natoms})")
            n_atoms = natoms
            if natoms <= _XTC_UNCOMPRESSED_MAX_ATOMS:
                end = offset + 56 + 12 * natoms
            else:
                if len(head) < 92:
                    return frame, offset, (frame, "cut short")
                precision, *bounds, smallidx = struct.unpack(">f6ii", head[56:88])
                if not (precision > 0 and np.isfinite(precision)) or any(
                        lo > hi for lo, hi in zip(bounds[:3], bounds[3:])) or not (
                        _XTC_SMALLIDX_RANGE[0] <= smallidx < _XTC_SMALLIDX_RANGE[1]):
                    return frame, offset, (frame, "corrupt (bad compression header)")
                if magic == 1995:
                    n_bytes, start = struct.unpack(">i", head[88:92])[0], offset + 92
                else:
                    n_bytes, start = struct.unpack(">q", head[88:92] + fh.read(4))[0], offset + 96
                if n_bytes < 0:
                    return frame, offset, (frame, "corrupt (negative block size)")
                end = start + (n_bytes + 3) // 4 * 4
            if end > size:
                return frame, offset, (frame, "cut short")
            offset, frame = end, frame + 1
            fh.seek(offset)
    return frame, offset, None


def _check_xtc(path):
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: the file is empty")
    _, _, problem = _walk_xtc(path)
    if problem is not None:
        raise _xtc_error(path, *problem)


def complete_frames(path):
    """Where the complete frames of a DCD or XTC file end, and whether the file ends inside a frame (a run that
    crashed while writing it).

    Parameters
    ----------
    path : str or path
        A ``.dcd`` or ``.xtc`` file.

    Returns
    -------
    (int, int, int or None)
        Complete frames, the byte offset after the last of them, and the
        frame count in the header (DCD) or None (XTC).

    Raises
    ------
    InputError
        Not a DCD or XTC file, a DCD with fixed atoms, or an XTC damaged
        before its last frame (only a cut last frame is explained by a crash).

    Examples
    --------
    >>> complete_frames('run.dcd')  # doctest: +SKIP
    (120, 1099788, 121)
    """
    path = os.fspath(path)
    if path.lower().endswith(".xtc"):
        n, end, problem = _walk_xtc(path)
        if problem is not None and problem[1] != "cut short":
            raise _xtc_error(path, *problem)
        return n, end, None
    _, n_header, n_fixed, start, _, frame_bytes, _ = _dcd_layout(path)
    if n_fixed:
        raise InputError(f"{path}: a DCD with fixed atoms; openmm-backmap does not write these")
    n = max(0, os.path.getsize(path) - start) // frame_bytes
    return n, start + n * frame_bytes, n_header
