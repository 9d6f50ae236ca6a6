"""Agency agents as real OS processes (``jiexu agent --agency CODE``), for tests that kill them.

Each process is configured only through ``JIEXU_*`` environment variables made from
`Provisioned.settings`, as an operator would; its output goes to a log file per start.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agents.faults import CRASH_AT_ENV
from agents.service.settings import AgentSettings

__all__ = ["REPO", "AgentRun", "agent_env", "start_agent"]

REPO = Path(__file__).resolve().parents[2]

_JIEXU_MAIN = "from agents.cli import main; main()"


def agent_env(settings: AgentSettings, crash_at: str | None = None) -> dict[str, str]:
    """The environment of an agent process: this one's, minus every inherited ``JIEXU_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIEXU_")}
    env.update(
        {
            "JIEXU_DATA_DIR": str(settings.data_dir),
            "JIEXU_SECRETS_DIR": str(settings.secrets_dir),
            "JIEXU_DIRECTORY": str(settings.directory),
            "JIEXU_USER_PREFIX": settings.user_prefix,
            # pydantic-settings reads a tuple from the environment as a JSON array.
            "JIEXU_RETRY_DELAYS_MS": json.dumps(list(settings.retry_delays_ms)),
            "JIEXU_DEADLINE_INTERVAL_S": str(settings.deadline_interval_s),
            "JIEXU_REGIME": settings.regime.value,
            "JIEXU_ACCEPTS_FUNDS": "true" if settings.accepts_funds else "false",
            "JIEXU_PAYOUT_APPROVAL_LIMIT_FEN": str(settings.payout_approval_limit_fen),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        }
    )
    if settings.amqp_url:
        env["JIEXU_AMQP_URL"] = settings.amqp_url
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    return env


@dataclass
class AgentRun:
    """One start of one agency's agent process."""

    code: str
    process: asyncio.subprocess.Process
    log_path: Path
    _log: IO[bytes]

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait(self, within_s: float) -> int:
        """Wait for the process to end on its own; returns its exit status."""
        try:
            return await asyncio.wait_for(self.process.wait(), within_s)
        finally:
            if self.process.returncode is not None:
                self._log.close()

    async def terminate(self, within_s: float) -> int:
        """SIGTERM (the agent drains and exits); SIGKILL if it has not ended within the bound."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within_s)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._log.close()
        assert self.process.returncode is not None
        return self.process.returncode


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


async def start_agent(
    settings: AgentSettings, log_dir: Path, *, crash_at: str | None = None, start: int = 1
) -> AgentRun:
    """Start ``jiexu agent --agency CODE`` with `settings` in its environment."""
    log_path = log_dir / f"agent-{settings.agency}-{start}.log"
    log = _open_log(log_path)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _JIEXU_MAIN,
            "agent",
            "--agency",
            settings.agency,
            cwd=REPO,
            env=agent_env(settings, crash_at),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    except BaseException:
        log.close()
        raise
    return AgentRun(settings.agency, process, log_path, log)
