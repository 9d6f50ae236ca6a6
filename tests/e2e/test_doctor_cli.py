"""`jiexu doctor` checks a provisioned agency end to end, and names what is broken and the fix."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agents.cli import app
from agents.tools.provision import AgencyProfile, Provisioned
from broker.pytest_plugin import TestVhost
from broker.signing import generate_private_key, save_private_key
from tests.integration.agent_world import agent_world
from tests.integration.postgres_support import fresh_schema

DONGGUAN, JIUJIANG = "441900", "360400"


async def doctor(provisioned: Provisioned, code: str, *more: str) -> Result:
    args = ["doctor", "--agency", code, "--data-dir", str(provisioned.data_dir),
            "--secrets-dir", str(provisioned.secrets_dir), "--directory",
            str(provisioned.directory_path), *more]
    return await asyncio.to_thread(CliRunner().invoke, app, args)


def lines(result: Result) -> dict[str, str]:
    """Each check's line by its name (the second column)."""
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "FAIL"):
            rest = rest.strip()
            for name in ("directory", "agency", "private key", "credentials", "broker",
                         "management API", "store", "ledger"):
                if rest.startswith(name):
                    found[name] = line
    return found


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, rabbitmq_vhost: TestVhost) -> None:
    # The agent's settings, as an operator would have them: the broker URL from the credentials
    # file, the management API named.
    for name in ("JIEXU_AMQP_URL", "JIEXU_DATABASE_URL", "JIEXU_DATA_DIR", "JIEXU_SECRETS_DIR",
                 "JIEXU_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JIEXU_MANAGEMENT_URL", rabbitmq_vhost.endpoint.management_url)


async def test_a_provisioned_agency_passes_every_check(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        p = world.provisioned
        fresh = await doctor(p, DONGGUAN)
        assert fresh.exit_code == 0, fresh.output
        checks = lines(fresh)
        assert set(checks) == {"directory", "agency", "private key", "credentials", "broker",
                               "management API", "store", "ledger"}
        assert all(line.startswith("ok") for line in checks.values()), fresh.output
        assert "not created yet" in checks["store"] and "not created yet" in checks["ledger"]
        assert "jiexu.inbox.441900" in checks["broker"]
        assert "all 8 checks passed" in fresh.stdout
        assert not (p.paths.store(DONGGUAN)).exists(), "the doctor creates nothing"

        # Once the agent has run, its store and ledger are opened and read.
        await world.start(DONGGUAN)
        await world.stop(DONGGUAN)
        ran = await doctor(p, DONGGUAN)
        assert ran.exit_code == 0, ran.output
        assert lines(ran)["store"].endswith("answers")
        assert lines(ran)["ledger"].endswith("answers")


async def test_a_broken_agency_fails_with_what_to_fix_and_no_traceback(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        p = world.provisioned
        # A missing private key; a wrong broker password; a credentials file others can read.
        p.paths.private_key(DONGGUAN).unlink()
        credentials = p.paths.credentials(DONGGUAN)
        secret = json.loads(credentials.read_text())
        secret["password"] = "not-the-password"
        credentials.write_text(json.dumps(secret))
        credentials.chmod(0o644)
        broken = await doctor(p, DONGGUAN)
        assert broken.exit_code == 2, broken.output
        assert "Traceback" not in broken.output
        checks = lines(broken)
        assert checks["directory"].startswith("ok") and checks["agency"].startswith("ok")
        assert checks["private key"].startswith("FAIL")
        assert "no such file" in checks["private key"] and "jiexu keys generate" in checks["private key"]
        assert checks["credentials"].startswith("FAIL") and "chmod 600" in checks["credentials"]
        assert checks["broker"].startswith("FAIL")
        assert "refused the login" in checks["broker"] and "topology apply" in checks["broker"]
        assert checks["management API"].startswith("ok")
        assert "3 of 8 checks failed" in broken.stdout

        # A key that is not the one the directory lists; the credentials mended.
        save_private_key(generate_private_key(), p.paths.private_key(DONGGUAN))
        credentials.chmod(0o600)
        mismatched = await doctor(p, DONGGUAN)
        assert mismatched.exit_code == 2
        checks = lines(mismatched)
        assert "does not match the directory's public key" in checks["private key"]
        assert checks["credentials"].startswith("ok")

        # An agency the directory does not list, and a directory that is not JSON.
        unknown = await doctor(p, "110000")
        assert unknown.exit_code == 2 and "is not in" in lines(unknown)["agency"]
        p.directory_path.write_text("{not json")
        garbled = await doctor(p, DONGGUAN)
        assert garbled.exit_code == 2 and "Traceback" not in garbled.output
        assert lines(garbled)["directory"].startswith("FAIL")

        # A settings error (an agency code that is not one) is one line too.
        invalid = await doctor(p, "12")
        assert invalid.exit_code == 2 and "Traceback" not in invalid.output
        assert invalid.stdout.startswith("FAIL  settings")


async def test_a_postgresql_store_is_checked_without_creating_its_schema(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async for database in fresh_schema():  # skips (fails on CI) without a PostgreSQL
        async with agent_world(rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN)]) as world:
            p = world.provisioned
            down = await doctor(p, DONGGUAN, "--database-url", "postgresql://nobody@127.0.0.1:1/none")
            assert down.exit_code == 2 and "Traceback" not in down.output
            assert lines(down)["store"].startswith("FAIL  store           PostgreSQL unreachable")
            up = await doctor(p, DONGGUAN, "--database-url", database.url)
            store = lines(up)["store"]
            assert store.startswith("ok"), up.output
            assert "not created yet" in store or store.endswith("answers")
