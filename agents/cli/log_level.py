"""``--log-level``, the same option on every long-running command."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer

__all__ = ["LOG_LEVEL_INFO", "LOG_LEVEL_WARNING", "LogLevel", "log_level_option"]


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def log_level_option(default: LogLevel) -> Any:
    """The ``--log-level`` option (any case: ``debug`` or ``DEBUG``), defaulting to ``default``."""
    return typer.Option(
        default,
        "--log-level",
        case_sensitive=False,
        help="the least severe log events written to stderr",
    )


LOG_LEVEL_INFO = log_level_option(LogLevel.INFO)
"""``--log-level``, default INFO: the agent and the reconciler."""
LOG_LEVEL_WARNING = log_level_option(LogLevel.WARNING)
"""``--log-level``, default WARNING: the demo, whose summary is for a person at a terminal."""
