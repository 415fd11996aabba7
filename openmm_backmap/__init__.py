"""openmm-backmap: on-the-fly k-step generative backmapping of coarse-grained OpenMM simulations.

Public objects are imported lazily so that ``import openmm_backmap`` stays
cheap; see the docs for the tour.
"""

from ._version import __version__

_PUBLIC = {
    "load_ensemble": "io",
    "TrajectoryWriter": "io",
    "ProteinEnsemble": "ensemble",
    "Mapping": "mapping",
    "Hierarchy": "mapping",
    "load_model": "backmapper",
    "Backmapper": "backmapper",
    "BackmapReporter": "reporter",
    "BackmapPipeline": "pipeline",
    "Relaxer": "relax",
    "evaluate": "metrics",
    "convert": "convert",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        module = importlib.import_module(f".{_PUBLIC[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'openmm_backmap' has no attribute {name!r}")
