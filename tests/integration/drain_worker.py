"""A consumer process for the SIGTERM test: handles slowly, records each handled id, drains on TERM.

Usage: python -m tests.integration.drain_worker URL AGENCY DIRECTORY_JSON USER_PREFIX OUT_FILE

"Committing" is appending the message id to OUT_FILE and fsyncing it: after that the handler
returns and the consumer acks. Prints ``ready`` on stdout once consuming.
"""

from __future__ import annotations

import asyncio
import os
import sys

from broker.connection import connect
from broker.consumer import Consumer, ConsumerSettings, DeliveryInfo, run_until_signal
from broker.directory import AgencyDirectory
from broker.logging import configure_logging
from schemas.registry import Message


async def main(url: str, agency: str, directory_path: str, prefix: str, out_path: str) -> None:
    configure_logging("INFO")
    directory = AgencyDirectory.load(directory_path)
    out = open(out_path, "a", encoding="ascii")  # noqa: ASYNC230, SIM115 - the test's "store"

    async def handle(message: Message, delivery: DeliveryInfo) -> None:
        await asyncio.sleep(0.1)  # work in progress when the signal comes
        out.write(f"{message.envelope.message_id}\n")
        out.flush()
        os.fsync(out.fileno())

    connection = await connect(url, name=f"drain-worker-{agency}")
    consumer = Consumer(
        connection,
        agency=agency,
        handler=handle,
        directory=directory,
        settings=ConsumerSettings(prefetch=10, user_prefix=prefix),
    )
    await consumer.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await run_until_signal(consumer)
    await connection.close()
    out.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
