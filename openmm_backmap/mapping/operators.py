"""Resolution operators: mappings between levels of a coarse-graining hierarchy.

A backmapping model works on a chain of resolutions, finest first::

    aa (canonical heavy atoms) -> ca (one C-alpha per residue) -> ucgN (N beads)

Each arrow is a :class:`Mapping`: every coarse bead is a weighted average of
some fine particles (weights positive, summing to one per bead). A
:class:`Hierarchy` chains mappings and applies them all at once. Coordinates
are in nm throughout.

Built-in mappings
-----------------
* :func:`ca_mapping` picks the C-alpha of every residue out of the canonical
  heavy-atom layout (:func:`openmm_backmap.topology.atom_layout`).
* :func:`partition_mapping` groups C-alphas into N ultra-coarse (UCG) beads
  that stay spatially compact over a whole ensemble, in the spirit of
  AutoGrain: an exact dynamic programme over contiguous segments minimises the
  ensemble-averaged within-bead sum of squared deviations, then single
  residues may move to a bead where they lower that cost.
* Any mapping can be written and read as JSON (:meth:`Mapping.to_json`,
  :meth:`Mapping.from_json`), so user-defined mappings are plain files.

:func:`coarsen` and :func:`coarsen_files` (the ``openmm-backmap coarsen``
verb) turn an all-atom ensemble into CG coordinates, topologies and mapping
files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import numpy as np

from ..structure.templates import atom_layout
from ..structure.errors import InputError, MissingFileError, OutputExistsError

__all__ = [
    "Mapping",
    "Hierarchy",
    "LevelSpec",
    "ca_mapping",
    "partition_mapping",
    "partition_cost",
    "parse_levels",
    "build_hierarchy",
    "cg_topology",
    "coarsen",
    "coarsen_files",
]

MAPPING_FORMAT = "openmm-backmap-mapping"
HIERARCHY_FORMAT = "openmm-backmap-hierarchy"
LEVEL_FORMAT = "openmm-backmap-level"
#: Residue name of ultra-coarse beads in CG topologies.
BEAD_RESIDUE_NAME = "BEA"


def _as_int_array(values, what):
    try:
        arr = np.asarray(values)
    except Exception:  # pragma: no cover - ragged nonsense
        raise InputError(f"{what} must be a list of integers") from None
    if arr.ndim != 1:
        raise InputError(f"{what} must be a flat list of integers, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise InputError(f"{what} must hold integers, got {arr.dtype} values")
    return arr.astype(np.int64)


class Mapping:
    """A linear map from ``n_fine`` particles to ``n_beads`` beads.

    Bead ``b`` sits at ``sum_k weights[b][k] * x[members[b][k]]``. Weights are
    positive and normalised to sum to one per bead, so a bead is a weighted
    centroid (uniform weights: the plain centroid; a single member with weight
    one: a selection such as the C-alpha).

    Parameters
    ----------
    members : sequence of sequence of int
        Fine-particle indices of every bead (non-empty, no repeats within a bead).
    weights : sequence of sequence of float, optional
        Positive weights matching ``members`` (e.g. masses); normalised per
        bead. Default: uniform.
    n_fine : int, optional
        Number of fine particles (default: largest member index + 1).
    name : str
        Name of the coarse level (``'ca'``, ``'ucg12'`` ...).
    bead_names : sequence of str, optional
        Name of every bead (residue names at the C-alpha level, ``'B1'`` ...).
    fine_residues : sequence of int, optional
        Residue index of every fine particle, when each belongs to one residue
        (heavy-atom and C-alpha levels); enables :attr:`residues_per_bead`.

    Raises
    ------
    ValueError
        If an index is out of range or repeated in a bead, a bead is empty, or
        a weight is not positive and finite.

    Examples
    --------
    >>> import numpy as np
    >>> m = Mapping([[0, 1], [2]], n_fine=3, name='pairs')
    >>> m.n_beads, m.weights[0].tolist()
    (2, [0.5, 0.5])
    >>> x = np.array([[0., 0, 0], [2, 0, 0], [5, 5, 5]])
    >>> m.apply(x).tolist()
    [[1.0, 0.0, 0.0], [5.0, 5.0, 5.0]]
    >>> m.assignment().tolist()
    [0, 0, 1]
    """

    def __init__(self, members, weights=None, n_fine=None, name="", bead_names=None, fine_residues=None):
        members = list(members)
        mem = []
        for b, m in enumerate(members):
            arr = _as_int_array(m, f"members of bead {b}")
            if arr.size == 0:
                raise InputError(f"bead {b} has no members; every bead needs at least one fine particle")
            if np.unique(arr).size != arr.size:
                raise InputError(f"bead {b} lists a fine particle more than once: {arr.tolist()}")
            arr.setflags(write=False)
            mem.append(arr)
        if not mem:
            raise InputError("a mapping needs at least one bead")
        top = max(int(a.max()) for a in mem)
        low = min(int(a.min()) for a in mem)
        if n_fine is None:
            n_fine = top + 1
        n_fine = int(n_fine)
        if low < 0 or top >= n_fine:
            bad = next(b for b, a in enumerate(mem) if a.min() < 0 or a.max() >= n_fine)
            raise InputError(f"bead {bad} has member indices {mem[bad].tolist()} outside 0..{n_fine - 1} "
                             f"(n_fine = {n_fine})")
        if weights is None:
            wts = [np.full(a.size, 1.0 / a.size) for a in mem]
        else:
            weights = list(weights)
            if len(weights) != len(mem):
                raise InputError(f"weights has {len(weights)} entries but there are {len(mem)} beads")
            wts = []
            for b, (a, w) in enumerate(zip(mem, weights)):
                w = np.asarray(w, dtype=np.float64).reshape(-1)
                if w.size != a.size:
                    raise InputError(f"bead {b} has {a.size} members but {w.size} weights")
                if not np.all(np.isfinite(w)) or np.any(w <= 0):
                    raise InputError(f"bead {b} has weights {w.tolist()}; weights must be positive and finite")
                s = w.sum()
                if abs(s - 1.0) > 1e-12:
                    w = w / s
                wts.append(w)
        for w in wts:
            w.setflags(write=False)
        self.members = mem
        self.weights = wts
        self.n_fine = n_fine
        self.name = str(name)
        if bead_names is not None:
            bead_names = [str(s) for s in bead_names]
            if len(bead_names) != len(mem):
                raise InputError(f"bead_names has {len(bead_names)} entries but there are {len(mem)} beads")
        self.bead_names = bead_names
        if fine_residues is not None:
            fine_residues = _as_int_array(fine_residues, "fine_residues")
            if fine_residues.size != n_fine:
                raise InputError(f"fine_residues has {fine_residues.size} entries but n_fine = {n_fine}")
            fine_residues.setflags(write=False)
        self.fine_residues = fine_residues
        self._pad = None
        self._torch_cache = {}

    # --- basic properties --------------------------------------------------
    @property
    def n_beads(self) -> int:
        """Number of coarse beads."""
        return len(self.members)

    @property
    def bead_sizes(self) -> np.ndarray:
        """Number of fine particles in every bead, shape (n_beads,)."""
        return np.array([a.size for a in self.members], dtype=np.int64)

    @property
    def is_selection(self) -> bool:
        """True when every bead is exactly one fine particle (weight one)."""
        return all(a.size == 1 for a in self.members)

    @property
    def residues_per_bead(self):
        """Number of distinct residues in every bead, shape (n_beads,); ``None`` when ``fine_residues`` is unknown.

        Examples
        --------
        >>> ca_mapping(['GLY', 'ALA']).residues_per_bead.tolist()
        [1, 1]
        """
        if self.fine_residues is None:
            return None
        return np.array([np.unique(self.fine_residues[a]).size for a in self.members], dtype=np.int64)

    def matrix(self, dtype=np.float64) -> np.ndarray:
        """Dense weight matrix ``W`` of shape (n_beads, n_fine): ``beads = W @ x``.

        Examples
        --------
        >>> Mapping([[0, 1], [2]]).matrix().tolist()
        [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
        """
        w = np.zeros((self.n_beads, self.n_fine), dtype=dtype)
        for b, (a, wt) in enumerate(zip(self.members, self.weights)):
            w[b, a] = wt
        return w

    def assignment(self) -> np.ndarray:
        """Bead of every fine particle, shape (n_fine,); -1 for particles in no bead.

        Raises
        ------
        ValueError
            If a fine particle belongs to more than one bead (not a partition).

        Examples
        --------
        >>> ca_mapping(['GLY']).assignment().tolist()
        [-1, 0, -1, -1]
        """
        out = np.full(self.n_fine, -1, dtype=np.int64)
        for b, a in enumerate(self.members):
            clash = a[out[a] >= 0]
            if clash.size:
                raise InputError(f"fine particle {int(clash[0])} belongs to beads {int(out[clash[0]])} and {b}; "
                                 "this mapping is not a partition")
            out[a] = b
        return out

    # --- applying ----------------------------------------------------------
    def _padded(self):
        """(index, weight) arrays of shape (n_beads, max members); padding has weight 0."""
        if self._pad is None:
            m = max(a.size for a in self.members)
            idx = np.empty((self.n_beads, m), dtype=np.int64)
            wt = np.zeros((self.n_beads, m), dtype=np.float64)
            for b, (a, w) in enumerate(zip(self.members, self.weights)):
                idx[b, : a.size] = a
                idx[b, a.size:] = a[0]  # a member of the same bead: NaNs stay local
                wt[b, : a.size] = w
            self._pad = (idx, wt)
        return self._pad

    def apply(self, x):
        """Map fine coordinates to bead coordinates.

        Parameters
        ----------
        x : ndarray or torch.Tensor, shape (..., n_fine, 3)
            Any number of leading batch dimensions.

        Returns
        -------
        ndarray or torch.Tensor, shape (..., n_beads, 3)
            Same type (and, for floating input, dtype and device) as ``x``.
            Torch results are differentiable with respect to ``x``. A NaN in
            a fine particle only affects the beads it belongs to.

        Examples
        --------
        >>> import numpy as np, torch
        >>> m = Mapping([[0, 1]])
        >>> m.apply(np.ones((5, 2, 3))).shape
        (5, 1, 3)
        >>> x = torch.zeros(2, 3, requires_grad=True)
        >>> m.apply(x).sum().backward(); x.grad[:, 0].tolist()
        [0.5, 0.5]
        """
        shape = tuple(x.shape)
        if len(shape) < 2 or shape[-2] != self.n_fine:
            raise InputError(f"mapping {self.name or 'unnamed'!r} expects coordinates of shape (..., {self.n_fine}, "
                             f"3); got {shape}")
        idx, wt = self._padded()
        if _is_torch(x):
            import torch

            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            key = (str(x.device), dtype)
            cached = self._torch_cache.get(key)
            if cached is None:
                cached = (torch.as_tensor(idx, device=x.device),
                          torch.as_tensor(wt, dtype=dtype, device=x.device))
                self._torch_cache[key] = cached
            tidx, twt = cached
            x = x.to(dtype)
            if idx.shape[1] == 1:
                return x.index_select(-2, tidx[:, 0])
            g = x.index_select(-2, tidx.reshape(-1)).reshape(*shape[:-2], idx.shape[0], idx.shape[1], shape[-1])
            return (g * twt[..., None]).sum(-2)
        x = np.asarray(x)
        dtype = x.dtype if x.dtype.kind == "f" else np.float64
        x = x.astype(dtype, copy=False)
        if idx.shape[1] == 1:
            return x[..., idx[:, 0], :].copy()
        return np.einsum("...bmk,bm->...bk", x[..., idx, :], wt.astype(dtype))

    __call__ = apply

    # --- algebra -----------------------------------------------------------
    def compose(self, other: "Mapping") -> "Mapping":
        """The mapping ``self`` then ``other`` (self: A -> B, other: B -> C gives A -> C).

        Examples
        --------
        >>> aa_ca = ca_mapping(['GLY', 'ALA', 'GLY'])
        >>> ca_ucg = Mapping([[0, 1], [2]], name='ucg2')
        >>> aa_ucg = aa_ca.compose(ca_ucg)
        >>> aa_ucg.n_fine, aa_ucg.members[0].tolist(), aa_ucg.name
        (13, [1, 5], 'ucg2')
        """
        if other.n_fine != self.n_beads:
            raise InputError(f"cannot compose {self.name or 'a mapping'!r} ({self.n_beads} beads) with "
                             f"{other.name or 'a mapping'!r} (expects {other.n_fine} fine particles)")
        members, weights = [], []
        for a, w in zip(other.members, other.weights):
            idx = np.concatenate([self.members[b] for b in a])
            wt = np.concatenate([self.weights[b] * wb for b, wb in zip(a, w)])
            uniq, inv = np.unique(idx, return_inverse=True)
            acc = np.zeros(uniq.size)
            np.add.at(acc, inv, wt)
            # keep the members in order of first appearance (stable, readable files)
            first = np.full(uniq.size, idx.size)
            np.minimum.at(first, inv, np.arange(idx.size))
            order = np.argsort(first, kind="stable")
            members.append(uniq[order])
            weights.append(acc[order])
        return Mapping(members, weights, n_fine=self.n_fine, name=other.name, bead_names=other.bead_names,
                       fine_residues=self.fine_residues)

    @classmethod
    def identity(cls, n: int, name: str = "identity", fine_residues=None) -> "Mapping":
        """The mapping that keeps every one of ``n`` particles.

        Examples
        --------
        >>> Mapping.identity(3).members[2].tolist()
        [2]
        """
        return cls([[i] for i in range(int(n))], n_fine=int(n), name=name, fine_residues=fine_residues)

    # --- serialisation -----------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-compatible description (see :meth:`from_dict`)."""
        d = {
            "format": MAPPING_FORMAT,
            "version": 1,
            "name": self.name,
            "n_fine": self.n_fine,
            "n_beads": self.n_beads,
            "members": [a.tolist() for a in self.members],
            "weights": [w.tolist() for w in self.weights],
        }
        if self.bead_names is not None:
            d["bead_names"] = list(self.bead_names)
        if self.fine_residues is not None:
            d["fine_residues"] = self.fine_residues.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Mapping":
        """Build a mapping from :meth:`to_dict` output (validated).

        Required key: ``members`` (list of lists of fine indices). Optional:
        ``weights`` (positive, normalised per bead; default uniform),
        ``n_fine``, ``n_beads`` (checked), ``name``, ``bead_names``,
        ``fine_residues``. A level file written by :func:`coarsen_files`
        (``{"mapping": {...}, "hierarchy": {...}}``) is accepted too.

        Examples
        --------
        >>> Mapping.from_dict({'members': [[0], [1, 2]], 'n_fine': 3}).bead_sizes.tolist()
        [1, 2]
        >>> Mapping.from_dict({'members': [[0], []]})
        Traceback (most recent call last):
        ...
        ValueError: invalid mapping: bead 1 has no members; every bead needs at least one fine particle
        """
        if not isinstance(d, dict):
            raise InputError(f"a mapping must be a JSON object, got {type(d).__name__}")
        if "members" not in d and isinstance(d.get("mapping"), dict):
            d = d["mapping"]
        if "members" not in d:
            raise InputError("invalid mapping: missing key 'members' (a list with the fine-particle indices of "
                             "every bead)")
        members = d["members"]
        if not isinstance(members, list) or not all(isinstance(m, list) for m in members):
            raise InputError("invalid mapping: 'members' must be a list of lists of integers")
        try:
            m = cls(members, d.get("weights"), n_fine=d.get("n_fine"), name=d.get("name", ""),
                    bead_names=d.get("bead_names"), fine_residues=d.get("fine_residues"))
        except (ValueError, TypeError) as err:
            raise InputError(f"invalid mapping: {err}") from None
        if d.get("n_beads") is not None and int(d["n_beads"]) != m.n_beads:
            raise InputError(f"invalid mapping: n_beads is {d['n_beads']} but 'members' lists {m.n_beads} beads")
        return m

    def to_json(self, path) -> None:
        """Write :meth:`to_dict` as JSON to ``path``."""
        _write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path) -> "Mapping":
        """Read and validate a mapping written by :meth:`to_json` (or by hand).

        Examples
        --------
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), 'm.json')
        >>> Mapping([[0, 1], [2]], name='two').to_json(p)
        >>> Mapping.from_json(p).name
        'two'
        """
        d = _read_json(path)
        try:
            return cls.from_dict(d)
        except ValueError as err:
            raise InputError(f"{os.fspath(path)}: {err}") from None

    # --- misc --------------------------------------------------------------
    def __eq__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return (self.n_fine == other.n_fine and self.n_beads == other.n_beads and self.name == other.name
                and self.bead_names == other.bead_names
                and all(np.array_equal(a, b) for a, b in zip(self.members, other.members))
                and all(np.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(self.weights, other.weights))
                and ((self.fine_residues is None and other.fine_residues is None)
                     or (self.fine_residues is not None and other.fine_residues is not None
                         and np.array_equal(self.fine_residues, other.fine_residues))))

    __hash__ = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_torch_cache"] = {}
        return state

    def __repr__(self):
        return f"Mapping({self.name or 'unnamed'!r}, n_fine={self.n_fine}, n_beads={self.n_beads})"


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "index_select")


