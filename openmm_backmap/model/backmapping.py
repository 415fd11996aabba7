"""Loaded models: :func:`load_model` and the :class:`Backmapper` it returns.

The file format is described in :mod:`openmm_backmap.model.model_file`.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from ..mapping import SCHEMES, Hierarchy, ca_mapping, cg_topology, scheme_mapping
from ..structure import (AMINO_ACIDS, TEMPLATES, InputError, MissingFileError, build_topology, canonical_residue_name,
                         residue_type_indices)
from ..structure.errors import option_name
from .model_file import read_model_file, read_pdb_text

__all__ = ["Backmapper", "BackmapResult", "load_model", "shipped_model_path", "SCHEME_MODELS", "default_device",
           "resolve_device"]


@dataclass
class BackmapResult:
    """Result of :meth:`Backmapper.backmap`.

    Attributes
    ----------
    xyz : ndarray, (frames * samples, A, 3), nm
        Heavy atoms in canonical order, frame-major.
    topology : mdtraj.Topology
        Heavy-atom topology matching ``xyz``.
    samples : int

    Examples
    --------
    >>> out = load_model("models/ca2aa.pt").backmap(ca_xyz_nm, sequence, samples=3)  # doctest: +SKIP
    >>> out.to_mdtraj().save_dcd("samples.dcd")  # doctest: +SKIP
    """

    xyz: np.ndarray
    topology: object
    samples: int

    def to_mdtraj(self):
        """The structures as an mdtraj Trajectory (nm)."""
        import mdtraj as md

        return md.Trajectory(self.xyz, self.topology)


def _first_call_unoptimised():
    """The context of a model's first call: TorchScript's graph optimisation off.

    The profiling executor spends about 1.7 CPU-seconds profiling and optimising a model's graph over its first
    calls (0.7 s of them in the first); a one-frame ``convert`` makes one call, which unoptimised costs about
    0.04 s. Later calls are optimised as before, so long runs keep their speed; the numbers are the same
    (benchmarks/startup_cost.py, docs/benchmarks/startup_cost.md)."""
    return torch.jit.optimized_execution(False)


class Backmapper:
    """A loaded model: TorchScript module plus its metadata.

    Use :func:`load_model` to create one.

    Attributes
    ----------
    metadata : dict
        Everything in ``metadata.json`` (kind, steps, units, training, metrics).
    transferable : bool
        True if the model takes any sequence (C-alpha models).
    sequence : list of str or None
        Embedded sequence of per-system models.
    n_beads : int
        CG particles the model expects (0 = one per residue of any sequence).
    hierarchy : Hierarchy or None
        Mappings from heavy atoms down to the model's CG level (per-system models).

    Examples
    --------
    >>> bm = load_model('models/ca2aa.pt')  # doctest: +SKIP
    >>> out = bm.backmap(ca_xyz_nm, sequence=['ALA', 'GLY', ...], samples=5, seed=1)  # doctest: +SKIP
    >>> out.xyz.shape  # (frames * 5, atoms, 3), nm  # doctest: +SKIP
    """

    def __init__(self, module, metadata: dict, extra: dict, device):
        self.module = module
        self.metadata = metadata
        self.device = torch.device(device)
        self._extra = extra
        self.path = metadata.get("_path")

    # ---- properties -----------------------------------------------------
    @property
    def kind(self) -> str:
        return self.metadata["kind"]

    @property
    def transferable(self) -> bool:
        return bool(self.metadata.get("transferable", False))

    @property
    def sequence(self):
        return self.metadata.get("sequence")

    @property
    def scheme(self):
        """Bead scheme of a transferable model's input (``'ca'``, ``'com'``, ``'martini3'`` ...; the shipped
        C-alpha model has none in its metadata and is ``'ca'``); None for a per-system model."""
        return self.metadata.get("scheme", "ca") if self.transferable else None

    def n_beads_for(self, sequence) -> int:
        """CG particles a transferable model takes for ``sequence`` (one per residue, or the scheme's beads)."""
        if self.scheme in (None, "ca"):
            return len(sequence)
        counts = _beads_per_residue(self.scheme)
        return sum(counts[canonical_residue_name(str(s)) or s] for s in sequence)

    @property
    def segment_start(self):
        seg = self.metadata.get("segment_start")
        return None if seg is None else np.asarray(seg, dtype=bool)

    @property
    def n_beads(self) -> int:
        return int(self.metadata.get("n_beads", 0))

    @property
    def hierarchy(self):
        text = self._extra.get("mappings.json")
        if not text:
            return None
        return Hierarchy.from_dict(json.loads(text))

    @property
    def cg_topology(self):
        """mdtraj topology of the CG beads the model expects (per-system models)."""
        text = self._extra.get("cg_topology.pdb")
        return read_pdb_text(text).topology if text else None

    @property
    def reference_cg_xyz(self):
        """Reference CG coordinates (N, 3) nm stored in the model, or None."""
        text = self._extra.get("cg_topology.pdb")
        if not text:
            return None
        return read_pdb_text(text).xyz[0]

    def info(self) -> dict:
        """Metadata summary, as printed by ``openmm-backmap info``."""
        m = {k: v for k, v in self.metadata.items() if not k.startswith("_")}
        if self.sequence:
            m["sequence"] = "".join(TEMPLATES[s].one_letter if s in TEMPLATES else "X" for s in self.sequence)
        h = self.hierarchy
        if h is not None:
            m["levels"] = list(h.levels)
            m["rho"] = [round(float(r), 2) for r in h.rho]
        m["file"] = self.path
        return m

    # ---- checks -----------------------------------------------------------
    def resolve_sequence(self, sequence=None, segment_start=None, n_particles=None):
        """Return (sequence, segment_start) to use, checking them against the model."""
        if sequence is not None:
            canon = []
            for i, s in enumerate(sequence):
                c = canonical_residue_name(str(s))
                if c is None:
                    raise InputError(f"residue {i + 1} has non-standard name {s!r}; the model knows "
                                     f"{', '.join(AMINO_ACIDS)} and their aliases")
                canon.append(c)
            sequence = canon
        if self.transferable:
            if sequence is None:
                how = option_name("give a CG topology whose residue names give it (-t/--topology)",
                                  "pass sequence=[...] or a CG topology whose residue names give it")
                raise InputError(f"this C-alpha model needs the sequence: {how}")
            expected = self.n_beads_for(sequence)
            if n_particles is not None and n_particles != expected:
                if self.scheme == "ca":
                    raise InputError(f"the CG input has {n_particles} particles but the sequence has "
                                     f"{len(sequence)} residues; a C-alpha model needs one bead per residue")
                raise InputError(f"the CG input has {n_particles} particles but the {len(sequence)} residues of the "
                                 f"sequence have {expected} {self.scheme} beads; this model takes the beads of "
                                 f"scheme {self.scheme!r}, residue by residue")
        else:
            own = self.sequence
            if sequence is not None and list(sequence) != list(own):
                diff = next((i for i, (a, b) in enumerate(zip(sequence, own)) if a != b), min(len(sequence), len(own)))
                raise InputError(f"the CG topology's sequence does not match this model's (first difference at "
                                 f"residue {diff + 1}: {sequence[diff] if diff < len(sequence) else 'end'} vs "
                                 f"{own[diff] if diff < len(own) else 'end'}); this model was trained for "
                                 f"{self.metadata.get('name', 'another system')}")
            if n_particles is not None and n_particles != self.n_beads:
                how = option_name("give a CG input of the model's beads only",
                                  "select the bead particles (BackmapReporter: cgParticles=[...])")
                raise InputError(f"the CG input has {n_particles} particles but this model expects {self.n_beads} "
                                 f"beads; {how}, or use the matching model")
            sequence = list(own)
            if segment_start is None:
                segment_start = self.segment_start
        if segment_start is None:
            segment_start = np.zeros(len(sequence), dtype=bool)
            segment_start[0] = True
        segment_start = np.asarray(segment_start, dtype=bool)
        if len(segment_start) != len(sequence):
            raise InputError("segment_start needs one entry per residue")
        return sequence, segment_start

    @property
    def output_level(self) -> str:
        """``'aa'`` (heavy atoms), or the level of a step exported on its own: ``'ca'`` (UCG -> C-alpha) or
        ``'ucgM'`` (UCG -> finer UCG)."""
        steps = self.metadata.get("steps") or [{}]
        return steps[-1].get("output", "aa") if isinstance(steps[-1], dict) else "aa"

    def topology(self, sequence=None, segment_start=None):
        """mdtraj topology of the model's output (heavy atoms, or the beads of a C-alpha or UCG-level model)."""
        sequence, segment_start = self.resolve_sequence(sequence, segment_start)
        return self._output_topology(sequence, segment_start)

    def _output_topology(self, sequence, segment_start):
        if self.output_level == "ca":
            return cg_topology(ca_mapping(sequence), sequence, "ca", segment_start=segment_start)
        if self.output_level != "aa" and self.hierarchy is not None and self.output_level in self.hierarchy.levels:
            level = self.output_level
            return cg_topology(self.hierarchy.composed(level), sequence, level, segment_start=segment_start)
        return build_topology(sequence, segment_start)

    # ---- backmapping --------------------------------------------------------
    def backmap(self, cg_xyz, sequence=None, segment_start=None, samples: int = 1, seed: int | None = None,
                deterministic: bool = False, temperature: float = 1.0) -> BackmapResult:
        """Backmap CG coordinates to heavy atoms.

        Parameters
        ----------
        cg_xyz : array, (F, N, 3) or (N, 3), nm
            Bead (or C-alpha) positions.
        sequence : list of str, optional
            Residue names; required for transferable (C-alpha) models, checked
            against the embedded one otherwise.
        segment_start : array of bool, optional
            True where a residue starts a chain or follows a break.
        samples : int
            Structures drawn per frame.
        seed : int, optional
            Seed for reproducible sampling (random if None).
        deterministic : bool
            Return the most likely structure (temperature 0).

        Returns
        -------
        BackmapResult
            ``xyz`` (F * samples, A, 3) nm, frame-major, and the topology.
        """
        x64 = np.asarray(cg_xyz, dtype=np.float64)
        if x64.ndim == 2:
            x64 = x64[None]
        if x64.ndim != 3 or x64.shape[-1] != 3:
            raise InputError(f"cg_xyz must have shape (frames, beads, 3) in nm, got {tuple(x64.shape)}")
        # every frame goes to the model centred on its beads: in float32, squared distances formed as cdist forms
        # them lose their precision tens of nm from the origin (a periodic box's far side), which flipped side-chain
        # choices between two images of one frame (a 15 nm shift changed 64 atoms of a slab by up to 7.8 Å)
        centre = x64.mean(axis=1, keepdims=True) if x64.shape[1] else np.zeros((len(x64), 1, 3))
        x = torch.as_tensor((x64 - centre).astype(np.float32))
        if samples < 1:
            raise InputError("samples must be >= 1")
        sequence, segment_start = self.resolve_sequence(sequence, segment_start, x.shape[1])
        if seed is None:
            seed = int(np.random.default_rng().integers(0, 2**31 - 1))
        temp = 0.0 if deterministic else float(temperature)
        types = torch.as_tensor(residue_type_indices(sequence))
        seg = torch.as_tensor(segment_start)
        if not self.transferable:
            types, seg = types[:0], seg[:0]
        first = not getattr(self, "_called", False)
        with torch.inference_mode(), (_first_call_unoptimised() if first else contextlib.nullcontext()):
            out = self.module(x.to(self.device), types.to(self.device), seg.to(self.device), int(seed),
                              int(samples), temp)
        self._called = True
        topology = self._output_topology(sequence, segment_start)
        expected = (len(x) * int(samples), topology.n_atoms, 3)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(f"model {self.metadata.get('_path', '?')!r} gave output of the wrong shape: expected "
                             f"(B*samples, A, 3) = {expected} for {len(x)} frame(s), {samples} sample(s) and "
                             f"{topology.n_atoms} atoms, got {got}; it was not exported by openmm-backmap for this "
                             "input")
        xyz = out.cpu().numpy() + np.repeat(centre, samples, axis=0).astype(np.float32)
        return BackmapResult(xyz, topology, samples)

    def __repr__(self):
        return (f"Backmapper(kind={self.kind!r}, transferable={self.transferable}, beads={self.n_beads or 'any'}, "
                f"device={self.device})")


@lru_cache(maxsize=None)
def _beads_per_residue(scheme) -> dict:
    """Beads of every amino acid in ``scheme`` (counted once: the count is checked on every backmapping call)."""
    return {res: scheme_mapping(scheme, [res]).n_beads for res in AMINO_ACIDS}


def default_device() -> str:
    """``'cuda'`` where CUDA is available, else ``'cpu'``.

    Examples
    --------
    >>> default_device() in ("cuda", "cpu")
    True
    """
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device=None) -> torch.device:
    """The torch device a user asked for, checked: ``None`` means :func:`default_device`.

    Raises
    ------
    InputError
        A name torch does not know (``'gpu0'``), or CUDA asked for where there is none or not that many GPUs.

    Examples
    --------
    >>> resolve_device('cpu')
    device(type='cpu')
    >>> resolve_device('gpu0')
    Traceback (most recent call last):
    ...
    openmm_backmap.structure.errors.InputError: unknown device 'gpu0': use 'cpu', 'cuda' or 'cuda:N'
    """
    if device is None:
        device = default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    return dev


