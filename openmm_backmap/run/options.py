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
from ..structure.constants import DEFAULT_MAX_MEMORY_MB

__all__ = ["BackmapOptions", "resolve_options"]


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
        Relax every structure with :class:`~openmm_backmap.run.relax.Relaxer`.
    relax_options : dict, optional
        Keyword arguments of the Relaxer (``restraint``, ``k``, ``platform``,
        ``implicit``, ``max_iterations`` ...).
    keep_hydrogens : bool
        With ``minimize``: write all atoms, hydrogens included.
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
    >>> opts = BackmapOptions(samples=2, seed=1, minimize=True, relax_options={'platform': 'CPU'})
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
        for name in ("deterministic", "minimize", "keep_hydrogens", "append", "force", "quality"):
            put(name, bool(getattr(self, name)))
        if self.keep_hydrogens and not self.minimize:
            raise InputError("keep_hydrogens needs minimize=True (the relaxer adds the hydrogens); add --minimize")


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
