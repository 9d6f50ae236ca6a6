"""The bench's child processes: ``jiexu agent`` and ``jiexu reconcile`` started with their
environment, their log files, and what ``/proc`` says about their memory and CPU."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from agents.service.settings import AgentSettings

__all__ = [
    "REPO",
    "Child",
    "CpuClock",
    "broker_pid",
    "megabytes",
    "open_log",
    "proc_cpu_s",
    "proc_status_kb",
    "settings_env",
    "spawn",
]

log = structlog.get_logger("jiexu.bench.flow")

REPO = Path(__file__).resolve().parents[3]
"""The checkout this package runs from (the child processes' working directory)."""


def settings_env(settings: AgentSettings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``jiexu agent`` process configured by ``settings``: the given (or this
    process's) environment minus every inherited ``JIEXU_*``, plus one ``JIEXU_*`` per setting."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("JIEXU_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict):
            text = json.dumps(value)  # pydantic-settings reads complex values as JSON
        else:
            text = str(value)
        env[f"JIEXU_{name.upper()}"] = text
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def proc_status_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (kB) of a live process; empty once it is gone."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return values


def proc_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a live process (``/proc/<pid>/stat``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def broker_pid() -> int | None:
    """The local RabbitMQ node's pid when exactly one runs on this machine (for its CPU time)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text(encoding="ascii", errors="replace").strip() == "beam.smp":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found[0] if len(found) == 1 else None


@dataclass
class CpuClock:
    """CPU seconds of this process (the bench, playing the front offices) and of the broker."""

    broker_pid: int | None = field(default_factory=broker_pid)
    own: float = field(default_factory=time.process_time)
    broker: float | None = None

    def __post_init__(self) -> None:
        self.broker = proc_cpu_s(self.broker_pid) if self.broker_pid else None

    def stop(self) -> dict[str, float | None]:
        broker_now = proc_cpu_s(self.broker_pid) if self.broker_pid else None
        return {
            "bench": round(time.process_time() - self.own, 2),
            "broker": (
                round(broker_now - self.broker, 2)
                if broker_now is not None and self.broker is not None
                else None
            ),
        }


def megabytes(kb: int | None) -> float | None:
    return round(kb / 1024, 1) if kb is not None else None


@dataclass
class Child:
    """One agent (or the reconciler) running as its own process."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]
    samples: list[tuple[float, int, float]] = field(default_factory=list)
    """(seconds since the drain started, applications finished, VmRSS MB)."""
    hwm_kb: int | None = None
    cpu_s: float | None = None
    returncode: int | None = None

    def status(self) -> dict[str, int]:
        return proc_status_kb(self.process.pid) if self.process.returncode is None else {}

    async def stop(self, within_s: float = 60.0) -> None:
        if self.process.returncode is None:
            self.hwm_kb = self.status().get("VmHWM", self.hwm_kb)
            self.cpu_s = proc_cpu_s(self.process.pid) or self.cpu_s
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within_s)
            except TimeoutError:
                log.warning("bench_flow_process_killed", name=self.name, log=str(self.log_path))
                self.process.kill()
                await self.process.wait()
        self.returncode = self.process.returncode
        self.log_file.close()


def open_log(log_dir: Path, name: str) -> tuple[Path, IO[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    return log_path, log_path.open("ab")


async def spawn(name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path) -> Child:
    log_path, log_file = open_log(log_dir, name)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agents.cli",
            *args,
            cwd=REPO,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    except BaseException:
        log_file.close()
        raise
    return Child(name, process, log_path, log_file)