def load_model(path=None, device=None) -> Backmapper:
    """Load an exported model.

    Parameters
    ----------
    path : str or Backmapper, optional
        Model file (default: the shipped C-alpha model ``models/ca2aa.pt``,
        also bundled in the package: :func:`shipped_model_path`). A loaded :class:`Backmapper` is returned
        unchanged (moved to ``device`` if given).
    device : str, optional
        ``'cpu'``, ``'cuda'``, ``'cuda:1'`` ... (default: CUDA if available).

    Returns
    -------
    Backmapper

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is corrupt, not an openmm-backmap model, or from a newer
        format version.

    Examples
    --------
    >>> bm = load_model('models/ca2aa.pt', device='cpu')  # doctest: +SKIP
    >>> bm.info()['kind']  # doctest: +SKIP
    'ca2aa'
    """
    if isinstance(path, Backmapper):
        if device is not None and resolve_device(device) != path.device:
            return load_model(path.path, device)
        return path
    device = resolve_device(device)  # a bad device name is the user's, not the model file's
    if path is None:
        path = shipped_model_path("ca")
    path = os.fspath(path)
    module, meta, texts = read_model_file(path, device)
    meta["_path"] = path
    return Backmapper(module, meta, texts, device)


#: The shipped model of every bead scheme, by file name in the package data (``openmm_backmap/data``; also in
#: ``models/``). ``convert`` without ``--model`` and ``BackmapReporter(model=None)`` load the one of the input's
#: scheme (:func:`shipped_model_path`).
SCHEME_MODELS = {"ca": "ca2aa.pt", "com": "com2aa.pt", "martini3": "martini3.pt"}
#: Where the shipped models are installed (tests point it at their tiny models).
_DATA_FOLDER = resources.files("openmm_backmap") / "data"


