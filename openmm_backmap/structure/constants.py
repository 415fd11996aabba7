"""Physical constants, unit factors and the thresholds every layer shares.

One rule for names: a value carries its unit as a suffix (``_nm``,
``_angstrom``, ``_deg``, ``_rad``, ``_kj_mol``); a plain ratio has none.
Lengths are nm everywhere inside the package (OpenMM and mdtraj use nm) and
Å only in reported metrics.
"""

from __future__ import annotations

#: Å per nm.
ANGSTROM_PER_NM = 10.0
#: Boltzmann's constant, kJ/mol/K.
BOLTZMANN_KJ_MOL_K = 0.00831446261815324

# --- chain breaks: one detector (structure.segments), two distances ---
#: Peptide C-N distance above which consecutive residues are not bonded (nm).
PEPTIDE_BREAK_NM = 0.2
#: C-alpha (or bead) distance above which consecutive residues are not bonded, used where C or N is
#: missing (nm). True C-alpha atoms sit 0.38 nm apart (0.29 nm for cis peptides).
CA_BREAK_NM = 0.43
#: Consecutive chain beads of CG input (the bead; ``BB`` for Martini) farther apart than this (nm) are a chain
#: break, where neither bonds nor file records say (run.cg_chains). From the distance across a peptide bond in the
#: training corpus (benchmarks/break_thresholds.py, docs/benchmarks/break_thresholds.md), 99.99th percentile:
#: C-alpha 0.396, centre of mass 0.857, Martini BB 0.403-0.405 nm; plus a margin for bonds that fluctuate in a CG
#: simulation (0.02-0.045 nm at 300 K): 0.1 nm for the bead schemes. C-alphas keep 0.43 nm, the limit loaded
#: structures use (a missing residue puts C-alphas 0.5 nm and more apart). Centre-of-mass beads spread far wider
#: than C-alphas, so the C-alpha limit cut compact proteins into pieces; the price is that geometry alone misses
#: most one-residue gaps of centre-of-mass beads, which is why records (numbering, chains) come first.
SCHEME_BREAK_NM = {"ca": 0.43, "com": 0.96, "martini3": 0.5, "martini2": 0.5}
#: Consecutive beads kept joined although farther apart than this (nm: the corpus's 99.99th percentile, rounded up)
#: are reported as doubtful where nothing but geometry decides: a short gap can hide under the wide centre-of-mass
#: limit (CASP T0862's 8 missing residues leave 0.958 nm). Only for ``com``: the other limits sit within 0.03-0.1 nm of
#: the corpus's tail, and C-alpha or BB bonds of a simulation cross their tail every few hundred pairs.
SCHEME_DOUBT_NM = {"com": 0.86}
#: During a run, a joined pair is reported only once farther apart than the break limit plus this (nm), and a break
#: found from distances only once closer than the limit minus this: C-alpha bonds of a CG simulation (0.38 nm, about
#: 0.02 nm at 300 K) cross the 0.43 nm limit every few hundred pairs and frames; a torn chain moves by far more.
BREAK_MONITOR_MARGIN_NM = 0.1
#: The median distance between the chain beads of consecutive residues of CG input lies in this range (nm): C-alpha
#: 0.38, Martini BB 0.33, centre of mass 0.47 in the corpus (docs/benchmarks/break_thresholds.md). Outside it, the
#: coordinates are in the wrong unit (x0.1: nm written where Å belong; x10), and backmapping them gives nonsense.
BEAD_SPACING_RANGE_NM = (0.2, 1.0)
#: A covalent bond longer than this (nm) in one frame, where the ensemble has no break, marks a corrupt frame.
BROKEN_BOND_NM = 0.3

