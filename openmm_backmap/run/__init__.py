"""Run layer: backmapping during a simulation and after it.

* :mod:`.reporter`: :class:`BackmapReporter`, the OpenMM reporter;
* :mod:`.conversion`: :func:`convert_trajectory`, post-hoc conversion of CG files;
* :mod:`.distributed`: the same conversion on a Dask cluster (``client=``,
  ``workers=``, ``scheduler=``; Dask is imported only then);
* :mod:`.pipeline`: :class:`BackmapPipeline`, the backmap -> relax -> write
  steps both share, configured by :class:`BackmapOptions` (:mod:`.options`);
* :mod:`.cg_input`: what the CG particles of a topology are, which model takes them (the shipped one of their
  scheme unless one is given) and in which order;
* :mod:`.relax`: :class:`FastRelaxer`, the default batched clash repair, and :class:`Relaxer`, restrained
  force-field minimisation with OpenMM;
* :mod:`.coarsening`: :func:`coarsen_files`, coarse levels of all-atom files;
* :mod:`.demo`: :func:`run_demo`, the villin demo.

Uses every layer below it (structure, io, mapping, model, evaluation, cgsystems).
"""

from .cg_input import (CGInput, cg_particle_info, cg_sequence, check_scheme, martini_beads,
                       prepare_cg_input)
from .coarsening import coarsen_files
from .conversion import convert_trajectory
from .demo import run_demo
from .options import BackmapOptions
from .pipeline import BackmapPipeline, BadFrameWarning, OutputQualityWarning, RelaxationWarning, \
    StereochemistryWarning
from .summary_text import format_summary
from .relax import FastRelaxer, Relaxer, RelaxResult
from .reporter import BackmapReporter


__all__ = ["BackmapReporter", "BackmapPipeline", "BackmapOptions", "FastRelaxer", "Relaxer", "RelaxResult", "convert_trajectory",
           "coarsen_files", "run_demo", "format_summary", "BadFrameWarning", "RelaxationWarning",
           "OutputQualityWarning", "StereochemistryWarning", "cg_particle_info", "cg_sequence",
           "check_scheme", "martini_beads",
           "prepare_cg_input", "CGInput"]
