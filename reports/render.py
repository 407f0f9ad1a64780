"""The evidence pack as a PDF: jinja2 fills ``templates/pack.html.j2`` from a :class:`Summary`, its control
matrix and the :class:`Integrity` evidence; weasyprint lays it out (CSS paged media: running header with the
section, ``page x / y`` footer) as PDF/A-3b. Charts are inline SVG made here, so nothing is fetched.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from html import escape
from importlib.resources import files
from typing import Final

import jinja2
from markupsafe import Markup
from weasyprint import HTML

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


def bar_chart(per_day: Counter[str], *, width: int = 480, height: int = 120) -> Markup:
    """Events per day as an SVG bar chart (days in order, the largest bar full height)."""
    days = sorted(per_day)
    if not days:
        return Markup("<p>No events in the period.</p>")
    top = max(per_day.values())
    step = width / len(days)
    bars = []
    for i, day in enumerate(days):
        h = max(1.0, (height - 20) * per_day[day] / top)
        x = i * step
        bars.append(
            f'<rect x="{x:.1f}" y="{height - 14 - h:.1f}" width="{max(1.0, step * 0.8):.1f}" '
            f'height="{h:.1f}" fill="#3b6ea5"><title>{escape(day)}: {per_day[day]}</title></rect>'
        )
    first, last = escape(days[0]), escape(days[-1])
    labels = (
        f'<text x="0" y="{height - 2}" font-size="8">{first}</text>'
        f'<text x="{width}" y="{height - 2}" font-size="8" text-anchor="end">{last}</text>'
        f'<text x="0" y="8" font-size="8">max {top:,} a day</text>'
    )
    return Markup(  # noqa: S704 - numbers and escaped day labels only
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
) -> str:
    matrix = summary.matrix(integrity_verified=integrity.verified, oldest_available=oldest_available)
    scope = f"{origin}: {period.since:%Y-%m-%d} to {period.until:%Y-%m-%d}"
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
            per_day_chart=bar_chart(summary.per_day),
        )
    )


def render_pdf(html: str) -> bytes:
    """The pack as PDF/A-3b bytes."""
    return bytes(HTML(string=html).write_pdf(pdf_variant="pdf/a-3b"))