def _write_json(path, data):
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def _read_json(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"mapping file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


# --------------------------------------------------------------------------
# built-in mappings
# --------------------------------------------------------------------------
def ca_mapping(sequence, name: str = "ca") -> Mapping:
    """Heavy atoms (canonical layout) -> C-alpha: one bead per residue, weight one on its CA.

    Parameters
    ----------
    sequence : sequence of str
        Three-letter residue names.

    Returns
    -------
    Mapping
        ``n_fine`` is the number of heavy atoms of the canonical layout,
        ``bead_names`` the residue names.

    Examples
    --------
    >>> m = ca_mapping(['GLY', 'ALA'])
    >>> m.n_fine, m.n_beads, [a.tolist() for a in m.members], m.bead_names
    (9, 2, [[1], [5]], ['GLY', 'ALA'])
    """
    lay = atom_layout(sequence)
    return Mapping([[int(i)] for i in lay.ca_index], n_fine=lay.n_atoms, name=name,
                   bead_names=list(lay.sequence), fine_residues=lay.atom_residue)


def _frames_xyz(ca_xyz):
    x = np.asarray(ca_xyz, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(f"ca_xyz must have shape (frames, residues, 3) or (residues, 3); got {x.shape}")
    ok = np.isfinite(x).all(axis=(1, 2))
    if not ok.any():
        raise InputError("every frame of ca_xyz has missing (NaN) C-alpha coordinates; cannot partition")
    x = x[ok]
    return x - x.mean(axis=1, keepdims=True)  # per-frame centring: smaller numbers, same cost


def _unit_stats(x, units):
    """Per-unit coordinate sums (U, 3F), squared norms (U,) and counts (U,)."""
    f, r, _ = x.shape
    flat = x.transpose(1, 0, 2).reshape(r, 3 * f)  # residue-major: (R, 3F)
    if units is None:
        return flat.copy(), np.einsum("ij,ij->i", flat, flat), np.ones(r)
    s = np.stack([flat[a].sum(0) for a in units.members])
    q = np.array([np.einsum("ij,ij->", flat[a], flat[a]) for a in units.members])
    return s, q, units.bead_sizes.astype(np.float64)


def _contiguous_dp(s, q, n, k, breaks):
    """Exact minimum-SSD partition of units 0..U-1 into k contiguous runs; returns cut points (k+1,)."""
    u = s.shape[0]
    S = np.vstack([np.zeros((1, s.shape[1])), np.cumsum(s, axis=0)])
    Q = np.concatenate([[0.0], np.cumsum(q)])
    N = np.concatenate([[0.0], np.cumsum(n)])
    sq = np.einsum("ij,ij->i", S, S)
    gram = S @ S.T
    cnt = N[None, :] - N[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (Q[None, :] - Q[:, None]) - (sq[None, :] + sq[:, None] - 2 * gram) / cnt
    i, j = np.indices(cost.shape)
    invalid = j <= i
    if breaks is not None:
        # a run [i, j) may not contain a segment start strictly after its first unit
        P = np.concatenate([[0], np.cumsum(breaks.astype(np.int64))])  # P[m] = starts among units < m
        start_after = P[np.minimum(i + 1, u)]
        invalid |= (P[j] - start_after) > 0
    cost = np.where(invalid, np.inf, np.maximum(cost, 0.0))
    best = cost[0].copy()  # one run covering units [0, j)
    back = np.zeros((k, u + 1), dtype=np.int64)
    for level in range(1, k):
        tot = best[:, None] + cost
        arg = np.argmin(tot, axis=0)
        back[level] = arg
        best = tot[arg, np.arange(u + 1)]
    if not np.isfinite(best[u]):
        raise InputError("no contiguous partition satisfies the segment boundaries")
    cuts = [u]
    for level in range(k - 1, 0, -1):
        cuts.append(int(back[level, cuts[-1]]))
    cuts.append(0)
    return np.array(cuts[::-1], dtype=np.int64)


def _refine(s, q, n, assign, k, fragment_penalty=1.0, brk=None, unit_seg=None, max_rounds=None):
    """Move single units to other beads while that lowers cost + penalty * (number of sequence runs).

    Units are in sequence order; ``brk[p]`` marks chain starts/breaks (units
    on either side are never contiguous); with ``unit_seg`` a unit may only
    join a bead that already holds a unit of its segment. The penalty is
    ``fragment_penalty`` times the mean per-residue cost of the starting
    partition. Every bead stays non-empty.
    """
    u = s.shape[0]
    assign = assign.copy()
    ss = np.einsum("ij,ij->i", s, s)
    Sb = np.zeros((k, s.shape[1]))
    np.add.at(Sb, assign, s)
    nb = np.bincount(assign, weights=n, minlength=k).astype(np.float64)
    qb = np.bincount(assign, weights=q, minlength=k)
    total0 = float(np.sum(qb - np.einsum("ij,ij->i", Sb, Sb) / nb))
    lam = float(fragment_penalty) * total0 / float(n.sum())
    tol = 1e-9 * max(total0, 1e-300) + 1e-12
    rows = np.arange(u)
    brk = np.zeros(u, dtype=bool) if brk is None else np.asarray(brk, dtype=bool)
    has_left = np.concatenate([[False], ~brk[1:]])
    has_right = np.concatenate([~brk[1:], [False]])
    beads = np.arange(k)
    max_rounds = max_rounds or 4 * u + 10
    for _ in range(max_rounds):
        a = assign
        SS = np.einsum("ij,ij->i", Sb, Sb)
        G = s @ Sb.T  # (U, k)
        na = nb[a]
        rest = na - n
        with np.errstate(divide="ignore", invalid="ignore"):
            remove = SS[a] / na - (SS[a] - 2 * G[rows, a] + ss) / rest  # cost change from taking u out of a
            add = SS[None, :] / nb[None, :] - (SS[None, :] + 2 * G + ss[:, None]) / (nb[None, :] + n[:, None])
        delta = remove[:, None] + add
        if lam > 0:
            left = np.where(has_left, np.roll(a, 1), -1)
            right = np.where(has_right, np.roll(a, -1), -1)
            before = (has_left & (left != a)).astype(np.int64) + (has_right & (right != a))
            after = ((has_left[:, None] & (left[:, None] != beads[None, :])).astype(np.int64)
                     + (has_right[:, None] & (right[:, None] != beads[None, :])))
            delta = delta + lam * (after - before[:, None])
        delta[rows, a] = np.inf
        delta[rest <= 0] = np.inf  # would empty the bead
        if unit_seg is not None:
            bead_has = np.zeros((k, int(unit_seg.max()) + 1), dtype=bool)
            bead_has[a, unit_seg] = True
            delta[~bead_has[:, unit_seg].T] = np.inf
        best_b = np.argmin(delta, axis=1)
        best = delta[rows, best_b]
        cand = np.flatnonzero(best < -tol)
        if cand.size == 0:
            break
        cand = cand[np.argsort(best[cand], kind="stable")]
        touched = np.zeros(k, dtype=bool)
        near = np.zeros(u + 2, dtype=bool)  # units next to a moved one (their run counts changed)
        for c in cand:  # apply non-conflicting moves: their deltas stay exact
            src, dst = a[c], best_b[c]
            if touched[src] or touched[dst] or near[c + 1]:
                continue
            touched[src] = touched[dst] = True
            near[c:c + 3] = True
            Sb[src] -= s[c]
            Sb[dst] += s[c]
            nb[src] -= n[c]
            nb[dst] += n[c]
            assign[c] = dst
    return assign


def partition_cost(ca_xyz, mapping: Mapping) -> float:
    """Ensemble-averaged within-bead sum of squared deviations of C-alphas from their bead centroid (nm^2).

    Parameters
    ----------
    ca_xyz : ndarray, shape (F, R, 3) or (R, 3)
    mapping : Mapping
        A partition of the R C-alphas (uniform weights assumed).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0., 0, 0], [1, 0, 0], [10, 0, 0]])
    >>> partition_cost(x, Mapping([[0, 1], [2]]))
    0.5
    """
    x = _frames_xyz(ca_xyz)
    if mapping.n_fine != x.shape[1]:
        raise InputError(f"mapping has n_fine = {mapping.n_fine} but ca_xyz has {x.shape[1]} residues")
    total = 0.0
    for a in mapping.members:
        d = x[:, a] - x[:, a].mean(axis=1, keepdims=True)
        total += float(np.sum(d * d))
    return total / x.shape[0]


def partition_mapping(ca_xyz, n_beads, segment_start=None, *, refine=True, fragment_penalty=1.0, units=None,
                      name=None) -> Mapping:
    """Group C-alphas into ``n_beads`` spatially compact ultra-coarse beads.

    The cost of a bead is the sum of squared deviations of its C-alphas from
    the bead centroid, averaged over all frames of the ensemble; the partition
    minimises the total cost (a geometry-conserving partition in the spirit of
    AutoGrain: beads compact over the whole ensemble, no bead holding residues
    far apart in space).

    1. A dynamic programme finds the exact optimum over partitions into
       contiguous sequence segments (O(n_beads R^2) with prefix sums).
    2. If ``refine``, single residues then move to another bead whenever that
       lowers ``cost + penalty * (number of sequence fragments)`` (a
       k-means-like pass started from the optimum above), never emptying a
       bead. Beads may become non-contiguous where, e.g., the end of a strand
       packs against a bead formed by its partner strand; the fragment
       penalty keeps such moves to those that clearly pay off.

    The result is deterministic. Cost: O(n_beads R^2) time and O(R^2) memory
    for step 1 (about 0.7 s for 1000 residues and 200 frames).

    Parameters
    ----------
    ca_xyz : ndarray, shape (F, R, 3) or (R, 3)
        C-alpha coordinates (nm) of the ensemble; frames with NaN are ignored.
    n_beads : int
        Number of beads, 1 <= n_beads <= R (number of units when ``units`` is given).
    segment_start : array of bool, shape (R,), optional
        Chain starts and breaks. When there are at most ``n_beads`` segments,
        no bead spans a segment start in step 1 and residues only move to beads
        holding residues of their own segment in step 2; otherwise ignored.
    refine : bool
        Run step 2. ``refine=False`` gives contiguous beads.
    fragment_penalty : float
        Price of one extra sequence fragment in step 2, in units of the mean
        per-residue cost of the contiguous optimum (0: pure cost; large:
        practically contiguous).
    units : Mapping, optional
        A partition of the R C-alphas into finer beads; the result groups those
        beads (``n_fine = units.n_beads``, weights proportional to the residues
        in each unit, so composed with ``units`` it is the C-alpha centroid).
        Used for nested UCG levels.
    name : str, optional
        Level name (default ``'ucg{n_beads}'``).

    Returns
    -------
    Mapping
        ``bead_names`` are ``'B1'..'BN'``; beads are numbered by their first residue.

    Raises
    ------
    ValueError
        If ``n_beads`` is not in 1..R or the coordinates are unusable.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((2, 6, 3)); x[:, :, 0] = np.arange(6) * 0.38
    >>> m = partition_mapping(x, 2)
    >>> [a.tolist() for a in m.members], m.name
    ([[0, 1, 2], [3, 4, 5]], 'ucg2')
    """
    x = _frames_xyz(ca_xyz)
    n_res = x.shape[1]
    n_units = n_res if units is None else units.n_beads
    if units is not None:
        if units.n_fine != n_res:
            raise InputError(f"units maps {units.n_fine} C-alphas but ca_xyz has {n_res} residues")
        units.assignment()  # raises unless a partition
        if (units.assignment() < 0).any():
            raise InputError("units must put every residue in a bead")
    try:
        k = int(n_beads)
    except (TypeError, ValueError):
        raise InputError(f"n_beads must be an integer, got {n_beads!r}") from None
    if k != n_beads or k < 1 or k > n_units:
        what = "residues" if units is None else "finer beads"
        raise InputError(f"n_beads must be between 1 and the number of {what} ({n_units}); got {n_beads}")
    s, q, n = _unit_stats(x, units)

    # order units along the sequence (units may be non-contiguous after refinement)
    if units is None:
        unit_first = np.arange(n_units)
    else:
        unit_first = np.array([int(a.min()) for a in units.members])
    order = np.argsort(unit_first, kind="stable")
    first_res = unit_first[order]
    brk = np.zeros(n_units, dtype=bool)  # chain starts/breaks between consecutive (ordered) units
    hard = False
    unit_seg = None
    if segment_start is not None:
        seg_start = np.asarray(segment_start, dtype=bool).reshape(-1)
        if seg_start.size != n_res:
            raise InputError(f"segment_start has {seg_start.size} entries but there are {n_res} residues")
        res_seg = np.cumsum(seg_start | (np.arange(n_res) == 0)) - 1
        unit_seg = res_seg[first_res]
        brk[1:] = unit_seg[1:] != unit_seg[:-1]
        hard = 1 < int(unit_seg.max()) + 1 <= k
    so, qo, no = s[order], q[order], n[order]
    cuts = _contiguous_dp(so, qo, no, k, brk if hard else None)
    assign_o = np.repeat(np.arange(k), np.diff(cuts))
    if refine and k > 1:
        assign_o = _refine(so, qo, no, assign_o, k, fragment_penalty=fragment_penalty, brk=brk,
                           unit_seg=unit_seg if hard else None)
    assign = np.empty(n_units, dtype=np.int64)
    assign[order] = assign_o
    # renumber beads by their first residue
    first = np.full(k, np.iinfo(np.int64).max)
    np.minimum.at(first, assign, unit_first)
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(k)
    assign = rank[assign]
    members = [np.flatnonzero(assign == b) for b in range(k)]
    weights = None if units is None else [n[a] / n[a].sum() for a in members]
    fine_res = np.arange(n_res) if units is None else None
    return Mapping(members, weights, n_fine=n_units, name=name or f"ucg{k}",
                   bead_names=[f"B{b + 1}" for b in range(k)], fine_residues=fine_res)


# --------------------------------------------------------------------------
# hierarchies
# --------------------------------------------------------------------------
class Hierarchy:
    """A chain of mappings from the finest level to coarser and coarser ones.

    Parameters
    ----------
    mappings : sequence of Mapping
        ``mappings[i]`` maps level ``i`` to level ``i + 1``; consecutive sizes
        must match.
    levels : sequence of str, optional
        Names of the ``len(mappings) + 1`` levels (default ``'aa'`` and the
        mapping names).
    n_residues : int, optional
        Number of residues (default: inferred from the first mapping's
        ``fine_residues`` or from a level named ``'ca'``); needed for :attr:`rho`.

    Examples
    --------
    >>> import numpy as np
    >>> seq = ['GLY'] * 4
    >>> h = Hierarchy([ca_mapping(seq), Mapping([[0, 1], [2, 3]], name='ucg2')])
    >>> h.levels, h.sizes, h.rho
    (['aa', 'ca', 'ucg2'], [16, 4, 2], [0.25, 1.0, 2.0])
    >>> {k: v.shape for k, v in h.apply_all(np.zeros((3, 16, 3))).items()}
    {'aa': (3, 16, 3), 'ca': (3, 4, 3), 'ucg2': (3, 2, 3)}
    """

    def __init__(self, mappings, levels=None, n_residues=None):
        self.mappings = list(mappings)
        if not self.mappings:
            raise InputError("a hierarchy needs at least one mapping")
        for i, (a, b) in enumerate(zip(self.mappings[:-1], self.mappings[1:])):
            if a.n_beads != b.n_fine:
                raise InputError(f"mapping {i} ({a.name!r}) gives {a.n_beads} beads but mapping {i + 1} "
                                 f"({b.name!r}) expects {b.n_fine} fine particles")
        if levels is None:
            levels = ["aa"] + [m.name or f"level{i + 1}" for i, m in enumerate(self.mappings)]
        levels = [str(s) for s in levels]
        if len(levels) != len(self.mappings) + 1:
            raise InputError(f"{len(self.mappings)} mappings need {len(self.mappings) + 1} level names, "
                             f"got {len(levels)}")
        if len(set(levels)) != len(levels):
            raise InputError(f"level names must be unique, got {levels}")
        self.levels = levels
        if n_residues is None:
            first = self.mappings[0]
            if first.fine_residues is not None and first.fine_residues.size:
                n_residues = int(first.fine_residues.max()) + 1
            elif "ca" in levels:
                n_residues = self.sizes[levels.index("ca")]
        self.n_residues = None if n_residues is None else int(n_residues)
        self._composed = {}

    @property
    def sizes(self) -> list:
        """Number of particles at every level."""
        return [self.mappings[0].n_fine] + [m.n_beads for m in self.mappings]

    @property
    def rho(self):
        """Residues per bead at every level (average bead size); ``None`` when ``n_residues`` is unknown."""
        if self.n_residues is None:
            return None
        return [self.n_residues / s for s in self.sizes]

    def __len__(self):
        return len(self.levels)

    def index(self, level) -> int:
        """Position of ``level`` (a name or an int, negative counts from the end)."""
        if isinstance(level, str):
            if level not in self.levels:
                raise KeyError(f"no level {level!r}; levels are {self.levels}")
            return self.levels.index(level)
        i = int(level)
        if i < 0:
            i += len(self.levels)
        if not 0 <= i < len(self.levels):
            raise IndexError(f"level {level} out of range for {len(self.levels)} levels")
        return i

    def composed(self, level) -> Mapping:
        """The mapping from the finest level to ``level`` (name or index); level 0 is the identity."""
        i = self.index(level)
        if i not in self._composed:
            if i == 0:
                m = Mapping.identity(self.sizes[0], name=self.levels[0], fine_residues=self.mappings[0].fine_residues)
            else:
                m = self.mappings[0]
                for nxt in self.mappings[1:i]:
                    m = m.compose(nxt)
                m = Mapping(m.members, m.weights, n_fine=m.n_fine, name=self.levels[i], bead_names=m.bead_names,
                            fine_residues=m.fine_residues)
            self._composed[i] = m
        return self._composed[i]

    def apply_all(self, x) -> dict:
        """Coordinates at every level, ``{level: (..., size, 3)}``, from finest-level ``x`` (numpy or torch)."""
        out = {self.levels[0]: x}
        for name, m in zip(self.levels[1:], self.mappings):
            x = m.apply(x)
            out[name] = x
        return out

    def to_dict(self) -> dict:
        """JSON-compatible description (see :meth:`from_dict`)."""
        return {"format": HIERARCHY_FORMAT, "version": 1, "levels": list(self.levels), "sizes": self.sizes,
                "n_residues": self.n_residues, "rho": self.rho,
                "mappings": [m.to_dict() for m in self.mappings]}

    @classmethod
    def from_dict(cls, d: dict) -> "Hierarchy":
        """Build from :meth:`to_dict` output (a level file with a ``'hierarchy'`` key is accepted too)."""
        if not isinstance(d, dict):
            raise InputError(f"a hierarchy must be a JSON object, got {type(d).__name__}")
        if "mappings" not in d and isinstance(d.get("hierarchy"), dict):
            d = d["hierarchy"]
        if "mappings" not in d or not isinstance(d["mappings"], list):
            raise InputError("invalid hierarchy: missing list 'mappings'")
        maps = []
        for i, m in enumerate(d["mappings"]):
            try:
                maps.append(Mapping.from_dict(m))
            except ValueError as err:
                raise InputError(f"invalid hierarchy: mapping {i}: {err}") from None
        return cls(maps, levels=d.get("levels"), n_residues=d.get("n_residues"))

    def to_json(self, path) -> None:
        """Write :meth:`to_dict` as JSON to ``path``."""
        _write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path) -> "Hierarchy":
        """Read a hierarchy written by :meth:`to_json` or a level file from :func:`coarsen_files`."""
        d = _read_json(path)
        try:
            return cls.from_dict(d)
        except ValueError as err:
            raise InputError(f"{os.fspath(path)}: {err}") from None

    def __eq__(self, other):
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return (self.levels == other.levels and self.n_residues == other.n_residues
                and len(self.mappings) == len(other.mappings)
                and all(a == b for a, b in zip(self.mappings, other.mappings)))

    __hash__ = None

    def __repr__(self):
        return f"Hierarchy({' -> '.join(f'{n}({s})' for n, s in zip(self.levels, self.sizes))})"


@dataclass(frozen=True)
class LevelSpec:
    """One requested level: ``kind`` is ``'ca'``, ``'ucg'`` (with ``n_beads``) or ``'file'`` (with ``path``).

    Examples
    --------
    >>> LevelSpec('ucg12', 'ucg', 12)
    LevelSpec(name='ucg12', kind='ucg', n_beads=12, path=None)
    """

    name: str
    kind: str
    n_beads: int | None = None
    path: str | None = None


_UCG = re.compile(r"^ucg:?(\d+)$", re.IGNORECASE)


def parse_levels(spec) -> list:
    """Parse a level list such as ``"ca,ucg:12"``.

    Tokens: ``ca``; ``ucg:N`` (or ``ucgN``) for N ultra-coarse beads; a path
    ending in ``.json`` for a user-defined mapping from the previous level.
    Levels go from fine to coarse.

    Returns
    -------
    list of LevelSpec

    Examples
    --------
    >>> [(s.name, s.kind, s.n_beads) for s in parse_levels('ca,ucg:12')]
    [('ca', 'ca', None), ('ucg12', 'ucg', 12)]
    >>> parse_levels('ca,blob')
    Traceback (most recent call last):
    ...
    ValueError: unknown level 'blob' in 'ca,blob'; use ca, ucg:N (N beads) or a mapping .json file
    """
    tokens = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec)]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise InputError(f"no levels in {spec!r}; use e.g. 'ca' or 'ca,ucg:12'")
    out = []
    for t in tokens:
        m = _UCG.match(t)
        if t.lower() == "ca":
            out.append(LevelSpec("ca", "ca"))
        elif m:
            n = int(m.group(1))
            if n < 1:
                raise InputError(f"level {t!r}: the number of beads must be at least 1")
            out.append(LevelSpec(f"ucg{n}", "ucg", n))
        elif t.lower().endswith(".json"):
            name = os.path.basename(t)[: -len(".json")]
            name = re.sub(r"_mapping$", "", name) or "user"
            out.append(LevelSpec(name, "file", path=t))
        else:
            raise InputError(f"unknown level {t!r} in {spec!r}; use ca, ucg:N (N beads) or a mapping .json file")
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"level(s) {', '.join(dup)} requested more than once in {spec!r}")
    if "aa" in names:
        raise InputError("'aa' is the all-atom input level and cannot be requested")
    return out