def shipped_model_path(scheme="ca") -> str:
    """Path of the shipped model that takes the beads of ``scheme`` (:data:`SCHEME_MODELS`, package data).

    Parameters
    ----------
    scheme : str
        A bead scheme (``openmm_backmap.mapping.SCHEMES``).

    Raises
    ------
    InputError
        No model of that scheme ships with the package (``martini2``), or the scheme is unknown.
    MissingFileError
        The model's file is missing from the installation.

    Examples
    --------
    >>> shipped_model_path("ca").endswith("ca2aa.pt")  # doctest: +SKIP
    True
    >>> shipped_model_path("martini2")
    Traceback (most recent call last):
    ...
    openmm_backmap.structure.errors.InputError: no shipped model takes martini2 beads (shipped: ca, com, martini3); ...
    """
    if scheme not in SCHEMES:
        raise InputError(f"unknown bead scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if scheme not in SCHEME_MODELS:
        raise InputError(f"no shipped model takes {scheme} beads (shipped: {', '.join(SCHEME_MODELS)}); pass a model "
                         f"that does ({option_name('--model FILE', 'model=FILE')})")
    path = _DATA_FOLDER / SCHEME_MODELS[scheme]
    if not path.is_file():
        raise MissingFileError(f"the shipped {scheme} model ({SCHEME_MODELS[scheme]}) is missing from the "
                               f"installation; pass a model file ({option_name('--model FILE', 'model=FILE')})")
    return str(path)
