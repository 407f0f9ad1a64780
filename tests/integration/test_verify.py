"""`pcigate verify` against real PostgreSQL: an intact ledger passes, and each kind of tampering fails
naming the right index and kind.

One source ledger (300 real events; checkpoints 100 and 200 signed by key A, 300 by key B after a
rotation) is built once in a private schema; every test tampers with its own copy (a schema holding
copies of the tables, reached through ``search_path`` in the DSN: the dev stack's ledger role may not
create databases) and runs the real CLI on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import os
import pty
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import merkle
from evidence import verify as verify_module
from evidence.checkpoint import Checkpoint, NoteSigner
from evidence.entries import to_entry
from evidence.store import LedgerStore, NewEntry
from evidence.verify import verify_ledger
from pcigate.cli import main
from schemas import new_event_id
from tests.unit.test_schemas import examples

pytestmark = pytest.mark.integration

ORIGIN = "pcigate.test/verify"
SIZE = 300
TABLES = ("ledger_entries", "ledger_nodes", "ledger_checkpoints")


def _events(n: int) -> list[NewEntry]:
    """``n`` valid events of every type, each with a fresh id, as the evidence service would store them."""
    kinds = list(examples().values())
    out: list[NewEntry] = []
    for i in range(n):
        event = copy.deepcopy(kinds[i % len(kinds)])
        event["id"] = new_event_id()
        entry = to_entry(
            json.dumps(event).encode(), stream_seq=i + 1, subject=f"pcigate.audit.{event['type']}"
        )
        assert isinstance(entry, NewEntry), entry
        out.append(entry)
    return out


def _dev_config(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    return loaded


def _dsn(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}search_path={schema}"


@dataclass
class Source:
    schema: str
    key_a: Ed25519PrivateKey
    key_b: Ed25519PrivateKey
    leaves: list[bytes]

    @property
    def signer_a(self) -> NoteSigner:
        return NoteSigner(ORIGIN, self.key_a)

    @property
    def signer_b(self) -> NoteSigner:
        return NoteSigner(ORIGIN, self.key_b)

    @property
    def vkeys(self) -> list[str]:
        return [self.signer_a.verifier.vkey, self.signer_b.verifier.vkey]


@dataclass
class Copy:
    source: Source
    conn: asyncpg.Connection
    dsn: str


@pytest.fixture(scope="module")
async def source(dev_stack: dict[str, Any]) -> AsyncIterator[Source]:
    schema = f"vsrc_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dev_stack["ledger_dsn"])
    await admin.execute(f"CREATE SCHEMA {schema}")
    conn = await asyncpg.connect(dev_stack["ledger_dsn"], server_settings={"search_path": schema})
    try:
        store = LedgerStore(conn)
        await store.create_schema()
        src = Source(schema, Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), [])
        entries = _events(SIZE)
        for start in (0, 100, 200):
            await store.append(entries[start : start + 100])
            await store.checkpoint(src.signer_a if start < 200 else src.signer_b, ORIGIN)  # B: a rotation
        src.leaves = [merkle.leaf_hash(e.canonical) for e in entries]
        yield src
    finally:
        await conn.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@pytest.fixture
async def ledger(source: Source, dev_stack: dict[str, Any]) -> AsyncIterator[Copy]:
    """A private copy of the source ledger, to tamper with."""
    schema = f"vcp_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dev_stack["ledger_dsn"])
    await admin.execute(f"CREATE SCHEMA {schema}")
    for table in TABLES:
        await admin.execute(
            f"CREATE TABLE {schema}.{table} (LIKE {source.schema}.{table} INCLUDING ALL);"
            f"INSERT INTO {schema}.{table} SELECT * FROM {source.schema}.{table}"
        )
    conn = await asyncpg.connect(dev_stack["ledger_dsn"], server_settings={"search_path": schema})
    try:
        yield Copy(source, conn, _dsn(dev_stack["ledger_dsn"], schema))
    finally:
        await conn.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.out)
        return parsed

    def damage(self) -> tuple[int, str]:
        d = self.json["damage"]
        return d["index"], d["kind"]


def _in_process(argv: list[str]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Result(code, out.getvalue(), err.getvalue())


async def verify(
    lg: Copy, *args: str, keys: list[str] | None = None, subprocess: bool = False, cwd: Path | None = None
) -> Result:
    """Run `pcigate verify --ledger-dsn COPY --key ... --json ARGS` (in a thread, or as a process)."""
    argv = ["verify", "--ledger-dsn", lg.dsn, "--json", *args]
    for vkey in lg.source.vkeys if keys is None else keys:
        argv += ["--key", vkey]
    return await run_cli(argv, subprocess=subprocess, cwd=cwd)


async def run_cli(argv: list[str], *, subprocess: bool = False, cwd: Path | None = None) -> Result:
    if not subprocess:
        return await asyncio.to_thread(_in_process, argv)
    env = {k: v for k, v in os.environ.items() if k != "PCIGATE_CONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pcigate",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An auditor's shell: no config named, none in the working directory."""
    monkeypatch.delenv("PCIGATE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


async def _swap(conn: asyncpg.Connection, i: int, j: int) -> None:
    # idx is the primary key: a swap in one statement would collide on the way
    async with conn.transaction():
        await conn.execute("UPDATE ledger_entries SET idx = 999999 WHERE idx = $1", i)
        await conn.execute("UPDATE ledger_entries SET idx = $1 WHERE idx = $2", i, j)
        await conn.execute("UPDATE ledger_entries SET idx = $1 WHERE idx = 999999", j)


async def _insert_entry(conn: asyncpg.Connection, idx: int, entry: NewEntry) -> None:
    await conn.execute(
        "INSERT INTO ledger_entries (idx, event_id, event_type, event_time, canonical, leaf_hash, pci)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        idx,
        entry.event_id,
        entry.event_type,
        entry.event_time,
        entry.canonical,
        merkle.leaf_hash(entry.canonical),
        list(entry.pci),
    )


async def _add_checkpoint(conn: asyncpg.Connection, signer: NoteSigner, size: int, root: bytes) -> None:
    note = Checkpoint(ORIGIN, size, root).sign([signer])
    await conn.execute(
        "INSERT INTO ledger_checkpoints (size, root, note, key_name, key_id) VALUES ($1, $2, $3, $4, $5)",
        size,
        root,
        note,
        signer.name,
        signer.verifier.key_id,
    )


# ---------------------------------------------------------------------------------------- intact


async def test_an_intact_ledger_verifies(ledger: Copy, tmp_path: Path) -> None:
    tree = merkle.MemoryTree(ledger.source.leaves)
    text = await verify(ledger, subprocess=True, cwd=tmp_path)
    assert text.code == 0, text
    got = text.json
    assert got["ok"] is True and got["damage"] is None
    assert (got["entries"], got["checkpoints"], got["pruned"], got["pending"]) == (SIZE, 3, 0, 0)
    assert got["root"] == tree.root().hex()
    argv = ["verify", "--ledger-dsn", ledger.dsn]
    for vkey in ledger.source.vkeys:
        argv += ["--key", vkey]
    human = await run_cli(argv, subprocess=True, cwd=tmp_path)
    assert human.code == 0, human
    lines = human.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ok: 300 entries, 3 signed checkpoints")
    assert tree.root().hex() in lines[0]
    assert human.err == ""  # no progress bar when stderr is not a terminal


async def test_the_library_entry_point_reports_the_same(ledger: Copy) -> None:
    src = ledger.source
    report = await verify_ledger(ledger.conn, [src.signer_a.verifier, src.signer_b.verifier], origin=ORIGIN)
    assert report.ok and report.entries == SIZE and report.checkpoints == 3
    assert report.root == merkle.MemoryTree(src.leaves).root()


@pytest.mark.parametrize("batch", [1, 7, 64, 299, 300, 301])
async def test_batch_boundaries_do_not_matter(
    ledger: Copy, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints, nodes and damage straddling batches (and interleaved cursor reads) change nothing."""
    monkeypatch.setattr(verify_module, "_CHECKPOINT_BATCH", 1)
    src = ledger.source
    trusted = [src.signer_a.verifier, src.signer_b.verifier]
    report = await verify_ledger(ledger.conn, trusted, batch=batch)
    assert report.ok and (report.entries, report.checkpoints) == (SIZE, 3)
    assert report.root == merkle.MemoryTree(src.leaves).root()
    await _swap(ledger.conn, 99, 100)
    report = await verify_ledger(ledger.conn, trusted, batch=batch)
    assert report.damage is not None
    assert (report.damage.index, report.damage.kind) == (99, "reordered")


async def _digest(conn: asyncpg.Connection) -> list[str]:
    return [
        await conn.fetchval(
            f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t"
        )
        for table in TABLES
    ]


async def test_the_verifier_only_reads(ledger: Copy) -> None:
    before = await _digest(ledger.conn)
    # as on a hot standby, where nothing can be written: every session transaction is read-only
    readonly = Copy(ledger.source, ledger.conn, ledger.dsn + "&default_transaction_read_only=on")
    result = await verify(readonly)
    assert result.code == 0, result
    assert await _digest(ledger.conn) == before


async def test_a_progress_bar_only_on_a_terminal(ledger: Copy, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    argv = ["verify", "--ledger-dsn", ledger.dsn, "--json"]
    for vkey in ledger.source.vkeys:
        argv += ["--key", vkey]
    env = {k: v for k, v in os.environ.items() if k != "PCIGATE_CONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pcigate",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=follower,
        env=env,
        cwd=tmp_path,
    )
    os.close(follower)
    out, _ = await proc.communicate()
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed and drained
        while chunk := os.read(leader, 65536):
            drawn += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert json.loads(out)["ok"] is True  # stdout stays one JSON object
    assert b"\rverifying [" in drawn and b"300/300 entries" in drawn


# ---------------------------------------------------------------------------------------- tampering


async def test_one_changed_byte_of_a_payload(ledger: Copy, tmp_path: Path) -> None:
    canonical = bytes(await ledger.conn.fetchval("SELECT canonical FROM ledger_entries WHERE idx = 123"))
    at = canonical.index(b'"time":"') + 9
    changed = canonical[:at] + bytes([canonical[at] ^ 1]) + canonical[at + 1 :]
    await ledger.conn.execute("UPDATE ledger_entries SET canonical = $1 WHERE idx = 123", changed)
    result = await verify(ledger, subprocess=True, cwd=tmp_path)
    assert result.code == 1
    assert result.damage() == (123, "changed")
    assert changed.decode() not in result.out and "time" not in result.out  # no payload in the output


async def test_an_event_id_column_that_is_not_the_payloads(ledger: Copy) -> None:
    await ledger.conn.execute("UPDATE ledger_entries SET event_id = $1 WHERE idx = 42", uuid.uuid4())
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (42, "changed")


async def test_a_deleted_row(ledger: Copy) -> None:
    await ledger.conn.execute("DELETE FROM ledger_entries WHERE idx = 77")
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (77, "missing")


@pytest.mark.parametrize(("i", "j"), [(3, 7), (10, 11), (150, 290)])
async def test_two_rows_that_traded_places(ledger: Copy, i: int, j: int) -> None:
    await _swap(ledger.conn, i, j)
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (i, "reordered"), result.out


async def test_a_forged_row_appended_after_the_last_checkpoint(ledger: Copy) -> None:
    (forged,) = _events(1)
    await _insert_entry(ledger.conn, SIZE, forged)  # a correct leaf hash; even index: completes no node
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (SIZE, "extra")
    detail = result.json["damage"]["detail"]
    assert "not covered by any signed checkpoint" in detail
    assert "checkpoint_interval" in detail and "--allow-pending" in detail


async def test_the_newest_rows_deleted(ledger: Copy) -> None:
    # a careful truncation: the entries and every node over them; only checkpoint 300 remembers
    await ledger.conn.execute("DELETE FROM ledger_entries WHERE idx >= 250")
    await ledger.conn.execute("DELETE FROM ledger_nodes WHERE (idx + 1) << level > 250")
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (250, "truncated")


async def test_uncovered_rows_deleted_from_the_end_are_caught_by_the_stored_nodes(ledger: Copy) -> None:
    await ledger.conn.execute("DELETE FROM ledger_checkpoints WHERE size = 300")
    assert (await verify(ledger, "--allow-pending")).json["pending"] == 100
    await ledger.conn.execute("DELETE FROM ledger_entries WHERE idx >= 290")  # node (1, 149) stays
    result = await verify(ledger, "--allow-pending")
    assert result.code == 1
    assert result.damage() == (290, "truncated")


async def test_a_checkpoint_signed_by_another_key(ledger: Copy) -> None:
    tree = merkle.MemoryTree(ledger.source.leaves)
    await _add_checkpoint(
        ledger.conn, NoteSigner(ORIGIN, Ed25519PrivateKey.generate()), 250, tree.root(250)
    )  # the right root, the wrong key
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (200, "bad signature")
    assert "size 250" in result.json["damage"]["detail"]


async def test_a_validly_signed_checkpoint_with_a_wrong_root(ledger: Copy) -> None:
    await _add_checkpoint(ledger.conn, ledger.source.signer_b, 250, bytes(range(32)))
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (200, "inconsistent checkpoints")
    assert "size 250" in result.json["damage"]["detail"]


async def test_a_checkpoint_row_whose_columns_are_not_its_note(ledger: Copy) -> None:
    await ledger.conn.execute("UPDATE ledger_checkpoints SET root = $1 WHERE size = 200", bytes(32))
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (100, "inconsistent checkpoints")
    assert "columns differ from its signed note" in result.json["damage"]["detail"]


async def test_rewritten_history_with_consistent_nodes(ledger: Copy) -> None:
    """Entry 150 replaced by another valid event, its leaf hash and every node above it recomputed: only
    the signed checkpoints can tell, and the first one it breaks is 200 (damage in [100, 200))."""
    (forged,) = _events(1)
    await ledger.conn.execute(
        "UPDATE ledger_entries SET canonical = $1, leaf_hash = $2, event_id = $3 WHERE idx = 150",
        forged.canonical,
        merkle.leaf_hash(forged.canonical),
        forged.event_id,
    )
    leaves = [
        bytes(r["leaf_hash"])
        for r in await ledger.conn.fetch("SELECT leaf_hash FROM ledger_entries ORDER BY idx")
    ]
    fake = merkle.MemoryTree(leaves)
    await ledger.conn.execute("DELETE FROM ledger_nodes")
    await ledger.conn.executemany(
        "INSERT INTO ledger_nodes (level, idx, hash) VALUES ($1, $2, $3)",
        [(lvl, i, h) for lvl in range(1, len(fake.levels)) for i, h in enumerate(fake.levels[lvl])],
    )
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (100, "inconsistent checkpoints")
    assert "size 200" in result.json["damage"]["detail"]


async def test_a_stored_node_altered_or_missing(ledger: Copy) -> None:
    await ledger.conn.execute("UPDATE ledger_nodes SET hash = $1 WHERE level = 3 AND idx = 20", bytes(32))
    result = await verify(ledger)
    assert result.code == 1
    assert result.damage() == (160, "changed")  # node (3, 20) covers [160, 168)
    await ledger.conn.execute("DELETE FROM ledger_nodes WHERE level = 2 AND idx = 5")
    result = await verify(ledger)
    assert result.damage() == (20, "missing")
    assert "tree node (level 2, index 5)" in result.json["damage"]["detail"]


# ---------------------------------------------------------------------------------- what passes


async def _append_to_copy(lg: Copy, entries: list[NewEntry]) -> None:
    """Append as the service would, to the copy's plain tables (a dump restores partitions as plain tables,
    so LedgerStore, which manages monthly partitions, does not write there)."""
    leaves = [merkle.leaf_hash(e.canonical) for e in entries]
    await lg.conn.copy_records_to_table(
        "ledger_entries",
        columns=[
            "idx",
            "event_id",
            "event_type",
            "event_time",
            "stream_seq",
            "canonical",
            "leaf_hash",
            "pci",
        ],
        records=[
            (SIZE + i, e.event_id, e.event_type, e.event_time, e.stream_seq, e.canonical, leaf, list(e.pci))
            for i, (e, leaf) in enumerate(zip(entries, leaves, strict=True))
        ],
    )
    tree = merkle.MemoryTree(lg.source.leaves + leaves)
    await lg.conn.executemany(
        "INSERT INTO ledger_nodes (level, idx, hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [
            (lvl, i, tree.node(lvl, i))
            for lvl in range(1, len(tree.levels))
            for i in range(len(tree.levels[lvl]))
        ],
    )


async def test_pending_entries_fail_by_default_and_pass_when_allowed(ledger: Copy) -> None:
    await _append_to_copy(ledger, _events(20))
    strict = await verify(ledger)
    assert strict.code == 1
    assert strict.damage() == (SIZE, "extra")
    allowed = await verify(ledger, "--allow-pending")
    assert allowed.code == 0, allowed
    assert (allowed.json["entries"], allowed.json["pending"]) == (SIZE + 20, 20)


async def test_a_pruned_payload_still_verifies(ledger: Copy) -> None:
    await ledger.conn.execute("UPDATE ledger_entries SET canonical = NULL WHERE idx IN (5, 6, 299)")
    result = await verify(ledger)
    assert result.code == 0, result
    assert result.json["pruned"] == 3


async def test_keys_decide_and_rotation_needs_every_key(ledger: Copy) -> None:
    a, b = ledger.source.vkeys
    assert (await verify(ledger, keys=[a, b])).code == 0
    only_a = await verify(ledger, keys=[a])  # checkpoint 300 was signed by B after the rotation
    assert only_a.code == 1
    assert only_a.damage() == (200, "bad signature")
    only_b = await verify(ledger, keys=[b])
    assert only_b.damage() == (0, "bad signature")
    stranger = NoteSigner(ORIGIN, Ed25519PrivateKey.generate()).verifier.vkey
    untrusted = await verify(ledger, keys=[stranger])
    assert untrusted.code == 1
    assert untrusted.damage() == (0, "bad signature")
    none = await verify(ledger, keys=[])
    assert none.code == 2
    assert "no trusted key" in none.err


async def test_an_external_checkpoint_must_match_the_ledger(ledger: Copy, tmp_path: Path) -> None:
    note = await ledger.conn.fetchval("SELECT note FROM ledger_checkpoints WHERE size = 200")
    kept = tmp_path / "cp-200.note"
    kept.write_text(note)
    assert (await verify(ledger, "--checkpoint", str(kept))).code == 0
    other = merkle.MemoryTree([merkle.leaf_hash(e.canonical) for e in _events(150)])
    forked = tmp_path / "cp-fork.note"
    forked.write_text(Checkpoint(ORIGIN, 150, other.root()).sign([ledger.source.signer_a]))
    result = await verify(ledger, "--checkpoint", str(kept), "--checkpoint", str(forked))
    assert result.code == 1
    assert result.damage() == (100, "inconsistent checkpoints")
    assert "external checkpoint #2" in result.json["damage"]["detail"]
    bigger = tmp_path / "cp-400.note"
    bigger.write_text(Checkpoint(ORIGIN, 400, bytes(32)).sign([ledger.source.signer_b]))
    result = await verify(ledger, "--checkpoint", str(bigger))
    assert result.damage() == (SIZE, "truncated")
    missing = await verify(ledger, "--checkpoint", str(tmp_path / "nope"))
    assert missing.code == 2


async def test_the_config_supplies_dsn_origin_and_keys(
    ledger: Copy, dev_stack: dict[str, Any], tmp_path: Path
) -> None:
    pem = ledger.source.key_b.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file = tmp_path / "ledger.key"
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    dsn_file = tmp_path / "ledger.dsn"
    dsn_file.write_text(ledger.dsn)
    dsn_file.chmod(0o600)
    config = _dev_config(dev_stack["config"])
    config["ledger"] = {
        "dsn": f"file:{dsn_file}",
        "origin": ORIGIN,
        "signing_key": f"file:{key_file}",  # the current key B ...
        "trusted_keys": [ledger.source.vkeys[0]],  # ... and the one before the rotation
    }
    path = tmp_path / "pcigate.yaml"
    path.write_text(yaml.safe_dump(config))
    result = await run_cli(["verify", "--config", str(path), "--json"], subprocess=True, cwd=tmp_path)
    assert result.code == 0, result
    assert result.json["checkpoints"] == 3
    config["ledger"]["origin"] = "pcigate.test/another-log"
    path.write_text(yaml.safe_dump(config))
    result = await run_cli(["verify", "--config", str(path), "--json"], cwd=tmp_path)
    assert result.code == 1
    # key A (trusted_keys) did sign checkpoint 100, but for another log than the config names
    assert result.damage() == (0, "inconsistent checkpoints")
    assert "not 'pcigate.test/another-log'" in result.json["damage"]["detail"]
    # an auditor's copy of the config, without the private key: the listed public keys still do
    config["ledger"]["origin"] = ORIGIN
    config["ledger"]["signing_key"] = f"file:{tmp_path / 'not-here.key'}"
    config["ledger"]["trusted_keys"] = ledger.source.vkeys
    path.write_text(yaml.safe_dump(config))
    result = await run_cli(["verify", "--config", str(path), "--json"], cwd=tmp_path)
    assert result.code == 0, result
    assert "trusting only --key and ledger.trusted_keys" in result.err


async def test_an_unreachable_database_is_one_line(tmp_path: Path, source: Source) -> None:
    result = await run_cli(
        ["verify", "--ledger-dsn", "postgresql://nobody:secret@127.0.0.1:1/ledger", "--key", source.vkeys[0]],
        subprocess=True,
        cwd=tmp_path,
    )
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err
    assert result.err.startswith("pcigate: cannot verify the ledger:")
    assert "secret" not in result.err
