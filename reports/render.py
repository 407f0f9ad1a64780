"""The evidence pack as a PDF: jinja2 fills ``templates/pack.html.j2`` from a :class:`Summary`, its control
matrix and the :class:`Integrity` evidence; weasyprint lays it out (CSS paged media: running header with the
section, ``page x / y`` footer) as PDF/A-3b with the pack's files (``reports.pack``) attached. Charts are
inline SVG made here, so nothing is fetched.

Reproducible: no clock is read here. The PDF's dates are the pack checkpoint's signing time, its file
identifier is weasyprint's hash of the content, and the embedded font subsets are stamped with the same time
(fontTools reads it from ``SOURCE_DATE_EPOCH``, the reproducible-builds convention).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from importlib.resources import files
from typing import Final

import jinja2
from markupsafe import Markup
from weasyprint import HTML, Attachment

from reports.pack import PackFile
from reports.read import Integrity, Period
from reports.summary import Summary

__all__ = ["bar_chart", "render_html", "render_pdf"]

_TEMPLATES: Final = files("reports") / "templates"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def bar_chart(
    counts: Counter[str],
    *,
    order: Sequence[str] | None = None,
    unit: str = "a day",
    every_label: bool = False,
    width: int = 480,
    height: int = 120,
) -> Markup:
    """Counts as an SVG bar chart, the largest bar full height: bars in ``order`` (default: sorted keys,
    days), labelled at both ends, or under every bar with ``every_label``."""
    keys = list(order) if order is not None else sorted(counts)
    top = max((counts[k] for k in keys), default=0)
    if not top:
        return Markup("<p>Nothing to chart in the period.</p>")
    step = width / len(keys)
    bars = []
    for i, key in enumerate(keys):
        h = max(1.0, (height - 28) * counts[key] / top) if counts[key] else 0.0
        x = i * step
        bars.append(
            f'<rect x="{x:.1f}" y="{height - 14 - h:.1f}" width="{max(1.0, step * 0.8):.1f}" '
            f'height="{h:.1f}" fill="#3b6ea5"><title>{escape(key)}: {counts[key]}</title></rect>'
        )
        if every_label:
            bars.append(
                f'<text x="{x + step * 0.4:.1f}" y="{height - 2}" font-size="7" text-anchor="middle">'
                f"{escape(key)} ({counts[key]:,})</text>"
            )
    labels = f'<text x="0" y="9" font-size="8">max {top:,} {escape(unit)}</text>'
    if not every_label:
        labels += (
            f'<text x="0" y="{height - 2}" font-size="8">{escape(keys[0])}</text>'
            f'<text x="{width}" y="{height - 2}" font-size="8" text-anchor="end">{escape(keys[-1])}</text>'
        )
    return Markup(  # noqa: S704 - numbers and escaped labels only
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(bars)}{labels}</svg>'
    )


def render_html(
    summary: Summary,
    integrity: Integrity,
    period: Period,
    *,
    origin: str,
    keys: list[str],
    version: str,
    oldest_available: datetime | None,
    manifest_sha256: str,
) -> str:
    matrix = summary.matrix(integrity_verified=integrity.verified, oldest_available=oldest_available)
    scope = f"{origin}: {period.since:%Y-%m-%d} to {period.until:%Y-%m-%d}"
    if period.connections:
        scope += f" ({', '.join(sorted(period.connections))})"
    latency = summary.latency_histogram()
    return (
        _environment()
        .get_template("pack.html.j2")
        .render(
            s=summary,
            matrix=matrix,
            integrity=integrity,
            period=period,
            origin=origin,
            keys=keys,
            version=version,
            scope=scope,
            per_day_chart=bar_chart(summary.per_day, order=days(period)),
            latency_chart=bar_chart(latency, order=list(latency), unit="decisions", every_label=True),
            created=pdf_date(integrity, period),
            manifest_sha256=manifest_sha256,
            links={(p.old_size, p.new_size): p for p in integrity.links},
        )
    )


def days(period: Period, most: int = 1000) -> list[str] | None:
    """Every day of the period, those without events too (None past ``most`` days: only days with events)."""
    first, last = period.since.date(), (period.until - timedelta(microseconds=1)).date()
    count = (last - first).days + 1
    if count > most:
        return None
    return [(first + timedelta(days=i)).isoformat() for i in range(count)]


def pdf_date(integrity: Integrity, period: Period) -> datetime:
    """The pack's date: when its checkpoint was signed (without one: the period's end). Never the clock."""
    return period.until if integrity.last is None else integrity.last.created_at


def render_pdf(html: str, files: Sequence[PackFile], created: datetime) -> bytes:
    """The pack as PDF/A-3b bytes with ``files`` attached as associated files (relationship Data)."""
    stamp = created.astimezone(UTC).replace(tzinfo=None)  # weasyprint writes it as UTC ('Z')
    attachments = [
        Attachment(string=f.data, name=f.name, description=f.description, created=stamp, modified=stamp,
                   relationship="Data")
        for f in files
    ]  # fmt: skip
    with _source_date_epoch(created):
        return bytes(HTML(string=html).write_pdf(pdf_variant="pdf/a-3b", attachments=attachments))


@contextlib.contextmanager
def _source_date_epoch(moment: datetime) -> Iterator[None]:
    """fontTools stamps each font subset it writes with the clock unless ``SOURCE_DATE_EPOCH`` is set."""
    before = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(moment.timestamp()))
    try:
        yield
    finally:
        if before is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before
