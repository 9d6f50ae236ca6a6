"""The compose region's provisioning and transfers, run inside the agent image by deploy/compose/region
(`docker-compose run --rm tools provision|transfers N`), as user jiexu, with /region the state
directory (REGION_STATE on the host).

provision  keys of every agency and of the reconciler (kept when present), the agency directory,
           the topology and one broker user per agency (`jiexu topology apply`: passwords kept on a
           second run), one PostgreSQL role and database per agency (its store); then each agency's mounted
           secrets directory /region/secrets/CODE holds exactly its own files: CODE.broker.json,
           CODE.ed25519.pem, postgres-url.
transfers  N people per direction between the two agencies (branches: balance transferred, zero
           balance, balance paid out to the person), applied at the receiving agencies; waits until
           every case has ended at both ends, then checks the books and the dead-letter queues and
           prints one JSON object: {"cases", "states", "money_conserved", "moved_fen",
           "dead_letters" (per queue, per reason), "ok"}.
           Exit status 0 when ok.

Environment (set by the compose files): REGION_AGENCIES (two codes), REGION_AMQP_HOSTS (host:port of
each node, the first reachable is used), REGION_MANAGEMENT_PORTS (same order), REGION_POSTGRES
(host:port), REGION_VHOST; the administrator's name and password and the PostgreSQL superuser's
password as files under /run/secrets.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

STATE = Path(os.environ.get("REGION_STATE_DIR", "/region"))
SECRETS = Path("/run/secrets")
ALL = STATE / "secrets" / "all"
DIRECTORY = STATE / "directory" / "directory.json"
RECONCILER = "000000"
WAIT_S = float(os.environ.get("REGION_WAIT_S", "300"))


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ[name].split(",") if v.strip()]


def _read(name: str) -> str:
    return (SECRETS / name).read_text(encoding="utf-8").strip()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _broker() -> tuple[str, str]:
    """(admin AMQP URL, management URL) of the first node that answers."""
    user = quote(_read("rabbitmq-admin-user"), safe="")
    password = quote(_read("rabbitmq-admin-pass"), safe="")
    vhost = quote(os.environ.get("REGION_VHOST", "jiexu"), safe="")
    for hostport, mport in zip(
        _env_list("REGION_AMQP_HOSTS"), _env_list("REGION_MANAGEMENT_PORTS"), strict=True
    ):
        host, port = hostport.rsplit(":", 1)
        if _reachable(host, int(port)):
            return f"amqp://{user}:{password}@{host}:{port}/{vhost}", f"http://{host}:{mport}"
    raise SystemExit("no RabbitMQ node of the region answers")


def _postgres_url(user: str, password: str, database: str) -> str:
    host, port = os.environ["REGION_POSTGRES"].rsplit(":", 1)
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{database}"


# --- provision ---------------------------------------------------------------------------------

def provision() -> dict[str, Any]:
    from agents.tools.provision import AgencyProfile, _bank_account
    from broker.directory import AgencyDirectory, AgencyEntry
    from broker.directory_trust import OPERATOR, install_operator_key, sign_directory
    from broker.signing import generate_private_key, load_private_key, public_key_to_raw_b64, save_private_key

    agencies = _env_list("REGION_AGENCIES")
    ALL.mkdir(parents=True, exist_ok=True, mode=0o700)
    entries = []
    for code in [*agencies, RECONCILER]:
        pem = ALL / f"{code}.ed25519.pem"
        if pem.exists():
            key = load_private_key(pem)
        else:
            key = generate_private_key()
            save_private_key(key, pem)
        profile = AgencyProfile(code)
        name = profile.name if code != RECONCILER else "医保关系转移接续对账中心"
        entries.append(AgencyEntry(
            code=code, name=name, supported_versions=profile.supported_versions(),
            public_key=public_key_to_raw_b64(key), bank_account=_bank_account(code, name),
        ))
    # A folder of its own, mounted whole into every container: a file replaced here (a new
    # directory, a new signature) is seen inside the running containers, which reload it.
    DIRECTORY.parent.mkdir(exist_ok=True)
    DIRECTORY.parent.chmod(0o755)
    directory = DIRECTORY
    AgencyDirectory(entries).save(directory)
    directory.chmod(0o644)
    # The exchange's operator signs the directory; every process checks it against the operator's
    # public key (operator.ed25519.pub in its secrets directory).
    operator_pem = ALL / f"{OPERATOR}.ed25519.pem"
    if operator_pem.exists():
        operator = load_private_key(operator_pem)
    else:
        operator = generate_private_key()
        save_private_key(operator, operator_pem)
    install_operator_key(ALL, operator)
    sign_directory(directory, operator).chmod(0o644)

    amqp_url, management_url = _broker()
    env = {**os.environ, "JIEXU_AMQP_URL": amqp_url, "JIEXU_MANAGEMENT_URL": management_url}
    subprocess.run(
        ["/opt/jiexu/bin/jiexu", "topology", "apply", "--directory", str(directory),
         "--secrets-dir", str(ALL), "--json"],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )
    databases = asyncio.run(_databases(agencies))
    for code in [*agencies, RECONCILER]:
        own = STATE / "secrets" / code
        own.mkdir(exist_ok=True, mode=0o700)
        for name in (f"{code}.broker.json", f"{code}.ed25519.pem", "operator.ed25519.pub"):
            shutil.copyfile(ALL / name, own / name)
            (own / name).chmod(0o600)
        if code in databases:
            (own / "postgres-url").write_text(databases[code], encoding="utf-8")
            (own / "postgres-url").chmod(0o600)
    return {"agencies": agencies, "directory": str(directory), "broker": management_url}


async def _databases(agencies: list[str]) -> dict[str, str]:
    """One role and database per agency (the store and the books, JIEXU_LEDGER=postgres); the
    password is kept in /region/secrets/all/CODE.postgres-password."""

    admin = await _connect_postgres(_postgres_url("postgres", _read("postgres-password"), "postgres"))
    urls = {}
    try:
        for code in agencies:
            role = f"jiexu_{code}"
            kept = ALL / f"{code}.postgres-password"
            if not kept.exists():
                kept.write_text(secrets.token_urlsafe(24), encoding="utf-8")
                kept.chmod(0o600)
            password = kept.read_text(encoding="utf-8").strip()
            exists = await admin.fetchval("select 1 from pg_roles where rolname = $1", role)
            verb = "alter" if exists else "create"
            await admin.execute(f"{verb} role {role} login password '{password}'")
            if not await admin.fetchval("select 1 from pg_database where datname = $1", role):
                await admin.execute(f"create database {role} owner {role}")
            urls[code] = _postgres_url(role, password, role)
    finally:
        await admin.close()
    return urls


async def _connect_postgres(url: str) -> Any:
    import asyncpg

    deadline = time.monotonic() + 60
    while True:
        try:
            return await asyncpg.connect(url)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


# --- transfers ---------------------------------------------------------------------------------

def _settings(code: str) -> Any:
    from agents.service.settings import AgentSettings

    return AgentSettings(
        agency=code,
        data_dir=STATE / "data" / code,
        ledger="postgres",  # the books in PostgreSQL beside the store, as the agents keep them
        secrets_dir=STATE / "secrets" / code,
        directory=DIRECTORY,
        database_url=(STATE / "secrets" / code / "postgres-url").read_text(encoding="utf-8").strip(),
    )


async def transfers(per_direction: int, seed: int) -> dict[str, Any]:
    from agents.domain.case import ApplicationSubmitted
    from agents.service.process import open_service
    from agents.tools.seed import make_mover
    from broker.connection import connect
    from broker.dlq import list_dead_letters
    from schemas.common import BankAccount, InsuranceType, Person
    from schemas.contact import PayoutReason

    first, second = _env_list("REGION_AGENCIES")
    rng = random.Random(seed)
    opened = {code: await open_service(_settings(code)) for code in (first, second)}
    try:
        kinds = ("transferred", "zero", "payout")
        cases = []
        seq = seed % 1000  # the ID number's sequence (0..999); birth dates differ by seed
        for outgoing, receiving in ((first, second), (second, first)):
            for n in range(per_direction):
                seq = (seq + 1) % 1000
                kind = kinds[n % len(kinds)]
                out, into = make_mover(
                    rng, outgoing, receiving, seq, insurance_type=InsuranceType.EMPLOYEE,
                    retiree=False, arrears=False, zero_balance=kind == "zero",
                )
                cases.append((kind, outgoing, receiving, out, into, uuid.uuid4()))
        before = {}
        for code in (first, second):
            ledger = opened[code].ledger
            for _, outgoing, receiving, out, into, _ in cases:
                if code == outgoing:
                    await ledger.put_account(out)  # type: ignore[attr-defined]
                if code == receiving:
                    await ledger.put_account(into)  # type: ignore[attr-defined]
            before[code] = await _books(ledger)
        for kind, outgoing, receiving, out, _, case_id in cases:
            payout = kind == "payout"
            await opened[receiving].service.apply(ApplicationSubmitted(
                case_id=case_id,
                person=Person(name=out.name, gender=out.gender, id_number=out.id_number),
                insurance_type=out.insurance_type,
                from_region=outgoing,
                letter_number=f"LX-{receiving}-{case_id.hex[:8]}",
                payout_account=BankAccount(
                    bank_name="中国建设银行", bank_code="105100000017", account_name=out.name,
                    account_number="6217000010001234567",
                ) if payout else None,
                payout_reason=PayoutReason.CANNOT_RECEIVE_FUNDS if payout else None,
            ))
        print(f"applied {len(cases)} transfers; waiting for them to end at both agencies",
              file=sys.stderr, flush=True)
        states: dict[str, int] = {}
        deadline = time.monotonic() + WAIT_S
        while True:
            states = {}
            for _, outgoing, receiving, _, _, case_id in cases:
                for code in (outgoing, receiving):
                    record = await opened[code].service.store.get_case(case_id)
                    state = record.state if record is not None else "absent"
                    states[state] = states.get(state, 0) + 1
            if set(states) <= {"completed", "rejected", "discrepancy"} or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        # This run's movements only (earlier runs' totals cancel out): what left an agency's
        # balances was debited or paid out there, or credited at the other; what was debited at
        # one was credited at the other, and equals the balances of the people who moved.
        after = {code: await _books(opened[code].ledger) for code in (first, second)}
        delta = {code: [a - b for a, b in zip(after[code], before[code], strict=True)] for code in after}
        conserved = all(d[0] + d[1] + d[3] - d[2] == 0 for d in delta.values())
        debited_all = sum(d[1] for d in delta.values())
        credited_all = sum(d[2] for d in delta.values())
        expected_moved = sum(out.balance_fen for kind, _, _, out, _, _ in cases if kind == "transferred")
        conserved = conserved and debited_all == credited_all == expected_moved
    finally:
        for service in opened.values():
            await service.close()
    amqp_url, _ = _broker()
    admin = await connect(amqp_url, name="region-outcome")
    try:
        dead: dict[str, dict[str, int]] = {}
        for code in (first, second, RECONCILER):
            for letter in await list_dead_letters(admin, code):
                reasons = dead.setdefault(code, {})
                reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
    finally:
        await admin.close()
    ok = conserved and set(states) == {"completed"} and not any(dead.values())
    return {
        "cases": len(cases), "states": states, "money_conserved": conserved,
        "moved_fen": expected_moved, "dead_letters": dead, "ok": ok,
    }


async def _books(ledger: Any) -> tuple[int, int, int, int]:
    """(balances, debited, credited, paid out) of an agency's books, in fen."""
    return (
        await ledger.total_balance_fen(), await ledger.total_debited_fen(),
        await ledger.total_credited_fen(), await ledger.total_paid_out_fen(),
    )


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command == "provision":
        print(json.dumps(provision(), ensure_ascii=False))
        return 0
    if command == "transfers":
        count = int(argv[1]) if len(argv) > 1 else 3
        seed = int(argv[2]) if len(argv) > 2 else int(time.time()) % 100_000
        outcome = asyncio.run(transfers(count, seed))
        print(json.dumps(outcome, ensure_ascii=False))
        return 0 if outcome["ok"] else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
