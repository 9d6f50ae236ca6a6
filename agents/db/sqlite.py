"""`SqliteDb`: one SQLite file for an asyncio process, with group commit.

The cost of a SQLite transaction on a local file is its commit: ``synchronous=FULL`` fsyncs the WAL
(a millisecond or more), while a statement on a page already in memory takes microseconds. So:

* **Statements run inline**, on the event loop's thread. A unit of work holds the write lock for
  its whole body (``BEGIN IMMEDIATE`` was taken first), so none of them can wait on another
  process; handing each to a worker thread would cost more than running it.
* **Taking the lock and committing run on a worker thread**, one per file: ``BEGIN IMMEDIATE`` may
  wait for another process's writer (``busy_timeout``) and ``COMMIT`` waits for the fsync. The event
  loop goes on meanwhile.
* **Group commit.** Units of work that queue up for the writer while a commit is in flight run next
  in ONE database transaction, each inside its own ``SAVEPOINT``, and share one ``COMMIT``: the
  last unit of the group (no other unit waiting, or the group full) commits for all. A unit that
  raises rolls back to its savepoint — its effects vanish, the others' stay — and propagates. Every
  unit's ``async with`` returns only once the group's ``COMMIT`` has returned, so a caller that
  acks a message after its unit of work still acks only what is durable. If the ``COMMIT`` fails,
  the whole group is rolled back and every unit of it raises `TransientError`.
* **Reads outside a unit of work use a second connection** (inline too). In WAL mode it sees the
  last committed state and never a group's uncommitted one: a relay can only ever publish a
  committed outbox row, a replay check only ever believes a committed inbox row.

Within a group, a unit sees the effects of the units before it (one connection, one transaction),
exactly as if they had committed one after the other; they commit together or not at all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agents.db.files import private_file
from schemas.errors import TransientError

__all__ = ["DEFAULT_MAX_GROUP", "SqliteDb", "is_busy"]

DEFAULT_MAX_GROUP = 128
"""Units of work sharing one commit at most (bounds the wait of the group's first unit)."""

BUSY_TIMEOUT_MS = 10_000


def is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class _Group:
    """One open database transaction shared by the units of work queued behind each other."""

    __slots__ = ("committed", "error", "members")

    def __init__(self) -> None:
        self.members = 0
        self.committed = asyncio.Event()
        self.error: BaseException | None = None


def _connect(path: Path, busy_timeout_ms: int, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions, this module says BEGIN and COMMIT itself.
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteDb:
    """A writer connection with group commit and a reader connection, on one file.

    Open with ``await SqliteDb.open(path, setup=...)``; ``setup`` runs on the writer (on the worker
    thread) before anything else: schema and migrations.
    """

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        executor: concurrent.futures.ThreadPoolExecutor,
        *,
        max_group: int = DEFAULT_MAX_GROUP,
        name: str = "store",
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._executor = executor
        self._max_group = max_group
        self._name = name
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._group: _Group | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self.commits = 0
        """Database transactions committed (each one fsync)."""
        self.units = 0
        """Units of work committed (each one a caller's ``async with``)."""

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        setup: Callable[[sqlite3.Connection], Any] | None = None,
        synchronous: str = "FULL",
        max_group: int = DEFAULT_MAX_GROUP,
        name: str = "store",
    ) -> SqliteDb:
        path = Path(path)
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"sqlite-{name}"
        )

        def connect() -> tuple[sqlite3.Connection, sqlite3.Connection]:
            private_file(path)  # 0600 in 0700 before SQLite writes (its -wal/-shm follow the mode)
            writer = _connect(path, BUSY_TIMEOUT_MS, synchronous)
            try:
                if setup is not None:
                    setup(writer)
                # The writer's statements run inline and must never wait: only BEGIN IMMEDIATE
                # can, and it gets the timeout back on the worker thread (`_begin`).
                writer.execute("PRAGMA busy_timeout = 0")
                reader = _connect(path, BUSY_TIMEOUT_MS, synchronous)
            except BaseException:
                writer.close()
                raise
            return writer, reader

        try:
            writer, reader = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, writer, reader, executor, max_group=max_group, name=name)

    # -- reads outside a unit of work (committed data only) -----------------------------------------
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query on the reader connection (fetched completely, so the statement's
        read transaction ends here and the next read sees the next commit)."""
        if self._closed:
            raise sqlite3.ProgrammingError(f"{self._name} is closed")
        cursor = self._reader.execute(sql, params)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    # -- units of work --------------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[sqlite3.Connection]:
        """One unit of work on the writer connection (see the module's docstring)."""
        self._waiting += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._waiting -= 1
            self._commit_orphan_soon()
            raise
        self._waiting -= 1
        group: _Group | None = None
        try:
            if self._closed:
                raise sqlite3.ProgrammingError(f"{self._name} is closed")
            if self._group is None:
                await self._begin()
                self._group = _Group()
            group = self._group
            group.members += 1
            self._writer.execute("SAVEPOINT unit")
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK TO unit")
                self._writer.execute("RELEASE unit")
                group.members -= 1
                raise
            self._writer.execute("RELEASE unit")
        finally:
            try:
                if self._group is not None and (
                    self._waiting == 0 or self._group.members >= self._max_group
                ):
                    await self._commit(self._group)
            finally:
                self._lock.release()
        await group.committed.wait()
        if group.error is not None:
            raise TransientError(f"{self._name}: commit failed: {group.error}") from group.error

    async def _begin(self) -> None:
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        # Another process holds the write lock: wait for it on the worker thread.

        def begin_waiting() -> None:
            self._writer.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            try:
                self._writer.execute("BEGIN IMMEDIATE")
            finally:
                self._writer.execute("PRAGMA busy_timeout = 0")

        future, cancelled = await self._run_to_end(begin_waiting)
        error = future.exception()
        if cancelled:
            if error is None and self._writer.in_transaction:
                self._writer.execute("ROLLBACK")  # nothing written yet: just let the lock go
            raise asyncio.CancelledError
        if isinstance(error, sqlite3.OperationalError) and is_busy(error):
            raise TransientError(f"{self._name} busy: {error}") from error
        if error is not None:
            raise error

    async def _commit(self, group: _Group) -> None:
        """COMMIT the group. A failed commit is not raised here: every member raises it (see
        `transaction`). A cancellation is, but only after the commit has run."""
        self._group = None

        def commit() -> None:
            try:
                self._writer.execute("COMMIT")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise

        future, cancelled = await self._run_to_end(commit)
        error = future.exception()
        if error is None:
            self.commits += 1
            self.units += group.members
        else:
            group.error = error
        group.committed.set()
        if cancelled:
            raise asyncio.CancelledError

    async def _run_to_end(
        self, fn: Callable[[], Any]
    ) -> tuple[asyncio.Future[Any], bool]:
        """Run ``fn`` on the worker thread and wait until it has run, even when cancelled meanwhile
        (nobody may touch the connection while it runs). Returns its future and whether the
        caller was cancelled (the caller re-raises that once it has looked at the outcome)."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        cancelled = False
        while not future.done():
            try:
                await asyncio.wait({future})
            except asyncio.CancelledError:
                cancelled = True
        return future, cancelled

    def _commit_orphan_soon(self) -> None:
        """A unit stopped waiting (cancelled): if a group is open that nobody will now commit,
        commit it."""
        if self._group is None or self._waiting > 0 or self._lock.locked():
            return

        async def commit_orphan() -> None:
            async with self._lock:
                if self._group is not None and self._waiting == 0:
                    await self._commit(self._group)

        task = asyncio.get_running_loop().create_task(commit_orphan())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        async with self._lock:
            if self._closed:
                return
            if self._group is not None:
                await self._commit(self._group)
            self._closed = True

            def close() -> None:
                self._reader.close()
                self._writer.close()

            await self._run_to_end(close)
        self._executor.shutdown(wait=True)
