"""A model whose output is broken (here: x10) is not written without a word (openmm_backmap.run.pipeline)."""

import numpy as np
import pytest

from openmm_backmap.model import load_model
from openmm_backmap.run import BackmapOptions, BackmapPipeline, convert_trajectory
from openmm_backmap.run.pipeline import BrokenOutputError, OutputQualityWarning


class _Scaled:
    """A loaded model whose structures come out scaled (a model trained in Å, used in nm)."""

    def __init__(self, model, factor):
        self._model, self._factor = model, factor

    def __getattr__(self, name):
        return getattr(self._model, name)

    def backmap(self, *args, **kwargs):
        out = self._model.backmap(*args, **kwargs)
        out.xyz = out.xyz * self._factor
        return out


def _pipeline(path, model, trpcage, factor):
    pipe = BackmapPipeline(path, 20, BackmapOptions(model=model, seed=0, device="cpu"), sequence=list(trpcage.sequence),
                           atomic=True)
    pipe.model = _Scaled(pipe.model, factor)
    return pipe


def test_a_broken_frame_warns_and_a_broken_run_is_an_error(tmp_path, trpcage, tiny_ca_model):
    model = load_model(tiny_ca_model, device="cpu")
    pipe = _pipeline(tmp_path / "x10.pdb", model, trpcage, 10.0)
    with pytest.warns(OutputQualityWarning, match=r"structure 0 has only \d+\.\d % of its bonds"):
        pipe.process(trpcage.ca_xyz[[0, 0]])
    assert pipe.summary()["structures_broken"] == 2
    with pytest.raises(BrokenOutputError, match="all 2 structure"):
        pipe.close()
    assert not (tmp_path / "x10.pdb").exists() and not list(tmp_path.iterdir())  # nothing left behind
    fine = _pipeline(tmp_path / "x1.pdb", model, trpcage, 1.0)
    fine.process(trpcage.ca_xyz[[0, 0]])
    fine.close()
    assert fine.summary()["structures_broken"] == 0 and (tmp_path / "x1.pdb").exists()


def test_a_mirror_image_passes_the_bond_check_but_not_the_stereochemistry_check(tmp_path, trpcage, tiny_ca_model):
    """x -> -x keeps every bond and contact: only the D residues give it away, in a warning and in the summary."""
    import warnings

    from openmm_backmap.run import StereochemistryWarning, format_summary

    model = load_model(tiny_ca_model, device="cpu")
    mirror = _pipeline(tmp_path / "mirror.pdb", model, trpcage, -1.0)
    with pytest.warns(StereochemistryWarning, match=r"structure 0 has D residue\(s\) ASN1, LEU2, TYR3, ILE4, GLN5 \.\.\."):
        mirror.process(trpcage.ca_xyz[[0, 0]])
    mirror.close()
    s = mirror.summary()
    n_chiral = sum(r != "GLY" for r in trpcage.sequence)
    assert s["structures_with_d_residues"] == 2 and s["d_residues"]["before"] == n_chiral
    # a count per structure and one named structure per chunk: a long run's memory stays flat
    assert mirror._stats["d_residues_before"] == [n_chiral, n_chiral]
    assert len(mirror._stats["d_residues_named_before"]) == 1
    assert s["structures_broken"] == 0 and s["bond_ok_percent"]["before"] > 90
    assert "stereochemistry: 2 with a D residue of 2 structure(s)" in format_summary(s)
    fine = _pipeline(tmp_path / "fine.pdb", model, trpcage, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StereochemistryWarning)
        fine.process(trpcage.ca_xyz[[0, 0]])
    fine.close()
    s = fine.summary()
    assert s["structures_with_d_residues"] == 0 and s["d_residues"]["before"] == 0.0
    assert "stereochemistry" not in format_summary(s)
