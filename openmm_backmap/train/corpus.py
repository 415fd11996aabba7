"""The training corpus: many experimental structures, parsed once, cached, and split by sequence cluster.

A corpus is a directory of structure files plus a ``manifest.csv`` with one
row per chain (``file``, ``chain``, ``cluster``; other columns are ignored).
Parsing about 1,400 messy PDB files on every run costs minutes, so every file
is parsed and canonicalised once by :func:`~openmm_backmap.io.load_ensemble`
and its arrays are kept in an ``.npz`` under a cache directory, keyed by the
SHA-256 of the file's bytes and a cache version (bumped whenever parsing or
canonicalisation changes what comes out). The cache holds arrays and strings
only and is read with ``allow_pickle=False``.

Training and validation are split **by cluster**, never by file: bound and
unbound copies of one protein, and antibodies, recur across files, and a
split by file would validate on proteins the model was trained on. Each
training chain is drawn with weight ``1 / (training chains in its cluster)``,
so every cluster counts once however often it was deposited.

Everything dropped on the way is counted by reason and logged; nothing is
dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from collections import Counter, defaultdict

import numpy as np

from ..io import LoadWarning, load_ensemble
from ..structure import InputError, MissingFileError, ProteinEnsemble, torn_frames
from .progress import Progress

__all__ = ["CorpusChain", "read_manifest", "load_corpus", "split_clusters"]

#: Bump when parsing or canonicalisation changes what a cached file holds.
CACHE_VERSION = 1
#: Chains shorter than this after parsing carry too little context to train on.
MIN_CHAIN_RESIDUES = 20


class CorpusChain:
    """One manifest row: a chain of a corpus file and its sequence cluster.

    Examples
    --------
    >>> CorpusChain('bm5/1A2K_l_u.pdb.gz', 'B', '17')
    CorpusChain('bm5/1A2K_l_u.pdb.gz', 'B', cluster='17')
    """

    __slots__ = ("file", "chain", "cluster")

    def __init__(self, file: str, chain: str, cluster: str):
        self.file, self.chain, self.cluster = file, chain, cluster

    def __repr__(self):
        return f"CorpusChain({self.file!r}, {self.chain!r}, cluster={self.cluster!r})"


def read_manifest(path) -> list:
    """Read a corpus manifest (CSV with at least ``file``, ``chain`` and ``cluster`` columns).

    Raises
    ------
    MissingFileError, InputError
        No such file, or a required column is missing.

    Examples
    --------
    >>> rows = read_manifest('corpus/manifest.csv')  # doctest: +SKIP
    >>> rows[0]  # doctest: +SKIP
    CorpusChain('antibody/1AHW_l_b.pdb.gz', 'C', cluster='465')
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"corpus manifest {str(path)!r} does not exist; check data.corpus")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "chain", "cluster"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"corpus manifest {str(path)!r} lacks column(s) {sorted(missing)}; it needs file, "
                             "chain and cluster")
        return [CorpusChain(r["file"], r["chain"], r["cluster"]) for r in reader]


def split_clusters(clusters, validation_fraction: float, fraction: float = 1.0, seed: int = 0):
    """Split cluster ids into (training, validation) sets.

    The validation clusters are the same for every ``fraction``, so runs that
    train on part of the corpus (an ablation) are validated on the same chains.

    Examples
    --------
    >>> tr, va = split_clusters([str(i) for i in range(100)], 0.1, fraction=0.5)
    >>> len(va), len(tr), tr & va
    (10, 45, set())
    """
    ids = sorted(set(clusters), key=lambda c: (len(c), c))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = max(1, int(round(validation_fraction * len(ids)))) if validation_fraction > 0 else 0
    val = {ids[i] for i in order[:n_val]}
    rest = [ids[i] for i in order[n_val:]]
    return set(rest[: int(round(fraction * len(rest)))]), val


