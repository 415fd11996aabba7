"""openmm-backmap: on-the-fly k-step generative backmapping of coarse-grained OpenMM simulations.

Public objects are imported lazily so that ``import openmm_backmap`` stays
cheap; see the docs for the tour. The subpackages are the layers
(``structure`` <- ``io``, ``mapping`` <- ``model`` <- ``run`` <- ``cli``;
``evaluation`` uses ``structure`` and ``io`` only), and no public name here
equals a module name, so ``openmm_backmap.X`` means the same object however
often it is read.
"""

from ._version import __version__

_PUBLIC = {
    "load_ensemble": "io",
    "TrajectoryWriter": "io",
    "ProteinEnsemble": "structure",
    "Mapping": "mapping",
    "Hierarchy": "mapping",
    "load_model": "model",
    "Backmapper": "model",
    "BackmapReporter": "run",
    "BackmapPipeline": "run",
    "BackmapOptions": "run",
    "Relaxer": "run",
    "FastRelaxer": "run",
    "convert_trajectory": "run",
    "evaluate": "evaluation",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        module = importlib.import_module(f".{_PUBLIC[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value  # later reads skip this hook
        return value
    raise AttributeError(f"module 'openmm_backmap' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