def build_hierarchy(ensemble, levels="ca", **partition_options):
    """Build the hierarchy ``aa -> ... `` for ``levels`` on an ensemble.

    UCG levels are partitioned from the ensemble's C-alpha coordinates
    (:func:`partition_mapping`); a C-alpha level is inserted when a UCG or
    C-alpha-based file level is requested without it.

    Parameters
    ----------
    ensemble : ProteinEnsemble
    levels : str or list of LevelSpec
    **partition_options
        Passed to :func:`partition_mapping` (e.g. ``refine=False``).

    Returns
    -------
    hierarchy : Hierarchy
    requested : list of str
        Names of the requested levels (a subset of ``hierarchy.levels``).

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> h, req = build_hierarchy(load_ensemble('tests/data/trpcage.pdb'), 'ucg:4')  # doctest: +SKIP
    >>> h.levels, req  # doctest: +SKIP
    (['aa', 'ca', 'ucg4'], ['ucg4'])
    """
    specs = parse_levels(levels) if not (isinstance(levels, list) and levels and isinstance(levels[0], LevelSpec)) \
        else levels
    seq = list(ensemble.sequence)
    n_res, n_atoms = len(seq), ensemble.n_atoms
    maps, names = [], ["aa"]
    ca_done = False

    def add_ca():
        nonlocal ca_done
        maps.append(ca_mapping(seq))
        names.append("ca")
        ca_done = True

    ca_xyz = None
    for spec in specs:
        current = names[-1]
        size = maps[-1].n_beads if maps else n_atoms
        if spec.kind == "ca":
            if current != "aa":
                raise InputError("level 'ca' must come first (levels go from fine to coarse); "
                                 f"got it after {current!r}")
            add_ca()
        elif spec.kind == "ucg":
            if not ca_done:
                if current != "aa":
                    raise InputError(f"level {spec.name!r} needs C-alphas but follows {current!r}")
                add_ca()
                current, size = "ca", n_res
            if spec.n_beads > size:
                raise InputError(f"level {spec.name!r} asks for {spec.n_beads} beads but the previous level "
                                 f"{current!r} has only {size}; list levels from fine to coarse")
            if ca_xyz is None:
                ca_xyz = _required_coordinates(ensemble, ca_mapping(seq))
            if current == "ca":
                m = partition_mapping(ca_xyz, spec.n_beads, ensemble.segment_start, name=spec.name,
                                      **partition_options)
            else:
                # nested level: group the beads of the previous level (which must partition the residues)
                units = _level_on_ca(maps, names)
                m = partition_mapping(ca_xyz, spec.n_beads, ensemble.segment_start, units=units, name=spec.name,
                                      **partition_options)
            maps.append(m)
            names.append(spec.name)
        else:
            m = Mapping.from_json(spec.path)
            if m.n_fine == size:
                pass
            elif current == "aa" and m.n_fine == n_res:
                add_ca()
            else:
                raise InputError(f"mapping {spec.path} expects {m.n_fine} fine particles but the previous level "
                                 f"{current!r} has {size} (and the protein has {n_res} residues, "
                                 f"{n_atoms} heavy atoms)")
            maps.append(m)
            names.append(spec.name)
    return Hierarchy(maps, names, n_residues=n_res), [s.name for s in specs]