# --- bonds and clashes (metrics, quality checks, relaxation) ---
#: A backmapped structure with fewer of its bonds within 10 % of the force field's length than this (%) is broken
#: (a model for other beads, coordinates in other units); trained models give 99-100 % before relaxation, and the
#: worst per-system model of the k-step table 91.8 % (PED00153, 2-step, before the chemistry rules).
BROKEN_OUTPUT_BOND_OK_PERCENT = 80.0
#: Covalent radii (Å) used to infer bonds from distances.
COVALENT_RADII_ANGSTROM = {"C": 0.76, "N": 0.71, "O": 0.66, "S": 1.05}
#: A bond exists where ``d < BOND_TOLERANCE * (r_i + r_j)``.
BOND_TOLERANCE = 1.3
#: Heavy atoms of different residues closer than this clash (Å).
CLASH_DISTANCE_ANGSTROM = 1.2
#: ``bond_ok`` accepts generated bond lengths within this relative deviation.
BOND_OK_TOLERANCE = 0.10
#: Bondi van der Waals radii (nm) by element symbol (others: 0.17).
BONDI_RADII_NM = {"H": 0.12, "C": 0.17, "N": 0.155, "O": 0.152, "S": 0.18, "P": 0.18, "Se": 0.19}
#: Signed volume (nm^3, :func:`~openmm_backmap.structure.chirality_volumes`) below which both relaxers push an L
#: C-alpha stereocentre back (L residues have 0.0020-0.0027; 0 is planar, D is negative).
CHIRAL_VOLUME_MIN_NM3 = 0.0015
#: Force constant of that half-harmonic term (kJ/mol/nm^6, ``E = K/2 (V - V_min)^2`` for ``V < V_min``): as stiff as
#: a bond for displacements of the atoms; a planar centre costs 225 kJ/mol, a fully inverted one 1,600.
K_CHIRAL = 2.0e8
#: C-OXT bond length (nm).
OXT_BOND_NM = 0.125
#: SG-SG distance below which two cysteines are treated as a disulfide (nm).
DISULFIDE_NM = 0.25
#: Two cysteines whose CB atoms are closer than this (nm) are a disulfide even where the backmapped SG atoms are
#: not (the CG beads carry no SG, and each side chain is placed on its own): CB-CB is 0.35-0.42 nm in the
#: disulfides of the CASP targets and 2EQQ, the backmapped CBs included.
DISULFIDE_CB_NM = 0.43
#: ... unless either cysteine has a third one with CB closer than this (nm): three or four cysteines that close
#: hold a metal (zinc fingers: CB-CB 0.39-0.49 nm in TBM-hard_T0898), not a disulfide.
METAL_SITE_CB_NM = 0.50
#: Ideal disulfide SG-SG bond length (nm).
DISULFIDE_BOND_NM = 0.204
#: Ideal CB-SG-SG angle of a disulfide (degrees; 104 +- 5 in crystal structures).
DISULFIDE_ANGLE_DEG = 104.0
#: Proline phi: the ring holds it near -65 degrees; a backbone built with phi outside this window (degrees) cannot
#: close the ring and is rebuilt (301 prolines of the CASP targets: 1 outside).
PROLINE_PHI_DEG = -65.0
PROLINE_PHI_RANGE_DEG = (-120.0, -30.0)
#: C-alpha pairs closer than this (Å) get a cis peptide unit.
CIS_CA_DISTANCE_ANGSTROM = 3.3

# --- torsion statistics ---
#: Default histogram bin width for the KL divergences (degrees).
KL_BIN_WIDTH_DEG = 10.0
#: Default pseudo-count added to every bin's probability (then renormalised).
KL_PSEUDO_COUNT = 1e-6
#: Histogram bin width of the radius-of-gyration distributions of ``evaluation.ensemble_metrics`` (nm; bins sit
#: on multiples of it). 0.1 nm (1 Å) puts an IDP ensemble of 50-200 conformers (Rg spread 0.5-1.5 nm) in 5-15 bins.
RG_BIN_WIDTH_NM = 0.1

# --- run time ---
#: A CG frame with any |coordinate| above this (nm) has exploded.
MAX_COORDINATE_NM = 1.0e4
#: A relaxed structure with a force-field energy above this (kJ/mol) is not relaxed (``converged=False``).
FAILED_ENERGY_KJ_MOL = 1.0e6
#: A hydrogen this close (nm) to an atom it is not bonded to has collapsed onto it. AMBER ff14SB gives hydroxyl (HO)
#: and some polar hydrogens no Lennard-Jones radius, so a minimisation that starts with a donor too close to an
#: acceptor can pull the hydrogen onto the acceptor: the energy is then a Coulomb singularity, not a structure.
#: Hydrogen bonds keep H...acceptor at 0.15 nm or more.
HYDROGEN_COLLAPSE_NM = 0.1
#: A covalent bond of the input longer than this (nm) is beyond repair (a chain break missing from the
#: topology, or a corrupt frame): such frames are not minimised.
UNREPAIRABLE_BOND_NM = 1.0

