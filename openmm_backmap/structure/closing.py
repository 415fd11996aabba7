"""One lifecycle for objects that hold an open output: ``with`` support, a safe finaliser, and SIGTERM handled
like Ctrl-C while a long run writes (:func:`sigterm_as_interrupt`)."""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings

__all__ = ["Closeable", "Terminated", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived inside :func:`sigterm_as_interrupt`: raised like Ctrl-C's ``KeyboardInterrupt``, so that the
    same clean-up runs (a failed or interrupted run leaves no partial output)."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within this block SIGTERM (``kill``, a batch system's time limit) raises :class:`Terminated` in the main
    thread instead of ending the process without clean-up; the previous handler is restored after.

    Only Python's default disposition is replaced: a handler the program installed itself, or SIGTERM ignored,
    stays as it is, and outside the main thread (where signals cannot be handled) nothing changes.

    Examples
    --------
    >>> import os, signal
    >>> try:
    ...     with sigterm_as_interrupt():
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ... except KeyboardInterrupt as err:
    ...     print(type(err).__name__, err)
    Terminated terminated (SIGTERM)
    >>> signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    True
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Closeable:
    """Mixin: ``with obj:`` closes on exit, and a forgotten object is closed when collected.

    Subclasses define ``close()`` (idempotent) and set ``self._closed``.
    The finaliser never raises: an error while closing becomes a
    ``RuntimeWarning`` that names the object.

    Examples
    --------
    >>> class Out(Closeable):
    ...     _closed = False
    ...     def close(self):
    ...         self._closed = True
    >>> with Out() as out:
    ...     pass
    >>> out._closed
    True
    """

    _closed = True  # until a subclass has opened something, there is nothing to close

    def close(self):  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        if getattr(self, "_closed", True):
            return
        try:
            self.close()
        except Exception as err:  # noqa: BLE001 - never raise from a finaliser
            warnings.warn(f"{type(self).__name__}: error while closing: {err}", RuntimeWarning, stacklevel=2)