def _level_on_ca(maps, names):
    """The mapping from the C-alpha level to the last level (which must partition the residues)."""
    i = names.index("ca")  # maps[j] maps level names[j] to names[j + 1]
    m = maps[i]
    for nxt in maps[i + 1:]:
        m = m.compose(nxt)
    return m


def _required_coordinates(ensemble, mapping: Mapping) -> np.ndarray:
    """Map ``ensemble.xyz`` after checking that every atom ``mapping`` uses is present in every frame."""
    used = np.unique(np.concatenate(mapping.members))
    missing = ~ensemble.mask[:, used]
    if missing.any():
        bad_atoms = used[missing.any(0)]
        lay = ensemble.layout
        res = sorted({int(r) for r in lay.atom_residue[bad_atoms]})
        labels = [f"{ensemble.sequence[r]}{ensemble.residue_numbers[r]}" for r in res[:10]]
        more = f" and {len(res) - 10} more" if len(res) > 10 else ""
        atoms = sorted({lay.atom_names[a] for a in bad_atoms})
        raise InputError(f"{ensemble.source or 'input'}: level {mapping.name!r} needs atom(s) {', '.join(atoms)} "
                         f"that are missing in {int(missing.any(1).sum())} of {ensemble.n_frames} frame(s), in "
                         f"residue(s) {', '.join(labels)}{more}; drop those frames or complete the structure")
    return mapping.apply(ensemble.xyz)


