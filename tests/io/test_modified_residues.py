"""Modified residues in the input are read as their parent amino acid, with one warning per kind."""

import warnings

import pytest

from openmm_backmap.io import load_ensemble
from openmm_backmap.structure import MODIFIED_RESIDUES, LoadWarning, canonical_residue_name


def _rename(text, number, name, extra=None):
    """Rename residue ``number`` of a PDB text to ``name`` and optionally add one extra heavy atom to it."""
    out, added = [], False
    for line in text.splitlines():
        if line.startswith(("ATOM", "HETATM")) and int(line[22:26]) == number:
            line = "HETATM" + line[6:17] + f"{name:>3}" + line[20:]
            if extra and not added:
                out.append(line)
                line = line[:12] + f" {extra:<3}" + line[16:76] + f"{extra[0]:>2}"
                added = True
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name", ["MSE", "SME", "MLY", "HYP", "SEP", "TPO", "PTR", "CSO", "CME"])
def test_issue_names_have_a_parent(name):
    assert canonical_residue_name(name) == MODIFIED_RESIDUES[name]


@pytest.mark.parametrize("name", ["HSD", "HSE", "HIE", "HID", "HIP", "CYX", "ASH", "GLH", "LYN"])
def test_protonation_names_have_a_parent(name):
    assert canonical_residue_name(name) in ("HIS", "CYS", "ASP", "GLU", "LYS")


def test_modified_residues_load_as_parent_with_one_warning_each(tmp_path, tests_data):
    text = (tests_data / "trpcage.pdb").read_text()
    text = _rename(text, 13, "SEP", extra="P")   # SER 13 phosphorylated
    text = _rename(text, 14, "SEP", extra="P")
    text = _rename(text, 8, "MLY", extra="CH1")  # LYS 8 dimethylated
    path = tmp_path / "mod.pdb"
    path.write_text(text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        ens = load_ensemble(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, LoadWarning)]
    assert ens.n_residues == 20 and ens.sequence[12] == "SER" and ens.sequence[7] == "LYS"
    assert ens.mask[0].all()  # the parent's atoms are all there; the extra ones are dropped
    assert sum("modified residue(s) SEP read as their parent SER" in m for m in messages) == 1
    assert sum("2 modified residue(s) SEP" in m for m in messages) == 1
    assert sum("modified residue(s) MLY read as their parent LYS" in m for m in messages) == 1
    assert not any("dropped" in m and "not standard" in m for m in messages)
