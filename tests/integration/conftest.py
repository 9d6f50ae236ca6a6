"""Fixtures of the integration tier: provisioned agencies on a real broker."""

from collections.abc import AsyncIterator

import pytest

from broker.directory import AgencyDirectory
from broker.pytest_plugin import TestVhost
from broker.signing import generate_private_key
from broker.topology import AgencyCredentials, TopologySpec
from tests.integration.transport_support import A, Agencies, B, C, MutableDirectory, directory_entry


@pytest.fixture
async def agencies(
    agencies_sync: tuple[TestVhost, TopologySpec, AgencyCredentials],
) -> AsyncIterator[Agencies]:
    """Three provisioned agencies with keys, logins and a directory an operator can change."""
    vhost, spec, credentials = agencies_sync
    keys = {code: generate_private_key() for code in spec.codes}
    directory = AgencyDirectory([directory_entry(code, keys[code]) for code in (A, B, C)])
    result = Agencies(vhost, spec, credentials, keys, MutableDirectory(directory))
    try:
        yield result
    finally:
        await result.close()
