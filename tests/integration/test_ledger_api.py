"""evidence.api (the read API) and `pcigate ledger` against the dev stack's real PostgreSQL ledger.

Each test gets a private schema filled with real events (every example type, twice, with fresh ids) and a
signed checkpoint. Every read must return the right rows *and* append exactly one ``ledger.read`` record
saying what was read; a read whose record cannot be written must fail and return nothing.
"""

from __future__ import annotations

import asyncio
import copy
import getpass
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.api import (
    BUNDLE_FORMAT,
    EventNotFoundError,
    LedgerReader,
    NotCoveredError,
    ProofBundle,
    ReadError,
    ReadNotRecordedError,
    Recorder,
    ServiceActor,
    UntrustedCheckpointError,
    check_bundle,
)
from evidence.checkpoint import NoteSigner
from evidence.entries import to_entry
from evidence.store import LedgerStore, NewEntry
from schemas import new_event_id, parse_event
from tests.unit.test_proofs import make_bundle, run_docs_snippet, tampered_bundles
from tests.unit.test_schemas import examples

pytestmark = pytest.mark.integration

ORIGIN = "pcigate.test/ledger"
PURPOSE = "QSA assessment 2026: sample for 10.2.1.1"
PCIGATE = str(Path(sys.executable).parent / "pcigate")


@dataclass
class Ledger:
    conn: asyncpg.Connection
    admin: asyncpg.Connection
    schema: str
    dsn: str  # the ledger DSN with this test's schema as search_path (for the CLI)
    signer: NoteSigner
    entries: list[NewEntry]
    events: list[dict[str, Any]]

    @property
    def vkey(self) -> str:
        return self.signer.verifier.vkey

    def reader(self, purpose: str | None = PURPOSE, keys: list[str] | None = None) -> LedgerReader:
        return LedgerReader(self.conn, self.recorder(), purpose, trusted_keys=keys or [self.vkey])

    def recorder(self) -> Recorder:
        actor = ServiceActor(
            sub="qsa-ext-017",
            iss="https://login.example.com/oauth2/default",
            host="db.test.internal",
            database="pcigate_ledger",
            log_origin=ORIGIN,
            kind="human",
            name="R. Alvarez (QSA)",
            groups=("auditors",),
            client_app="pytest",
        )
        return Recorder(actor)

    async def size(self) -> int:
        return await LedgerStore(self.conn).size()

    async def checkpoint(self) -> int:
        return (await LedgerStore(self.conn).checkpoint(self.signer, ORIGIN)).size


def real_events(copies: int = 2) -> list[dict[str, Any]]:
    out = []
    for _ in range(copies):
        for event in examples().values():
            fresh = copy.deepcopy(event)
            fresh["id"] = new_event_id()
            out.append(fresh)
    return out


@pytest.fixture
async def ledger(dev_stack: dict[str, Any]) -> AsyncIterator[Ledger]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dev_stack["ledger_dsn"])
    await admin.execute(f"CREATE SCHEMA {schema}")
    conn = await asyncpg.connect(dev_stack["ledger_dsn"], server_settings={"search_path": schema})
    try:
        store = LedgerStore(conn)
        await store.create_schema()
        events = real_events()
        entries = []
        for seq, event in enumerate(events, 1):
            entry = to_entry(
                json.dumps(event).encode(),
                stream_seq=seq,
                subject=f"pcigate.audit.{event['type']}",
                msg_id=event["id"],
            )
            assert isinstance(entry, NewEntry), entry
            entries.append(entry)
        await store.append(entries)
        signer = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
        await store.checkpoint(signer, ORIGIN)
        dsn = f"{dev_stack['ledger_dsn']}?options={quote(f'-csearch_path={schema}', safe='')}"
        yield Ledger(conn, admin, schema, dsn, signer, entries, events)
    finally:
        if not conn.is_closed():
            await conn.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def new_read(ledger: Ledger, before: int) -> dict[str, Any]:
    """The one entry appended since size ``before``: it must be a valid ledger.read event."""
    rows = await ledger.conn.fetch(
        "SELECT idx, event_type, canonical, pci FROM ledger_entries WHERE idx >= $1 ORDER BY idx", before
    )
    assert [r["event_type"] for r in rows] == ["ledger.read"], "a read appends exactly one ledger.read"
    event: dict[str, Any] = json.loads(rows[0]["canonical"])
    parse_event(event)  # contract-valid
    assert event["actor"]["sub"] == "qsa-ext-017"
    assert event["data"]["log_origin"] == ORIGIN
    assert event["data"]["purpose"] == PURPOSE
    assert {"10.2.1.3", "10.3.1", "10.2.2"} <= set(rows[0]["pci"])
    return event


