"""Group commit in the SQLite adapters (`agents.db.sqlite.SqliteDb`): units of work that queue up
share one COMMIT, yet each one still commits before its ``async with`` returns, and a failing unit
rolls back alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from agents.db.sqlite import SqliteDb
from agents.store.sqlite import SqliteStore
from schemas.errors import TransientError


def _setup(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")


def _committed(path: Path) -> dict[str, int]:
    """What another connection (another process, a power cut later) sees."""
    other = sqlite3.connect(path)
    try:
        return dict(other.execute("SELECT k, v FROM t").fetchall())
    finally:
        other.close()


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    opened = await SqliteDb.open(tmp_path / "g.db", setup=_setup, name="test")
    try:
        yield opened
    finally:
        await opened.close()


class Boom(Exception):
    pass


async def test_queued_units_share_commits_and_each_is_durable_when_it_returns(
    db: SqliteDb, tmp_path: Path
) -> None:
    seen_after_exit: dict[str, bool] = {}

    async def unit(i: int) -> None:
        async with db.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"k{i}", i))
        # Returned: committed, visible to any other connection.
        seen_after_exit[f"k{i}"] = f"k{i}" in _committed(tmp_path / "g.db")

    await asyncio.gather(*(unit(i) for i in range(50)))
    assert all(seen_after_exit.values()) and len(seen_after_exit) == 50
    assert len(_committed(tmp_path / "g.db")) == 50
    assert db.units == 50
    assert db.commits < 50  # they queued behind each other's commits and shared them


async def test_a_failing_unit_rolls_back_alone(db: SqliteDb, tmp_path: Path) -> None:
    async def unit(i: int) -> None:
        async with db.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"k{i}", i))
            if i % 3 == 0:
                raise Boom(i)

    results = await asyncio.gather(*(unit(i) for i in range(30)), return_exceptions=True)
    failed = {i for i, r in enumerate(results) if isinstance(r, Boom)}
    assert failed == {i for i in range(30) if i % 3 == 0}
    assert set(_committed(tmp_path / "g.db")) == {f"k{i}" for i in range(30) if i % 3}


async def test_a_unit_sees_the_units_before_it_in_its_group(db: SqliteDb) -> None:
    async def increment() -> None:
        async with db.transaction() as conn:
            row = conn.execute("SELECT v FROM t WHERE k = 'n'").fetchall()
            conn.execute("INSERT OR REPLACE INTO t (k, v) VALUES ('n', ?)", ((row[0][0] if row else 0) + 1,))

    await asyncio.gather(*(increment() for _ in range(40)))
    assert db.read("SELECT v FROM t WHERE k = 'n'") == [(40,)]


async def test_reads_outside_a_unit_see_committed_data_only(db: SqliteDb) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def slow_unit() -> None:
        async with db.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES ('slow', 1)")
            inside.set()
            await release.wait()

    task = asyncio.create_task(slow_unit())
    await inside.wait()
    assert db.read("SELECT k FROM t") == []  # written, not committed
    release.set()
    await task
    assert db.read("SELECT k FROM t") == [("slow",)]


async def test_a_failed_commit_fails_every_unit_of_the_group(db: SqliteDb, tmp_path: Path) -> None:
    real = db._writer

    class FailingCommit:
        """The writer connection, except that COMMIT fails (a disk error, say)."""

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return real.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    db._writer = FailingCommit()  # type: ignore[assignment]

    async def unit(i: int) -> None:
        async with db.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"k{i}", i))

    results = await asyncio.gather(*(unit(i) for i in range(10)), return_exceptions=True)
    assert all(isinstance(r, TransientError) for r in results), results
    db._writer = real
    assert _committed(tmp_path / "g.db") == {}
    async with db.transaction() as conn:  # the writer is usable again
        conn.execute("INSERT INTO t (k, v) VALUES ('after', 1)")
    assert _committed(tmp_path / "g.db") == {"after": 1}


async def test_a_cancelled_waiter_does_not_leave_the_group_uncommitted(
    db: SqliteDb, tmp_path: Path
) -> None:
    holding = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES ('first', 1)")
            holding.set()
            await release.wait()

    async def second() -> None:
        async with db.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES ('second', 2)")

    one = asyncio.create_task(first())
    await holding.wait()
    two = asyncio.create_task(second())
    await asyncio.sleep(0.01)  # `second` waits for the writer; `first` will leave it the commit
    release.set()
    await asyncio.sleep(0)
    two.cancel()
    await asyncio.wait_for(one, 5)
    with pytest.raises(asyncio.CancelledError):
        await two
    assert "first" in _committed(tmp_path / "g.db")


async def test_two_processes_worth_of_writers_on_one_file(tmp_path: Path) -> None:
    """Two stores on one file (an agent and `jiexu apply`): BEGIN IMMEDIATE waits for the other
    writer on the worker thread, and both stores' units commit."""
    path = tmp_path / "s.db"
    a, b = await SqliteStore.open(path), await SqliteStore.open(path)
    try:
        ids = [uuid4() for _ in range(40)]

        async def deliver(store: SqliteStore, message_id: Any) -> bool:
            async with store.transaction() as tx:
                return await tx.record_inbox("agent", message_id, sender="441900")

        results = await asyncio.gather(
            *(deliver(a if i % 2 else b, mid) for i, mid in enumerate(ids)),
            *(deliver(b if i % 2 else a, mid) for i, mid in enumerate(ids)),
        )
        assert sum(results) == 40
        for mid in ids:
            assert await a.has_handled("agent", mid, sender="441900") and await b.has_handled(
                "agent", mid, sender="441900"
            )
    finally:
        await a.close()
        await b.close()
