"""Files followed on disk for a change that has settled: the agency directory and its signature
(`agents.service.directory_watch`), the metrics endpoint's certificate files
(`agents.service.metrics_tls`).

A file is compared by modification time, size and inode (a file renamed over it is a change too).
A change counts once it has stayed the same for one more look, so that files copied one after the
other (a directory and its ``.sig``, a certificate and its key) are taken together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["SettledChange"]

_Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(paths: Sequence[Path]) -> _Stamp:
    """Modification time, size and inode of each file (None: absent)."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(stamps)


class SettledChange:
    """Whether ``paths`` changed since they were last taken, and have stayed so since the last look."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._taken = _stamp(self.paths)  # taken now: a change from here on is seen later
        self._pending: _Stamp | None = None

    def settled(self) -> bool:
        """True when the files differ from what was taken and look as they did at the last call
        (the caller then reads them and calls `take`)."""
        stamp = _stamp(self.paths)
        if stamp == self._taken:
            self._pending = None
            return False
        if stamp != self._pending:
            self._pending = stamp  # still being written, perhaps: look again next time
            return False
        return True

    def take(self) -> None:
        """The files as they are now are the ones in force (read them after this call)."""
        self._taken, self._pending = _stamp(self.paths), None
