"""Shared test configuration. The broker fixtures come from jiexu's own pytest plugin (pytest11)."""

from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults: a CLI run in-process configures logging (level,
    renderer, stream) globally, and `capture_logs` would then miss events filtered by that level."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
