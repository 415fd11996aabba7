"""Hierarchies: the chain of mappings from all atoms down to the coarsest beads, with JSON I/O."""

from __future__ import annotations

import os


from ..structure import InputError
from .operators import Mapping, read_json, write_json

__all__ = ["Hierarchy"]

HIERARCHY_FORMAT = "openmm-backmap-hierarchy"
LEVEL_FORMAT = "openmm-backmap-level"


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
    >>> from openmm_backmap.mapping import ca_mapping
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
            if first.fine_residues is not None:
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
        write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path) -> "Hierarchy":
        """Read a hierarchy written by :meth:`to_json` or :meth:`to_level_json`."""
        return read_json(path, cls.from_dict)

    def to_level_json(self, path, level, source, n_frames) -> None:
        """Write the level file of ``level``: its mapping from the finest level and the whole hierarchy.

        :meth:`Mapping.from_json` reads the mapping back, :meth:`from_json` the hierarchy.

        Examples
        --------
        >>> import tempfile, os
        >>> from openmm_backmap.mapping import ca_mapping
        >>> h = Hierarchy([ca_mapping(['GLY', 'ALA'])])
        >>> p = os.path.join(tempfile.mkdtemp(), 'ca_mapping.json')
        >>> h.to_level_json(p, 'ca', source='in.pdb', n_frames=1)
        >>> Mapping.from_json(p) == h.composed('ca'), Hierarchy.from_json(p) == h
        (True, True)
        """
        write_json(path, {"format": LEVEL_FORMAT, "version": 1, "level": level, "source": os.fspath(source),
                           "n_frames": int(n_frames), "mapping": self.composed(level).to_dict(),
                           "hierarchy": self.to_dict()})

    def __eq__(self, other):
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return (self.levels == other.levels and self.n_residues == other.n_residues
                and len(self.mappings) == len(other.mappings)
                and all(a == b for a, b in zip(self.mappings, other.mappings)))

    __hash__ = None

    def __repr__(self):
        return f"Hierarchy({' -> '.join(f'{n}({s})' for n, s in zip(self.levels, self.sizes))})"
