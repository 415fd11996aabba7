"""Figures (openmm_backmap.evaluation.plots); matplotlib is optional."""

import sys

import numpy as np
import pytest

import openmm_backmap.evaluation as M
from openmm_backmap.structure import InputError


def test_structure_plot_writes_a_png(trpcage, tmp_path):
    lay = trpcage.layout
    x = trpcage.xyz[0]
    shifted = x + np.array([0.3, 0.0, 0.0])
    out = M.structure_plot(x, shifted, lay.bonds(trpcage.segment_start), lay.elements, tmp_path / "f" / "frame.png",
                           title="Trp-cage", highlight=lay.atom_residue == 5)
    from matplotlib.image import imread

    img = imread(out)
    assert img.shape[0] > 300 and img.shape[1] > 900
    # not a blank canvas: coloured bond pixels (nitrogen blue) are drawn
    blue = (img[..., 2] > 0.6) & (img[..., 0] < 0.3)
    assert blue.sum() > 50


def test_ramachandran_plot_writes_a_png(tmp_path):
    pts = np.random.default_rng(0).uniform(-180, 180, (200, 2))
    out = M.ramachandran_plot(pts, pts[:50], tmp_path / "sub" / "rama.png", title="t", kl=0.5)
    assert out == str(tmp_path / "sub" / "rama.png")
    assert (tmp_path / "sub" / "rama.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_plots_say_how_to_install_it(trpcage, tmp_path, monkeypatch, capsys):
    from openmm_backmap.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" now raises ImportError
    pts = np.zeros((3, 2))
    with pytest.raises(InputError, match=r"^plots need matplotlib: pip install 'openmm-backmap\[plots\]'$"):
        M.ramachandran_plot(pts, pts, tmp_path / "rama.png")
    lay = trpcage.layout
    with pytest.raises(InputError, match="plots need matplotlib"):
        M.structure_plot(trpcage.xyz[0], trpcage.xyz[0], lay.bonds(), lay.elements, tmp_path / "frame.png")
    # evaluate says so before doing the work, and works without plots
    with pytest.raises(InputError, match="plots need matplotlib"):
        M.evaluate(trpcage, trpcage, plots_dir=tmp_path / "plots")
    assert M.evaluate(trpcage, trpcage)["plots"] == []
    assert list(tmp_path.iterdir()) == []
    # the command line prints it as one line
    pdb = tmp_path / "t.pdb"
    trpcage.to_mdtraj().save_pdb(str(pdb))
    assert main(["evaluate", str(pdb), str(pdb), "--plots", str(tmp_path / "plots")]) == 2
    err = capsys.readouterr().err.strip()
    assert "plots need matplotlib" in err and len(err.splitlines()) == 1

