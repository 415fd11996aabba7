"""The model file: one TorchScript archive with its metadata as JSON/PDB extra files.

Model format (version 1)
------------------------
An exported model is ONE TorchScript module (:class:`~.kstep.KStepModel`)
with one signature for every kind (transferable C-alpha model or per-system
ultra-coarse k-step model)::

    forward(cg_xyz: Tensor[B, N, 3] float32 nm,
            residue_types: Tensor[R] int64,     # empty -> the embedded sequence
            segment_start: Tensor[R] bool,      # empty -> the embedded one
            seed: int, samples: int, temperature: float)
        -> Tensor[B * samples, A, 3] float32 nm

Output frames are frame-major (all samples of frame 0 first); atoms come in
the canonical heavy-atom order of :mod:`openmm_backmap.structure.templates`.
``temperature=0`` is the deterministic mode; the same ``seed`` gives
bit-identical output on the same device. Metadata travels as extra files
inside the archive (``metadata.json``, ``aa_topology.pdb``,
``cg_topology.pdb``, ``mappings.json``), so ``torch.jit.load`` works without
this package.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import platform
import warnings

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..io import AtomicOutput, check_writable, topology_pdb_text
from ..structure import InputError, MissingFileError, OutputExistsError
from ..structure.errors import option_name

__all__ = ["FORMAT_VERSION", "SIGNATURE", "EXTRA_FILES", "AUTO_KEYS", "MODEL_KINDS", "save_model", "read_model_file",
           "read_pdb_text"]

FORMAT_VERSION = 1
SIGNATURE = ("forward(cg_xyz: Tensor[B,N,3] nm, residue_types: Tensor[R] int64 (empty: embedded), "
             "segment_start: Tensor[R] bool (empty: embedded), seed: int, samples: int, temperature: float) "
             "-> Tensor[B*samples, A, 3] nm")
EXTRA_FILES = ("metadata.json", "aa_topology.pdb", "cg_topology.pdb", "mappings.json")
#: Metadata keys :func:`save_model` writes itself (a caller's values for them are replaced).
AUTO_KEYS = ("format_version", "package_version", "signature", "units", "created", "torch_version", "python")
#: The ``kind`` values a model file may have.
MODEL_KINDS = ("ca2aa", "bead2aa", "kstep", "cgvae")
#: The deprecation warning torch (2.9 and later) gives for every ``torch.jit.script``, ``save`` and ``load``: the
#: model file is a TorchScript archive on purpose (see docs/model_format.md), so loading one says nothing.
JIT_DEPRECATION_MESSAGE = r"`torch\.jit\.(script|save|load)` is deprecated"


@contextlib.contextmanager
def _without_jit_deprecation():
    """Hide torch's TorchScript deprecation warnings (those only) inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION_MESSAGE, category=DeprecationWarning)
        yield


def read_pdb_text(text: str):
    """The one-frame mdtraj Trajectory (nm) of PDB text written by :func:`openmm_backmap.io.topology_pdb_text` (or by mdtraj).

    Examples
    --------
    >>> from openmm_backmap.io import topology_pdb_text
    >>> from openmm_backmap.structure import build_topology
    >>> read_pdb_text(topology_pdb_text(build_topology(["GLY"]), [[0.1, 0.2, 0.3]] * 4)).xyz[0, 0]
    array([0.1, 0.2, 0.3], dtype=float32)
    """
    import mdtraj as md
    from openmm import unit
    from openmm.app import PDBFile

    pdb = PDBFile(io.StringIO(text))
    xyz = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return md.Trajectory(np.asarray(xyz, dtype=np.float32)[None], md.Topology.from_openmm(pdb.topology))


def _json_default(o):
    # metadata comes from configs, data summaries and numpy-backed contexts
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    return str(o)