# --------------------------------------------------------------------------
# CG topologies, coarsening
# --------------------------------------------------------------------------
def cg_topology(mapping: Mapping, sequence, level: str, segment_start=None, chain_ids=None, residue_numbers=None):
    """An mdtraj topology with one pseudo-atom per bead of ``mapping``.

    At the C-alpha level (``level == 'ca'``) every bead is a residue with its
    real name and one atom ``CA`` (carbon), bonded to the previous residue
    unless ``segment_start`` marks a chain start or break. Any other level
    gets residues ``BEA`` numbered 1..N with atoms ``B1``, ``B2`` ... (carbon)
    and no bonds.

    Parameters
    ----------
    mapping : Mapping
        Mapping into the level (only ``n_beads`` and ``bead_names`` are used).
    sequence : sequence of str
        Residue names of the protein.
    level : str
        Level name.
    segment_start, chain_ids, residue_numbers : optional
        Per-residue chain information (C-alpha level only).

    Returns
    -------
    mdtraj.Topology

    Examples
    --------
    >>> top = cg_topology(ca_mapping(['GLY', 'ALA', 'SER']), ['GLY', 'ALA', 'SER'], 'ca')
    >>> top.n_atoms, top.n_bonds, str(top.residue(1))
    (3, 2, 'ALA2')
    >>> top = cg_topology(Mapping([[0, 1], [2]]), ['GLY', 'ALA', 'SER'], 'ucg2')
    >>> [a.name for a in top.atoms], top.residue(0).name
    (['B1', 'B2'], 'BEA')
    """
    import mdtraj as md

    from ..structure.templates import _has_chain_id_arg

    n = mapping.n_beads
    top = md.Topology()
    if level == "ca":
        sequence = list(sequence)
        if len(sequence) != n:
            raise InputError(f"C-alpha level has {n} beads but the sequence has {len(sequence)} residues")
        chain_ids = list(chain_ids) if chain_ids is not None else ["A"] * n
        residue_numbers = list(residue_numbers) if residue_numbers is not None else list(range(1, n + 1))
        seg = np.zeros(n, dtype=bool) if segment_start is None else np.asarray(segment_start, dtype=bool)
        chain, prev = None, None
        for r in range(n):
            if chain is None or chain_ids[r] != chain_ids[r - 1]:
                chain = top.add_chain(chain_id=chain_ids[r]) if _has_chain_id_arg() else top.add_chain()
                prev = None
            res = top.add_residue(sequence[r], chain, resSeq=int(residue_numbers[r]))
            atom = top.add_atom("CA", md.element.carbon, res)
            if prev is not None and not seg[r]:
                top.add_bond(prev, atom)
            prev = atom
        return top
    chain = top.add_chain(chain_id="A") if _has_chain_id_arg() else top.add_chain()
    for b in range(n):
        res = top.add_residue(BEAD_RESIDUE_NAME, chain, resSeq=b + 1)
        name = mapping.bead_names[b] if mapping.bead_names is not None else f"B{b + 1}"
        if len(name) > 4:
            name = f"B{b + 1}" if b + 1 < 1000 else "BX"
        top.add_atom(name, md.element.carbon, res)
    return top


