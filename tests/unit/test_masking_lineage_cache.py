"""StatementLineage's cache: statements that differ only in numbers share one analysis; a string, dollar
quote, quoted name or comment makes the text its own key (an opaque statement is judged by every name it
mentions, SQL inside a string included)."""

from __future__ import annotations

import pytest

from gateway.masking import lineage_glue
from gateway.masking.lineage_glue import StatementLineage
from pcigate.config import MaskingProfile


@pytest.fixture
def analyzed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = lineage_glue.LineageAnalyzer.analyze

    def counting(self: lineage_glue.LineageAnalyzer, sql: str) -> lineage_glue.Lineage:
        seen.append(sql)
        return real(self, sql)

    monkeypatch.setattr(lineage_glue.LineageAnalyzer, "analyze", counting)
    return seen


def test_numbers_share_an_analysis(analyzed: list[str]) -> None:
    lineage = StatementLineage(MaskingProfile(), lambda: None)
    for aid in (1, 48213, 99):
        view = lineage.analyze(f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid}")
        assert view.unknown is None and not view.sensitive
    assert len(analyzed) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            "SELECT query_to_xml('select 1', true, true, '')",
            "SELECT query_to_xml('select pan from cards', true, true, '')",
        ),
        ("SELECT 1 /* x */", "SELECT 1 /* pan */"),
        ('SELECT "x" FROM t', 'SELECT "pan" FROM t'),
    ],
)
def test_strings_comments_and_quoted_names_are_their_own_key(
    analyzed: list[str], first: str, second: str
) -> None:
    lineage = StatementLineage(MaskingProfile(), lambda: None)
    lineage.analyze(first)
    lineage.analyze(second)
    assert len(analyzed) == 2
