"""Owner-only directories for secrets (keys, broker credentials): each missing level is made 0700.

The same rule as `agents.db.files` (which the transport may not import): directories this code
creates are 0700 whatever the umask; existing ones are the operator's and left as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_dir"]


def private_dir(path: Path) -> Path:
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)
    return path
