"""Pictures of single backmapped frames next to their references (for docs/).

* Trp-cage: a frame of the held-out Trp-cage trajectory, reduced to its
  C-alpha trace and backmapped by the C-alpha model (deterministic mode).
* Adenylate kinase: a frame of the held-out transition path, coarsened to the
  12 beads of ``models/adk-ucg12.pt`` with the model's own mappings and
  backmapped in 2 steps (beads -> C-alpha -> heavy atoms).

Residues with a clash (a heavy atom within 1.2 Å of another residue's) are
drawn thicker. Writes PNGs into ``--output-dir`` (default
``docs/benchmarks/plots``)::

    python benchmarks/frame_figures.py [--data ../shared/data]
"""

import argparse
import os
import warnings

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _figure(ref, gen_xyz, path, title):
    from openmm_backmap.evaluation import clashing_residues, rmsd, structure_plot

    x = gen_xyz[0]
    lay = ref.layout
    bad = clashing_residues(x, ref.xyz[0], lay.atom_residue, lay.elements)
    n_bad = len(bad)
    r = float(rmsd(ref.xyz[0], x))  # Å
    structure_plot(ref.xyz[0], x, lay.bonds(ref.segment_start), lay.elements, path,
                   title=f"{title}: heavy-atom RMSD {r:.2f} Å, {n_bad} clashing residues",
                   highlight=np.isin(lay.atom_residue, bad))
    print(f"{path}: RMSD {r:.2f} Å, {n_bad} clashing residues")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data"))
    ap.add_argument("--output-dir", default=os.path.join(REPO, "docs", "benchmarks", "plots"))
    args = ap.parse_args(argv)

    from openmm_backmap.model.backmapping import load_model
    from openmm_backmap.io import LoadWarning, load_ensemble
    from openmm_backmap.mapping import coarsen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        trp = load_ensemble(os.path.join(args.data, "eval/md/trpcage/trpcage_eval.dcd"),
                            topology=os.path.join(args.data, "eval/md/trpcage/trpcage.pdb"))
        adk = load_ensemble(os.path.join(args.data, "eval/md/adk/adk_dims2.xtc"),
                            topology=os.path.join(args.data, "eval/md/adk/adk.pdb"))
    trp = trp.select_frames([trp.n_frames // 2])
    adk = adk.select_frames([adk.n_frames // 2])

    ca_model = load_model(os.path.join(REPO, "models", "ca2aa.pt"), device="cpu")
    out = ca_model.backmap(trp.ca_xyz, trp.sequence, trp.segment_start, deterministic=True)
    _figure(trp, out.xyz, os.path.join(args.output_dir, "frame_trpcage_ca2aa.png"),
            "Trp-cage, held-out frame, C-alpha trace -> heavy atoms (models/ca2aa.pt)")

    kstep = load_model(os.path.join(REPO, "models", "adk-ucg12.pt"), device="cpu")
    level = kstep.hierarchy.levels[-1]
    cg = coarsen(adk, hierarchy=kstep.hierarchy, levels=level)[level][0]
    out = kstep.backmap(cg, deterministic=True)
    _figure(adk, out.xyz, os.path.join(args.output_dir, "frame_adk_ucg12.png"),
            "Adenylate kinase, held-out path, 12 beads -> C-alpha -> heavy atoms (models/adk-ucg12.pt)")


if __name__ == "__main__":
    main()
