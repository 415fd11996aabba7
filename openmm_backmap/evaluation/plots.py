"""Figures: Ramachandran histograms and structure drawings (PNG).

matplotlib is optional (``pip install 'openmm-backmap[plots]'``); it is
imported when a figure is drawn, so the metrics work without it. Figures use
matplotlib's object API with the Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

import os

import numpy as np

from ..io import AtomicOutput
from ..structure import InputError
from ..structure.constants import ANGSTROM_PER_NM, KL_BIN_WIDTH_DEG

__all__ = ["ramachandran_plot", "structure_plot"]

_ELEMENT_COLOURS = {"C": "#555555", "N": "#2060d0", "O": "#d03020", "S": "#d0a000"}


def require_matplotlib() -> None:
    """Raise :class:`~openmm_backmap.structure.InputError` (one line, how to install it) when matplotlib is missing.

    Examples
    --------
    >>> require_matplotlib()  # doctest: +SKIP
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("plots need matplotlib: pip install 'openmm-backmap[plots]'") from None


def _figure(figsize):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with AtomicOutput(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def ramachandran_plot(ref_phi_psi, gen_phi_psi, path, title=None, kl=None, bin_width_deg=KL_BIN_WIDTH_DEG):
    """Write a PNG with reference and generated Ramachandran histograms side by side.

    Parameters
    ----------
    ref_phi_psi, gen_phi_psi : arrays, (n, 2), degrees
        (phi, psi) pairs; NaN rows are ignored.
    path : str or path
        Output PNG file (its directory is created).
    title : str, optional
    kl : float, optional
        KL(reference || generated) to print in the title.
    bin_width_deg : float
        Histogram bin width.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        When matplotlib is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.random.default_rng(0).uniform(-180, 180, (100, 2))
    >>> ramachandran_plot(pts, pts, 'rama.png')  # doctest: +SKIP
    'rama.png'
    """
    fig = _figure((11, 4.8))
    from matplotlib.colors import LogNorm

    edges = np.arange(-180.0, 180.0 + bin_width_deg / 2, bin_width_deg)
    panels = []
    for data in (ref_phi_psi, gen_phi_psi):
        a = np.asarray(data, dtype=np.float64).reshape(-1, 2)
        a = a[np.isfinite(a).all(1)]
        h = np.histogram2d(a[:, 0], a[:, 1], bins=[edges, edges])[0] / max(len(a), 1)
        panels.append((len(a), np.where(h > 0, h, np.nan)))
    filled = np.concatenate([h[np.isfinite(h)] for _, h in panels])
    norm = LogNorm(vmin=filled.min(), vmax=filled.max()) if len(filled) else None
    axes = fig.subplots(1, 2, sharey=True)
    im = None
    for ax, (n, h), label in zip(axes, panels, ("reference", "generated")):
        if n:
            im = ax.pcolormesh(edges, edges, h.T, norm=norm, cmap="viridis")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.set_xticks(range(-180, 181, 60))
        ax.set_yticks(range(-180, 181, 60))
        ax.set_aspect("equal")
        ax.set_xlabel("phi (degrees)")
        ax.set_title(f"{label} ({n} phi/psi pairs)")
    axes[0].set_ylabel("psi (degrees)")
    if im is not None:
        fig.colorbar(im, ax=list(axes), label=f"fraction per {bin_width_deg:g} x {bin_width_deg:g} degree bin")
    head = title or "Ramachandran"
    if kl is not None:
        head += f"   KL(ref || gen) = {kl:.3f} nats ({bin_width_deg:g} degree bins)"
    fig.suptitle(head)
    return _save(fig, path)


def structure_plot(ref_xyz, gen_xyz, bonds, elements, path, title=None, labels=("reference", "backmapped"),
                   highlight=None):
    """Write a PNG with two structures of the same atoms drawn side by side and overlaid.

    Both are projected onto the two principal axes of ``ref_xyz`` (no
    alignment: backmapped frames share the CG frame of the reference). Bonds
    are drawn half-and-half in the colours of their atoms (C grey, N blue, O
    red, S yellow); far atoms are drawn first and paler.

    Parameters
    ----------
    ref_xyz, gen_xyz : array (n_atoms, 3), nm
    bonds : array (n_bonds, 2)
        Atom index pairs (e.g. ``ensemble.layout.bonds(ensemble.segment_start)``).
    elements : sequence of str
    path : str or path
        Output PNG file (its directory is created).
    title : str, optional
    labels : (str, str)
    highlight : array of bool (n_atoms,), optional
        Atoms drawn thicker (e.g. clashing residues); default: none.

    Returns
    -------
    str
        Path of the PNG (raises InputError without matplotlib).

    Examples
    --------
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> structure_plot(ens.xyz[0], ens.xyz[0], ens.layout.bonds(), ens.layout.elements, 'frame.png')  # doctest: +SKIP
    'frame.png'
    """
    fig = _figure((13, 4.6))
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba

    ref = np.asarray(ref_xyz, dtype=np.float64) * ANGSTROM_PER_NM
    gen = np.asarray(gen_xyz, dtype=np.float64) * ANGSTROM_PER_NM
    bonds = np.asarray(bonds, dtype=int).reshape(-1, 2)
    centre = ref.mean(0)
    axes3 = np.linalg.svd(ref - centre, full_matrices=False)[2]  # rows: principal axes
    colours = np.array([_ELEMENT_COLOURS.get(str(e).upper(), "#888888") for e in elements])
    width = np.full(len(bonds), 1.6)
    if highlight is not None:
        width[np.asarray(highlight, bool)[bonds].any(1)] = 3.2

    def segments(xyz):
        p = (xyz - centre) @ axes3.T  # (n, 3): x, y on the principal plane, z = depth
        a, b = p[bonds[:, 0]], p[bonds[:, 1]]
        mid = (a + b) / 2.0
        half1 = np.stack([a[:, :2], mid[:, :2]], 1)
        half2 = np.stack([mid[:, :2], b[:, :2]], 1)
        depth = np.concatenate([(a[:, 2] + mid[:, 2]) / 2, (b[:, 2] + mid[:, 2]) / 2])
        return np.concatenate([half1, half2]), np.concatenate([colours[bonds[:, 0]], colours[bonds[:, 1]]]), depth

    panels = fig.subplots(1, 3, sharex=True, sharey=True)
    lw = np.concatenate([width, width])
    for ax, xyz, label in ((panels[0], ref, labels[0]), (panels[1], gen, labels[1])):
        seg, col, depth = segments(xyz)
        order = np.argsort(depth)  # far first
        alpha = 0.45 + 0.55 * (depth[order] - depth.min()) / max(np.ptp(depth), 1e-9)
        rgba = [to_rgba(c, a) for c, a in zip(col[order], alpha)]
        ax.add_collection(LineCollection(seg[order], colors=rgba, linewidths=lw[order], capstyle="round"))
        ax.set_title(label)
    for xyz, colour, label in ((ref, "#999999", labels[0]), (gen, "#d02090", labels[1])):
        seg, _, _ = segments(xyz)
        panels[2].add_collection(LineCollection(seg, colors=colour, linewidths=1.2, alpha=0.8, label=label))
    panels[2].set_title("overlay")
    panels[2].legend(loc="lower right", fontsize=8)
    allp = (np.concatenate([ref, gen]) - centre) @ axes3.T
    pad_angstrom = 2.0
    for ax in panels:
        ax.set_xlim(allp[:, 0].min() - pad_angstrom, allp[:, 0].max() + pad_angstrom)
        ax.set_ylim(allp[:, 1].min() - pad_angstrom, allp[:, 1].max() + pad_angstrom)
        ax.set_aspect("equal")
        ax.set_xlabel("principal axis 1 (Å)")
    panels[0].set_ylabel("principal axis 2 (Å)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
