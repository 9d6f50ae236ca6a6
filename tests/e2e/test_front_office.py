"""The front office through the command line on a real broker: checked applications, cancel,
case list, and the one-line errors (exit 2, no ID number, nothing left behind)."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from agents.cli import app
from agents.tools.provision import AgencyProfile
from broker.pytest_plugin import TestVhost
from tests.integration.agent_world import World, agent_world

DONGGUAN, JIUJIANG, LHASA = "441900", "360400", "540100"


async def _jiexu(*args: str, env: dict[str, str] | None = None) -> Any:
    argv, env = _personal_data_from_env(list(args), dict(env or {}))
    return await asyncio.to_thread(CliRunner().invoke, app, argv, env=env)


def _personal_data_from_env(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """`apply` takes the ID number and name from the environment only (never the command line)."""
    if argv[:1] == ["apply"]:
        for flag, variable in (("--id-number", "JIEXU_ID_NUMBER"), ("--name", "JIEXU_NAME")):
            while flag in argv:
                at = argv.index(flag)
                env[variable] = argv[at + 1]
                del argv[at : at + 2]
    return argv, env


def _common(world: World) -> list[str]:
    p = world.provisioned
    return [
        "--data-dir",
        str(p.data_dir),
        "--secrets-dir",
        str(p.secrets_dir),
        "--directory",
        str(p.directory_path),
    ]


def _one_error_line(result: Any, *, logs: bool = False) -> str:
    """The one ``error:`` line; ``logs``: the command is an agent, whose log lines may precede it."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert logs or len(lines) == 1, result.output
    return str(errors[0])


