"""The composition root: the settings choose every file, and each dependency can be handed in."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from agents.domain.case import ApplicationSubmitted, State
from agents.domain.clock import ManualClock
from agents.service.bootstrap import open_service
from agents.service.settings import AgentSettings
from agents.testing.fakes import InMemoryLedger
from agents.tools.provision import AgencyProfile
from agents.tools.seed import make_mover
from broker.directory import AgencyDirectory, AgencyEntry, DirectoryBankAccount
from broker.directory_trust import install_operator_key, sign_directory
from broker.signing import generate_private_key, public_key_to_raw_b64, save_private_key
from schemas.common import Person

pytestmark = pytest.mark.integration

HERE, THERE = "360400", "441900"


def _deployment(tmp_path: Path) -> AgentSettings:
    """A directory of two agencies and this agency's signing key, as the settings expect them."""
    settings = AgentSettings(
        agency=HERE,
        data_dir=tmp_path / "data",
        secrets_dir=tmp_path / "secrets",
        directory=tmp_path / "directory.json",
    )
    entries = []
    for code in (HERE, THERE):
        key = generate_private_key()
        if code == HERE:
            save_private_key(key, settings.paths.private_key(code))
        entries.append(
            AgencyEntry(
                code=code,
                name=f"agency {code}",
                supported_versions=AgencyProfile(code).supported_versions(),
                public_key=public_key_to_raw_b64(key),
                bank_account=DirectoryBankAccount(
                    bank_name="bank",
                    bank_code="102100099996",
                    account_name=f"agency {code}",
                    account_number=f"6222{code}00000001",
                ),
            )
        )
    AgencyDirectory(entries).save(settings.paths.directory)
    operator = generate_private_key()  # signed by the operator, as every process requires
    sign_directory(settings.paths.directory, operator)
    install_operator_key(settings.secrets_dir, operator)
    return settings


async def test_open_service_uses_the_ledger_handed_in_and_calls_back_after_each_commit(
    tmp_path: Path,
) -> None:
    settings = _deployment(tmp_path)
    _, account = make_mover(random.Random(3), THERE, HERE, 1)
    ledger = InMemoryLedger(HERE, [account])
    commits: list[None] = []
    opened = await open_service(
        settings, ManualClock(), ledger=ledger, on_commit=lambda: commits.append(None)
    )
    try:
        case_id = uuid.uuid4()
        case = await opened.service.apply(
            ApplicationSubmitted(
                case_id=case_id,
                person=Person(name=account.name, gender=account.gender, id_number=account.id_number),
                insurance_type=account.insurance_type,
                from_region=THERE,
                letter_number=f"LX{case_id.hex[:10]}",
            )
        )
        assert case.state is State.AWAITING_FORM
        assert len(commits) == 1  # the contact letter went into the outbox: the relay is woken
        assert opened.ledger is ledger
        assert await opened.store.get_case(case_id) is not None
    finally:
        await opened.close()
    assert settings.paths.store(HERE).exists()  # the store the settings name
    assert not settings.paths.ledger(HERE).exists()  # no SQLite ledger: the one handed in is used
