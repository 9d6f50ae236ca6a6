"""How a consumer (`broker.consumer.Consumer`) is tuned: prefetch, body limit, retries, draining."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_RETRY_DELAYS_MS", "ConsumerSettings"]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_RETRY_DELAYS_MS: tuple[int, ...] = (1000, 5000, 30000)  # = broker.topology's default


@dataclass(frozen=True)
class ConsumerSettings:
    prefetch: int = 50
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    retry_delays_ms: tuple[int, ...] = DEFAULT_RETRY_DELAYS_MS
    """Must be delays the topology has retry queues for (`TopologySpec.retry_delays_ms`)."""
    max_attempts: int | None = None
    """Handler attempts before ``handler_failed``; default: one more than there are delays."""
    user_prefix: str = ""
    """`TopologySpec.user_prefix`: broker users are ``{prefix}agency-{code}``."""
    requeue_pause_s: float = 1.0
    """Pause before requeueing a delivery whose retry or dead-letter copy could not be published."""
    drain_timeout_s: float = 30.0
    verify_in_thread: bool = False
    """Run the Ed25519 step of signature verification on a worker thread (libsodium releases
    the GIL for it) while the event loop goes on with other deliveries; the check and its place in
    the pipeline are the same either way. Worth it only with a core to spare: on a host whose
    cores the broker and the loop already fill, the hand-offs cost more than they free."""

    @property
    def attempts(self) -> int:
        return self.max_attempts if self.max_attempts is not None else len(self.retry_delays_ms) + 1