def _coarsen(ensemble, levels, hierarchy, partition_options):
    if hierarchy is None:
        hierarchy, requested = build_hierarchy(ensemble, "ca" if levels is None else levels, **partition_options)
    else:
        if hierarchy.sizes[0] != ensemble.n_atoms:
            raise InputError(f"the hierarchy starts from {hierarchy.sizes[0]} particles but "
                             f"{ensemble.source or 'the input'} has {ensemble.n_atoms} heavy atoms "
                             f"({ensemble.n_residues} residues); it was built for another protein")
        if levels is None:
            requested = list(hierarchy.levels[1:])
        else:
            tokens = levels.split(",") if isinstance(levels, str) else [getattr(t, "name", t) for t in levels]
            requested = [t.strip() for t in tokens if t.strip()]
        for name in requested:
            hierarchy.index(name)
    out = {}
    for name in requested:
        m = hierarchy.composed(name)
        coords = _required_coordinates(ensemble, m).astype(np.float32)
        top = cg_topology(m, ensemble.sequence, name, ensemble.segment_start, ensemble.chain_ids,
                          ensemble.residue_numbers)
        out[name] = (coords, top, m)
    return out, hierarchy


def coarsen(ensemble, levels=None, hierarchy=None, **partition_options) -> dict:
    """Map a heavy-atom ensemble to coarser levels.

    Parameters
    ----------
    ensemble : ProteinEnsemble
    levels : str, optional
        Level list for :func:`parse_levels` (``'ca'``, ``'ca,ucg:12'`` ...;
        default ``'ca'``). With ``hierarchy``, a comma-separated subset of its
        level names (default: all but the finest).
    hierarchy : Hierarchy, optional
        Use these mappings (e.g. a model's) instead of building them.
    **partition_options
        Passed to :func:`partition_mapping`.

    Returns
    -------
    dict
        ``{level: (coords, topology, mapping)}`` with coords (F, N, 3) float32
        nm, an mdtraj topology with one pseudo-atom per bead, and the mapping
        from the heavy atoms to that level.

    Raises
    ------
    ValueError
        If an atom a level needs is missing in some frame (the message names
        the residues).

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> out = coarsen(load_ensemble('tests/data/trpcage.pdb'), 'ca,ucg:4')  # doctest: +SKIP
    >>> out['ucg4'][0].shape  # doctest: +SKIP
    (1, 4, 3)
    """
    return _coarsen(ensemble, levels, hierarchy, partition_options)[0]


