"""BackmapOptions: checked once, shared by the reporter and the conversion (openmm_backmap.run.options)."""

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.run import BackmapOptions, BackmapReporter, convert_trajectory
from openmm_backmap.run.options import resolve_options
from openmm_backmap.structure import InputError


@pytest.mark.parametrize("kwargs, message", [
    ({"samples": 0}, "samples must be a positive integer"),
    ({"samples": "many"}, "samples must be a positive integer"),
    ({"on_bad_frame": "ignore"}, "on_bad_frame must be 'skip' or 'raise'"),
    ({"keep_hydrogens": True}, "keep_hydrogens needs minimize=True"),
    ({"relax_options": ["CPU"]}, "relax_options must be a dict"),
])
def test_invalid_options(kwargs, message):
    with pytest.raises(InputError, match=message):
        BackmapOptions(**kwargs)


def test_options_or_keywords_not_both(tmp_path):
    opts = BackmapOptions(samples=2, seed="3", relax_options=None)
    assert opts.seed == 3 and opts.relax_options == {}
    assert resolve_options(opts, samples=1, relax_options=None) is opts  # keywords at their defaults
    with pytest.raises(InputError, match="either options=.* or samples"):
        resolve_options(opts, samples=4)
    with pytest.raises(InputError, match="seed"):
        BackmapReporter(tmp_path / "x.dcd", 5, seed=1, options=opts)
    with pytest.raises(InputError, match="samples must be"):
        BackmapReporter(tmp_path / "x.dcd", 5, samples=0)  # the reporter's keywords go through the same checks
    assert not (tmp_path / "x.dcd").exists()


def test_convert_with_options_matches_keywords(tmp_path, trpcage, tiny_ca_backmapper):
    src = tmp_path / "ca.pdb"
    trpcage.to_mdtraj().atom_slice(trpcage.layout.ca_index).save_pdb(str(src))
    a = convert_trajectory(src, tmp_path / "a.pdb", model=tiny_ca_backmapper, samples=2, seed=7, progress=False)
    b = convert_trajectory(src, tmp_path / "b.pdb", progress=False,
                           options=BackmapOptions(model=tiny_ca_backmapper, samples=2, seed=7))
    assert a["frames_written"] == b["frames_written"] == 2
    np.testing.assert_array_equal(md.load(str(tmp_path / "a.pdb")).xyz, md.load(str(tmp_path / "b.pdb")).xyz)


def test_reporter_with_options(tmp_path, trpcage_go, tiny_ca_backmapper):
    import openmm
    import openmm.app as app

    top, system, pos = trpcage_go
    sim = app.Simulation(top, system, openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    with BackmapReporter(tmp_path / "o.pdb", 5, batchSize=2,
                         options=BackmapOptions(model=tiny_ca_backmapper, samples=2, seed=2)) as rep:
        sim.reporters.append(rep)
        sim.step(10)
    s = rep.summary()
    assert (s["frames_in"], s["frames_written"], s["seed"], s["samples"]) == (2, 4, 2, 2)
