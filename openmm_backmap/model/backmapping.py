"""k-step composition, export and loading of backmapping models.

Model format (version 1)
------------------------
An exported model is ONE TorchScript module with one signature for every
kind (transferable C-alpha model or per-system ultra-coarse k-step model)::

    forward(cg_xyz: Tensor[B, N, 3] float32 nm,
            residue_types: Tensor[R] int64,     # empty -> the embedded sequence
            segment_start: Tensor[R] bool,      # empty -> the embedded one
            seed: int, samples: int, temperature: float)
        -> Tensor[B * samples, A, 3] float32 nm

Output frames are frame-major (all samples of frame 0 first); atoms come in
the canonical heavy-atom order of :mod:`openmm_backmap.topology`.
``temperature=0`` is the deterministic mode; the same ``seed`` gives
bit-identical output on the same device. Metadata travels as JSON/PDB extra
files inside the archive (``metadata.json``, ``aa_topology.pdb``,
``cg_topology.pdb``, ``mappings.json``), so ``torch.jit.load`` works without
this package and :func:`load_model` restores everything.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .._version import __version__
from ..structure.templates import AMINO_ACIDS, build_topology, canonical_residue_name, residue_type_indices
from ..structure.errors import InputError, MissingFileError, OutputExistsError

__all__ = ["FORMAT_VERSION", "KStepModel", "Backmapper", "BackmapResult", "load_model", "export_step",
           "export_kstep", "save_model", "SIGNATURE"]

FORMAT_VERSION = 1
SIGNATURE = ("forward(cg_xyz: Tensor[B,N,3] nm, residue_types: Tensor[R] int64 (empty: embedded), "
             "segment_start: Tensor[R] bool (empty: embedded), seed: int, samples: int, temperature: float) "
             "-> Tensor[B*samples, A, 3] nm")
EXTRA_FILES = ("metadata.json", "aa_topology.pdb", "cg_topology.pdb", "mappings.json")


class KStepModel(nn.Module):
    """Chain of steps, coarsest first, behind the one exported signature.

    Each step is a module ``step(x_nm, residue_types, segment_start, seed, temperature) -> finer_nm``.

    Parameters
    ----------
    steps : list of nn.Module
    residue_types, segment_start : Tensor, optional
        Embedded sequence context (per-system models); ``None`` for a
        transferable model that takes the sequence at call time.
    n_beads : int
        Number of CG particles expected (0 = any, for transferable models).

    Examples
    --------
    >>> from openmm_backmap.steps.ca2aa import CA2AA, CA2AAConfig
    >>> model = torch.jit.script(KStepModel([CA2AA(CA2AAConfig(hidden=16, layers=1))]))
    >>> xyz = model(torch.randn(1, 4, 3).cumsum(1) * 0.38, torch.tensor([0, 7, 7, 0]),
    ...             torch.tensor([True, False, False, False]), 1, 2, 1.0)
    >>> xyz.shape
    torch.Size([2, 18, 3])
    """

    def __init__(self, steps, residue_types: Tensor | None = None, segment_start: Tensor | None = None,
                 n_beads: int = 0):
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.register_buffer("residue_types", torch.as_tensor(
            residue_types if residue_types is not None else torch.zeros(0), dtype=torch.int64))
        self.register_buffer("segment_start", torch.as_tensor(
            segment_start if segment_start is not None else torch.zeros(0), dtype=torch.bool))
        self.n_beads = int(n_beads)

    def forward(self, cg_xyz: Tensor, residue_types: Tensor, segment_start: Tensor, seed: int, samples: int,
                temperature: float) -> Tensor:
        if cg_xyz.dim() != 3 or cg_xyz.shape[2] != 3:
            raise RuntimeError("cg_xyz must have shape [frames, beads, 3] (nm)")
        if self.n_beads > 0 and cg_xyz.shape[1] != self.n_beads:
            raise RuntimeError("cg_xyz has " + str(cg_xyz.shape[1]) + " beads; this model expects "
                               + str(self.n_beads))
        types = residue_types
        seg = segment_start
        if types.numel() == 0:
            types = self.residue_types
            seg = self.segment_start
        if types.numel() == 0:
            raise RuntimeError("this model is transferable: pass residue_types and segment_start")
        if seg.numel() == 0:
            seg = torch.zeros_like(types, dtype=torch.bool)
            seg[0] = True
        x = cg_xyz.to(torch.float32)
        if samples > 1:
            x = x.repeat_interleave(samples, dim=0)
        i = 0
        for step in self.steps:
            x = step(x, types.to(x.device), seg.to(x.device), seed * 1000003 + 7919 * i, temperature)
            i += 1
        return x


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
    """

    xyz: np.ndarray
    topology: object
    samples: int

    def to_mdtraj(self):
        import mdtraj as md

        return md.Trajectory(self.xyz, self.topology)


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
        from ..mapping.operators import Hierarchy

        return Hierarchy.from_dict(json.loads(text))

    @property
    def cg_topology(self):
        """mdtraj topology of the CG beads the model expects (per-system models)."""
        return _pdb_topology(self._extra.get("cg_topology.pdb"))

    @property
    def reference_cg_xyz(self):
        """Reference CG coordinates (N, 3) nm stored in the model, or None."""
        text = self._extra.get("cg_topology.pdb")
        if not text:
            return None
        return _pdb_traj(text).xyz[0]

    def info(self) -> dict:
        """Metadata summary, as printed by ``openmm-backmap info``."""
        m = {k: v for k, v in self.metadata.items() if not k.startswith("_")}
        if self.sequence:
            m["sequence"] = "".join(_one_letter(s) for s in self.sequence)
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
                raise InputError("this C-alpha model needs the sequence: pass sequence=[...] or a CG topology "
                                 "whose residue names give it (-t/--topology)")
            if n_particles is not None and n_particles != len(sequence):
                raise InputError(f"the CG input has {n_particles} particles but the sequence has {len(sequence)} "
                                 "residues; a C-alpha model needs one bead per residue")
        else:
            own = self.sequence
            if sequence is not None and list(sequence) != list(own):
                diff = next((i for i, (a, b) in enumerate(zip(sequence, own)) if a != b), min(len(sequence), len(own)))
                raise InputError(f"the CG topology's sequence does not match this model's (first difference at "
                                 f"residue {diff + 1}: {sequence[diff] if diff < len(sequence) else 'end'} vs "
                                 f"{own[diff] if diff < len(own) else 'end'}); this model was trained for "
                                 f"{self.metadata.get('name', 'another system')}")
            if n_particles is not None and n_particles != self.n_beads:
                raise InputError(f"the CG input has {n_particles} particles but this model expects {self.n_beads} "
                                 "beads; pass cgParticles/select the bead particles, or use the matching model")
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
        """``'aa'`` (heavy atoms) or ``'ca'`` for a UCG -> C-alpha step exported on its own."""
        steps = self.metadata.get("steps") or [{}]
        return steps[-1].get("output", "aa") if isinstance(steps[-1], dict) else "aa"

    def topology(self, sequence=None, segment_start=None):
        """mdtraj topology of the model's output (heavy atoms, or C-alphas for a C-alpha-level model)."""
        sequence, segment_start = self.resolve_sequence(sequence, segment_start)
        return self._output_topology(sequence, segment_start)

    def _output_topology(self, sequence, segment_start):
        if self.output_level == "ca":
            from ..mapping.operators import ca_mapping, cg_topology

            return cg_topology(ca_mapping(sequence), sequence, "ca", segment_start=segment_start)
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
        x = torch.as_tensor(np.asarray(cg_xyz, dtype=np.float32))
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[-1] != 3:
            raise InputError(f"cg_xyz must have shape (frames, beads, 3) in nm, got {tuple(x.shape)}")
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
        with torch.inference_mode():
            out = self.module(x.to(self.device), types.to(self.device), seg.to(self.device), int(seed),
                              int(samples), temp)
        return BackmapResult(out.cpu().numpy(), self._output_topology(sequence, segment_start), samples)

    def __repr__(self):
        return (f"Backmapper(kind={self.kind!r}, transferable={self.transferable}, beads={self.n_beads or 'any'}, "
                f"device={self.device})")