def coarsen_files(input, topology=None, levels="ca", out_prefix="coarse", model=None, stride=1, force=False,
                  verbose=True, **partition_options) -> dict:
    """Coarsen an all-atom structure or trajectory and write every level to files.

    For every level ``L`` this writes ``{out_prefix}_{L}.pdb`` (CG topology
    and first frame), ``{out_prefix}_{L}.dcd`` (all frames) and
    ``{out_prefix}_{L}_mapping.json`` (the mapping from the heavy atoms to
    ``L`` under ``"mapping"`` and the whole hierarchy under ``"hierarchy"``),
    and prints one summary line per level.

    Parameters
    ----------
    input : str or path
        Anything :func:`openmm_backmap.io.load_ensemble` reads.
    topology : str or path, optional
        Topology for trajectories.
    levels : str
        Level list (see :func:`parse_levels`); ignored when ``model`` is given.
    out_prefix : str or path
        Output prefix (directories are created).
    model : str or path, optional
        Use the mapping hierarchy embedded in this model file.
    stride : int
        Keep every ``stride``-th frame.
    force : bool
        Overwrite existing files.
    verbose : bool
        Print the summary lines.

    Returns
    -------
    dict
        ``{level: {'pdb': path, 'dcd': path, 'mapping': path, 'n_beads': int, 'rho': float}}``.

    Raises
    ------
    FileExistsError
        If an output exists and ``force`` is False.
    ValueError
        For unusable inputs or level lists.

    Examples
    --------
    >>> coarsen_files('tests/data/trpcage.pdb', levels='ca,ucg:4', out_prefix='/tmp/trp')  # doctest: +SKIP
    ca: 20 beads, rho 1.00 residues/bead, 1 frame(s) -> /tmp/trp_ca.pdb, /tmp/trp_ca.dcd, /tmp/trp_ca_mapping.json
    ...
    """
    from ..io.formats import load_ensemble

    hierarchy = None
    if model is not None:
        from ..model.backmapping import load_model

        m = load_model(model, device="cpu")
        hierarchy = getattr(m, "hierarchy", None)
        if hierarchy is None:
            raise InputError(f"model {os.fspath(model)!r} carries no mapping hierarchy; use --levels instead")
        if isinstance(hierarchy, str):  # a transferable model may store level specs instead of mappings
            levels, hierarchy = hierarchy, None
        elif isinstance(hierarchy, dict):
            hierarchy = Hierarchy.from_dict(hierarchy)
        else:
            levels = None
    prefix = os.fspath(out_prefix)
    if hierarchy is None:
        names = [s.name for s in parse_levels(levels)]  # fail early on bad level lists
    else:
        names = list(hierarchy.levels[1:])
    paths = {n: {"pdb": f"{prefix}_{n}.pdb", "dcd": f"{prefix}_{n}.dcd", "mapping": f"{prefix}_{n}_mapping.json"}
             for n in names}
    if not force:
        existing = [p for d in paths.values() for p in d.values() if os.path.exists(p)]
        if existing:
            raise OutputExistsError(f"{existing[0]} already exists"
                                  f"{f' (and {len(existing) - 1} more outputs)' if len(existing) > 1 else ''}; "
                                  "use --force (force=True) to overwrite")
    ens = load_ensemble(input, topology=topology, stride=stride)
    out, hierarchy = _coarsen(ens, levels, hierarchy, partition_options)
    parent = os.path.dirname(prefix)
    if parent:
        os.makedirs(parent, exist_ok=True)
    import mdtraj as md

    rho = dict(zip(hierarchy.levels, hierarchy.rho or [None] * len(hierarchy.levels)))
    result = {}
    hdict = hierarchy.to_dict()
    for name, (coords, top, mapping) in out.items():
        p = paths[name]
        traj = md.Trajectory(coords, top)
        traj[0].save_pdb(p["pdb"], force_overwrite=True)
        traj.save_dcd(p["dcd"], force_overwrite=True)
        _write_json(p["mapping"], {"format": LEVEL_FORMAT, "version": 1, "level": name, "source": os.fspath(input),
                                   "n_frames": int(coords.shape[0]), "mapping": mapping.to_dict(),
                                   "hierarchy": hdict})
        result[name] = dict(p, n_beads=mapping.n_beads, rho=rho[name])
        if verbose:
            r = f"{rho[name]:.2f}" if rho[name] is not None else "?"
            print(f"{name}: {mapping.n_beads} beads, rho {r} residues/bead, {coords.shape[0]} frame(s) -> "
                  f"{p['pdb']}, {p['dcd']}, {p['mapping']}")
    return result
