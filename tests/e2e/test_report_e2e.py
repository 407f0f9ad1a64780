"""`pcigate report` on the dev stack after real traffic (a session, a blocked DROP, an approved UPDATE of a
card): the PDF shows the summary, the control matrix filled from those events, the approvals register and
the integrity section, with the running header and `page x / y` footer; it is PDF/A-3 with its evidence
attached; nothing in its pages or attachments is a clear card number; `pcigate verify-pack` checks it
offline and fails on a one-byte change to any attachment; made again, it is the same bytes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pypdf import PdfReader, PdfWriter

from evidence.checkpoint import NoteSigner
from gateway.masking.detect import find_pans
from pcigate.devstack.testcards import TEST_PANS
from tests.e2e.test_approvals_e2e import ADMINS, approver, connect, in_thread, unique
from tests.gateway_support import GatewayEndpoint, decide, pending_requests

pytestmark = pytest.mark.e2e

REASON = "CHG-5150 card expiry fix"


def pcigate(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pcigate", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def no_card_numbers(text: str, where: str) -> None:
    """None of the demo database's cards, and nothing the gateway's detector takes for a PAN once hashes
    and ids (hex words, which can hold long digit runs) are set aside."""
    digits = re.sub(r"[\s-]", "", text)
    assert not [pan for pans in TEST_PANS.values() for pan in pans if pan in digits], (
        f"a test card in {where}"
    )
    words = re.sub(r"\b[0-9a-fA-F-]*[a-fA-F][0-9a-fA-F-]*\b", " ", text)
    assert not find_pans(words.encode()), f"a card number in clear in {where}"


def tampered(pdf: Path, name: str, out: Path) -> Path:
    """The pack with one byte of attachment ``name`` changed (its stream rewritten, the PDF otherwise
    intact): what an edit of the evidence after the fact looks like."""
    writer = PdfWriter(clone_from=PdfReader(pdf))
    names = writer.root_object["/Names"]["/EmbeddedFiles"]["/Names"]
    for label, spec in zip(names[::2], names[1::2], strict=True):
        if label == name:
            stream = spec.get_object()["/EF"]["/F"].get_object()
            data = bytearray(stream.get_data())
            data[len(data) // 2] ^= 0x01
            stream.set_data(bytes(data))
    writer.write(out)
    return out


def test_a_pack_shows_the_matrix_filled_from_real_events_and_verifies_offline(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path: Path
) -> None:
    alice = unique("alice")
    since = datetime.now(UTC) - timedelta(
        seconds=1
    )  # the pack covers this test's traffic (and the rest since)
    with connect(gateway, alice, ADMINS) as conn:
        conn.execute("SELECT card_id, pan FROM cards LIMIT 3").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE cards")
        update = in_thread(lambda: conn.execute("UPDATE cards SET exp_year = exp_year WHERE card_id = 3"))
        (request,) = pending_requests(gateway, alice)
        assert decide(gateway, request, approver(gateway), reason=REASON).refused is None
        update.result(timeout=30)
    until = datetime.now(UTC)  # a period that is over: the pack can be made again, byte for byte
    time.sleep(2)  # events stamped before `until` still on their way to the ledger
    out = tmp_path / "pack.pdf"
    args = ("report", "--config", dev_stack["config"], "--from", since.isoformat(), "--to", until.isoformat())
    done = pcigate(*args, "--out", str(out))
    assert done.returncode == 0, done.stderr
    pdf = PdfReader(out)
    assert pdf.xmp_metadata is not None
    assert b'pdfaid:part="3"' in pdf.xmp_metadata.stream.get_data()  # PDF/A-3
    pages = [page.extract_text() or "" for page in pdf.pages]
    text = "\n".join(pages)
    flat = " ".join(text.split())  # table cells wrap
    for needed in ("PCI DSS v4.0.1 evidence pack", "Summary", "Control matrix", "10.2.1.4", "10.2.2",
                   "Approvals register", REASON, alice, "Integrity", "verified", "Checkpoint chain",
                   "Approval decision latency", "DROP TABLE cards"):  # fmt: skip
        assert needed in flat, needed
    total = len(pages)
    assert f"page 2 / {total}" in pages[1] and "Summary" in pages[1].splitlines()[0]  # running header
    matrix = next(p for p in pages if "Control matrix" in p)
    assert re.search(r"10\.2\.1\.4.*?\n?.*?evidenced", matrix, re.DOTALL)
    no_card_numbers(text, "the pages")
    attached = {name: data[0] for name, data in pdf.attachments.items()}
    assert set(attached) == {"evidence.json", "checkpoints.json", "keys.json", "manifest.json"}
    for name, data in attached.items():
        no_card_numbers(data.decode(), name)
    samples = json.loads(attached["evidence.json"])["samples"]
    assert {"10.2.1.4", "3.4.1"} <= {r for x in samples for r in x["requirements"]}

    keys = json.loads(pcigate("ledger", "keys", "--json", "--config", dev_stack["config"]).stdout)["keys"]
    key_args = [a for k in keys for a in ("--key", k["vkey"])]
    checked = pcigate("verify-pack", str(out), *key_args)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1] == "verified" and "warning" not in checked.stderr
    own = pcigate("verify-pack", str(out), "--json")
    assert own.returncode == 0 and json.loads(own.stdout)["keys_from_pack"] and "--key" in own.stderr

    for name in attached:
        bad = pcigate("verify-pack", str(tampered(out, name, tmp_path / f"bad-{name}.pdf")), *key_args)
        assert bad.returncode == 1, (name, bad.stdout)
        assert (
            "NOT VERIFIED" in bad.stdout and ("manifest" if name == "manifest.json" else name) in bad.stdout
        )
    foreign = NoteSigner(keys[0]["vkey"].split("+")[0], Ed25519PrivateKey.generate()).verifier.vkey
    other_key = pcigate("verify-pack", str(out), "--key", foreign)  # the log's name, another key
    assert other_key.returncode == 1 and "no signature from a trusted key" in other_key.stdout
    assert pcigate("verify-pack", str(tmp_path / "missing.pdf")).returncode == 2
    (tmp_path / "not.pdf").write_bytes(b"%PDF-1.7 nothing else")
    assert pcigate("verify-pack", str(tmp_path / "not.pdf")).returncode == 1

    again = tmp_path / "again.pdf"
    assert pcigate(*args, "--out", str(again)).returncode == 0
    assert again.read_bytes() == out.read_bytes()  # the same ledger and arguments: the same bytes
