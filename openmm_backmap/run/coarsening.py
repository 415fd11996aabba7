"""Coarsen all-atom files: the ``openmm-backmap coarsen`` verb.

Loads an ensemble (and, with ``model=``, the mapping hierarchy a model
embeds), maps it to every requested level with :func:`openmm_backmap.mapping.coarsen`
and writes a PDB, a DCD and a level JSON file per level. Every file is
written under its partial name and all are renamed together at the end, so
a failed run leaves none of them.
"""

from __future__ import annotations

import contextlib
import os

from ..io import AtomicOutput, check_writable, load_ensemble
from ..mapping import build_hierarchies, coarsen, parse_levels
from ..structure import InputError, OutputExistsError
from ..structure.errors import option_name

__all__ = ["coarsen_files"]


def coarsen_files(input, topology=None, levels="ca", out_prefix="coarse", model=None, stride=1, force=False,
                  verbose=True, **partition_options) -> dict:
    """Coarsen an all-atom structure or trajectory and write every level to files.

    For every level ``L`` this writes ``{out_prefix}_{L}.pdb`` (CG topology
    and first frame), ``{out_prefix}_{L}.dcd`` (all frames) and
    ``{out_prefix}_{L}_mapping.json`` (the mapping from the heavy atoms to
    ``L`` under ``"mapping"`` and the whole hierarchy under ``"hierarchy"``,
    see :meth:`openmm_backmap.mapping.Hierarchy.to_level_json`), and prints
    one summary line per level.

    Parameters
    ----------
    input : str or path
        Anything :func:`openmm_backmap.io.load_ensemble` reads.
    topology : str or path, optional
        Topology for trajectories.
    levels : str
        Level list (see :func:`openmm_backmap.mapping.parse_levels`), e.g.
        ``'ca,com,martini3,ucg:12'``; ignored when ``model`` is given.
    out_prefix : str or path
        Output prefix (directories are created).
    model : str or path, optional
        Use the mapping hierarchy embedded in this model file.
    stride : int
        Keep every ``stride``-th frame.
    force : bool
        Overwrite existing files.
    verbose : bool
        Print the summary lines.
    **partition_options
        Passed to :func:`openmm_backmap.mapping.partition_mapping`.

    Returns
    -------
    dict
        ``{level: {'pdb': path, 'dcd': path, 'mapping': path, 'n_beads': int, 'rho': float}}``.

    Raises
    ------
    FileExistsError
        If an output exists and ``force`` is False.
    ValueError
        For unusable inputs, level lists or models without mappings.

    Examples
    --------
    >>> coarsen_files('tests/data/trpcage.pdb', levels='ca,ucg:4', out_prefix='/tmp/trp')  # doctest: +SKIP
    ca: 20 beads, rho 1.00 residues/bead, 1 frame(s) -> /tmp/trp_ca.pdb, /tmp/trp_ca.dcd, /tmp/trp_ca_mapping.json
    ...
    """
    import mdtraj as md

    hierarchies = None
    if model is not None:
        # the model layer pulls in torch: only load it when a model is given
        from ..model import load_model

        hierarchy = load_model(model, device="cpu").hierarchy
        if hierarchy is None:
            raise InputError(f"model {os.fspath(model)!r} carries no mapping hierarchy; use --levels instead")
        names = list(hierarchy.levels[1:])
        hierarchies = dict.fromkeys(names, hierarchy)
    else:
        names = [s.name for s in parse_levels(levels)]  # fail on bad level lists before loading anything
    prefix = os.fspath(out_prefix)
    paths = {n: {"pdb": f"{prefix}_{n}.pdb", "dcd": f"{prefix}_{n}.dcd", "mapping": f"{prefix}_{n}_mapping.json"}
             for n in names}
    if not force:
        existing = [p for d in paths.values() for p in d.values() if os.path.exists(p)]
        if existing:
            raise OutputExistsError(f"{existing[0]} already exists"
                                    f"{f' (and {len(existing) - 1} more outputs)' if len(existing) > 1 else ''}; "
                                    f"use {option_name('--force', 'force=True')} to overwrite")
    for p in (path for d in paths.values() for path in d.values()):
        check_writable(p, force=True)  # directories and permissions, before any work
    ens = load_ensemble(input, topology=topology, stride=stride)
    if hierarchies is None:
        hierarchies = build_hierarchies(ens, levels, **partition_options)
    out = {name: coarsen(ens, [name], hierarchy=h)[name] for name, h in hierarchies.items()}
    parent = os.path.dirname(prefix)
    if parent:
        os.makedirs(parent, exist_ok=True)
    rho = {name: h.rho[h.index(name)] if h.rho else None for name, h in hierarchies.items()}
    result = {}
    with contextlib.ExitStack() as files:  # all renamed to their final names at the end, or all removed
        for name, (coords, top, mapping) in out.items():
            p = paths[name]
            tmp = {k: files.enter_context(AtomicOutput(v)) for k, v in p.items()}
            traj = md.Trajectory(coords, top)
            traj[0].save_pdb(tmp["pdb"], force_overwrite=True)
            traj.save_dcd(tmp["dcd"], force_overwrite=True)
            hierarchies[name].to_level_json(tmp["mapping"], name, source=input, n_frames=coords.shape[0])
            result[name] = dict(p, n_beads=mapping.n_beads, rho=rho[name])
    for name, (coords, _, mapping) in out.items():
        p = paths[name]
        if verbose:
            r = f"{rho[name]:.2f}" if rho[name] is not None else "?"
            print(f"{name}: {mapping.n_beads} beads, rho {r} residues/bead, {coords.shape[0]} frame(s) -> "
                  f"{p['pdb']}, {p['dcd']}, {p['mapping']}")
    return result
