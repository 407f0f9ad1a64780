"""sqlglot, configured the way the gateway reads SQL: the postgres dialect, every word of a utility
statement a token of its own (sqlglot would swallow the rest of DECLARE/EXECUTE/FETCH/SHOW/... into one
string), and no warnings logged (sqlglot logs the statement text, which may hold card numbers).

Shared by masking lineage and the policy's statement facts, so both read a statement the same way."""

from __future__ import annotations

from typing import ClassVar, Final

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokenizer_core import Token, TokenType

__all__ = ["DIALECT", "Parser", "Tokenizer", "parse", "tokenize"]


class Tokenizer(Postgres.Tokenizer):
    COMMANDS: ClassVar[set[TokenType]] = set()


class Parser(PostgresParser):
    def _warn_unsupported(self) -> None:
        return


DIALECT: Final = Postgres()


def tokenize(sql: str) -> list[Token]:
    return Tokenizer().tokenize(sql)


def parse(sql: str) -> list[exp.Expr | None]:
    """Every statement of ``sql``; raises sqlglot's errors (ParseError, TokenError) as they come."""
    return Parser(dialect=DIALECT).parse(tokenize(sql), sql)
