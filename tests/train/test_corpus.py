"""The training corpus: parsed once and cached, split by cluster, drops counted, weights per cluster."""

import numpy as np
import pytest

from openmm_backmap.structure import ProteinEnsemble
from openmm_backmap.train import corpus as corpus_module
from openmm_backmap.train.corpus import load_corpus, read_manifest, split_clusters


def _write(ens, path, chain="A"):
    ens = ProteinEnsemble.from_arrays(ens.sequence, ens.xyz[:1], chain_ids=[chain] * ens.n_residues)
    ens.to_mdtraj().save(str(path))


@pytest.fixture
def tiny_corpus(tmp_path, trpcage):
    """Six one-chain files in three clusters, plus a row whose chain is not in its file and a too-short chain."""
    rows = ["file,source,chain,residues,cluster,licence,sequence"]
    for i in range(6):
        moved = ProteinEnsemble.from_arrays(trpcage.sequence, trpcage.xyz[:1] + 0.01 * i)
        _write(moved, tmp_path / f"s{i}.pdb")
        rows.append(f"s{i}.pdb,test,A,20,{i % 3},x,SEQ")
    rows.append("s0.pdb,test,Z,20,0,x,SEQ")  # chain Z is not in s0.pdb
    short = ProteinEnsemble.from_arrays(trpcage.sequence[:10], trpcage.xyz[:1, : trpcage.layout.residue_start[10]])
    _write(short, tmp_path / "short.pdb")
    rows.append("short.pdb,test,A,10,7,x,SEQ")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "manifest.csv"


def test_split_is_by_cluster_and_validation_is_stable_across_fractions():
    ids = [str(i) for i in range(40)]
    full_train, full_val = split_clusters(ids, 0.1, 1.0, seed=3)
    part_train, part_val = split_clusters(ids, 0.1, 0.25, seed=3)
    assert full_val == part_val and len(full_val) == 4
    assert not (full_train & full_val) and part_train <= full_train and len(part_train) == 9


def test_corpus_is_split_by_cluster_counted_and_cached(tiny_corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    lines = []
    train, weights, val, summary = load_corpus(str(tiny_corpus), str(cache), validation_fraction=0.34, log=lines.append)
    rows = {r.file: r.cluster for r in read_manifest(str(tiny_corpus)) if r.chain == "A"}
    train_clusters = {rows[e.source.split(":")[0]] for e in train}
    val_clusters = {rows[e.source.split(":")[0]] for e in val}
    assert train_clusters and val_clusters and not (train_clusters & val_clusters)
    assert len(val) == len(val_clusters)  # one chain per held-out cluster
    # every training cluster weighs the same in total
    per_cluster = {}
    for e, w in zip(train, weights):
        per_cluster[rows[e.source.split(":")[0]]] = per_cluster.get(rows[e.source.split(":")[0]], 0) + w
    assert np.allclose(list(per_cluster.values()), 1.0)
    dropped = summary["dropped"]
    assert dropped == {"fewer than 20 residues after parsing": 1, "chain not in file": 1}
    assert any("dropped" in line for line in lines)
    assert len(list(cache.glob("*.npz"))) >= 4

    # a second load reads the cache only: the parser is never called
    def refuse(*a, **k):
        raise AssertionError("parsed a cached file again")

    monkeypatch.setattr(corpus_module, "load_ensemble", refuse)
    train2, weights2, val2, _ = load_corpus(str(tiny_corpus), str(cache), validation_fraction=0.34, log=lines.append)
    assert [e.source for e in train2] == [e.source for e in train]
    assert np.allclose(train2[0].xyz, train[0].xyz, equal_nan=True)
    assert np.array_equal(train2[0].mask, train[0].mask)


def test_a_changed_file_is_parsed_again(tiny_corpus, tmp_path, trpcage):
    cache = tmp_path / "cache"
    load_corpus(str(tiny_corpus), str(cache), validation_fraction=0.34, log=lambda *a: None)
    before = {p.name for p in cache.glob("*.npz")}
    _write(ProteinEnsemble.from_arrays(trpcage.sequence, trpcage.xyz[:1] + 0.5), tmp_path / "s1.pdb")
    load_corpus(str(tiny_corpus), str(cache), validation_fraction=0.34, log=lambda *a: None)
    assert len({p.name for p in cache.glob("*.npz")} - before) == 1


def test_manifest_without_cluster_column_is_refused(tmp_path):
    bad = tmp_path / "manifest.csv"
    bad.write_text("file,chain\na.pdb,A\n")
    with pytest.raises(ValueError, match="cluster"):
        read_manifest(str(bad))
    with pytest.raises(FileNotFoundError, match="data.corpus"):
        read_manifest(str(tmp_path / "nope.csv"))


def test_training_data_adds_the_corpus_with_cluster_weights(tiny_corpus, tmp_path, trpcage):
    from openmm_backmap.train.config import DataConfig
    from openmm_backmap.train.data import load_training_data

    ProteinEnsemble.from_arrays(trpcage.sequence, trpcage.xyz[:1]).to_mdtraj().save(str(tmp_path / "extra.pdb"))
    cfg = DataConfig(root=str(tmp_path), files=["extra.pdb"], validation_fraction=0.0, corpus="manifest.csv",
                     corpus_validation_fraction=0.34, cache_dir=str(tmp_path / "cache"))
    train, val, summary = load_training_data(cfg, log=lambda *a: None)
    assert len(summary["train_weights"]) == len(train)
    assert summary["train_weights"][0] == 1.0 and summary["corpus"]["chains_train"] == len(train) - 1
