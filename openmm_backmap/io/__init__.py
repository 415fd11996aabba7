"""io layer: structures and trajectories in, trajectories out.

Builds on ``structure`` only. :func:`load_ensemble` reads PDB, mmCIF and
trajectories into canonical heavy-atom ensembles (``read``, ``canonical``)
after :func:`check_input_file` has checked PDB, DCD and XTC files are whole
(``validate``); :class:`TrajectoryWriter` writes DCD, XTC, multi-model PDB
and HDF5 frame by frame (``write``), with output path checks, atomic
writes (:class:`AtomicOutput`: a temporary name renamed when complete) and
the topology PDB beside a trajectory in ``paths``.
"""

from ..structure.errors import LoadWarning
from .paths import (PARTIAL_INFIX, WRITER_EXTENSIONS, AtomicOutput, StalePartialWarning, check_output_path,
                    check_writable, partial_path, topology_path_for, topology_pdb_text, write_topology_pdb)
from .read import STRUCTURE_EXTENSIONS, TRAJECTORY_EXTENSIONS, dcd_frames_silenced, dcd_plugin_silenced, load_ensemble
from .validate import check_input_file
from .write import TrajectoryWriter

__all__ = ["LoadWarning", "load_ensemble", "check_input_file", "STRUCTURE_EXTENSIONS", "TRAJECTORY_EXTENSIONS",
           "TrajectoryWriter", "WRITER_EXTENSIONS", "topology_pdb_text", "write_topology_pdb", "topology_path_for", "check_output_path",
           "check_writable", "partial_path", "PARTIAL_INFIX", "AtomicOutput", "StalePartialWarning", "dcd_plugin_silenced",
           "dcd_frames_silenced"]