# --- residue slots of the models ---
#: Heavy atoms of the largest standard residue (TRP): the slots per residue in the models' residue-slot arrays.
MAX_HEAVY_ATOMS_PER_RESIDUE = 14

# --- evaluation ---
#: ``evaluate`` refuses a comparison in which either side has fewer than this fraction of the other side's heavy
#: atoms (a C-alpha trace or a backbone-only file scored against all atoms would look perfect).
MIN_MATCHED_ATOM_FRACTION = 0.5
#: How many missing atoms a warning, error or table names (the counts cover all of them).
MISSING_ATOMS_NAMED = 5

# --- memory budget (run.memory_budget sizes every model call from these) ---
#: Bytes in one MB of ``--max-memory`` / ``maxMemory`` / ``max_memory_mb``.
BYTES_PER_MB = 2**20
#: Default memory budget of ``convert`` and the reporter for one model call (MB).
DEFAULT_MAX_MEMORY_MB = 2048
# The forward-pass cost model below, bytes ~ FIXED + structures * (PER_RESIDUE * R + PER_RESIDUE_SQUARED * R**2),
# was measured on CPU (torch 2.13, one thread) with the shipped C-alpha model (models/ca2aa.pt): the growth of
# ru_maxrss over one backmap call in a fresh process after a small warm-up call, for R = 50 ... 5000 residues and
# 1 ... 16 structures per call. The least-squares fit is 44 MB + structures * (102 kB * R + 3.3 B * R**2)
# (3000 residues: about 350 MB per structure, the graph and the side-chain repacking; the R**2 term is the C-alpha
# distance matrix of the neighbour search). The constants are rounded up so that every measurement lies at or below
# 80 % of the estimate. The per-system model models/adk-ucg12.pt (214 residues) needs about 7 MB per structure,
# well inside the estimate. On a GPU the same estimate is applied to device memory (same float32 tensors).
#: Fixed working memory of one model call (bytes).
FORWARD_BYTES_FIXED = 64 * 2**20
#: Working memory of one model call per structure and residue (bytes).
FORWARD_BYTES_PER_RESIDUE = 150_000
#: Working memory of one model call per structure and squared residue count (bytes).
FORWARD_BYTES_PER_RESIDUE_SQUARED = 8

# --- relaxation ---
#: Implicit solvents of the relaxer by name (``--relax-solvent``, ``Relaxer(implicit=...)``): OpenMM force-field
#: files, None for vacuum. OBC2 is the OpenMM relaxer's default.
IMPLICIT_SOLVENT_FILES = {"gbn2": "implicit/gbn2.xml", "obc2": "implicit/obc2.xml", "vacuum": None}

# --- bead schemes (mapping.detection) ---
#: Consecutive true C-alpha atoms sit this far apart: trans peptides (nm).
CA_CA_TRANS_NM = 0.380
#: ... and cis peptides (nm).
CA_CA_CIS_NM = 0.290
#: Beads are C-alphas when the median deviation of consecutive bead distances from the nearer of CA_CA_TRANS_NM and
#: CA_CA_CIS_NM is at most this (nm). Measured: <= 0.0032 nm on the 24 CASP targets, <= 0.0075 nm in all-atom MD
#: frames (trpcage, NTL9, lysozyme, AdK), about 0.012 nm for CG beads on harmonic 0.38 nm bonds of 8000 kJ/mol/nm^2;
#: residue centres of mass give 0.065 ... 0.13 nm.
CA_SCHEME_MAX_DEVIATION_NM = 0.030
#: Above this median deviation (nm) the beads are surely not C-alphas; between the two limits the verdict is unsure.
COM_SCHEME_MIN_DEVIATION_NM = 0.045
#: Consecutive beads farther apart than this (nm) are a chain break and left out of the statistic.
SCHEME_PAIR_MAX_NM = 0.8

# --- hand-off to other engines (run.relax.handoff) ---
#: Engines ``convert --export`` writes a ready-to-run system for, and the extensions of their (topology,
#: coordinates) files.
EXPORT_FORMATS = {"gromacs": (".top", ".gro"), "amber": (".prmtop", ".inpcrd"), "openmm": (".xml", ".pdb")}

# --- relaxation methods ---
#: Relaxers of ``minimize`` by ``relax_options['method']`` (``--relax``): the fast batched clash repair (the
#: default) and the OpenMM force-field minimisation.
RELAX_METHODS = ("fast", "openmm")

