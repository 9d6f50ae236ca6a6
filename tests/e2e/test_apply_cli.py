"""`jiexu apply` opens a case at the receiving agency; the running agents carry it to completion."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from typer.testing import CliRunner

from agents.cli import app
from agents.tools.provision import AgencyProfile
from broker.pytest_plugin import TestVhost
from tests.integration.agent_world import agent_world

DONGGUAN, JIUJIANG = "441900", "360400"


async def test_an_application_from_the_command_line_completes_and_case_show_follows_it(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        out, _ = await world.mover(
            DONGGUAN, JIUJIANG, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        p = world.provisioned
        common = ["--data-dir", str(p.data_dir), "--secrets-dir", str(p.secrets_dir),
                  "--directory", str(p.directory_path)]
        # Personal data from the environment: on the command line it would be visible in `ps`.
        person_env = {"JIEXU_ID_NUMBER": out.id_number, "JIEXU_NAME": out.name}
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["apply", "--agency", JIUJIANG, "--from-region", DONGGUAN,
             "--gender", out.gender.value, "--insurance-type", "310", "--json", *common],
            env=person_env,
        )
        assert result.exit_code == 0, result.output
        applied = json.loads(result.stdout)
        assert applied["state"] == "awaiting_form"
        assert applied["whose_turn"] == DONGGUAN and applied["due_date"]
        assert out.id_number not in result.stdout, "the ID number is masked"
        case_id = applied["case_id"]
        assert await world.wait_terminal(JIUJIANG, uuid.UUID(case_id)) == "completed"
        assert await world.wait_terminal(DONGGUAN, uuid.UUID(case_id)) == "completed"

        shown = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["case", "show", "--agency", JIUJIANG, "--json", "--data-dir", str(p.data_dir)],
            env={"JIEXU_ID_NUMBER": out.id_number},
        )
        assert shown.exit_code == 0, shown.output
        summary = json.loads(shown.stdout)
        assert summary["case_id"] == case_id and summary["state"] == "completed"
        assert [step["to"] for step in summary["history"]][-1] == "completed"
        assert out.id_number not in shown.stdout

        # A malformed application is refused with a clear error and changes nothing.
        wrong_check_digit = out.id_number[:-1] + ("0" if out.id_number[-1] != "0" else "1")
        bad = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["apply", "--agency", JIUJIANG, "--from-region", DONGGUAN,
             "--gender", out.gender.value, *common],
            env={**person_env, "JIEXU_ID_NUMBER": wrong_check_digit},
        )
        assert bad.exit_code == 2
        assert bad.output.startswith("error: invalid input: id_number")

        # Typed on the command line, personal data is refused before anything happens.
        typed = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["apply", "--agency", JIUJIANG, "--from-region", DONGGUAN, "--id-number", out.id_number,
             "--name", out.name, "--gender", out.gender.value, *common],
        )
        assert typed.exit_code == 2
        said = " ".join(typed.output.replace("│", " ").split())  # typer's error box wraps lines
        assert "JIEXU_ID_NUMBER" in said and out.id_number not in said
        cases = await world.agents[JIUJIANG].service.store.list_cases()
        assert len(cases) == 1
