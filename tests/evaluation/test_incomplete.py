"""evaluate refuses a C-alpha trace, warns about any other missing atom and reports the matched fraction."""

import warnings

import numpy as np
import pytest

import openmm_backmap.evaluation as M
from openmm_backmap.structure import InputError, LoadWarning
from openmm_backmap.structure.constants import MIN_MATCHED_ATOM_FRACTION


def _keep(ens, atoms):
    """A copy of ``ens`` with only ``atoms`` present (index array or bool mask over the layout)."""
    mask = np.zeros(ens.n_atoms, dtype=bool)
    mask[atoms] = True
    xyz = np.where(mask[:, None], ens.xyz, np.nan)
    return type(ens)(ens.sequence, xyz, np.broadcast_to(mask, ens.mask.shape), ens.segment_start, ens.chain_ids,
                     ens.residue_numbers, None, "incomplete")


def _without_side_chain(ens, residue):
    layout = ens.layout
    atoms = np.ones(ens.n_atoms, dtype=bool)
    start, end = layout.residue_start[residue], layout.residue_start[residue + 1]
    side_chain = [i for i in range(start, end) if layout.atom_names[i] not in ("N", "CA", "C", "O")]
    atoms[side_chain] = False
    return _keep(ens, atoms), len(side_chain)


def test_ca_trace_against_all_atoms_is_refused(trpcage):
    ca_only = _keep(trpcage, trpcage.layout.ca_index)
    assert 20 / 153 < MIN_MATCHED_ATOM_FRACTION
    with pytest.raises(InputError, match=r"generated structures lack 133 of the reference's heavy atoms "
                                         r"\(e\.g\. ASN 1 N, .*13 % matched\).*openmm-backmap convert"):
        M.evaluate(trpcage, ca_only)
    with pytest.raises(InputError, match="reference lacks 133 of .*pass an all-atom reference"):
        M.evaluate(ca_only, trpcage)


def test_missing_side_chain_warns_and_is_reported(trpcage):
    gen, n_missing = _without_side_chain(trpcage, 1)  # LEU 2
    assert n_missing == 4
    with pytest.warns(LoadWarning, match=r"lack 4 of the reference's heavy atoms \(e\.g\. LEU 2 CB, LEU 2 CG, "
                                         r"LEU 2 CD1, LEU 2 CD2; 97 % matched\)"):
        r = M.evaluate(trpcage, gen)
    assert r["matched_atom_fraction"] == pytest.approx(149 / 153)
    assert r["matched_atom_fraction_generated"] == 1.0
    assert r["missing_in_generated"] == 4 and r["missing_in_reference"] == 0
    assert r["missing_in_generated_atoms"] == ["LEU 2 CB", "LEU 2 CG", "LEU 2 CD1", "LEU 2 CD2"]
    table = M.format_table(r)
    assert "heavy atoms matched: 97.4 % of the reference's" in table
    assert "missing in generated: 4 (LEU 2 CB, LEU 2 CG, LEU 2 CD1, LEU 2 CD2); in reference: 0" in table
    # the other way round: the reference lacks the atoms; more than five are named with "..."
    ref, _ = _without_side_chain(trpcage, 5)  # TRP 6: 10 side-chain atoms
    with pytest.warns(LoadWarning, match="reference lacks 10 of the generated structures' heavy atoms"):
        r = M.evaluate(ref, trpcage)
    assert r["matched_atom_fraction"] == 1.0 and r["missing_in_reference"] == 10
    assert "in reference: 10 (TRP 6 CB, TRP 6 CG, TRP 6 CD1, TRP 6 CD2, TRP 6 NE1, ...)" in M.format_table(r)


def test_complete_structures_match_fully_without_warning(trpcage):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = M.evaluate(trpcage, trpcage)
    assert r["matched_atom_fraction"] == 1.0 and r["matched_atom_fraction_generated"] == 1.0
    assert r["missing_in_generated"] == 0 and r["missing_in_reference"] == 0
    assert r["missing_in_generated_atoms"] == [] and r["missing_in_reference_atoms"] == []
    assert "heavy atoms matched: 100.0 % of the reference's; missing in generated: 0; in reference: 0" in \
        M.format_table(r)


def test_cli_evaluate_ca_trace_is_one_line_error(trpcage, tmp_path, capsys):
    from openmm_backmap.cli import main

    ref, gen = tmp_path / "ref.pdb", tmp_path / "ca.pdb"
    traj = trpcage.to_mdtraj()
    traj.save_pdb(str(ref))
    traj.atom_slice(traj.topology.select("name CA")).save_pdb(str(gen))
    assert main(["evaluate", str(ref), str(gen)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("openmm-backmap evaluate: error: the generated structures lack 133 of the reference's")
    assert "openmm-backmap convert" in err and "\n" not in err and "Traceback" not in err