async def all_rows(ledger: Ledger, below: int) -> list[asyncpg.Record]:
    return await ledger.conn.fetch(
        "SELECT idx, event_id, event_type, event_time, pci, actor_sub, session_id FROM ledger_entries"
        " WHERE idx < $1 ORDER BY idx",
        below,
    )


# ---------------------------------------------------------------------------------------------- events


T0 = datetime(2026, 11, 22, 9, 15, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
SESSION = "019a8f3e-51c2-7b10-8d4e-2f6a1c9b0e11"

QUERIES: list[tuple[str, dict[str, Any], Callable[[asyncpg.Record], bool], dict[str, Any]]] = [
    ("all", {}, lambda r: True, {}),
    (
        "time window",
        {"since": T0, "until": T1},
        lambda r: T0 <= r["event_time"] < T1,
        {"since": "2026-11-22T09:15:00.000000Z", "until": "2026-11-22T10:00:00.000000Z"},
    ),
    (
        "types",
        {"types": ["command.executed", "command.blocked"]},
        lambda r: r["event_type"] in {"command.executed", "command.blocked"},
        {"types": ["command.executed", "command.blocked"]},
    ),
    (
        "requirement",
        {"requirement": "10.2.1.4"},
        lambda r: "10.2.1.4" in r["pci"],
        {"requirement": "10.2.1.4"},
    ),
    (
        "actor",
        {"actor_sub": "00u5d6e7f8"},
        lambda r: r["actor_sub"] == "00u5d6e7f8",
        {"actor_sub": "00u5d6e7f8"},
    ),
    ("session", {"session_id": SESSION}, lambda r: r["session_id"] == SESSION, {}),
    (
        "everything at once",
        {
            "since": T0,
            "types": ["command.executed", "masking.applied"],
            "requirement": "10.2.2",
            "actor_sub": "00u1a2b3c4",
        },
        lambda r: (
            r["event_time"] >= T0
            and r["event_type"] in {"command.executed", "masking.applied"}
            and r["actor_sub"] == "00u1a2b3c4"
        ),
        {
            "since": "2026-11-22T09:15:00.000000Z",
            "types": ["command.executed", "masking.applied"],
            "requirement": "10.2.2",
            "actor_sub": "00u1a2b3c4",
        },
    ),
    (
        "nothing",
        {"types": ["approval.expired"], "actor_sub": "nobody"},
        lambda r: False,
        {"types": ["approval.expired"], "actor_sub": "nobody"},
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "oracle", "recorded"), QUERIES, ids=[q[0] for q in QUERIES])
async def test_events_match_their_filter_and_each_read_is_recorded(
    ledger: Ledger,
    name: str,
    kwargs: dict[str, Any],
    oracle: Callable[[asyncpg.Record], bool],
    recorded: dict[str, Any],
) -> None:
    reader = ledger.reader()
    await reader.events(limit=1)  # an earlier read: its record is an entry too, and later reads see it
    size = await ledger.size()
    expected = [r for r in await all_rows(ledger, size) if oracle(r)]
    page = await reader.events(**kwargs)
    assert [(e.index, e.event_id) for e in page] == [(r["idx"], str(r["event_id"])) for r in expected]
    assert page.tree_size == size
    assert page.next_after is None
    for record in page:
        assert record.canonical is not None
        assert record.event is not None
        assert json.loads(record.canonical) == record.event
        assert record.event["id"] == record.event_id
        assert record.event["type"] == record.type
        assert record.model().id == record.event_id
    read = await new_read(ledger, size)
    data = read["data"]
    assert data["operation"] == "events"
    assert data["results"] == len(expected)
    assert data["tree_size"] == size
    assert data["first_index"] == (expected[0]["idx"] if expected else None)
    assert data["last_index"] == (expected[-1]["idx"] if expected else None)
    assert (
        data["filter"]
        == {"types": [], "since": None, "until": None, "actor_sub": None, "requirement": None} | recorded
    )
    assert read["outcome"] == {
        "result": "success",
        "code": None,
        "message": f"session_id={SESSION}" if "session_id" in kwargs else None,
    }


async def test_events_come_in_pages_and_every_page_is_recorded(ledger: Ledger) -> None:
    reader = ledger.reader()
    size = await ledger.size()
    wanted = ["session.opened", "command.executed", "auth.failed"]
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        before = await ledger.size()
        page = await reader.events(types=wanted, after_index=after, limit=2)
        read = await new_read(ledger, before)
        assert read["data"]["results"] == len(page)
        seen += [e.index for e in page]
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    expected = [r["idx"] for r in await all_rows(ledger, size) if r["event_type"] in wanted]
    assert seen == expected
    assert pages == len(expected) // 2 + 1


async def test_bad_filters_are_refused_before_reading(ledger: Ledger) -> None:
    reader = ledger.reader()
    size = await ledger.size()
    for kwargs in (
        {"types": ["Not A Type"]},
        {"requirement": "99.1"},
        {"since": datetime(2026, 1, 1)},  # naive: no zone, no guess
        {"limit": 0},
        {"types": [f"t.x{'a' * i}" for i in range(33)]},
    ):
        with pytest.raises(ValueError):
            await reader.events(**kwargs)
    with pytest.raises(ValueError):
        ledger.reader(purpose="x" * 300)
    assert await ledger.size() == size


async def test_pruned_payloads_read_as_none(ledger: Ledger) -> None:
    await ledger.conn.execute("UPDATE ledger_entries SET canonical = NULL WHERE idx = 3")
    page = await ledger.reader().events(limit=5)
    assert page.records[3].canonical is None
    assert page.records[3].event is None
    with pytest.raises(ReadError, match="pruned"):
        page.records[3].model()
    with pytest.raises(ReadError, match="pruned"):
        await ledger.reader().inclusion_proof(ledger.entries[3].event_id)


# ------------------------------------------------------------------------------------------ checkpoints


async def test_checkpoints_latest_all_and_covering(ledger: Ledger) -> None:
    reader = ledger.reader()
    first = await ledger.conn.fetchval("SELECT size FROM ledger_checkpoints")
    await reader.events(limit=1)  # grows the ledger
    second = await ledger.checkpoint()
    assert second == first + 1

    size = await ledger.size()
    latest = await reader.latest_checkpoint()
    assert latest is not None
    assert latest.size == second
    assert latest.trusted_by == (ledger.vkey,)
    assert latest.note.startswith(f"{ORIGIN}\n{second}\n")
    read = await new_read(ledger, size)
    assert read["data"] | {"purpose": None} == {
        "log_origin": ORIGIN,
        "operation": "checkpoint",
        "first_index": None,
        "last_index": None,
        "tree_size": second,
        "filter": None,
        "results": 1,
        "purpose": None,
    }

    size = await ledger.size()
    every = await reader.checkpoints()
    assert [c.size for c in every] == [first, second]
    assert (await new_read(ledger, size))["data"]["results"] == 2
    assert [c.size for c in await reader.checkpoints(after_size=first)] == [second]

    size = await ledger.size()
    covering = await reader.checkpoint_covering(first + 1)
    assert covering is not None
    assert covering.size == second
    assert (await new_read(ledger, size))["data"]["tree_size"] == second
    assert (await reader.checkpoint_covering(first)).size == first  # type: ignore[union-attr]
    assert await reader.checkpoint_covering(second + 1) is None

    # a reader without the log's key sees the checkpoints, none of them trusted
    stranger = ledger.reader(keys=[NoteSigner(ORIGIN, Ed25519PrivateKey.generate()).verifier.vkey])
    assert (await stranger.latest_checkpoint()).trusted_by == ()  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------- proofs


async def test_an_inclusion_proof_bundle_checks_offline(ledger: Ledger, tmp_path: Path) -> None:
    reader = ledger.reader()
    target = ledger.entries[20]
    size = await ledger.size()
    bundle = await reader.inclusion_proof(str(target.event_id))
    assert bundle.event_id == str(target.event_id)
    assert bundle.canonical == target.canonical
    assert (bundle.leaf_index, bundle.tree_size) == (20, len(ledger.entries))
    assert bundle.verifier_keys == (ledger.vkey,)
    assert bundle.log_origin == ORIGIN
    result = check_bundle(bundle.to_json(), [ledger.vkey])
    assert result.ok, result.problem
    assert json.loads(bundle.to_json())["format"] == BUNDLE_FORMAT
    read = await new_read(ledger, size)
    assert read["data"] | {"purpose": None} == {
        "log_origin": ORIGIN,
        "operation": "inclusion_proof",
        "first_index": 20,
        "last_index": 20,
        "tree_size": len(ledger.entries),
        "filter": None,
        "results": 1,
        "purpose": None,
    }
    # the docs' stand-alone snippet agrees, and refuses every tampered variant
    done = run_docs_snippet(tmp_path, bundle.to_json(), ledger.vkey)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK: event {bundle.event_id} is entry 20 of {ORIGIN}")
    # another log's tree under this log's name, signed by another key
    foreign = make_bundle(5, 13, signers=[NoteSigner(ORIGIN, Ed25519PrivateKey.generate())]).to_dict()
    for what, bad in tampered_bundles(json.loads(bundle.to_json()), foreign).items():
        assert not check_bundle(bad, [ledger.vkey]).ok, what
        assert run_docs_snippet(tmp_path, bad, ledger.vkey).returncode != 0, what


async def test_a_proof_against_an_earlier_checkpoint_and_a_consistency_proof(ledger: Ledger) -> None:
    reader = ledger.reader()
    first = len(ledger.entries)
    await reader.events(limit=1)
    second = await ledger.checkpoint()
    target = ledger.entries[0].event_id
    assert (await reader.inclusion_proof(target)).tree_size == second
    old = await reader.inclusion_proof(target, checkpoint_size=first)
    assert old.tree_size == first
    assert check_bundle(old, [ledger.vkey]).ok

    size = await ledger.size()
    proof = await reader.consistency_proof(first)
    assert (proof.old_size, proof.new_size) == (first, second)
    proof.check()
    assert proof.old_checkpoint is not None
    assert proof.old_checkpoint.startswith(f"{ORIGIN}\n{first}\n")
    assert proof.verifier_keys == (ledger.vkey,)
    read = await new_read(ledger, size)
    assert (read["data"]["operation"], read["data"]["tree_size"], read["data"]["results"]) == (
        "consistency_proof",
        second,
        1,
    )
    with pytest.raises(NotCoveredError):
        await reader.consistency_proof(second + 1)


async def test_an_entry_no_checkpoint_covers_yet_says_to_wait(ledger: Ledger) -> None:
    reader = ledger.reader()
    size = await ledger.size()
    await reader.events(limit=1)
    own = (await new_read(ledger, size))["id"]  # the read's own record: after the latest checkpoint
    size = await ledger.size()
    with pytest.raises(NotCoveredError, match=r"wait for the next checkpoint \(ledger.checkpoint_interval\)"):
        await reader.inclusion_proof(own)
    failed = await new_read(ledger, size)
    assert failed["outcome"]["result"] == "failure"
    assert failed["outcome"]["code"] == "not_covered"
    assert failed["data"]["first_index"] == size - 1
    assert failed["data"]["results"] == 0
    await ledger.checkpoint()
    bundle = await reader.inclusion_proof(own)
    assert check_bundle(bundle, [ledger.vkey]).ok


async def test_an_unknown_event_is_not_found_and_the_attempt_recorded(ledger: Ledger) -> None:
    size = await ledger.size()
    with pytest.raises(EventNotFoundError):
        await ledger.reader().inclusion_proof(new_event_id())
    failed = await new_read(ledger, size)
    assert (failed["outcome"]["result"], failed["outcome"]["code"]) == ("failure", "not_found")
    assert failed["data"]["results"] == 0


async def test_a_checkpoint_signed_by_an_untrusted_key_gives_no_proof(ledger: Ledger) -> None:
    stranger = NoteSigner(ORIGIN, Ed25519PrivateKey.generate()).verifier.vkey
    size = await ledger.size()
    with pytest.raises(UntrustedCheckpointError, match="trusted keys"):
        await ledger.reader(keys=[stranger]).inclusion_proof(ledger.entries[0].event_id)
    assert await ledger.size() == size
    with pytest.raises(ReadError, match="trusted keys"):
        await LedgerReader(ledger.conn, ledger.recorder(), PURPOSE).inclusion_proof(new_event_id())


# ------------------------------------------------------------------------------------------ fail closed


READS: dict[str, Callable[[LedgerReader, Ledger], Any]] = {
    "events": lambda r, lg: r.events(types=["command.executed"]),
    "latest checkpoint": lambda r, lg: r.latest_checkpoint(),
    "all checkpoints": lambda r, lg: r.checkpoints(),
    "inclusion proof": lambda r, lg: r.inclusion_proof(lg.entries[5].event_id),
    "consistency proof": lambda r, lg: r.consistency_proof(3),
    "not found": lambda r, lg: r.inclusion_proof(new_event_id()),
}


@pytest.mark.parametrize("read", list(READS))
async def test_a_read_whose_record_cannot_be_written_returns_nothing(ledger: Ledger, read: str) -> None:
    size = await ledger.size()
    await ledger.conn.execute(
        "ALTER TABLE ledger_entries ADD CONSTRAINT no_reads CHECK (event_type <> 'ledger.read') NOT VALID"
    )
    with pytest.raises(ReadNotRecordedError, match=r"ledger\.read record could not be written"):
        await READS[read](ledger.reader(), ledger)
    assert await ledger.size() == size
    await ledger.conn.execute("ALTER TABLE ledger_entries DROP CONSTRAINT no_reads")
    try:  # the same read, recordable again, works (or fails as itself) and is recorded
        await READS[read](ledger.reader(), ledger)
    except EventNotFoundError:
        assert read == "not found"
    await new_read(ledger, size)


async def test_a_role_that_may_not_insert_may_not_read(ledger: Ledger) -> None:
    size = await ledger.size()
    await ledger.conn.execute("REVOKE INSERT ON ledger_entries FROM CURRENT_USER")
    try:
        with pytest.raises(ReadNotRecordedError) as raised:
            await ledger.reader().events()
        assert isinstance(raised.value.__cause__, asyncpg.InsufficientPrivilegeError)
    finally:
        await ledger.conn.execute("GRANT INSERT ON ledger_entries TO CURRENT_USER")
    assert await ledger.size() == size


async def test_a_record_refused_at_commit_returns_nothing(ledger: Ledger) -> None:
    await ledger.conn.execute(
        """
        CREATE FUNCTION refuse_reads() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'no reads today'; END $$;
        CREATE CONSTRAINT TRIGGER refuse_reads AFTER INSERT ON ledger_entries
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        WHEN (NEW.event_type = 'ledger.read') EXECUTE FUNCTION refuse_reads();
        """
    )
    size = await ledger.size()
    with pytest.raises(ReadNotRecordedError, match="no reads today"):
        await ledger.reader().inclusion_proof(ledger.entries[1].event_id)
    assert await ledger.size() == size


async def test_a_connection_lost_before_the_record_returns_nothing(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = await ledger.size()
    real_append = LedgerStore.append
    pid = ledger.conn.get_server_pid()

    async def append_after_losing_the_connection(store: LedgerStore, entries: Any) -> Any:
        await ledger.admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.2)
        return await real_append(store, entries)

    monkeypatch.setattr(LedgerStore, "append", append_after_losing_the_connection)
    with pytest.raises(ReadNotRecordedError):
        await ledger.reader().events()
    monkeypatch.setattr(LedgerStore, "append", real_append)
    fresh = await asyncpg.connect(ledger.dsn)
    try:
        assert await LedgerStore(fresh).size() == size
    finally:
        await fresh.close()
    with pytest.raises(ReadError):  # and a closed connection reads nothing either
        await ledger.reader().events()


async def test_a_read_inside_the_callers_transaction_is_refused(ledger: Ledger) -> None:
    size = await ledger.size()
    async with ledger.conn.transaction():
        with pytest.raises(ReadError, match="outside any transaction"):
            await ledger.reader().events()
    assert await ledger.size() == size


# ---------------------------------------------------------------------------------------------- the CLI


def cli_config(tmp_path: Path, dev_stack: dict[str, Any], ledger: Ledger, earlier: str) -> Path:
    """The dev stack's config with this test's log: origin, signing key (a 0600 file), an earlier key."""
    key_file = tmp_path / "ledger-signing.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        ledger.signer._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    config = yaml.safe_load(Path(dev_stack["config"]).read_text())
    config["ledger"] |= {"origin": ORIGIN, "signing_key": f"file:{key_file}", "trusted_keys": [earlier]}
    path = tmp_path / "pcigate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def pcigate(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [PCIGATE, *args], capture_output=True, text=True, timeout=120, check=False
    )


