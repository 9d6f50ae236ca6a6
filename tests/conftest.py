"""Shared test configuration. The broker fixtures come from jiexu's own pytest plugin (pytest11)."""

from collections.abc import Iterator

import pytest
import structlog

from broker.logging import stderr_logger_factory

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults: a CLI run in-process configures logging (level,
    renderer, stream) globally, and `capture_logs` would then miss events filtered by that level.

    One change to the defaults: events go to stderr (as it is at each write), as in every jiexu
    process, never to stdout. Agents running in the test's event loop log while a CLI command runs
    in a thread under `CliRunner`, which has swapped stdout for the command's JSON result.
    """
    structlog.reset_defaults()
    structlog.configure(logger_factory=stderr_logger_factory)
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
