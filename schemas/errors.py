"""The project's exceptions, split by what the caller should do with them."""

from __future__ import annotations

__all__ = ["ContractError", "DomainRuleViolation", "JiexuError", "TransientError"]


class JiexuError(Exception):
    """Root of every error jiexu raises on purpose."""


class ContractError(JiexuError):
    """A message breaks the wire contract: dead-letter it, never retry.

    ``reason`` is a short machine-readable code (``invalid_json``, ``invalid_envelope``,
    ``unknown_type``, ``unknown_version``, ``invalid_payload``, ``bad_signature``, ...);
    ``detail`` says exactly what is wrong, naming the field.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TransientError(JiexuError):
    """A failure that may pass (a database busy, a broker reconnecting): retry with backoff."""


class DomainRuleViolation(JiexuError):
    """A business rule forbids this: answer with a rejection carrying ``reason_code``."""

    def __init__(self, reason_code: str, text: str) -> None:
        super().__init__(f"{reason_code}: {text}")
        self.reason_code = reason_code
        self.text = text
