"""The pack's rendering (no ledger): the template filled from a summary, the SVG chart, the PDF/A-3."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from reports.read import Integrity, Period
from reports.render import bar_chart, render_html, render_pdf
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
        version="0.1.0", oldest_available=T0,
    )  # fmt: skip
    assert "Control matrix" in html and "10.2.1.4" in html and "Approvals register" in html
    assert "&lt;b&gt;no&lt;/b&gt;" in html and "<b>no</b>" not in html  # values are escaped
    assert "NOT VERIFIED: no checkpoint has been signed yet" in html
    pdf = render_pdf(html)
    assert pdf.startswith(b"%PDF-")


def test_the_chart_is_svg_with_escaped_labels() -> None:
    chart = str(bar_chart(Counter({"2026-12-01": 3, "2026-12-02": 9})))
    assert chart.startswith("<svg") and chart.count("<rect") == 2 and "max 9 a day" in chart
    assert "No events" in str(bar_chart(Counter()))
