"""Lets ``pytest docs/examples`` import the contract suite from the repository's ``tests``
package, which is not installed (drop this once the suite is imported from `agents.testing`)."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
