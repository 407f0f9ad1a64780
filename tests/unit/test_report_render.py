"""The pack's rendering (no ledger): the template filled from a summary, the SVG charts, the PDF/A-3 with
its files attached, byte-identical when made twice."""

from __future__ import annotations

import io
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from pypdf import PdfReader

from reports.pack import pack_files
from reports.read import Integrity, Period
from reports.render import bar_chart, pdf_date, render_html, render_pdf
from reports.verify_pack import cover_digest
from tests.unit.test_report_pack import ORIGIN
from tests.unit.test_report_pack import integrity as pack_integrity
from tests.unit.test_report_summary import event, summary

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_template_shows_the_summary_matrix_and_register() -> None:
    s = summary()
    s.add(0, "approval.requested", T0, ("7.2.3",), event("approval.requested", {"request_id": "r1"}))
    decided = event(
        "approval.decided", {"request_id": "r1", "decision": "deny", "final": True, "reason": "<b>no</b>"}
    )
    s.add(1, "approval.decided", T0 + timedelta(seconds=4), ("7.2.3",), decided)
    s.add(2, "command.blocked", T0, ("10.2.1.4",), event("command.blocked", outcome={"result": "blocked"}))
    integrity = Integrity(None, None, None, 0, 2, ("no checkpoint has been signed yet",))
    html = render_html(
        s, integrity, Period(T0, T0 + timedelta(days=1)), origin="pcigate.test/ledger", keys=["k+1+AA"],
        version="0.1.0", oldest_available=T0, manifest_sha256="ab" * 32,
    )  # fmt: skip
    assert "Control matrix" in html and "10.2.1.4" in html and "Approvals register" in html
    assert "&lt;b&gt;no&lt;/b&gt;" in html and "<b>no</b>" not in html  # values are escaped
    assert "NOT VERIFIED: no checkpoint has been signed yet" in html
    assert "ab" * 32 in html and "median 4.0 s" in html
    pdf = render_pdf(html, [], T0)
    assert pdf.startswith(b"%PDF-")


def test_the_pdf_carries_the_files_and_is_reproducible() -> None:
    period = Period(T0, T0 + timedelta(days=1))
    integrity = pack_integrity()
    files, digest = pack_files(integrity, period, origin=ORIGIN, keys=["k"], generator="pcigate test")
    html = render_html(
        summary(), integrity, period, origin=ORIGIN, keys=["k"], version="0.1.0", oldest_available=T0,
        manifest_sha256=digest,
    )  # fmt: skip
    first = render_pdf(html, files, pdf_date(integrity, period))
    time.sleep(1.1)  # a clock read anywhere (font subsets are stamped in seconds) would now show
    assert first == render_pdf(html, files, pdf_date(integrity, period))
    reader = PdfReader(io.BytesIO(first))
    assert {name: data[0] for name, data in reader.attachments.items()} == {f.name: f.data for f in files}
    assert cover_digest(reader.pages[0].extract_text()) == digest
    assert "Checkpoint chain" in "".join(p.extract_text() for p in reader.pages)


def test_the_chart_is_svg_with_escaped_labels() -> None:
    chart = str(bar_chart(Counter({"2026-12-01": 3, "2026-12-02": 9})))
    assert chart.startswith("<svg") and chart.count("<rect") == 2 and "max 9 a day" in chart
    assert "Nothing to chart" in str(bar_chart(Counter()))
    buckets = str(bar_chart(Counter({"< 10 s": 0, "10 s to 1 min": 4}), order=["< 10 s", "10 s to 1 min"],
                            unit="decisions", every_label=True))  # fmt: skip
    assert "&lt; 10 s (0)" in buckets and "10 s to 1 min (4)" in buckets and "max 4 decisions" in buckets
