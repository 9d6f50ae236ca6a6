"""A real PostgreSQL for tests, isolated per test in a fresh schema.

``JIEXU_TEST_POSTGRES_URL`` names the server (default ``postgresql://postgres@127.0.0.1:5432/test``).
When it cannot be reached the test is skipped with the reason, unless ``CI`` is set: then it fails,
because CI must prove the PostgreSQL adapters. The `postgres_schema` fixture
(tests/integration/conftest.py) gives each test its schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

__all__ = ["PostgresSchema", "fresh_database", "fresh_schema", "postgres_url"]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("JIEXU_TEST_POSTGRES_URL") or DEFAULT_URL


@dataclass(frozen=True)
class PostgresSchema:
    """A schema made for one test, dropped (with everything in it) afterwards."""

    url: str
    name: str


async def _reachable(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def fresh_schema() -> AsyncIterator[PostgresSchema]:
    """A fresh schema on the test server, dropped afterwards; skips (fails on CI) if unreachable."""
    url = postgres_url()
    problem = await _reachable(url)
    if problem is not None:
        message = f"PostgreSQL at {url} is unreachable ({problem}); set JIEXU_TEST_POSTGRES_URL"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"jiexu_test_{uuid.uuid4().hex[:16]}"
    try:
        yield PostgresSchema(url=url, name=name)
    finally:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await conn.close()


async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """The URL of a fresh database on the test server (for processes whose schema names are
    fixed, such as ``agency_<code>`` or ``reconcile_000000``), dropped afterwards with its
    connections; skips (fails on CI) when the server is unreachable."""
    from yarl import URL

    server = postgres_url()
    problem = await _reachable(server)
    if problem is not None:
        message = f"PostgreSQL at {server} is unreachable ({problem}); set JIEXU_TEST_POSTGRES_URL"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield str(URL(server).with_path(f"/{name}"))
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()
