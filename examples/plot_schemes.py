"""Draw the beads of every bead scheme over Trp-cage: writes docs/plots/schemes.png.

Needs matplotlib (``pip install "openmm-backmap[plots]"``)::

    python examples/plot_schemes.py [structure.pdb] [-o docs/plots/schemes.png]

Each panel shows the heavy atoms (grey, bonds as thin lines) projected on the
protein's two main axes, and the beads of one scheme on top: C-alpha,
residue centre of mass, Martini 3 and Martini 2 (``BB`` beads dark, side-chain
beads light, lines join the beads of a residue).
"""

import argparse
import os

import numpy as np

from openmm_backmap.io import load_ensemble
from openmm_backmap.mapping import SCHEMES, bead_residues, scheme_mapping

TITLES = {"ca": "ca: C-alpha", "com": "com: residue centre of mass", "martini3": "martini3: Martini 3.0",
          "martini2": "martini2: Martini 2.2"}


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("structure", nargs="?", default=os.path.join(here, "..", "tests", "data", "trpcage.pdb"))
    parser.add_argument("-o", "--output", default=os.path.join(here, "..", "docs", "plots", "schemes.png"))
    args = parser.parse_args()

    ens = load_ensemble(args.structure)
    xyz = ens.xyz[0]
    centre = xyz.mean(0)
    axes = np.linalg.svd(xyz - centre, full_matrices=False)[2][:2]  # the two main axes of the atom cloud
    project = (lambda x: (x - centre) @ axes.T * 10.0)  # nm -> Å
    atoms = project(xyz)
    bonds = ens.layout.bonds(ens.segment_start)

    fig, panels = plt.subplots(2, 2, figsize=(9, 9.2), sharex=True, sharey=True)
    panels = panels.ravel()
    for ax, scheme in zip(panels, SCHEMES):
        m = scheme_mapping(scheme, ens.sequence)
        beads = project(m.apply(xyz))
        for i, j in bonds:
            ax.plot(atoms[[i, j], 0], atoms[[i, j], 1], color="0.8", lw=0.6, zorder=1)
        ax.scatter(atoms[:, 0], atoms[:, 1], s=4, color="0.6", zorder=2)
        res = bead_residues(m)
        backbone = np.array([n == "BB" for n in m.bead_names]) if scheme.startswith("martini") else \
            np.ones(m.n_beads, dtype=bool)
        chain = beads[backbone]
        ax.plot(chain[:, 0], chain[:, 1], color="tab:blue", lw=1.2, zorder=3)
        for r in np.unique(res):
            own = np.flatnonzero(res == r)
            if own.size > 1:
                ax.plot(beads[own, 0], beads[own, 1], color="tab:orange", lw=1.0, zorder=3)
        ax.scatter(beads[backbone, 0], beads[backbone, 1], s=36, color="tab:blue", edgecolor="k", lw=0.5, zorder=4)
        ax.scatter(beads[~backbone, 0], beads[~backbone, 1], s=30, color="tab:orange", edgecolor="k", lw=0.5,
                   zorder=4)
        ax.set_title(f"{TITLES[scheme]} ({m.n_beads} beads)", fontsize=10)
        ax.set_aspect("equal")
    for ax in panels[2:]:
        ax.set_xlabel("Å")
    for ax in panels[::2]:
        ax.set_ylabel("Å")
    fig.suptitle(f"Bead schemes over {os.path.basename(args.structure)} ({ens.n_residues} residues, "
                 f"{ens.n_atoms} heavy atoms)", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
