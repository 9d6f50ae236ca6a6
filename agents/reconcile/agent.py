"""Kept for `agents.tools.demo` until it imports these from `agents.reconcile`: nothing else lives here.

The reconciler is `agents.reconcile.plan` (pure), `agents.reconcile.service` and
`agents.reconcile.process`.
"""

from __future__ import annotations

from agents.reconcile.process import run_reconciler
from agents.reconcile.settings import ReconcilerSettings

__all__ = ["ReconcilerSettings", "run_reconciler"]