def _one_letter(name):
    from ..structure.templates import TEMPLATES

    return TEMPLATES[name].one_letter if name in TEMPLATES else "X"


def _pdb_traj(text):
    import tempfile

    import mdtraj as md

    with tempfile.NamedTemporaryFile("w", suffix=".pdb", delete=False) as fh:
        fh.write(text)
        name = fh.name
    try:
        return md.load_pdb(name, standard_names=False)
    finally:
        os.unlink(name)


def _pdb_topology(text):
    return None if not text else _pdb_traj(text).topology


def _pdb_text(topology, xyz_nm=None) -> str:
    import tempfile

    import mdtraj as md

    xyz = np.zeros((1, topology.n_atoms, 3), np.float32) if xyz_nm is None else np.asarray(xyz_nm).reshape(1, -1, 3)
    with tempfile.NamedTemporaryFile("w", suffix=".pdb", delete=False) as fh:
        name = fh.name
    try:
        md.Trajectory(xyz, topology).save_pdb(name)
        with open(name) as fh:
            return fh.read()
    finally:
        os.unlink(name)


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path=None, device=None) -> Backmapper:
    """Load an exported model.

    Parameters
    ----------
    path : str or Backmapper, optional
        Model file (default: the shipped C-alpha model ``models/ca2aa.pt``,
        also bundled in the package). A loaded :class:`Backmapper` is returned
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
        if device is not None and torch.device(device) != path.device:
            return load_model(path.path, device)
        return path
    if path is None:
        path = default_model_path()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"model file {path!r} does not exist")
    device = device or default_device()
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    extra = {name: "" for name in EXTRA_FILES}
    try:
        module = torch.jit.load(path, map_location=device, _extra_files=extra)
    except Exception as err:  # torch raises RuntimeError for anything not a TorchScript archive
        raise InputError(f"{path!r} is not a readable TorchScript model (corrupt or wrong file type): "
                         f"{str(err).splitlines()[0]}") from None
    if not extra.get("metadata.json"):
        raise InputError(f"{path!r} is a TorchScript file but not an openmm-backmap model (no metadata.json)")
    meta = json.loads(extra["metadata.json"])
    version = int(meta.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise InputError(f"{path!r} uses model format {version}, written by openmm-backmap "
                         f"{meta.get('package_version', '?')}; this is {__version__} (format {FORMAT_VERSION}): "
                         "upgrade openmm-backmap")
    if meta.get("kind") not in ("ca2aa", "kstep", "cgvae"):
        raise InputError(f"{path!r} has unknown model kind {meta.get('kind')!r}")
    meta["_path"] = path
    module.eval()
    # torch.jit.load hands extra files back as bytes
    texts = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
    return Backmapper(module, meta, {k: v for k, v in texts.items() if v}, device)


def default_model_path() -> str:
    """Path of the shipped C-alpha model (package data)."""
    from importlib import resources

    path = resources.files("openmm_backmap") / "data" / "ca2aa.pt"
    if not path.is_file():
        raise MissingFileError("the shipped C-alpha model is missing from the installation; pass --model")
    return str(path)


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
    """
    if os.path.exists(path) and not force:
        raise OutputExistsError(f"{path!r} exists; use --force to overwrite")
    meta = {"format_version": FORMAT_VERSION, "package_version": __version__, "signature": SIGNATURE,
            "units": {"input": "nm", "output": "nm", "metrics": "angstrom"},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch_version": torch.__version__, "python": platform.python_version(), **metadata}
    extra = {"metadata.json": json.dumps(meta, indent=1, default=_json_default)}
    if aa_topology is not None:
        extra["aa_topology.pdb"] = _pdb_text(aa_topology)
    if cg_topology is not None:
        extra["cg_topology.pdb"] = _pdb_text(cg_topology, cg_xyz)
    if hierarchy is not None:
        extra["mappings.json"] = json.dumps(hierarchy.to_dict())
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module.cpu().eval())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.jit.save(scripted, tmp, _extra_files=extra)
    os.replace(tmp, path)
    return path


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def export_step(task, cfg, summary: dict, path: str) -> str:
    """Export a trained step (called at the end of training).

    A transferable step (C-alpha -> atoms) becomes a model on its own; a
    per-system step is exported with its context (sequence, mappings, CG
    reference) and can be composed with others by :func:`export_kstep`.
    """
    from ..train.config import config_to_dict

    module, context = task.export_module()
    meta = {"kind": context.pop("kind", cfg.kind), "name": cfg.name or cfg.kind,
            "transferable": context.get("sequence") is None,
            "steps": [{"kind": cfg.kind, "config": cfg.model, **context.pop("step_meta", {})}],
            "config": config_to_dict(cfg), "training": summary, **context.pop("metadata", {})}
    for key in ("sequence", "segment_start", "n_beads", "levels"):
        if key in context:
            meta[key] = context[key]
    return save_model(module, path, meta, aa_topology=context.get("aa_topology"),
                      cg_topology=context.get("cg_topology"), cg_xyz=context.get("cg_xyz"),
                      hierarchy=context.get("hierarchy"))