def save_model(module: nn.Module, path: str, metadata: dict, aa_topology=None, cg_topology=None, cg_xyz=None,
               hierarchy=None, force: bool = True) -> str:
    """Script ``module`` and write it with its metadata as extra files.

    Parameters
    ----------
    module : KStepModel
    path : str
    metadata : dict
        JSON-serialisable; ``format_version``, ``package_version``, units and
        the signature are added.
    aa_topology, cg_topology : mdtraj.Topology, optional
        Written as PDB text (``cg_xyz`` (N, 3) nm gives the reference CG coordinates).
    hierarchy : Hierarchy, optional
    force : bool
        Overwrite ``path``.

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> from openmm_backmap.model import KStepModel
    >>> from openmm_backmap.model.steps import CA2AA, CA2AAConfig
    >>> save_model(KStepModel([CA2AA(CA2AAConfig(hidden=8, layers=1))]), "tiny.pt",
    ...            {"kind": "ca2aa", "transferable": True})  # doctest: +SKIP
    'tiny.pt'
    """
    if os.path.exists(path) and not force:
        raise OutputExistsError(f"{path!r} exists; use {option_name('--force', 'force=True')} to overwrite it")
    check_writable(path, force=True)
    meta = {"format_version": FORMAT_VERSION, "package_version": __version__, "signature": SIGNATURE,
            "units": {"input": "nm", "output": "nm", "metrics": "angstrom"},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch_version": torch.__version__, "python": platform.python_version(), **metadata}
    extra = {"metadata.json": json.dumps(meta, indent=1, default=_json_default)}
    if aa_topology is not None:
        extra["aa_topology.pdb"] = topology_pdb_text(aa_topology)
    if cg_topology is not None:
        extra["cg_topology.pdb"] = topology_pdb_text(cg_topology, cg_xyz)
    if hierarchy is not None:
        extra["mappings.json"] = json.dumps(hierarchy.to_dict())
    with _without_jit_deprecation():
        scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module.cpu().eval())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with AtomicOutput(path) as tmp, _without_jit_deprecation():
        torch.jit.save(scripted, tmp, _extra_files=extra)
    return path


def read_model_file(path: str, device) -> tuple:
    """Load a model file: ``(module, metadata, extra_texts)``; checks the format version and kind.

    ``extra_texts`` maps the names of the non-empty :data:`EXTRA_FILES` to their text.

    Examples
    --------
    >>> module, meta, texts = read_model_file("models/ca2aa.pt", "cpu")  # doctest: +SKIP
    >>> meta["kind"], sorted(texts)  # doctest: +SKIP
    ('ca2aa', ['metadata.json'])
    """
    if not os.path.exists(path):
        raise MissingFileError(f"model file {path!r} does not exist")
    extra = {name: "" for name in EXTRA_FILES}
    try:
        with _without_jit_deprecation():
            module = torch.jit.load(path, map_location=device, _extra_files=extra)
    except Exception as err:  # torch raises RuntimeError for anything not a TorchScript archive
        raise InputError(f"{path!r} is not a readable TorchScript model (corrupt or wrong file type): "
                         f"{str(err).splitlines()[0]}") from None
    if not extra.get("metadata.json"):
        raise InputError(f"{path!r} is a TorchScript file but not an openmm-backmap model (no metadata.json)")
    try:
        meta = json.loads(extra["metadata.json"])
        version = int(meta.get("format_version", 0))
    except (ValueError, TypeError, AttributeError) as err:  # bad JSON, not an object, a version that is no number
        raise InputError(f"{path!r} has damaged metadata (metadata.json: {str(err).splitlines()[0]}); it was not "
                         "written by openmm-backmap's export, or was changed since: export the model again") from None
    if version > FORMAT_VERSION:
        raise InputError(f"{path!r} uses model format {version}, written by openmm-backmap "
                         f"{meta.get('package_version', '?')}; this is {__version__} (format {FORMAT_VERSION}): "
                         "upgrade openmm-backmap")
    if meta.get("kind") not in MODEL_KINDS:
        raise InputError(f"{path!r} has unknown model kind {meta.get('kind')!r}")
    module.eval()
    # torch.jit.load hands extra files back as bytes
    texts = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
    return module, meta, {k: v for k, v in texts.items() if v}