async def test_cli_ledger_proof_and_keys(ledger: Ledger, dev_stack: dict[str, Any], tmp_path: Path) -> None:
    earlier = NoteSigner(ORIGIN, Ed25519PrivateKey.generate()).verifier
    config = str(cli_config(tmp_path, dev_stack, ledger, earlier.vkey))
    target = ledger.entries[7]
    size = await ledger.size()

    done = await pcigate(
        "ledger",
        "proof",
        str(target.event_id),
        "--purpose",
        PURPOSE,
        "--ledger-dsn",
        ledger.dsn,
        "--config",
        config,
    )
    assert done.returncode == 0, done.stderr
    bundle = ProofBundle.from_json(done.stdout)
    assert bundle.canonical == target.canonical
    assert check_bundle(done.stdout, [ledger.vkey]).ok
    rows = await ledger.conn.fetch("SELECT event_type, canonical FROM ledger_entries WHERE idx >= $1", size)
    assert [r["event_type"] for r in rows] == ["ledger.read"]
    read = json.loads(rows[0]["canonical"])
    assert read["actor"] | {"name": None} == {
        "sub": getpass.getuser(),
        "iss": f"local:{socket.gethostname()}",
        "name": None,
        "groups": [],
        "kind": "human",
        "on_behalf_of": None,
    }
    assert read["origin"]["client_app"] == "pcigate-cli"
    assert read["data"]["operation"] == "inclusion_proof"
    assert read["data"]["purpose"] == PURPOSE
    assert read["data"]["first_index"] == 7

    # offline, by the CLI
    path = tmp_path / "bundle.json"
    path.write_text(done.stdout)
    checked = await pcigate("ledger", "check-proof", str(path), "--key", ledger.vkey)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"ok: event {target.event_id} is entry 7")
    assert (await pcigate("ledger", "check-proof", str(path), "--config", config)).returncode == 0
    path.write_text(done.stdout.replace(str(target.event_id), new_event_id(), 1))
    refused = await pcigate("ledger", "check-proof", str(path), "--key", ledger.vkey)
    assert refused.returncode == 1
    assert "does NOT check" in refused.stderr
    path.write_text(done.stdout)
    wrong_key = await pcigate("ledger", "check-proof", str(path), "--key", earlier.vkey)
    assert wrong_key.returncode == 1

    # the read's own record is not covered by a checkpoint yet: wait
    not_yet = await pcigate("ledger", "proof", read["id"], "--ledger-dsn", ledger.dsn, "--config", config)
    assert not_yet.returncode == 1
    assert not_yet.stdout == ""
    assert "wait for the next checkpoint" in not_yet.stderr
    assert len(not_yet.stderr.strip().splitlines()) == 1

    unknown = await pcigate("ledger", "proof", new_event_id(), "--ledger-dsn", ledger.dsn, "--config", config)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("pcigate: no event ")
    assert len(unknown.stderr.strip().splitlines()) == 1

    bad_id = await pcigate("ledger", "proof", "not-a-uuid", "--ledger-dsn", ledger.dsn, "--config", config)
    assert bad_id.returncode == 2

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = await pcigate(
        "ledger",
        "proof",
        new_event_id(),
        "--ledger-dsn",
        f"postgresql://u:p@127.0.0.1:{port}/db",
        "--config",
        config,
    )
    assert down.returncode == 1
    assert down.stderr.startswith("pcigate: cannot read the ledger:")
    assert len(down.stderr.strip().splitlines()) == 1
    assert "Traceback" not in down.stderr

    # keys: the current signing key, then the earlier one
    keys = await pcigate("ledger", "keys", "--json", "--config", config)
    assert keys.returncode == 0, keys.stderr
    assert json.loads(keys.stdout) == {
        "origin": ORIGIN,
        "keys": [
            {
                "vkey": ledger.vkey,
                "name": ORIGIN,
                "key_id": f"{ledger.signer.verifier.key_id:08x}",
                "current": True,
            },
            {"vkey": earlier.vkey, "name": ORIGIN, "key_id": f"{earlier.key_id:08x}", "current": False},
        ],
    }
    text = await pcigate("ledger", "keys", "--config", config)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[1].split() == ["current", "key", "id", f"{ledger.signer.verifier.key_id:08x}", ledger.vkey]
    assert lines[2].split() == ["earlier", "key", "id", f"{earlier.key_id:08x}", earlier.vkey]
