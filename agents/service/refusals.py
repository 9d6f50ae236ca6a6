"""What the service refuses to do for a person or an operator, before it commits anything.

Each message says what is wrong and what to do; the command line prints it as one ``error:`` line
(`agents.cli.errors`). No message holds personal data.
"""

from __future__ import annotations

from schemas.errors import JiexuError

__all__ = ["ApplicationRefused", "CaseNotFound", "OperationRefused", "Refused"]


class Refused(JiexuError):
    """The service will not do it; nothing was committed."""


class ApplicationRefused(Refused):
    """An application names an outgoing agency that cannot take it (not in the directory, this
    agency itself, no version of the contact letter in common)."""


class CaseNotFound(Refused):
    """No case with that id in this agency's store."""


class OperationRefused(Refused):
    """An operator's action (cancel, resolve) that the case's state does not allow."""
