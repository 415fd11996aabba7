"""The backmapping options both front ends share, checked once.

:class:`~openmm_backmap.run.reporter.BackmapReporter` (OpenMM-style camelCase
keywords) and :func:`~openmm_backmap.run.conversion.convert_trajectory`
(snake_case keywords) each build one :class:`BackmapOptions` and hand it to
:class:`~openmm_backmap.run.pipeline.BackmapPipeline`; either also accepts a
ready ``options=BackmapOptions(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..model import resolve_device
from ..structure import InputError
from ..structure.constants import DEFAULT_MAX_MEMORY_MB, RELAX_METHODS
from ..structure.errors import option_name

__all__ = ["BackmapOptions", "resolve_options", "FAST_RELAX_OPTIONS"]
#: The keyword arguments of :class:`~openmm_backmap.run.relax.FastRelaxer` that ``relax_options`` may set.
FAST_RELAX_OPTIONS = frozenset({"restraint", "k", "mapping", "max_iterations", "device", "forcefield"})


@dataclass(frozen=True)
class BackmapOptions:
    """What to backmap with and how: model, sampling, relaxation, output mode.

    Parameters
    ----------
    model : str, path or Backmapper, optional
        Model file or loaded model (default: the shipped C-alpha model).
    device : str, optional
        Torch device (default: CUDA if available).
    samples : int
        Structures drawn per CG frame (>= 1).
    seed : int, optional
        Base seed for reproducible output (random if None; reported in the summary).
    deterministic : bool
        Most likely structure instead of a sample.
    minimize : bool
        Relax every structure: by default with the fast batched clash repair
        (:class:`~openmm_backmap.run.relax.FastRelaxer`), with ``relax_options={'method': 'openmm'}``
        or ``keep_hydrogens`` by force-field minimisation (:class:`~openmm_backmap.run.relax.Relaxer`).
    relax_options : dict, optional
        ``method`` (``'fast'``, the default, or ``'openmm'``) and keyword arguments of that relaxer
        (both: ``restraint``, ``k``, ``max_iterations``; ``'fast'``: ``device``; ``'openmm'``:
        ``platform``, ``implicit``, ``nonbonded_cutoff`` ...). Without ``method``, options only
        the OpenMM relaxer has select it; ``keep_hydrogens`` always does (:attr:`relax_method`).
    keep_hydrogens : bool
        With ``minimize``: write all atoms, hydrogens included (always through OpenMM: the fast
        relaxation has no hydrogens).
    append, force : bool
        Append to, or overwrite, an existing output.
    on_bad_frame : {'skip', 'raise'}
        CG frames with NaN, infinite or exploded coordinates are skipped with a
        warning, or raise.
    quality : bool
        Compute the reference-free clash and bond checks for the summary.
    max_memory_mb : float
        Memory budget of one model call (MB of 2**20 bytes; on a GPU, device
        memory). Model calls are split into batches of at most as many
        structures (frames times samples) as the estimate of
        :func:`~openmm_backmap.run.memory_budget.forward_bytes` allows.

    Raises
    ------
    InputError
        An option out of range, or ``keep_hydrogens`` without ``minimize``.

    Examples
    --------
    >>> opts = BackmapOptions(samples=2, seed=1, minimize=True, relax_options={'method': 'openmm', 'platform': 'CPU'})
    >>> opts.samples, opts.relax_options['platform']
    (2, 'CPU')
    >>> BackmapOptions(samples=0)
    Traceback (most recent call last):
    ...
    openmm_backmap.structure.errors.InputError: samples must be a positive integer, got 0
    """

    model: object = None
    device: str | None = None
    samples: int = 1
    seed: int | None = None
    deterministic: bool = False
    minimize: bool = False
    relax_options: dict = field(default_factory=dict)
    keep_hydrogens: bool = False
    append: bool = False
    force: bool = False
    on_bad_frame: str = "skip"
    quality: bool = True
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB

    def __post_init__(self):
        def put(name, value):  # frozen: normalised values go in through object.__setattr__
            object.__setattr__(self, name, value)

        try:
            samples = int(self.samples)
        except (TypeError, ValueError):
            samples = 0
        if samples < 1:
            raise InputError(f"samples must be a positive integer, got {self.samples!r}")
        put("samples", samples)
        try:
            budget = float(self.max_memory_mb)
        except (TypeError, ValueError):
            budget = 0.0
        if not budget > 0 or budget == float("inf"):
            raise InputError(f"max_memory_mb must be a positive number of MB, got {self.max_memory_mb!r}")
        put("max_memory_mb", budget)
        if self.seed is not None:
            put("seed", int(self.seed))
        if self.device is not None:
            resolve_device(self.device)  # fail on 'gpu0' here, not later as a complaint about the model file
        if self.on_bad_frame not in ("skip", "raise"):
            raise InputError(f"on_bad_frame must be 'skip' or 'raise', not {self.on_bad_frame!r}")
        if self.relax_options is not None and not isinstance(self.relax_options, dict):
            raise InputError(f"relax_options must be a dict of Relaxer keyword arguments, got "
                             f"{type(self.relax_options).__name__}")
        put("relax_options", dict(self.relax_options or {}))
        _relax_method(self.relax_options, self.keep_hydrogens)
        for name in ("deterministic", "minimize", "keep_hydrogens", "append", "force", "quality"):
            put(name, bool(getattr(self, name)))
        if self.keep_hydrogens and not self.minimize:
            raise InputError(option_name("--keep-hydrogens needs --minimize", "keep_hydrogens needs minimize=True")
                             + " (the relaxer adds the hydrogens)")

    @property
    def relax_method(self) -> str:
        """The relaxer ``minimize`` uses: ``'fast'`` or ``'openmm'`` (see ``relax_options``)."""
        return _relax_method(self.relax_options, self.keep_hydrogens)


def _relax_method(relax_options, keep_hydrogens):
    """``'fast'`` or ``'openmm'`` for these relax options; InputError for a bad method or mixed options."""
    openmm_only = sorted(set(relax_options) - {"method"} - FAST_RELAX_OPTIONS)
    # options only the OpenMM relaxer has (implicit, platform ...) pick it when no method is named
    method = relax_options.get("method", "openmm" if openmm_only else "fast")
    if method not in RELAX_METHODS:
        raise InputError(f"relax_options['method'] must be 'fast' or 'openmm', not {method!r}")
    if method == "fast" and openmm_only and not keep_hydrogens:
        raise InputError(f"relax option(s) {', '.join(openmm_only)} belong to the OpenMM relaxer, not to method "
                         f"'fast'; use {option_name('--relax openmm', repr({'method': 'openmm'}))}")
    return "openmm" if keep_hydrogens else method  # the fast relaxation has no hydrogens


_DEFAULTS = BackmapOptions()


def resolve_options(options, **given) -> BackmapOptions:
    """``options``, or the options made of the keyword arguments ``given``; not both.

    Parameters
    ----------
    options : BackmapOptions or None
    **given
        :class:`BackmapOptions` fields as a front end received them.

    Raises
    ------
    InputError
        ``options`` together with a keyword argument that is not at its default.

    Examples
    --------
    >>> resolve_options(None, samples=3).samples
    3
    >>> resolve_options(BackmapOptions(seed=2), samples=1).seed
    2
    """
    if options is None:
        return BackmapOptions(**given)
    if not isinstance(options, BackmapOptions):
        raise InputError(f"options must be a BackmapOptions, got {type(options).__name__}")
    names = {f.name for f in fields(BackmapOptions)}
    clash = sorted(k for k, v in given.items() if k in names and v != getattr(_DEFAULTS, k) and
                   not (k == "relax_options" and not v))
    if clash:
        raise InputError(f"pass either options=BackmapOptions(...) or {', '.join(clash)}, not both; put them in "
                         "the options")
    return options
