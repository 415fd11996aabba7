"""Progress of the long stages of a training run: a tqdm bar on a terminal, plain lines elsewhere.

tqdm draws nothing when its output is not a terminal (``disable=None``):
a run whose output goes to a file or a pipe (a batch job, ``| tee``, a
captured notebook cell) used to print nothing between two validations,
e.g. 9 silent minutes at 5 s/step with ``validate_every: 100``. The same
:class:`Progress` object draws the bar on a terminal and otherwise writes
one plain line every :data:`LINE_EVERY_S` seconds, with the count, the
caller's fields (e.g. the loss), the time per item and the time left::

    step 120/3000  loss 3.2140  lr 2.0e-03  0.083 s/step  ETA 4 min 0 s

Training steps (:func:`~openmm_backmap.train.loop.train_task`) and the
parsing of data files (:mod:`.data`, :mod:`.corpus`) both use it.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

__all__ = ["Progress", "LINE_EVERY_S", "format_duration"]

#: Seconds between two plain progress lines when no bar is drawn (output not a terminal, or TQDM_DISABLE set).
LINE_EVERY_S = 10.0


def format_duration(seconds: float) -> str:
    """``'42 s'``, ``'6 min 5 s'``, ``'2 h 3 min'``.

    Examples
    --------
    >>> format_duration(365), format_duration(7390), format_duration(4.2)
    ('6 min 5 s', '2 h 3 min', '4 s')
    """
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class Progress:
    """A tqdm bar where one is drawn; otherwise a plain line every ``every_s`` seconds (see the module).

    Parameters
    ----------
    total : int
        Items (steps, files) to reach.
    label : str
        Start of a plain line and the bar's description, e.g. ``'step'`` or ``'corpus: file'``.
    unit : str
        Name of an item in the rate (``s/step``).
    initial : int
        Items already done (a resumed run).
    enabled : bool
        False: neither bar nor lines (ranks other than 0 of a distributed run).
    deadline_s : float, optional
        Seconds from now after which the work stops regardless (a time
        limit): the ETA is never later than that.
    every_s : float, optional
        Seconds between plain lines (default :data:`LINE_EVERY_S`).
    write : callable, optional
        Where plain lines go (default ``tqdm.write``, i.e. stdout); the data
        loaders pass their ``log``, silent on the other ranks of a distributed run.

    Examples
    --------
    >>> p = Progress(3, "step", "step", every_s=0)   # doctest: +SKIP
    >>> p.update(loss="1.23")                          # doctest: +SKIP
    step 1/3  loss 1.23  0.001 s/step  ETA 0 s
    """

    def __init__(self, total, label, unit, initial=0, enabled=True, deadline_s=None, every_s=None, write=None):
        self.total, self.label, self.unit = int(total), label, unit
        self.n = self.n0 = int(initial)
        self.bar = tqdm(total=self.total, initial=self.n, desc=label, unit=unit,
                        disable=None if enabled else True, dynamic_ncols=True)
        self.lines = bool(enabled and self.bar.disable)  # output is not a terminal: plain lines instead
        self.every_s = LINE_EVERY_S if every_s is None else float(every_s)
        self.t0 = self.t_line = time.monotonic()
        self.deadline = None if deadline_s is None else self.t0 + deadline_s
        self.fields = {}
        self.write = write or tqdm.write

    def update(self, n=1, **fields):
        """``n`` more items done; ``fields`` (already formatted strings) are shown with the count."""
        self.n += n
        self.fields.update(fields)
        if not self.lines:
            if fields:
                self.bar.set_postfix(self.fields, refresh=False)
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.t_line >= self.every_s:
            self.t_line = now
            self.write(self.line(now))

    def line(self, now=None) -> str:
        """The plain progress line: count, fields, time per item (since this object started) and ETA."""
        now = time.monotonic() if now is None else now
        done = self.n - self.n0
        text = f"{self.label} {self.n}/{self.total}" + "".join(f"  {k} {v}" for k, v in self.fields.items())
        if done > 0:
            rate = (now - self.t0) / done
            left = rate * max(0, self.total - self.n)
            if self.deadline is not None:
                left = min(left, max(0.0, self.deadline - now))
            text += f"  {rate:.3g} s/{self.unit}  ETA {format_duration(left)}"
        return text

    def close(self):
        self.bar.close()
