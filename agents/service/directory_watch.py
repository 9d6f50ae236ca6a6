"""The agency directory of a running process, reloaded without a restart.

A process opens its directory through `DirectoryWatch.open` (verified by
`broker.directory_trust.load_directory`, as every process does at start) and then follows the file:

* on SIGHUP (`DirectoryWatch.on_sighup`: ``kill -HUP PID``, ``docker kill -s HUP``), at once;
* when the file or its ``.sig`` changes (modification time, size, inode), checked every
  ``JIEXU_DIRECTORY_CHECK_S`` seconds (`DirectoryWatch.start`; 0: on SIGHUP only). A change is
  loaded once it has stayed the same for one check, so that a directory and its signature copied
  one after the other are read together.

The new file is verified exactly as at start (the operator's signature, the schema), and a
process that started with a verified directory never takes an unsigned one, whatever
``JIEXU_ALLOW_UNSIGNED_DIRECTORY`` says. Each listener (`listen`) may refuse it too (an agent:
its own agency must still be listed). A refused file is logged once, at WARNING
(``directory_reload_refused``, with the reason), and the directory in force stays; the process
goes on. An accepted one replaces it for everything that follows (the signature checks of the
next messages, the accounts and versions of the next messages sent), logged at INFO
(``directory_reloaded``: its version, the agencies added and removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from agents.service.file_change import SettledChange
from broker.directory import AgencyDirectory
from broker.directory_trust import TrustedDirectory, load_directory, signature_path
from schemas.errors import JiexuError

__all__ = ["DirectoryWatch", "Listener"]

log = structlog.get_logger("jiexu.agents.service.directory")

Listener = Callable[[AgencyDirectory], None]
"""Called with each new directory before it is in force; raises `JiexuError` or `ValueError` to
refuse it (nothing may have changed then)."""


class DirectoryWatch:
    """The directory in force for one process, and the reloads of its file."""

    def __init__(
        self,
        path: Path,
        secrets_dir: Path | None,
        loaded: TrustedDirectory,
        files: SettledChange,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.secrets_dir = secrets_dir
        self.current = loaded
        self._files = files
        self._env = env
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.refusals = 0

    @classmethod
    def open(
        cls, path: Path, secrets_dir: Path | None, *, env: Mapping[str, str] | None = None
    ) -> DirectoryWatch:
        """Load and verify the directory (`DirectoryError` as at any start), ready to follow it."""
        files = SettledChange((Path(path), signature_path(Path(path))))  # before reading
        loaded = load_directory(Path(path), secrets_dir, env=env)
        log.info(
            "directory_loaded",
            directory=str(path),
            version=loaded.version,
            agencies=len(loaded.directory),
            signed_by=loaded.key_id,
        )
        return cls(Path(path), secrets_dir, loaded, files, env)

    @property
    def directory(self) -> AgencyDirectory:
        return self.current.directory

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- reloading ---------------------------------------------------------------------------
    def poll(self) -> bool:
        """Reload if the file changed and has stayed so since the last poll; True if a new
        directory is now in force."""
        return self._files.settled() and self.reload("changed")

    def reload(self, reason: str) -> bool:
        """Read, verify and put in force the file as it is now; True if it replaced the
        directory. A bad file is refused with one warning and changes nothing; never raises."""
        self._files.take()
        try:
            loaded = load_directory(
                self.path,
                self.secrets_dir,
                env=self._env,
                allow_unsigned=False if self.current.verified else None,
            )
            if loaded.digest == self.current.digest:
                if reason == "sighup":
                    log.info("directory_unchanged", directory=str(self.path), version=loaded.version)
                return False
            for listener in self._listeners:
                listener(loaded.directory)
        except (JiexuError, ValueError) as exc:
            self._refused(reason, str(exc))
            return False
        except Exception as exc:
            self._refused(reason, f"{type(exc).__name__}: {exc}")
            return False
        before, after = set(self.directory.codes), set(loaded.directory.codes)
        previous, self.current = self.current, loaded
        self.reloads += 1
        log.info(
            "directory_reloaded",
            directory=str(self.path),
            reason=reason,
            version=loaded.version,
            previous_version=previous.version,
            agencies=len(loaded.directory),
            added=sorted(after - before),
            removed=sorted(before - after),
            signed_by=loaded.key_id,
        )
        return True

    def _refused(self, reason: str, error: str) -> None:
        self.refusals += 1
        log.warning(
            "directory_reload_refused",
            directory=str(self.path),
            reason=reason,
            error=error,
            version_in_force=self.current.version,
        )

    # -- following the file ------------------------------------------------------------------
    def start(self, interval_s: float) -> DirectoryWatch:
        """Poll every ``interval_s`` seconds in the background (0: not at all)."""
        if interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(interval_s), name="directory-watch")
        return self

    async def _loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.poll()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def on_sighup(self) -> Callable[[], None]:
        """Reload on SIGHUP (on the running loop); returns what removes the handler."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload, "sighup")

        def remove() -> None:
            loop.remove_signal_handler(signal.SIGHUP)

        return remove
