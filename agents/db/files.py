"""Files with personal data or secrets: owner-only (0600) files in owner-only (0700) directories.

Stores, ledgers, the reconciliation report and certificates hold ID numbers, names, balances and
account numbers. Every directory this module creates is 0700 (each missing level); every file it
prepares is 0600 before anything is written to it. SQLite creates its ``-wal`` and ``-shm`` files
with the mode of the database file, so they are 0600 too. Existing directories are left as they
are (they may be the operator's, e.g. ``/srv``); existing database files are tightened to 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents, each 0700 (whatever the umask); returns `path`."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process: not ours to change
        os.chmod(directory, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make sure `path` exists and is 0600 (created empty if missing), in a private directory."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            os.chmod(sidecar, FILE_MODE)
    return path
