"""One warning per outage: for loops that fail the same way every round while a broker is away.

A relay publishing every pending row once a second would otherwise log one warning per row per
second (the issue counted 4,509 in one node's 81 s absence). `Outage` logs the first failure of
an outage and the recovery, and counts what happened in between.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

__all__ = ["Outage"]


class Outage:
    """``failed`` on every failure, ``succeeded`` on every success; logs only the transitions.

    ``event`` names the warnings: ``{event}`` when an outage starts (with the first error), and
    ``{event}_recovered`` when it ends (with how long it lasted and how many failures it saw).
    """

    def __init__(self, event: str, logger: Any | None = None) -> None:
        self.event = event
        self._log = logger or structlog.get_logger("jiexu.broker.outage")
        self.since: float | None = None
        self.failures = 0
        self.outages = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, count: int = 1, **fields: Any) -> None:
        self.failures += count
        if self.since is None:
            self.since = time.monotonic()
            self.outages += 1
            self._log.warning(self.event, failures=count, **fields)

    def succeeded(self, **fields: Any) -> None:
        if self.since is None:
            return
        self._log.warning(
            f"{self.event}_recovered",
            failures=self.failures,
            lasted_s=round(time.monotonic() - self.since, 2),
            **fields,
        )
        self.since = None
        self.failures = 0