async def test_cancel_before_release_reaches_a_v1_agency_and_the_person_applies_again(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile.v1_only(LHASA), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(JIUJIANG)  # Lhasa's agent is down: nothing is released
        out, _ = await world.mover(
            LHASA, JIUJIANG, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        person = ["--id-number", out.id_number, "--name", out.name, "--gender", out.gender.value]
        applied = await _jiexu(
            "apply", "--agency", JIUJIANG, "--from-region", LHASA, *person, "--json", *_common(world)
        )
        assert applied.exit_code == 0, applied.output
        case_id = json.loads(applied.stdout)["case_id"]

        listed = await _jiexu(
            "case",
            "list",
            "--agency",
            JIUJIANG,
            "--state",
            "awaiting_form",
            "--counterpart",
            LHASA,
            "--json",
            "--data-dir",
            str(world.provisioned.data_dir),
        )
        assert [c["case_id"] for c in json.loads(listed.stdout)] == [case_id]
        assert out.id_number not in listed.stdout

        cancelled = await _jiexu(
            "case",
            "cancel",
            case_id,
            "--agency",
            JIUJIANG,
            "--reason",
            "参保人放弃本次转移",
            "--json",
            *_common(world),
        )
        assert cancelled.exit_code == 0, cancelled.output
        assert json.loads(cancelled.stdout)["state"] == "cancelled"
        again = await _jiexu(
            "case", "cancel", case_id, "--agency", JIUJIANG, "--reason", "x", *_common(world)
        )
        assert "already ended (cancelled)" in _one_error_line(again)

        # Lhasa (v1 only) gets the letter, then the withdrawal as a v1 rejection it understands.
        taken = await world.drain(LHASA, until=lambda ms: any(m.envelope.type == "rejection" for m in ms))
        rejection = next(m for m in taken if m.envelope.type == "rejection")
        assert rejection.envelope.version == 1 and str(rejection.envelope.case_id) == case_id
        assert rejection.envelope.payload["reason_code"] == "other"
        assert "withdrawn" in rejection.envelope.payload["text"]

        # The person is not blocked: a new application opens a new case.
        second = await _jiexu(
            "apply", "--agency", JIUJIANG, "--from-region", LHASA, *person, "--json", *_common(world)
        )
        assert second.exit_code == 0, second.output
        assert json.loads(second.stdout)["state"] == "awaiting_form"


async def test_cancel_after_release_is_refused_and_checked_applications_commit_nothing(
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
        person = ["--id-number", out.id_number, "--name", out.name, "--gender", out.gender.value]
        for region, expected in (
            ("999999", "not in the agency directory"),
            (JIUJIANG, "is this agency itself"),
        ):
            refused = await _jiexu(
                "apply", "--agency", JIUJIANG, "--from-region", region, *person, *_common(world)
            )
            line = _one_error_line(refused)
            assert expected in line and out.id_number not in refused.output
        assert await world.agents[JIUJIANG].service.store.list_cases() == []

        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(JIUJIANG, case_id) == "completed"
        refused = await _jiexu(
            "case", "cancel", str(case_id), "--agency", JIUJIANG, "--reason", "x", *_common(world)
        )
        assert "cannot be cancelled" in _one_error_line(refused)
        assert await world.state(JIUJIANG, case_id) == "completed"


async def test_expected_failures_are_one_line_exit_2_and_leave_nothing_behind(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        p = world.provisioned
        common = _common(world)
        good_id = "11010519491231002X"
        apply = [
            "apply",
            "--agency",
            JIUJIANG,
            "--from-region",
            DONGGUAN,
            "--name",
            "张三",
            "--gender",
            "female",
        ]

        bad_id = await _jiexu(*apply, "--id-number", "110105194912310021", *common)
        line = _one_error_line(bad_id)
        assert "id_number" in line and "110105194912310021" not in bad_id.output

        missing = await _jiexu(
            *apply,
            "--id-number",
            good_id,
            "--data-dir",
            str(p.data_dir),
            "--directory",
            str(tmp_path / "nowhere.json"),
        )
        assert "--directory or JIEXU_DIRECTORY" in _one_error_line(missing)

        unknown = await _jiexu("agent", "--agency", "999998", *common)
        assert "not in the agency directory" in _one_error_line(unknown)
        assert not (p.data_dir / "999998").exists()

        # A secrets directory with the operator's key (the directory verifies) but no signing key.
        shutil.copy(p.secrets_dir / "operator.ed25519.pub", tmp_path / "operator.ed25519.pub")
        no_key = await _jiexu(
            *apply,
            "--id-number",
            good_id,
            "--data-dir",
            str(p.data_dir),
            "--directory",
            str(p.directory_path),
            "--secrets-dir",
            str(tmp_path),
        )
        assert "jiexu keys generate" in _one_error_line(no_key)

        host = rabbitmq_vhost.endpoint.host
        for url, expected in (
            (f"{host}:5672", "must start with amqp://"),
            (f"amqp://{host}:1/", "cannot reach the broker"),
        ):
            failed = await _jiexu("agent", "--agency", JIUJIANG, *common, env={"JIEXU_AMQP_URL": url})
            assert expected in _one_error_line(failed, logs=True)

        for url, expected in (
            (f"{host}:5672", "--amqp-url must start with amqp://"),
            (f"amqp://{host}:1/", "cannot reach the broker"),
        ):
            # No password in these URLs: one on the command line is refused (visible in ps).
            failed = await _jiexu("dlq", "list", "--agency", JIUJIANG, "--amqp-url", url)
            assert expected in _one_error_line(failed)

        secret = p.secrets_dir / f"{JIUJIANG}.broker.json"
        data = json.loads(secret.read_text())
        secret.write_text(json.dumps({**data, "password": "wrong"}))
        refused = await _jiexu("agent", "--agency", JIUJIANG, *common)
        assert "refused the login" in _one_error_line(refused, logs=True)

        debug = await _jiexu("--debug", "agent", "--agency", "999998", *common)
        assert debug.exit_code != 2 and debug.exception is not None


def test_every_choice_of_the_command_line_is_a_value_of_its_model() -> None:
    from agents.cli import choices
    from agents.domain.case import State
    from agents.domain.deadlines import Regime
    from schemas.common import Gender, InsuranceType
    from schemas.contact import PayoutReason

    for light, real in (
        (choices.GenderChoice, Gender),
        (choices.InsuranceTypeChoice, InsuranceType),
        (choices.PayoutReasonChoice, PayoutReason),
        (choices.RegimeChoice, Regime),
        (choices.CaseStateChoice, State),
    ):
        assert [c.value for c in light] == [r.value for r in real], light


def test_no_uuid_is_taken_for_an_id_number() -> None:
    from agents.cli.errors import scrub

    case_id = str(uuid.uuid4())
    assert scrub(f"case {case_id}") == f"case {case_id}"
    assert "11010519491231002X" not in scrub("x 11010519491231002X y")


async def test_a_discrepancy_is_resolved_once_by_crediting_what_arrived(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    from agents.domain.case import State
    from broker.names import RECONCILER_CODE
    from schemas.common import Person
    from schemas.funds import FundTransferV1, RemittanceMark
    from schemas.information import BalanceDisposition, InformationFormV2

    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(JIUJIANG)
        out, _ = await world.mover(
            DONGGUAN, JIUJIANG, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        letters = await world.drain(DONGGUAN, lambda ms: any(m.envelope.case_id == case_id for m in ms))
        letter_id = next(m.envelope.message_id for m in letters if m.envelope.type == "contact_letter")
        stated, paid, form_id = out.balance_fen, out.balance_fen - 100, uuid.uuid4()
        form = InformationFormV2(
            person=Person(name=out.name, gender=out.gender, id_number=out.id_number),
            insurance_type=out.insurance_type,
            participation_start=out.periods[0].from_month,
            participation_end=max(p.to_month for p in out.periods),
            months_paid=out.months_paid,
            deemed_months=out.deemed_months,
            account_balance=stated,
            amount_transferred=stated,
            balance_disposition=BalanceDisposition.TRANSFERRED,
            contribution_periods=None,
            seal_reference=None,
        )
        funds = FundTransferV1(
            amount=paid,
            payer_account=world.details(DONGGUAN).bank_account,
            payee_account=world.details(JIUJIANG).bank_account,
            information_form_id=form_id,
            remittance_mark=RemittanceMark(name=out.name, id_number=out.id_number),
        )
        async with world.impersonate(DONGGUAN) as dongguan:
            await dongguan.send(
                form, recipient=JIUJIANG, case_id=case_id, causation_id=letter_id, message_id=form_id
            )
            await world.wait_state(JIUJIANG, case_id, [State.AWAITING_FUNDS])
            await dongguan.send(funds, recipient=JIUJIANG, case_id=case_id, causation_id=letter_id)
        assert await world.wait_terminal(JIUJIANG, case_id) == State.DISCREPANCY
        assert (await world.ledger(JIUJIANG).statement(case_id)).role == "none"
        before = await world.ledger(JIUJIANG).lookup(out.id_number)
        assert before is not None

        resolve = [
            "case",
            "resolve",
            str(case_id),
            "--agency",
            JIUJIANG,
            "--decision",
            "credit_as_received",
            "--reason",
            "转出地确认少划 1 元，按实到记账",
            *_common(world),
        ]
        resolved = await _jiexu(*resolve, "--json")
        assert resolved.exit_code == 0, resolved.output
        summary = json.loads(resolved.stdout)
        assert summary["state"] == "completed"
        assert summary["resolution"]["decision"] == "credit_as_received"
        assert summary["resolution"]["from_kind"] == "amount_mismatch"
        assert summary["booked"]["amount_fen"] == paid

        again = await _jiexu(*resolve)
        assert "not in discrepancy" in _one_error_line(again)

        statement = await world.ledger(JIUJIANG).statement(case_id)
        assert statement.role == "receiving" and statement.amount_credited_fen == paid
        after = await world.ledger(JIUJIANG).lookup(out.id_number)
        assert after is not None and after.balance_fen == before.balance_fen + paid  # once

        history = await world.agents[JIUJIANG].service.store.history(case_id)
        assert [(t.from_state, t.to_state, t.event) for t in history[-2:]] == [
            ("discrepancy", "crediting", "ResolveRequested"),
            ("crediting", "completed", "LedgerApplied"),
        ]
        assert history[-2].detail["reason"].startswith("转出地确认")

        completions = [s for s in world.sent(JIUJIANG, case_id) if s.type == "transfer_completed"]
        assert {s.recipient for s in completions} == {DONGGUAN, RECONCILER_CODE}
        assert all(s.envelope["payload"]["amount_credited"] == paid for s in completions)


async def test_status_takes_its_vhost_from_the_url_and_says_when_it_finds_nothing(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        env = {
            "JIEXU_AMQP_URL": rabbitmq_vhost.amqp_url,
            "JIEXU_MANAGEMENT_URL": rabbitmq_vhost.endpoint.management_url,
        }
        shown = await _jiexu("status", "--data-dir", str(world.provisioned.data_dir), "--json", env=env)
        assert shown.exit_code == 0, shown.output
        status = json.loads(shown.stdout)
        assert status["broker"]["vhost"] == rabbitmq_vhost.name
        assert set(status["broker"]["agencies"]) >= {DONGGUAN, JIUJIANG}

        empty = tmp_path / "empty"
        empty.mkdir()
        elsewhere = {**env, "JIEXU_AMQP_URL": rabbitmq_vhost.endpoint.amqp_url(vhost="no-such-vhost")}
        nothing = await _jiexu("status", "--data-dir", str(empty), env=elsewhere)
        assert nothing.exit_code == 1
        assert "nothing found" in nothing.output and "no-such-vhost" in nothing.output


async def test_dlq_list_names_the_real_publisher_or_says_it_set_no_user_id(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    import aio_pika

    from broker.names import EXCHANGE, routing_key

    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(JIUJIANG)
        admin = await aio_pika.connect(rabbitmq_vhost.amqp_url)  # guest, sets no user_id
        async with admin:
            exchange = await (await admin.channel()).get_exchange(EXCHANGE)
            await exchange.publish(
                aio_pika.Message(b"{not json", message_id="from-admin"), routing_key(JIUJIANG, "junk")
            )
        dongguan_user = world.provisioned.credentials[DONGGUAN].username
        dongguan = await world.connect_as(DONGGUAN)
        async with dongguan:
            channel = await dongguan.channel()
            exchange = await channel.get_exchange(EXCHANGE, ensure=False)
            await exchange.publish(
                aio_pika.Message(b"{not json", message_id="from-dongguan", user_id=dongguan_user),
                routing_key(JIUJIANG, "junk"),
            )
        await world.stop(JIUJIANG)
        args = ["dlq", "list", "--agency", JIUJIANG, "--secrets-dir", str(world.provisioned.secrets_dir)]
        by_id: dict[str, Any] = {}
        for _ in range(100):
            listed = await _jiexu(*args, "--json")
            assert listed.exit_code == 0, listed.output
            by_id = {d["message_id"]: d for d in json.loads(listed.stdout)["dead_letters"]}
            if len(by_id) == 2:
                break
            await asyncio.sleep(0.1)
        own_user = world.provisioned.credentials[JIUJIANG].username
        assert by_id["from-dongguan"]["publisher_user"] == dongguan_user
        assert by_id["from-admin"]["publisher_user"] is None
        table = await _jiexu(*args)
        assert "(no user_id)" in table.output and dongguan_user in table.output
        assert own_user not in table.output


async def test_status_names_each_undeliverable_message_with_its_case_and_recipient(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    from schemas.notices import RejectionReason, RejectionV2

    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        case_id = uuid.uuid4()
        async with world.impersonate(JIUJIANG) as jiujiang:  # to an agency no queue exists for
            await jiujiang.send(
                RejectionV2(reason_code=RejectionReason.WITHDRAWN, text="test"),
                recipient="999999",
                case_id=case_id,
            )
        env = {
            "JIEXU_AMQP_URL": rabbitmq_vhost.amqp_url,
            "JIEXU_MANAGEMENT_URL": rabbitmq_vhost.endpoint.management_url,
        }
        args = ["status", "--data-dir", str(world.provisioned.data_dir)]
        status: dict[str, Any] = {}
        for _ in range(100):  # the management API refreshes its figures every few seconds
            shown = await _jiexu(*args, "--json", env=env)
            assert shown.exit_code == 0, shown.output
            status = json.loads(shown.stdout)
            if status["broker"]["unroutable_messages"]:
                break
            await asyncio.sleep(0.1)
        (found,) = status["broker"]["unroutable_messages"]
        assert (found["case_id"], found["recipient"], found["sender"], found["type"]) == (
            str(case_id),
            "999999",
            JIUJIANG,
            "rejection",
        )
        human = await _jiexu(*args, env=env)
        assert f"undeliverable: rejection from {JIUJIANG} to 999999, case {case_id}" in human.output
