"""Resolution operators: mappings between levels of a coarse-graining hierarchy.

A backmapping model works on a chain of resolutions, finest first::

    aa (canonical heavy atoms) -> ca (one C-alpha per residue) -> ucgN (N beads)

Each arrow is a :class:`Mapping`: every coarse bead is a weighted average of
some fine particles (weights positive, summing to one per bead). A
:class:`Hierarchy` chains mappings and applies them all at once. Coordinates
are in nm throughout. :func:`ca_mapping` picks the C-alpha of every residue
out of the canonical heavy-atom layout; both classes read and write JSON, so
user-defined mappings are plain files (models embed the same format).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..structure import InputError, MissingFileError, atom_layout

__all__ = ["Mapping", "ca_mapping"]

MAPPING_FORMAT = "openmm-backmap-mapping"


def _as_int_array(values, what):
    try:
        arr = np.asarray(values)
    except ValueError:  # ragged nested lists
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

    def apply_present(self, x, mask):
        """Map fine coordinates where some fine particles are missing: each bead averages its present members.

        The weights of the present members are renormalised (what martinize2
        does with atoms that have no position); a bead with no member present
        is NaN.

        Parameters
        ----------
        x : ndarray, shape (..., n_fine, 3)
        mask : ndarray of bool, shape (..., n_fine)
            True where a fine particle is present.

        Returns
        -------
        ndarray, shape (..., n_beads, 3)

        Examples
        --------
        >>> import numpy as np
        >>> m = Mapping([[0, 1], [2]])
        >>> x = np.array([[0., 0, 0], [2, 0, 0], [np.nan, 0, 0]])
        >>> m.apply_present(x, np.isfinite(x).all(-1)).tolist()
        [[1.0, 0.0, 0.0], [nan, nan, nan]]
        """
        x = np.asarray(x, dtype=np.float64)
        mask = np.asarray(mask, dtype=bool)
        if x.shape[-2:] != (self.n_fine, 3) or mask.shape != x.shape[:-1]:
            raise InputError(f"mapping {self.name or 'unnamed'!r} expects coordinates (..., {self.n_fine}, 3) and a "
                             f"mask (..., {self.n_fine}); got {x.shape} and {mask.shape}")
        idx, wt = self._padded()
        w = wt * mask[..., idx]
        total = w.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.einsum("...bmk,...bm->...bk", np.where(mask[..., None], x, 0.0)[..., idx, :], w) / total[..., None]
        return out

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
        ``fine_residues``. A level file (:meth:`Hierarchy.to_level_json`) is
        accepted too.

        Examples
        --------
        >>> Mapping.from_dict({'members': [[0], [1, 2]], 'n_fine': 3}).bead_sizes.tolist()
        [1, 2]
        >>> try:
        ...     Mapping.from_dict({'members': [[0], []]})
        ... except ValueError as err:
        ...     print(err)
        invalid mapping: bead 1 has no members; every bead needs at least one fine particle
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
        write_json(path, self.to_dict())

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
        return read_json(path, cls.from_dict)

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


def write_json(path, data):
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def read_json(path, parse):
    """``parse(data)`` of the JSON file at ``path``; every user error names the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"mapping file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    try:
        return parse(data)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


def ca_mapping(sequence) -> Mapping:
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
    return Mapping([[int(i)] for i in lay.ca_index], n_fine=lay.n_atoms, name="ca",
                   bead_names=list(lay.sequence), fine_residues=lay.atom_residue)
