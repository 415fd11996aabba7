"""Model layer: the exported k-step network, its file format, loading and composition.

``kstep`` holds the TorchScript module behind the one exported signature,
``model_file`` the archive format (TorchScript plus JSON/PDB extra files),
``backmapping`` the loaded :class:`Backmapper`, ``composition`` the chaining
of step models; ``steps`` holds the step families and their registry.
Depends on the structure, io and mapping layers.
"""

from .backmapping import (SCHEME_MODELS, BackmapResult, Backmapper, default_device, load_model, resolve_device,
                          shipped_model_path)
from .composition import export_kstep
from .kstep import KStepModel
from .model_file import FORMAT_VERSION, save_model

__all__ = ["load_model", "Backmapper", "BackmapResult", "KStepModel", "save_model", "export_kstep",
           "shipped_model_path", "SCHEME_MODELS", "default_device", "resolve_device", "FORMAT_VERSION"]