def export_kstep(step_paths, output: str, force: bool = False, name: str | None = None) -> str:
    """Compose exported models, coarsest first, into one k-step model.

    The first model fixes the CG input (beads, sequence, mappings); each
    following model must accept the previous one's output (e.g. a UCG -> C-alpha
    model followed by the transferable C-alpha -> atoms model). The training
    summary, config and metrics of every part are kept under ``components``.

    Parameters
    ----------
    step_paths : list of str
        Exported models, coarsest first.
    output : str
        Path of the k-step model.
    force : bool
        Overwrite ``output``.
    name : str, optional
        Model name (default: the parts' names joined by ``+``).

    Examples
    --------
    >>> export_kstep(['runs/adk12/model.pt', 'models/ca2aa.pt'], 'models/adk-ucg12.pt')  # doctest: +SKIP
    """
    if os.path.exists(output) and not force:
        raise OutputExistsError(f"{output!r} exists; use --force to overwrite")
    if len(step_paths) < 1:
        raise InputError("give at least one step model")
    models = [load_model(p, device="cpu") for p in step_paths]
    first = models[0]
    steps = []
    for m in models:
        # a loaded script ModuleList cannot be indexed; its children are named "0", "1", ...
        steps += [getattr(m.module.steps, str(i)) for i in range(len(m.metadata.get("steps", [1])))]
    module = KStepModel(steps, torch.as_tensor(residue_type_indices(first.sequence)) if first.sequence else None,
                        torch.as_tensor(first.segment_start) if first.sequence else None, first.n_beads)
    # the CG side (sequence, beads, levels) comes from the first part; what describes one part only
    # (its config, task, training, metrics) goes under "components"
    per_part = ("config", "task", "training", "metrics", "output_level", "input_level", "name", "kind", "steps",
                "components", "reexported", "template_geometry")
    meta = {k: v for k, v in first.metadata.items() if not k.startswith("_") and k not in (
        "format_version", "package_version", "signature", "units", "created", "torch_version", "python") + per_part}
    meta["kind"] = "kstep"
    meta["name"] = name or "+".join(str(m.metadata.get("name") or m.kind) for m in models)
    meta["steps"] = sum((m.metadata.get("steps", []) for m in models), [])
    meta["input_level"] = first.metadata.get("input_level")
    meta["output_level"] = models[-1].output_level
    meta["components"] = [{"file": os.path.basename(p), "kind": m.kind,
                           **{k: m.metadata.get(k) for k in ("name", "config", "training", "metrics")}}
                          for p, m in zip(step_paths, models)]
    aa_top = build_topology(first.sequence, first.segment_start) if first.sequence else None
    return save_model(module, output, meta, aa_topology=aa_top, cg_topology=first.cg_topology,
                      cg_xyz=first.reference_cg_xyz, hierarchy=first.hierarchy, force=True)
