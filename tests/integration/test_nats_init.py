"""`nats init` against a private, real nats-server: create, verify, and refuse weaker streams."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StorageType

from pcigate import nats_provision as np
from pcigate.devstack import binaries, procs
from pcigate.devstack.natsserver import NatsServer
from pcigate.devstack.ports import free_port

pytestmark = pytest.mark.integration

SETTINGS = np.Settings(duplicate_window=120, replicas=1)


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = NatsServer(binaries.nats_server_binary(), tmp_path / "nats", free_port(), free_port())
    pid = server.start()
    yield server.url
    procs.terminate(pid, server.marker)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def test_creates_then_verifies(nats_url: str) -> None:
    first = await np.provision_url(nats_url, SETTINGS)
    assert [o.action for o in first.outcomes] == ["created"] * 4
    second = await np.provision_url(nats_url, SETTINGS)
    assert [o.action for o in second.outcomes] == ["verified"] * 4


async def test_audit_stream_refuses_deletes_and_dedupes(nats_url: str, nc: Client) -> None:
    await np.provision_url(nats_url, SETTINGS)
    js = nc.jetstream()
    ack = await js.publish("pcigate.audit.test", b"{}", headers={"Nats-Msg-Id": "evt-1"})
    dup = await js.publish("pcigate.audit.test", b"{}", headers={"Nats-Msg-Id": "evt-1"})
    assert dup.duplicate and dup.seq == ack.seq
    with pytest.raises(nats.js.errors.APIError):
        await js.delete_msg(np.AUDIT_STREAM, ack.seq)
    with pytest.raises(nats.js.errors.APIError):
        await js.purge_stream(np.AUDIT_STREAM)


async def test_approvals_bucket_supports_create_and_cas(nats_url: str, nc: Client) -> None:
    await np.provision_url(nats_url, SETTINGS)
    kv = await nc.jetstream().key_value(np.APPROVALS_BUCKET)
    rev = await kv.create("req-1", b"pending")
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await kv.create("req-1", b"pending again")
    await kv.update("req-1", b"approved", last=rev)
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await kv.update("req-1", b"denied", last=rev)  # a stale decision loses


async def test_weaker_existing_stream_is_refused(nats_url: str, nc: Client) -> None:
    js = nc.jetstream()
    weak = dataclasses.replace(np.required_streams(SETTINGS)[0], deny_purge=False, storage=StorageType.MEMORY)
    await js.add_stream(weak)
    with pytest.raises(np.ProvisionError) as err:
        await np.provision_url(nats_url, SETTINGS)
    assert err.value.name == np.AUDIT_STREAM
    assert any("deny_purge" in p for p in err.value.problems)
    assert any("storage is memory" in p for p in err.value.problems)
    info = await js.stream_info(np.AUDIT_STREAM)
    assert info.config.deny_purge is not True  # refused, not silently changed


async def test_shorter_duplicate_window_is_refused(nats_url: str, nc: Client) -> None:
    await np.provision_url(nats_url, np.Settings(duplicate_window=30))
    with pytest.raises(np.ProvisionError, match="duplicate_window is 30s"):
        await np.provision_url(nats_url, SETTINGS)
