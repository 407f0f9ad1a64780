"""`pcigate report` on the dev stack after real traffic (a session, a blocked DROP, an approved UPDATE of a
card): the PDF shows the summary, the control matrix filled from those events, the approvals register and
the integrity section, with the running header and `page x / y` footer; nothing in it is a clear card
number; it is PDF/A-3."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pypdf import PdfReader

from pcigate.devstack.testcards import luhn_valid
from tests.e2e.test_approvals_e2e import ADMINS, approver, connect, in_thread, unique
from tests.gateway_support import GatewayEndpoint, decide, pending_requests

pytestmark = pytest.mark.e2e

REASON = "CHG-5150 card expiry fix"


def test_a_pack_shows_the_matrix_filled_from_real_events(
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
    until = datetime.now(UTC) + timedelta(minutes=1)
    out = tmp_path / "pack.pdf"
    done = subprocess.run(
        [sys.executable, "-m", "pcigate", "report", "--config", dev_stack["config"],
         "--from", since.isoformat(), "--to", until.isoformat(), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pdf = PdfReader(out)
    assert pdf.xmp_metadata is not None
    assert b'pdfaid:part="3"' in pdf.xmp_metadata.stream.get_data()  # PDF/A-3
    pages = [page.extract_text() or "" for page in pdf.pages]
    text = "\n".join(pages)
    flat = " ".join(text.split())  # table cells wrap
    for needed in ("PCI DSS v4.0.1 evidence pack", "Summary", "Control matrix", "10.2.1.4", "10.2.2",
                   "Approvals register", REASON, alice, "Integrity", "verified"):  # fmt: skip
        assert needed in flat, needed
    total = len(pages)
    assert f"page 2 / {total}" in pages[1] and "Summary" in pages[1].splitlines()[0]  # running header
    matrix = next(p for p in pages if "Control matrix" in p)
    assert re.search(r"10\.2\.1\.4.*?\n?.*?evidenced", matrix, re.DOTALL)
    runs = re.findall(r"(?<!\d)\d{13,19}(?!\d)", text.replace(" ", ""))
    assert not [r for r in runs if luhn_valid(r)], "a card number in clear in the pack"