def _file_key(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{digest.hexdigest()[:32]}-v{CACHE_VERSION}"


def _parse_cached(path, cache_dir):
    """The file's ensemble and the load warnings it gave, parsed once and then read from the cache."""
    cache = os.path.join(cache_dir, _file_key(path) + ".npz")
    if os.path.exists(cache):
        with np.load(cache, allow_pickle=False) as z:
            ens = ProteinEnsemble(sequence=[str(s) for s in z["sequence"]], xyz=z["xyz"], mask=z["mask"],
                                  segment_start=z["segment_start"], chain_ids=[str(c) for c in z["chain_ids"]],
                                  residue_numbers=z["residue_numbers"].tolist(), source=path)
            return ens, [str(w) for w in z["warnings"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        ens = load_ensemble(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, LoadWarning)]
    os.makedirs(cache_dir, exist_ok=True)
    tmp = cache + f".{os.getpid()}.tmp.npz"
    np.savez_compressed(tmp, sequence=np.array(ens.sequence), xyz=ens.xyz[:1], mask=ens.mask[:1],
                        segment_start=ens.segment_start, chain_ids=np.array(ens.chain_ids, dtype=str),
                        residue_numbers=np.asarray(ens.residue_numbers, dtype=np.int64),
                        warnings=np.array(messages, dtype=str))
    os.replace(tmp, cache)
    return ens.select_frames(slice(0, 1)), messages


def _chain(ens: ProteinEnsemble, chain: str, source: str):
    """The residues of ``chain`` as their own ensemble (first frame), or None."""
    keep = np.flatnonzero(np.asarray(ens.chain_ids) == chain)
    if not len(keep):
        return None
    start = ens.layout.residue_start
    atoms = np.concatenate([np.arange(start[r], start[r + 1]) for r in keep])
    seg = ens.segment_start[keep].copy()
    seg[0] = True
    return ProteinEnsemble(sequence=[ens.sequence[r] for r in keep], xyz=ens.xyz[:1, atoms], mask=ens.mask[:1, atoms],
                           segment_start=seg, chain_ids=[chain] * len(keep),
                           residue_numbers=[ens.residue_numbers[r] for r in keep], source=f"{source}:{chain}")


def _warning_kind(message: str) -> str:
    # "file.pdb.gz: dropped 3 residue(s) that ..." -> "dropped residue(s) that ..."
    body = message.split(": ", 1)[-1]
    return " ".join(w for w in body.split()[:6] if not w.strip("(),").isdigit())


def load_corpus(manifest, cache_dir, validation_fraction=0.05, fraction=1.0, seed=0, log=print):
    """Load a corpus split by cluster.

    Parameters
    ----------
    manifest : str
        ``manifest.csv``; file paths in it are relative to its directory.
    cache_dir : str
        Where parsed files are cached (created if missing).
    validation_fraction : float
        Fraction of clusters held out; one chain of each is validated on.
    fraction : float
        Fraction of the remaining clusters trained on (1 = all).
    seed : int

    Returns
    -------
    train : list of ProteinEnsemble
        One single-frame ensemble per training chain.
    weights : ndarray
        Sampling weight of each training chain: 1 / training chains of its cluster.
    val : list of ProteinEnsemble
        One chain per validation cluster.
    summary : dict
        Counts of files, clusters, chains and residues used, what was dropped
        and why, and the load warnings by kind; ``train_clusters``: the
        cluster of each training chain (for sharding; not metadata).

    Examples
    --------
    >>> train, w, val, summary = load_corpus('corpus/manifest.csv', 'runs/cache')  # doctest: +SKIP
    """
    rows = read_manifest(manifest)
    root = os.path.dirname(os.path.abspath(manifest))
    train_clusters, val_clusters = split_clusters([r.cluster for r in rows], validation_fraction, fraction, seed)
    by_file = defaultdict(list)
    for r in rows:
        if r.cluster in train_clusters or r.cluster in val_clusters:
            by_file[r.file].append(r)
    dropped, warning_kinds = Counter(), Counter()
    train, train_cluster, val, val_seen = [], [], [], set()
    files = sorted(by_file)
    log(f"corpus: reading {len(files)} files (parsed once, then cached in {cache_dir})")
    progress = Progress(len(files), "corpus: file", "file", write=log)
    for k, name in enumerate(files):
        if k:
            progress.update()  # the files before this one are read
        path = os.path.join(root, name)
        try:
            ens, messages = _parse_cached(path, cache_dir)
        except (InputError, MissingFileError, OSError, ValueError) as err:
            dropped["unreadable file"] += len(by_file[name])
            log(f"corpus: {name}: skipped, {str(err).splitlines()[0]}")
            continue
        warning_kinds.update(_warning_kind(m) for m in messages)
        for row in by_file[name]:
            chain = _chain(ens, row.chain, name)
            if chain is None:
                dropped["chain not in file"] += 1
            elif chain.n_residues < MIN_CHAIN_RESIDUES:
                dropped[f"fewer than {MIN_CHAIN_RESIDUES} residues after parsing"] += 1
            elif not chain.ca_mask.all():
                dropped["missing C-alpha atoms"] += 1
            elif len(torn_frames(chain)):
                dropped["broken covalent bonds"] += 1
            elif row.cluster in val_clusters:
                if row.cluster not in val_seen:
                    val_seen.add(row.cluster)
                    val.append(chain)
            else:
                train.append(chain)
                train_cluster.append(row.cluster)
    if files:
        progress.update()
    progress.close()
    size = Counter(train_cluster)
    weights = np.array([1.0 / size[c] for c in train_cluster])
    summary = {"manifest": os.path.basename(manifest), "chains_in_manifest": len(rows),
               "clusters_train": len(set(train_cluster)), "clusters_val": len(val_seen),
               "chains_train": len(train), "chains_val": len(val),
               "residues_train": int(sum(e.n_residues for e in train)), "dropped": dict(dropped),
               "load_warnings": dict(warning_kinds.most_common()), "train_clusters": train_cluster}
    log(f"corpus: {len(files)} files; {len(train)} training chains ({summary['residues_train']} residues, "
        f"{summary['clusters_train']} clusters), {len(val)} validation chains (one per held-out cluster); "
        f"dropped {sum(dropped.values())} chain(s): "
        + (", ".join(f"{k} x{v}" for k, v in dropped.most_common()) or "none"))
    return train, weights, val, summary
