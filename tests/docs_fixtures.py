"""What a docs fragment takes from the user, for ``tests/test_docs_examples.py`` (``<!-- docs-test: given: NAME -->``).

Some python examples of the docs are fragments of a user's script: they use a ``simulation`` or a
``topology`` the user has built. Each function here builds a stand-in from the repository's files (run
from the root of a clone) and returns the names the fragment uses; the slow docs test puts them into the
page's namespace before it runs the fragment. Nothing here is shown to readers.
"""

from __future__ import annotations

import importlib

import numpy as np


def resolve_dotted(dotted: str):
    """The object a dotted name such as ``openmm_backmap.io.load_ensemble`` names: the longest importable module
    prefix, then attributes. Raises ImportError or AttributeError, as a reader typing the name would get.
    (A helper of the docs tests, not a ``given`` fixture.)"""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                raise AttributeError(f"{'.'.join(parts[:i])} has no {'.'.join(parts[i:])}")
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module {parts[0]}")


def adk_ucg12_simulation() -> dict:
    """``simulation``: adenylate kinase's 12 beads on an elastic network, as ``models/adk-ucg12.pt`` takes them.

    The network is built from the reference bead positions the model stores (as
    ``benchmarks/reporter_overhead.py`` does), on OpenMM's Reference platform (the fastest for 12 particles).
    """
    import openmm
    import openmm.app as app

    from openmm_backmap import load_model
    from openmm_backmap.cgsystems import elastic_network_model
    from openmm_backmap.structure.templates import atom_layout

    bm = load_model("models/adk-ucg12.pt", device="cpu")
    h = bm.hierarchy
    members = h.composed(h.levels[-1]).members
    res = atom_layout(bm.sequence).atom_residue
    groups = [sorted(set(res[np.asarray(m)].tolist())) for m in members]
    topology, system, positions = elastic_network_model(bm.reference_cg_xyz, sequence=bm.sequence,
                                                        residue_groups=groups)
    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.010)  # K, 1/ps, ps
    simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(positions)
    simulation.context.setVelocitiesToTemperature(300.0, 1)
    return {"simulation": simulation}


def trpcage_backmapped() -> dict:
    """``topology`` (mdtraj), ``frames`` (3, A, 3) nm and ``xyz_nm`` (A, 3): Trp-cage's heavy atoms as
    ``models/ca2aa.pt`` builds them from the C-alphas of ``tests/data/trpcage.pdb`` (3 samples, seed 0)."""
    from openmm_backmap import load_ensemble, load_model

    cg = load_ensemble("tests/data/trpcage.pdb")
    out = load_model("models/ca2aa.pt", device="cpu").backmap(
        cg.ca_xyz, sequence=cg.sequence, segment_start=cg.segment_start, samples=3, seed=0)
    return {"topology": out.topology, "frames": out.xyz, "xyz_nm": out.xyz[0]}
