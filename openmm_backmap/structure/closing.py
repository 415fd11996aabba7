"""One lifecycle for objects that hold an open output: ``with`` support and a safe finaliser."""

from __future__ import annotations

import warnings

__all__ = ["Closeable"]


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
