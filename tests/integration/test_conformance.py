"""`jiexu conformance` against jiexu's own agent: every step passes; an agent that does not copy
the reconciler (the gap a foreign implementation had) fails exactly the reconciliation steps."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.cli import app
from agents.tools.conformance import Check, ConformanceSettings, Party, run_conformance
from agents.tools.provision import AgencyProfile
from broker.names import RECONCILER_CODE
from broker.pytest_plugin import TestVhost
from broker.signing import load_private_key, private_key_path
from schemas.common import Person, make_citizen_id
from tests.integration.agent_world import World, agent_world
from tests.integration.test_agent_branches import DONGGUAN, EMPLOYEE, JIUJIANG
from tests.integration.test_topology import _undo_cli_logging

pytestmark = pytest.mark.integration

UNKNOWN_ID = make_citizen_id("441900", date(1970, 1, 1), 998)


def _party(world: World, code: str) -> Party:
    provisioned = world.provisioned
    credential = provisioned.credentials[code]
    url = provisioned.endpoint.amqp_url(
        vhost=provisioned.vhost, username=credential.username, password=credential.password
    )
    return Party(code, url, load_private_key(private_key_path(provisioned.secrets_dir, code)))


async def _settings(world: World) -> ConformanceSettings:
    out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
    person = Person(name=out.name, gender=out.gender, id_number=out.id_number)
    return ConformanceSettings(
        agency=DONGGUAN,
        kit=_party(world, JIUJIANG),
        reconciler=_party(world, RECONCILER_CODE),
        directory=world.directory,
        persons=(person,),
        unknown_id_number=UNKNOWN_ID,
        timeout_s=30.0,
        quiet_s=2.0,
    )


def _failed(checks: list[Check]) -> list[str]:
    return [c.step for c in checks if not c.ok]


async def test_jiexus_own_agent_passes_every_step(rabbitmq_vhost: TestVhost, tmp_path: Path) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        checks = await run_conformance(await _settings(world))
        assert _failed(checks) == [], [c for c in checks if not c.ok]
        assert len(checks) >= 12
        assert {
            "receipt for the contact letter",
            "receipt for the completion notice",
            "receipt for the letter for an unknown person",
            "a republished letter is not acknowledged twice",
        } <= {c.step for c in checks}


async def test_an_agent_that_does_not_copy_the_reconciler_fails_those_steps(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN, reconciler=None)
        settings = await _settings(world)
        checks = await run_conformance(
            ConformanceSettings(**{**settings.__dict__, "timeout_s": 5.0})
        )
        # Configured without a reconciler, the agent also refuses statement requests (they are
        # accepted from the configured reconciler only).
        assert _failed(checks) == [
            "copy of the form to the reconciler",
            "statement request answered",
            "copy of the rejection to the reconciler",
            "statement request answered (unknown case)",
        ]


async def test_the_command_prints_pass_per_step(rabbitmq_vhost: TestVhost, tmp_path: Path) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        settings = await _settings(world)
        person = settings.persons[0]
        p = world.provisioned
        args = ["conformance", "--agency", DONGGUAN, "--as", JIUJIANG,
                "--person", f"{person.id_number}:{person.name}:{person.gender.value}",
                "--unknown-id", UNKNOWN_ID, "--secrets-dir", str(p.secrets_dir),
                "--directory", str(p.directory_path), "--timeout", "30", "--json"]
        try:
            result = await asyncio.to_thread(CliRunner().invoke, app, args)
        finally:
            _undo_cli_logging()
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["passed"] is True
        assert all(check["ok"] for check in report["checks"])


async def test_both_roles_against_jiexus_own_agent(rabbitmq_vhost: TestVhost, tmp_path: Path) -> None:
    """The receiving scenario waits for the agency's letter: an application at its counter for a
    person moving from the kit's region starts it."""
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        settings = await _settings(world)
        arriving, _ = await world.mover(JIUJIANG, DONGGUAN, **EMPLOYEE)
        run = asyncio.create_task(
            run_conformance(
                ConformanceSettings(
                    **{**settings.__dict__, "roles": ("outgoing", "receiving"),
                       "letter_timeout_s": 60.0}
                )
            )
        )
        await world.apply(DONGGUAN, JIUJIANG, arriving)
        checks = await run
        assert _failed(checks) == [], [c for c in checks if not c.ok]
        assert any(c.step.startswith("receiving:") for c in checks)
