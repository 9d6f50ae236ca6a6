"""Running services until SIGTERM or SIGINT, then stopping (draining) them in order."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import Protocol

import structlog

__all__ = ["Stoppable", "run_until_signal"]

# The consumer's logger, as before this moved out of `broker.consumer`: log levels set for it still
# apply.
log = structlog.get_logger("jiexu.broker.consumer")


class Stoppable(Protocol):
    async def stop(self) -> None: ...


async def run_until_signal(
    *services: Stoppable,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    stop_event: asyncio.Event | None = None,
) -> signal.Signals | None:
    """Wait for SIGTERM or SIGINT (or ``stop_event``), then stop ``services`` in order.

    Returns the signal received (None when ``stop_event`` ended the wait). Each service's ``stop``
    is its drain (for a `broker.consumer.Consumer`: finish in-flight deliveries, then close).
    """
    loop = asyncio.get_running_loop()
    event = stop_event or asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        event.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await event.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    got = received[0] if received else None
    log.info("stopping", signal=got.name if got else None)
    for service in services:
        await service.stop()
    return got
