"""What the gateway needs to know about a SQL statement's text, cheaply enough to run on every statement.

Pure functions on ``str``: :func:`split_statements` (a simple Query into the statements the server will
run), :func:`normalize` / :func:`fingerprint` (literals out, for grouping and cache keys), :func:`analyze`
(kind, objects, and whether the statement may start upstream before its audit record is durable), and —
re-exported from :mod:`gateway.sqlmask` — the PAN masking of text and bind parameters.

Why not a SQL parser: sqlglot costs ~190 µs a statement; this module lexes with compiled regular
expressions the way PostgreSQL's scanner does (``scan.l``) and reasons over tokens only. The lexer must
agree with the server's wherever disagreeing could hide code from us (strings, dollar quotes, quoted
identifiers, nested comments); everywhere else it may be coarser. It assumes ``standard_conforming_strings
= on`` (the default since 9.1): a statement whose meaning depends on that setting (a plain string literal
holding a backslash) is flagged ``scs_dependent`` and never read-only; :func:`split_statements` takes the
setting as a parameter because the number of statements must match what the server answers.

``analyze`` is computed from the normalized text alone and cached by it, so a cache hit can never give an
answer a fresh analysis of that statement would not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, cast

from gateway.sqlmask import audit_text, luhn_valid, mask_parameter, mask_text

__all__ = [
    "KINDS",
    "StatementInfo",
    "analyze",
    "audit_text",
    "clear_cache",
    "fingerprint",
    "luhn_valid",
    "mask_parameter",
    "mask_text",
    "normalize",
    "normalize_ex",
    "split_statements",
    "split_statements_counted",
]

KINDS: Final = frozenset({"dql", "dml", "ddl", "dcl", "tcl", "session", "copy", "call", "utility", "other"})

# --------------------------------------------------------------------------------------------- lexing

# PostgreSQL: ident_start [A-Za-z\200-\377_], ident_cont adds [0-9$]; every non-ASCII character is an
# identifier character (its UTF-8 bytes are all >= 0x80).
_IDS = r"A-Za-z_\x80-\U0010ffff"
_IDC = r"A-Za-z0-9_$\x80-\U0010ffff"
_TAG = r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*"  # dollar-quote tag: no '$'
_SQ_BODY = r"[^']*(?:''[^']*)*'?"  # after the opening quote; unterminated runs to the end
_E_INNER = r"[^'\\]*+(?:(?:\\[\s\S]?|'')[^'\\]*+)*+"
_E_BODY = _E_INNER + "'?"
# PostgreSQL continues a string across whitespace holding a newline ('a'<newline>'b' is 'ab'), in the state
# the string started in: after an E'' string the next part still takes backslash escapes. (For the other
# kinds a continuation lexes exactly like a new plain string, so they need no rule of their own.)
_CONTINUE = r"(?:[ \t\f]|--[^\n\r]*+)*+[\n\r](?:[ \t\n\r\f\v]++|--[^\n\r]*+[\n\r])*+'"
_E_STRING = rf"{_E_INNER}(?:'{_CONTINUE}{_E_INNER})*+'?"
_QI_BODY = r'[^"]*(?:""[^"]*)*"?'
_DEC = r"[0-9]+(?:_[0-9]+)*"
_NUMBER = (
    r"0[xX](?:_?[0-9A-Fa-f])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+"
    rf"|(?:{_DEC}(?:\.(?!\.)(?:{_DEC})?)?|\.{_DEC})(?:[eE][+-]?{_DEC})?"
)
_OPCHARS: Final = "~!@#^&|`?+-*/%<>="
_WS: Final = re.compile(r"[ \t\n\r\f\v]+")

# Token categories.
_LIT = 1  # any literal but a plain '...' string
_PLAIN = 2  # plain '...' or N'...' string: its meaning depends on standard_conforming_strings
_QI = 3
_COMMENT = 4
_BLOCK = 5  # opening of a /* comment; nesting is followed in code
_VERBATIM = 6  # $n parameter, or a lone $
_SEMI = 7
_LPAREN = 8
_RPAREN = 9

_NB = rf"(?<![{_IDC}])"  # not after an identifier character


def _lexer(
    plain_body: str, split: bool, bit_body: str = r"[^']*'?"
) -> tuple[re.Pattern[str], dict[int, tuple[int, int]]]:
    """One ``match`` at a token boundary: group ``skip`` eats what needs no attention (identifiers,
    keywords, operators, punctuation, whitespace), then at most one token that does.

    The skip runs over most characters in one character-class loop and so also eats the prefix of
    E''/B''/X''/N''/U&''/U&"" literals; their alternatives below recognise the prefix by looking behind the
    quote, and report its length with the category. A digit or ``$`` right after an identifier character
    continues the identifier; at the start of the match (just after a literal or number) it cannot."""
    punct = ";()" if split else ""
    skip = (
        rf"(?P<skip>(?:(?![0-9$])(?:[^'\"$0-9.\-/{punct}]++|[0-9$](?<=[{_IDC}][0-9$])[{_IDC}]*+"
        rf"|-(?!-)|/(?!\*)|\.(?![0-9])|\$(?![0-9]|(?:{_TAG})?\$))*+)?)"
    )
    # Numbers first (the most frequent); every other alternative starts with a literal character, which
    # lets the regex engine reject it on one comparison. Each ends with an empty group that names it
    # (m.lastindex); where the token starts is known anyway: at the end of the skip, less the prefix.
    specials: list[tuple[str, str, int, int]] = [
        ("num", _NUMBER, _LIT, 0),
        ("es", rf"'(?<={_NB}[eE]'){_E_STRING}", _LIT, 1),
        ("us", rf"'(?<={_NB}[uU]&'){_SQ_BODY}", _LIT, 2),
        ("bs", rf"'(?<={_NB}[bBxX]'){bit_body}", _LIT, 1),
        ("ns", rf"'(?<={_NB}[nN]'){plain_body}", _PLAIN, 1),
        ("sq", rf"'{plain_body}", _PLAIN, 0),
        ("uqi", rf'"(?<={_NB}[uU]&"){_QI_BODY}', _QI, 2),
        ("qi", rf'"{_QI_BODY}', _QI, 0),
        ("dq", rf"\$(?P<tag>(?:{_TAG})?)\$[\s\S]*?(?:\$(?P=tag)\$|\Z)", _LIT, 0),
        ("par", r"\$[0-9]*", _VERBATIM, 0),
        ("lc", r"--[^\n\r]*", _COMMENT, 0),
        ("bc", r"/\*", _BLOCK, 0),
    ]
    if split:
        specials[1:1] = [("semi", ";", _SEMI, 0), ("lp", r"\(", _LPAREN, 0), ("rp", r"\)", _RPAREN, 0)]
    body = "|".join(f"(?:{rx})(?P<{name}>)" for name, rx, _, _ in specials)
    pattern = re.compile(f"{skip}(?:{body})?")
    cats = {pattern.groupindex[name]: (cat, plen) for name, _, cat, plen in specials}
    return pattern, cats


_NORM_RE, _NORM_CAT = _lexer(_SQ_BODY, split=False)
_SPLIT_ON, _SPLIT_ON_CAT = _lexer(_SQ_BODY, split=True)
# standard_conforming_strings = off. A B''/X'' string continues as it started (scan.l returns to the
# string's own state after a continuation), without backslash escapes; with the setting on, a continuation
# lexed as a new plain string ends at the same quote, so only this lexer needs the rule.
_BIT_STRING: Final = rf"[^']*+(?:'{_CONTINUE}[^']*+)*+'?"
_SPLIT_OFF, _SPLIT_OFF_CAT = _lexer(_E_BODY, split=True, bit_body=_BIT_STRING)
_BLOCK_DELIM: Final = re.compile(r"/\*|\*/")
_WORD: Final = re.compile(rf"[{_IDS}][{_IDC}]*")
# For the hot paths (plain text, '...' strings and numbers only):
# where a number starts: a digit not inside a name or $n, or a dot before a digit (one character class
# first, so the engine scans for candidates fast; the assertions then look at each).
_NUMBER_START: Final = re.compile(rf"[0-9.](?:(?<=\.)(?=[0-9])|(?<=[0-9])(?<![{_IDC}][0-9]))")
_NUMBER_RE: Final = re.compile(_NUMBER)
_DQ_SHAPE: Final = re.compile(rf"\$(?:{_TAG})?\$")  # could open a dollar quote
_IDC_ASCII: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$")


def _match(pattern: re.Pattern[str]) -> Callable[[str, int], re.Match[str]]:
    """A lexer's ``match``: its pattern matches the empty string, so it never returns None."""
    return cast("Callable[[str, int], re.Match[str]]", pattern.match)


def _check_end(skip_end: int, n: int) -> None:
    if skip_end != n:  # every character either is skipped or starts a token; fail closed if not
        raise RuntimeError(f"sqltext: lexer stopped at offset {skip_end} of {n}")


def _block_close(sql: str, pos: int) -> int:
    """End of the /* comment whose opening ends at ``pos`` (comments nest); -1 when it is unterminated."""
    depth = 1
    for m in _BLOCK_DELIM.finditer(sql, pos):
        if sql[m.start()] == "/":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return m.end()
    return -1


def _block_end(sql: str, pos: int) -> int:
    """End of the /* comment whose opening ends at ``pos`` (comments nest); unterminated: end of text."""
    end = _block_close(sql, pos)
    return len(sql) if end < 0 else end


def _lower_ascii(text: str) -> str:
    """Fold like PostgreSQL's downcase_identifier: ASCII only (``Ä`` stays, so ``Äx`` and ``äx`` differ)."""
    if text.isascii():
        return text.lower()
    return text.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


def _clean(chunk: str) -> str:
    """Whitespace runs to one space, ASCII letters to lower case."""
    if "  " in chunk or "\n" in chunk or "\t" in chunk or "\r" in chunk or "\f" in chunk or "\v" in chunk:
        chunk = _WS.sub(" ", chunk)
    return _lower_ascii(chunk)


# ---------------------------------------------------------------------------------------- splitting


_SPACE: Final = " \t\n\r\f\v"


def _split_simple(sql: str) -> tuple[list[str], int] | None:
    """The split of a text without double quotes, comments or dollar quotes, when it is one statement or
    plain semicolon-separated ones: the hot path. None: use the full lexer.

    Without backslashes every kind of '...' literal ends at the same quote (E'' strings differ only by
    backslash escapes), so a split on quotes finds them; parentheses (CREATE RULE, BEGIN ATOMIC bodies,
    an unclosed one) need the full lexer as soon as there is a semicolon."""
    if '"' in sql or "--" in sql or "/*" in sql:
        return None
    if "$" in sql and _DQ_SHAPE.search(sql) is not None:
        return None
    if ";" not in sql:
        text = sql.strip(_SPACE)
        return ([text], 0) if text else ([], 1)
    if "(" in sql:
        return None
    if "'" in sql:
        if "\\" in sql:
            return None
        parts = sql.split("'")
        if len(parts) % 2 == 0:
            return None  # an unterminated string
        tail = parts[-1].rstrip(_SPACE)
        if not tail.endswith(";") or any(";" in p for p in parts[-3::-2]) or ";" in tail[:-1]:
            return None
        text = sql[: sql.rindex(";")].strip(_SPACE)  # one statement and a final semicolon
        return ([text], 0) if text else ([], 1)
    pieces = sql.split(";")
    out: list[str] = []
    empty = 0
    for piece in pieces[:-1]:
        text = piece.strip(_SPACE)
        if text:
            out.append(text)
        else:
            empty += 1
    text = pieces[-1].strip(_SPACE)
    if text:
        out.append(text)
    elif not (out or empty):
        empty = 1
    return out, empty


def split_statements_counted(sql: str, *, standard_conforming_strings: bool = True) -> tuple[list[str], int]:
    """:func:`split_statements`, plus how many empty statements (whitespace/comments only) were dropped."""
    if standard_conforming_strings:
        simple = _split_simple(sql)
        if simple is not None:
            return simple
        match, cats = _match(_SPLIT_ON), _SPLIT_ON_CAT
    else:
        match, cats = _match(_SPLIT_OFF), _SPLIT_OFF_CAT
    out: list[str] = []
    empty = 0
    start = 0  # of the current statement
    content = False  # the current statement has a token that is not whitespace or a comment
    depth = 0
    # SQL-standard routine bodies. gram.y: ``BEGIN_P ATOMIC (stmt ';')* END_P``, where no statement begins
    # with END (END as COMMIT is a top-level statement only): the body ends at the first END that begins
    # one of its statements, whatever CASE ... END or ``AS end`` came inside them. BEGIN and ATOMIC must be
    # adjacent tokens (``SET begin.atomic = 1``, ``RETURN begin + atomic`` hold no body). A body statement
    # may itself be CREATE FUNCTION with a body (rejected when it runs, but parsed), so bodies nest.
    head: list[str] = []  # first words of the current statement while it may be CREATE FUNCTION/PROCEDURE
    heading = True  # still reading those words (they must be consecutive tokens)
    routine = False  # it is one, and its body has not begun
    after_begin = False  # the last token was the word BEGIN, at depth 0 in such a routine
    bodies = 0  # BEGIN ATOMIC bodies we are in
    body_start = False  # at the start of a body statement: END here closes the body
    pos = 0
    n = len(sql)
    while True:
        m = match(sql, pos)
        skip_end = m.end(1)
        info = cats.get(m.lastindex or 0)
        if info is None:
            _check_end(skip_end, n)
            tok_start = n
        else:
            tok_start = skip_end - info[1]
        if tok_start > pos:
            if not content and sql[pos:tok_start].strip(_SPACE):
                content = True
            if heading or body_start or (routine and depth == 0):
                gap = pos  # end of the previous word: what lies between must be whitespace to be adjacent
                for w in _WORD.finditer(sql, pos, tok_start):
                    if sql[gap : w.start()].strip(_SPACE):  # an operator or punctuation in between
                        heading = body_start = after_begin = False
                    gap = w.end()
                    word = _lower_ascii(w.group())
                    if body_start:
                        body_start = False
                        if word == "end":
                            bodies -= 1
                            heading = routine = after_begin = False
                            break
                    if heading:
                        head.append(word)
                        if head[0] != "create" or len(head) == 4:
                            heading = False
                        if len(head) >= 2 and head[0] == "create":
                            routine = head[1] in ("function", "procedure") or (
                                head[1:3] == ["or", "replace"]
                                and len(head) == 4
                                and head[3] in ("function", "procedure")
                            )
                            if routine:
                                heading = False
                    elif routine and depth == 0:
                        if after_begin and word == "atomic":
                            bodies += 1
                            body_start = heading = True
                            head = []
                            routine = after_begin = False
                            continue
                        after_begin = word == "begin"
                    if not (heading or body_start or routine):
                        break
                else:
                    if sql[gap:tok_start].strip(_SPACE):
                        heading = body_start = after_begin = False
        if info is None:
            break
        cat = info[0]
        end = m.end()
        if cat == _SEMI:
            if depth == 0 and bodies == 0:
                if content:
                    out.append(sql[start : end - 1].strip(_SPACE))
                else:
                    empty += 1
                start = end
                content = False
            if depth == 0:  # the next statement, at the top or in a body
                head = []
                heading = True
                body_start = bodies > 0
                routine = after_begin = False
            else:
                heading = body_start = after_begin = False
        elif cat == _BLOCK:
            end = _block_close(sql, end)
            if end < 0:  # unterminated: the server rejects the text here, so it is a statement's
                end = n
                content = True
        elif cat != _COMMENT:
            if cat == _LPAREN:
                depth += 1
            elif cat == _RPAREN:
                depth = max(depth - 1, 0)
            content = True
            heading = body_start = after_begin = False
        pos = end
    if content:
        out.append(sql[start:].strip(_SPACE))
    elif sql[start:].strip(_SPACE) or not (out or empty):
        empty += 1  # a trailing comment, or a text with no statement at all
    return out, empty


def split_statements(sql: str, *, standard_conforming_strings: bool = True) -> list[str]:
    """The statements of a simple Query message, each stripped of surrounding whitespace, as the server
    will run them; empty statements (only whitespace and comments) are dropped.

    What PostgreSQL answers (``exec_simple_query``): one CommandComplete (or ErrorResponse, which ends the
    message) per returned statement — ``"SELECT 1;;SELECT 2"`` gives two, the empty statement between the
    semicolons gives nothing — and a single EmptyQueryResponse only when this returns ``[]`` (``""``,
    ``";"``, ``"-- x"``); then ReadyForQuery.

    Semicolons split only outside literals, quoted identifiers, comments and parentheses (the server
    parses the whole string with its grammar, so ``CREATE RULE ... DO (a; b)`` is one statement), and
    outside the ``BEGIN ATOMIC ... END`` body of a CREATE FUNCTION/PROCEDURE: BEGIN and ATOMIC adjacent
    tokens, and the body's END the first that begins one of its statements (``SELECT 1 AS case;`` or ``AS
    end`` inside it end nothing). An unterminated literal or comment swallows the rest of the text into the
    last statement, a statement of its own when it comes after the last semicolon (the server rejects the
    whole text there). ``tests/integration/test_split_vs_postgres.py`` holds all this to a real server.
    Pass the session's current ``standard_conforming_strings`` (the server reports it in ParameterStatus).
    """
    return split_statements_counted(sql, standard_conforming_strings=standard_conforming_strings)[0]


# ------------------------------------------------------------------------------------ normalization


def _normalize_simple(sql: str) -> str | None:
    """:func:`normalize` of a statement whose only literals are numbers and plain '...' strings without
    backslashes (no double quotes, comments, dollar quotes, prefixed strings or ``?``): the hot path, a
    split on quotes and a digit scan instead of the full lexer. None: use the full lexer.

    Must give exactly what the full lexer gives; a property test holds the two together."""
    if '"' in sql or "?" in sql or "--" in sql or "/*" in sql or "\\" in sql:
        return None
    if "$" in sql and _DQ_SHAPE.search(sql) is not None:
        return None
    out: list[str] = []
    if "'" not in sql:
        _numbers(sql, out, " ")
    else:
        parts = sql.split("'")
        n = len(parts)
        if n % 2 == 0:
            return None  # an unterminated string
        last = " "
        i = 0  # parts[i] is outside any string
        while True:
            seg = parts[i]
            last = _numbers(seg, out, last)
            if i == n - 1:
                break
            if seg and (seg[-1] in "eEbBxXnN&") and _prefixed(seg, i == 0):
                return None
            j = i + 1  # the string's text; '' inside it leaves an empty part between two of its texts
            while j + 1 < n - 1 and not parts[j + 1]:
                j += 2
            i = j + 1
            piece = " ?" if last in _OPCHARS else "?"
            if parts[i] and parts[i][0] in _OPCHARS:
                piece += " "
            out.append(piece)
            last = piece[-1]
    return _clean("".join(out)).strip(" ").rstrip("; ")


def _prefixed(seg: str, at_start: bool) -> bool:
    """Does ``seg`` (text just before a quote) end in the prefix of an E/B/X/N/U& literal?"""
    if seg[-1] == "&":
        if len(seg) < 2 or seg[-2] not in "uU":
            return False
        before = seg[-3] if len(seg) >= 3 else ("" if at_start else "'")
    else:
        before = seg[-2] if len(seg) >= 2 else ("" if at_start else "'")
    return not before or not (before in _IDC_ASCII or before >= "\x80")


def _numbers(text: str, out: list[str], last: str) -> str:
    """Append ``text`` to ``out`` with its numbers replaced by ``?``; ``last`` is the last character
    written before it, and the return value the last character written."""
    search = _NUMBER_START.search
    n = len(text)
    pos = 0  # emitted up to here
    while True:
        if pos and pos < n and text[pos] in "0123456789":
            start = pos  # right after a number (0b1 then 2): a new token
        else:
            m = search(text, pos)
            if m is None:
                break
            start = m.start()
        end = _NUMBER_RE.match(text, start).end()  # type: ignore[union-attr]
        if start > pos:
            out.append(text[pos:start])
            last = text[start - 1]
        piece = " ?" if last in _OPCHARS else "?"
        if end < n and text[end] in _OPCHARS:
            piece += " "
        out.append(piece)
        last = piece[-1]
        pos = end
    if pos < n:
        out.append(text[pos:])
        last = text[-1]
    return last


def normalize_ex(sql: str) -> tuple[str, bool]:
    """:func:`normalize`, and whether the statement's meaning depends on standard_conforming_strings."""
    simple = _normalize_simple(sql)
    if simple is not None:
        return simple, False
    return _normalize_full(sql)


def _normalize_full(sql: str) -> tuple[str, bool]:
    match = _match(_NORM_RE)
    cats = _NORM_CAT
    n = len(sql)
    pos = 0
    buf: list[str] = []
    done: list[str] | None = None  # set once a quoted identifier (kept verbatim) splits the output
    last = " "
    scs_dependent = False
    while True:
        m = match(sql, pos)
        skip_end = m.end(1)
        info = cats.get(m.lastindex or 0)
        if info is None:
            _check_end(skip_end, n)
            buf.append(sql[pos:])
            break
        cat, plen = info
        start = skip_end - plen
        if start > pos:
            buf.append(sql[pos:start])
            last = sql[start - 1]
        end = m.end()
        if cat in (_LIT, _PLAIN):
            if cat == _PLAIN and not scs_dependent and sql.find("\\", start, end) >= 0:
                scs_dependent = True
            # A placeholder never touches an operator character, so "?" stays one token when re-read.
            piece = " ?" if last in _OPCHARS else "?"
            if end < n and sql[end] in _OPCHARS:
                piece += " "
            buf.append(piece)
            last = piece[-1]
        elif cat == _COMMENT:
            buf.append(" ")
            last = " "
        elif cat == _BLOCK:
            end = _block_end(sql, end)
            buf.append(" ")
            last = " "
        elif cat == _QI:
            if done is None:
                done = []
            done.append(_clean("".join(buf)))
            done.append(sql[start:end])
            buf = []
            last = sql[end - 1]
        else:  # $n parameter or a lone $
            buf.append(sql[start:end])
            last = sql[end - 1]
        pos = end
    text = _clean("".join(buf))
    if done is not None:
        done.append(text)
        text = "".join(done)
    return text.strip(" ").rstrip("; "), scs_dependent


def normalize(sql: str) -> str:
    """Comments out, whitespace collapsed to single spaces, every literal (string, E/U&/B/X/N string,
    dollar-quoted, number) replaced by ``?``, ``$n`` kept, keywords and unquoted identifiers lowercased
    (ASCII only, as PostgreSQL folds), quoted identifiers verbatim, trailing semicolons dropped.

    A ``?`` placeholder is set off by a space from an adjacent operator character (``a=1`` → ``a= ?``), so
    re-reading the text never glues it into an operator. ``IN (?, ?, ?)`` lists are kept as they are.
    """
    return normalize_ex(sql)[0]


def _digest(norm: str) -> str:
    return hashlib.sha256(norm.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(sql: str) -> str:
    """SHA-256 (hex) of :func:`normalize` in UTF-8."""
    return _digest(normalize(sql))


# ------------------------------------------------------------------------- tokens of normalized text

_NTOK: Final = re.compile(
    rf'(?P<q>(?:[uU]&)?"{_QI_BODY})'
    rf"|(?P<w>[{_IDS}][{_IDC}]*)"
    r"|(?P<p>\$[0-9]+)"
    r"|(?P<o>[~!@#^&|`?+\-*/%<>=]+)"
    r"|(?P<c>::)"
    r"|(?P<s> +)"
    r"|(?P<x>[\s\S])"
)
_BARE_NAME: Final = re.compile(r"[a-z_][a-z0-9_$]*")

Token = tuple[str, str]  # (type, value): w word (lowercase), q quoted name, l literal, p param, o operator,
# or the punctuation itself: ( ) , ; . [ ] :: and any other single character


def _canon_quoted(text: str) -> str:
    """A quoted identifier as an object name: bare when PostgreSQL would fold it to itself."""
    if text[0] != '"':
        return text  # U&"..." stays as written
    body = text[1:-1] if len(text) >= 2 and text.endswith('"') else text[1:]
    body = body.replace('""', '"')
    if _BARE_NAME.fullmatch(body):
        return body
    return '"' + body.replace('"', '""') + '"'


def _split_operator(run: str) -> list[str]:
    """PostgreSQL's rule: a multi-character operator ending in + or - sheds them unless it holds one of
    ~ ! @ # ^ & | ` ? % (so ``=-1`` is ``=`` then ``-``)."""
    if len(run) > 1 and run[-1] in "+-" and not any(c in "~!@#^&|`?%" for c in run):
        k = len(run)
        while k > 1 and run[k - 1] in "+-":
            k -= 1
        return [run[:k], *run[k:]]
    return [run]


def _tokens(norm: str) -> list[Token]:
    toks: list[Token] = []
    for m in _NTOK.finditer(norm):
        kind = m.lastgroup
        value = m.group()
        if kind == "s":
            continue
        if kind == "w":
            toks.append(("w", value))
        elif kind == "q":
            toks.append(("q", _canon_quoted(value)))
        elif kind == "o":
            if value == "?":
                toks.append(("l", value))
            else:
                toks.extend(("o", op) for op in _split_operator(value))
        elif kind == "p":
            toks.append(("p", value))
        else:
            toks.append((value, value))
    return toks


# ------------------------------------------------------------------------------------------ keywords


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# PostgreSQL's reserved and column-name keywords: ``word(`` with one of these is grammar (CAST, EXISTS,
# EXTRACT, typmods like numeric(10,2), ...) and can never call a user-defined function. Unreserved and
# type/function-name keywords (filter, over, left, like, ...) can name functions, so they are not here.
_RESERVED: Final = _words(
    "all analyse analyze and any array as asc asymmetric both case cast check collate column constraint "
    "create current_catalog current_date current_role current_time current_timestamp current_user default "
    "deferrable desc distinct do else end except false fetch for foreign from grant group having in "
    "initially intersect into lateral leading limit localtime localtimestamp not null offset on only or "
    "order placing primary references returning select session_user some symmetric system_user table then "
    "to trailing true union unique user using variadic when where window with"
)
_COL_NAME_KW: Final = _words(
    "between bigint bit boolean char character coalesce dec decimal exists extract float greatest grouping "
    "inout int integer interval json json_array json_arrayagg json_exists json_object json_objectagg "
    "json_query json_scalar json_serialize json_table json_value least merge_action national nchar none "
    "normalize nullif numeric out overlay position precision real row setof smallint substring time "
    "timestamp treat trim values varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest "
    "xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable"
)
_NOT_FUNC: Final = _RESERVED | _COL_NAME_KW

# Built-in functions without side effects on data, privileges or session authorization. Only names that
# pg_catalog really holds: COALESCE, GREATEST, TRIM, CURRENT_TIMESTAMP ... are grammar (see _NOT_FUNC),
# so "coalesce"(x) quoted would call a user's function of that name. A user may also shadow one of these
# names with a function of their own earlier on the search_path (or an overload) — that needs CREATE
# FUNCTION, itself audited and never read-only (see analyze() on what lexing cannot see).
_SAFE_FUNCS: Final = _words(
    """
    count sum avg min max every bool_and bool_or bit_and bit_or
    stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp
    percentile_cont percentile_disc mode array_agg string_agg json_agg jsonb_agg json_object_agg
    jsonb_object_agg xmlagg
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    lower upper initcap length char_length character_length octet_length bit_length substr substring
    btrim ltrim rtrim concat concat_ws left right lpad rpad repeat reverse replace split_part strpos
    position starts_with format translate regexp_replace regexp_match regexp_matches regexp_like
    regexp_count regexp_substr regexp_instr regexp_split_to_array regexp_split_to_table to_hex ascii chr
    quote_ident quote_literal quote_nullable md5 sha224 sha256 sha384 sha512 encode decode
    round trunc floor ceil ceiling abs sign mod power pow sqrt cbrt exp ln log log10 div pi degrees
    radians sin cos tan asin acos atan atan2 width_bucket scale gcd lcm factorial random
    now clock_timestamp
    statement_timestamp transaction_timestamp timeofday date_trunc date_part date_bin extract age
    make_date make_time make_timestamp make_timestamptz make_interval justify_days justify_hours
    justify_interval isfinite to_char to_date to_timestamp to_number
    array_length array_lower array_upper array_dims array_ndims array_position array_positions
    array_to_string string_to_array array_append array_prepend array_cat array_remove array_replace
    cardinality unnest generate_series generate_subscripts
    to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object json_build_array
    jsonb_build_array json_object jsonb_object json_array_length jsonb_array_length json_typeof
    jsonb_typeof json_extract_path json_extract_path_text jsonb_extract_path jsonb_extract_path_text
    json_array_elements jsonb_array_elements json_array_elements_text jsonb_array_elements_text
    json_each jsonb_each json_each_text jsonb_each_text json_object_keys jsonb_object_keys jsonb_set
    jsonb_insert jsonb_strip_nulls jsonb_pretty jsonb_path_query jsonb_path_exists jsonb_path_match
    jsonb_path_query_array jsonb_path_query_first
    int2 int4 int8 float4 float8 numeric text varchar bool date time timestamp timestamptz interval
    uuid inet cidr host family masklen netmask broadcast
    current_schema current_schemas current_database current_setting version pg_backend_pid
    pg_typeof format_type col_description obj_description has_table_privilege has_column_privilege
    has_schema_privilege pg_table_is_visible pg_get_viewdef pg_get_indexdef pg_get_constraintdef
    pg_get_expr pg_get_userbyid pg_relation_size pg_total_relation_size pg_size_pretty
    num_nonnulls num_nulls
    """
)
_SAFE_OPS: Final = _words(
    "+ - * / % ^ = <> != < > <= >= || ~~ !~~ ~~* !~~* ~ ~* !~ !~* @> <@ && -> ->> #> #>> #- ?| ?& @? @@ "
    "@@@ |/ ||/ @ & | # << >> <<= >>= => <-> -|- &< &> ~= ##"
)
_DML: Final = frozenset({"insert", "update", "delete", "merge"})

# Where a name list (FROM a, b) ends.
_LIST_END: Final = _words(
    "where group having order limit offset fetch window union except intersect returning for set values "
    "select in cascade restrict to with when do nowait into"
)
# Words that are never a table name in the positions we read names from.
_NOT_NAME: Final = _RESERVED | _words(
    "set cross full inner join left natural outer right tablesample is like ilike similar overlaps"
)
_NAME_PREFIX: Final = frozenset({"only", "lateral"})
# A parenthesis after one of these opens a subquery or a list, not a function's arguments.
_SUBQUERY_OPENERS: Final = _RESERVED | frozenset(
    {"exists", "values", "row", "between", "materialized", "over", "filter", "sets", "rollup", "cube"}
)
_GRANT_OBJECT_TYPES: Final = _words(
    "sequence sequences schema function functions procedure procedures routine routines database "
    "tablespace type domain language foreign large all parameter tables"
)

_TCL_FIRST: Final = _words("begin start commit end rollback savepoint release abort")
_SESSION_FIRST: Final = _words(
    "set reset show discard listen unlisten notify load deallocate prepare execute"
)
_DDL_FIRST: Final = _words("create alter drop truncate comment reindex import refresh")
_UTILITY_FIRST: Final = _words(
    "vacuum analyze analyse explain cluster checkpoint lock fetch move close declare"
)
_ROLE_WORDS: Final = frozenset({"role", "user", "group"})
_NO_OBJECTS: Final = _words(
    "set reset show fetch move close listen unlisten notify deallocate execute discard load checkpoint begin "
    "start commit end rollback savepoint release abort prepare import"
)

# --------------------------------------------------------------------------------------- analysis


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """What the audit record and the early-release decision need to know about one statement.

    ``read_only`` True means the statement cannot change data, privileges or session authorization, so it
    may start upstream before its audit record is durable. ``scs_dependent``: the statement has a plain
    string literal holding a backslash, so its tokens differ when standard_conforming_strings is off.
    """

    fingerprint: str
    kind: str
    objects: tuple[str, ...]
    read_only: bool
    first_keyword: str
    scs_dependent: bool = False


def _word(toks: list[Token], i: int) -> str:
    """The word at ``i``, or "" when it is not an unquoted word."""
    if 0 <= i < len(toks) and toks[i][0] == "w":
        return toks[i][1]
    return ""


def _paren_pairs(toks: list[Token]) -> dict[int, int]:
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, (typ, _) in enumerate(toks):
        if typ == "(":
            stack.append(i)
        elif typ == ")" and stack:
            pairs[stack.pop()] = i
    return pairs


def _is_cte_columns(toks: list[Token], i: int, pairs: dict[int, int]) -> bool:
    """``name (cols) AS [NOT] [MATERIALIZED] (`` after WITH [RECURSIVE] or a comma: a CTE's column list."""
    if _word(toks, i - 1) not in ("with", "recursive") and not (i > 0 and toks[i - 1][0] == ","):
        return False
    close = pairs.get(i + 1)
    if close is None:
        return False
    k = close + 1
    if _word(toks, k) != "as":
        return False
    k += 1
    if _word(toks, k) == "not":
        k += 1
    if _word(toks, k) == "materialized":
        k += 1
    return k < len(toks) and toks[k][0] == "("


def _is_operand(toks: list[Token], i: int) -> bool:
    """Does the token at ``i`` end an operand (so what follows it is an operator or a clause)?"""
    if i < 0:
        return False
    typ, val = toks[i]
    return typ in ("q", "l", "p", ")", "]") or (typ == "w" and val not in _RESERVED)


def _calls_safe(toks: list[Token]) -> bool:
    """Every function call is an allow-listed built-in and every operator a common built-in one."""
    pairs = _paren_pairs(toks)
    n = len(toks)
    for i in range(n):
        typ, val = toks[i]
        if typ == "o":
            if val not in _SAFE_OPS:
                return False
            continue
        if typ not in ("w", "q") or i + 1 >= n or toks[i + 1][0] != "(" or i == 0:
            continue
        if typ == "w" and val == "operator":
            return False  # OPERATOR(schema.op) names an arbitrary operator
        # The qualified name ending at i.
        j = i
        parts = [val]
        while j >= 2 and toks[j - 1][0] == "." and toks[j - 2][0] in ("w", "q"):
            j -= 2
            parts.insert(0, toks[j][1])
        prev_typ, prev = toks[j - 1] if j > 0 else ("", "")
        if len(parts) == 1:
            if typ == "w" and val in _NOT_FUNC:
                continue  # grammar, not a call
            if prev_typ == ")" and typ == "w" and val in ("filter", "over", "repeatable"):
                continue  # agg(...) FILTER (...), OVER (...), TABLESAMPLE m(...) REPEATABLE (...)
            if typ == "w" and val == "sets" and prev == "grouping":
                continue
            if (
                typ == "w"
                and val == "materialized"
                and (prev == "as" or (prev == "not" and _word(toks, j - 2) == "as"))
            ):
                continue
            if prev == "tablesample" and val in ("system", "bernoulli"):
                continue
            if prev == "execute":
                continue  # EXECUTE name(args): the arguments are still checked
            if (
                typ == "w"
                and val in ("like", "ilike")
                and (_is_operand(toks, j - 1) or (prev == "not" and _is_operand(toks, j - 2)))
            ):
                continue  # a LIKE (pattern): after an operand a call cannot follow
            if _is_cte_columns(toks, i, pairs):
                continue
        if prev_typ == "::" or (prev_typ == "w" and prev == "as"):
            continue  # a type's modifier (x::numeric(10,2), CAST(x AS varchar(9))) or alias column list
        if len(parts) == 1:
            name = parts[0]
        elif len(parts) == 2 and parts[0] == "pg_catalog":
            name = parts[1]
        else:
            return False
        if name not in _SAFE_FUNCS:
            return False
    return True


def _writes_data(toks: list[Token]) -> bool:
    """INSERT/UPDATE/DELETE/MERGE anywhere (a data-modifying WITH), but FOR [NO KEY] UPDATE is a lock."""
    for i, (typ, val) in enumerate(toks):
        if typ == "w" and val in _DML:
            if val == "update":
                prev = _word(toks, i - 1)
                if prev == "for" or (prev == "key" and _word(toks, i - 2) == "no"):
                    continue
            return True
    return False


def _has_word(toks: list[Token], *words: str) -> bool:
    return any(typ == "w" and val in words for typ, val in toks)


def _query_read_only(toks: list[Token]) -> bool:
    return not _has_word(toks, "into") and not _writes_data(toks) and _calls_safe(toks)


def _declare_read_only(toks: list[Token]) -> bool:
    cursor = next((i for i, t in enumerate(toks) if t == ("w", "cursor")), -1)
    if cursor < 0:
        return False
    at = next((i for i in range(cursor + 1, len(toks)) if toks[i] == ("w", "for")), -1)
    if at < 0:
        return False
    query = toks[at + 1 :]
    k = 0
    while k < len(query) and query[k][0] == "(":
        k += 1
    if _word(query, k) not in ("select", "values", "table", "with"):
        return False
    return _query_read_only(query)


def _read_only(first: str, toks: list[Token]) -> bool:
    second = _word(toks, 1)
    if first in ("select", "values", "table", "with"):
        return _query_read_only(toks)
    if first == "explain":
        # EXPLAIN ("analyze") runs the statement too: option names may be quoted identifiers.
        for typ, val in toks:
            if typ == "q" and (val.startswith(("U&", "u&")) or val.lower() in ('"analyze"', '"analyse"')):
                return False
            if typ in ("w", "q") and val in ("analyze", "analyse"):
                return False
        return not _has_word(toks, "into") and _calls_safe(toks)
    if first == "declare":
        return _declare_read_only(toks)
    if first in ("show", "fetch", "move", "close", "begin", "savepoint", "release", "abort"):
        return _calls_safe(toks)
    if first == "start":
        return second == "transaction" and _calls_safe(toks)
    if first == "rollback":
        return second != "prepared" and _calls_safe(toks)
    return False


def _kind(first: str, toks: list[Token]) -> str:
    second = _word(toks, 1)
    if first in ("select", "values", "table"):
        return "ddl" if first == "select" and _has_word(toks, "into") else "dql"
    if first == "with":
        if _writes_data(toks):
            return "dml"
        return "ddl" if _has_word(toks, "into") else "dql"
    if first in _DML:
        return "dml"
    if first in ("grant", "revoke", "reassign"):
        return "dcl"
    if first in ("create", "alter", "drop"):
        if second in _ROLE_WORDS or (first == "alter" and second == "default") or second == "owned":
            return "dcl"
        return "ddl"
    if first == "security":
        return "dcl"  # SECURITY LABEL
    if first in _DDL_FIRST:
        return "ddl"
    if first in ("set", "reset"):
        # SET [SESSION|LOCAL] ROLE, SET SESSION AUTHORIZATION, and the same settings by (quoted) name:
        # setting names are case-insensitive.
        words = [v.strip('"').lower() for t, v in toks[1:4] if t in ("w", "q")]
        if words[:1] in (["session"], ["local"]):
            words = words[1:]
        if words[:1] in (["role"], ["authorization"], ["session_authorization"]):
            return "dcl"
        if first == "set" and words[:1] in (["transaction"], ["constraints"]):
            return "tcl"
        return "session"
    if first == "prepare" and second == "transaction":
        return "tcl"
    if first in _TCL_FIRST:
        return "tcl"
    if first in _SESSION_FIRST:
        return "session"
    if first == "copy":
        return "copy"
    if first in ("call", "do"):
        return "call"
    if first in _UTILITY_FIRST:
        return "utility"
    return "other"


def _render(parts: list[str]) -> str:
    return ".".join(parts)


class _Objects:
    """Table and view names a statement references, in order of appearance (best effort, for the audit
    record: a name after FROM/JOIN/INTO/UPDATE/TABLE/USING/REFERENCES/VIEW, TRUNCATE/LOCK/COPY, GRANT ON)."""

    def __init__(self, toks: list[Token], first: str) -> None:
        self.toks = toks
        self.first = first
        self.names: list[str] = []
        self.ctes = self._cte_names()

    def _cte_names(self) -> set[str]:
        toks = self.toks
        pairs = _paren_pairs(toks)
        names: set[str] = set()
        for i, tok in enumerate(toks):
            if tok != ("w", "with"):
                continue
            j = i + 1
            if _word(toks, j) == "recursive":
                j += 1
            while j < len(toks) and toks[j][0] in ("w", "q"):
                name = toks[j][1]
                k = j + 1
                if k < len(toks) and toks[k][0] == "(":
                    k = pairs.get(k, len(toks)) + 1
                if _word(toks, k) != "as":
                    break
                k += 1
                if _word(toks, k) == "not":
                    k += 1
                if _word(toks, k) == "materialized":
                    k += 1
                if not (k < len(toks) and toks[k][0] == "("):
                    break
                names.add(name)
                k = pairs.get(k, len(toks)) + 1
                if k < len(toks) and toks[k][0] == ",":
                    j = k + 1
                    continue
                break
        return names

    def take(self, j: int, *, source: bool) -> int:
        """Record the qualified name starting at ``j`` (after ONLY/LATERAL/IF [NOT] EXISTS); returns the
        index after it. ``source``: FROM/JOIN position, where ``name(`` is a function and a CTE name is
        not a table."""
        toks = self.toks
        n = len(toks)
        while True:
            w = _word(toks, j)
            if w in _NAME_PREFIX:
                j += 1
            elif w == "if":
                j += 1
                if _word(toks, j) == "not":
                    j += 1
                if _word(toks, j) == "exists":
                    j += 1
            else:
                break
        parts: list[str] = []
        while j < n:
            typ, val = toks[j]
            if typ == "q" or (typ == "w" and val not in _NOT_NAME):
                parts.append(val)
                if j + 2 < n and toks[j + 1][0] == "." and toks[j + 2][0] in ("w", "q"):
                    j += 2
                    continue
                j += 1
            break
        if not parts:
            return j
        if source and j < n and toks[j][0] == "(":
            return j  # a function in FROM
        if source and len(parts) == 1 and parts[0] in self.ctes:
            return j
        if source and parts == ["rows"] and _word(toks, j) == "from":
            return j  # ROWS FROM (...)
        self.names.append(_render(parts))
        return j

    def collect(self) -> list[str]:
        toks = self.toks
        first = self.first
        n = len(toks)
        if first in _NO_OBJECTS:
            return []
        calls: list[bool] = []  # per open parenthesis: does it hold a function's arguments?
        lists: set[int] = set()  # depths at which a comma starts another table reference
        depth = 0
        grant = first in ("grant", "revoke")
        modifies = _has_word(toks, "delete", "merge")  # DELETE ... USING t, MERGE ... USING t
        i = 0
        while i < n:
            typ, val = toks[i]
            if typ == "(":
                prev_typ, prev = toks[i - 1] if i > 0 else ("", "")
                calls.append(prev_typ == "q" or (prev_typ == "w" and prev not in _SUBQUERY_OPENERS and i > 1))
                depth += 1
                i += 1
                continue
            if typ == ")":
                lists.discard(depth)
                if calls:
                    calls.pop()
                depth = max(depth - 1, 0)
                i += 1
                continue
            if typ == ",":
                i += 1
                if depth in lists and i < n and toks[i][0] in ("w", "q"):
                    i = self.take(i, source=True)
                continue
            if typ != "w":
                i += 1
                continue
            prev = _word(toks, i - 1)
            if val in _LIST_END:
                lists.discard(depth)
            in_call = bool(calls) and calls[-1]
            if val == "from":
                if not (in_call or prev == "distinct" or grant or (first == "copy" and depth == 0)):
                    lists.add(depth)
                    i = self.take(i + 1, source=True)
                    continue
            elif val == "join":
                i = self.take(i + 1, source=True)
                continue
            elif val == "using" and modifies and not (i + 1 < n and toks[i + 1][0] == "("):
                lists.add(depth)
                i = self.take(i + 1, source=True)
                continue
            elif (val == "into" and not grant) or (val == "update" and prev not in ("for", "key")):
                i = self.take(i + 1, source=False)
                continue
            elif val in ("table", "view", "references") and not (i + 1 < n and toks[i + 1][0] == "("):
                if first in ("drop", "truncate", "lock", "grant", "revoke") and depth == 0:
                    lists.add(depth)
                i = self.take(i + 1, source=False)
                continue
            elif i == 0 and val in ("truncate", "lock", "vacuum", "analyze", "analyse", "cluster"):
                j = 1
                if j < n and toks[j][0] == "(":
                    j = _paren_pairs(toks).get(j, n - 1) + 1
                while _word(toks, j) in ("table", "full", "freeze", "verbose", "analyze", "analyse"):
                    j += 1
                lists.add(0)
                i = self.take(j, source=False)
                continue
            elif i == 0 and val == "copy":
                i = self.take(1, source=False)
                continue
            elif (
                val == "on" and depth == 0 and (grant or (first == "create" and _has_word(toks[:i], "index")))
            ):
                nxt = _word(toks, i + 1)
                if nxt in _GRANT_OBJECT_TYPES:
                    i += 2
                    continue
                if nxt == "table":
                    i += 1  # the TABLE case above takes it
                    continue
                if grant:
                    lists.add(depth)
                i = self.take(i + 1, source=False)
                continue
            i += 1
        return self.names


def _sanitize_object(name: str) -> str | None:
    name = mask_text(name)[0]
    name = _OBJECT_FORBIDDEN.sub("\ufffd", name)[:512]
    return name or None


_OBJECT_FORBIDDEN: Final = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_MAX_OBJECTS: Final = 128
_CACHE_SIZE: Final = 4096
_CACHE_MAX_TEXT: Final = 8192  # longer normalized texts go to a small cache of their own ...
_BIG_CACHE_SIZE: Final = 64
_BIG_CACHE_MAX_TEXT: Final = 262_144  # ... and beyond this are analyzed every time (memory stays bounded)


def _statements(toks: list[Token]) -> list[list[Token]]:
    """Top-level ``;``-separated parts (normally one: callers pass one statement)."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for tok in toks:
        if tok[0] == "(":
            depth += 1
        elif tok[0] == ")":
            depth = max(depth - 1, 0)
        elif tok[0] == ";" and depth == 0:
            parts.append([])
            continue
        parts[-1].append(tok)
    return [p for p in parts if p]


def _first_index(toks: list[Token]) -> int:
    """Where a statement's first word is, past any opening parentheses."""
    k = 0
    while k < len(toks) and toks[k][0] == "(":
        k += 1
    return k


def _first_word(toks: list[Token]) -> str:
    return _word(toks, _first_index(toks))


def _analyze_normalized(norm: str, scs_dependent: bool) -> StatementInfo:
    parts = _statements(_tokens(norm))
    digest = _digest(norm)
    if not parts:
        return StatementInfo(digest, "other", (), False, "", scs_dependent)
    read_only = not scs_dependent
    objects: dict[str, None] = {}
    kind = first_keyword = ""
    for toks in parts:
        first = _first_word(toks)
        if not kind:
            kind = _kind(first, toks) if first else "other"
            first_keyword = first
        read_only = read_only and bool(first) and _read_only(first, toks)
        for name in _Objects(toks, first).collect():
            clean = _sanitize_object(name)
            if clean is not None and len(objects) < _MAX_OBJECTS:
                objects.setdefault(clean)
    return StatementInfo(digest, kind, tuple(objects), read_only, first_keyword, scs_dependent)


_analyze_cached = lru_cache(maxsize=_CACHE_SIZE)(lambda norm: _analyze_normalized(norm, False))
_analyze_cached_scs = lru_cache(maxsize=_CACHE_SIZE // 16)(lambda norm: _analyze_normalized(norm, True))
_analyze_cached_big = lru_cache(maxsize=_BIG_CACHE_SIZE)(_analyze_normalized)


def analyze(sql: str) -> StatementInfo:
    """Fingerprint, kind, objects and read-only verdict of one statement.

    Costs one :func:`normalize` plus a lookup in an LRU cache keyed by the normalized text (4096 entries
    up to 8 KiB, 64 more up to 256 KiB; longer statements are analyzed every time).

    ``read_only`` is True only for SELECT / VALUES / TABLE / WITH without INSERT/UPDATE/DELETE/MERGE,
    SHOW, FETCH, MOVE, CLOSE, DECLARE ... CURSOR FOR such a query, EXPLAIN without ANALYZE, BEGIN /
    START TRANSACTION, ROLLBACK (not ROLLBACK PREPARED) and its synonym ABORT, SAVEPOINT, RELEASE — and
    only when the statement has no INTO, calls only allow-listed built-in functions (unqualified or
    ``pg_catalog.``), uses only common built-in operators and no ``OPERATOR(...)``, and does not depend on
    standard_conforming_strings. Lexical analysis cannot see what a view, a user-defined operator, cast,
    type or domain, or a user function shadowing an allow-listed name (search_path, overloads, attribute
    notation ``t.f``) does when the statement runs; each needs earlier DDL by a role with CREATE rights.

    ``kind``: dql, dml, ddl (CREATE/ALTER/DROP/TRUNCATE/COMMENT/REINDEX/IMPORT/REFRESH and SELECT ... INTO,
    which creates a table), dcl (GRANT/REVOKE/REASSIGN, CREATE|ALTER|DROP ROLE|USER|GROUP, DROP OWNED,
    ALTER DEFAULT PRIVILEGES, SECURITY LABEL, SET|RESET ROLE and SESSION AUTHORIZATION), tcl (BEGIN, START,
    COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE TRANSACTION, COMMIT|ROLLBACK PREPARED, SET
    TRANSACTION, SET CONSTRAINTS), session (SET, RESET, SHOW, DISCARD, LISTEN, UNLISTEN, NOTIFY, LOAD,
    DEALLOCATE, and PREPARE/EXECUTE: they name a statement whose own class was recorded at PREPARE),
    copy, call (CALL, DO), utility (VACUUM, ANALYZE, EXPLAIN, CLUSTER, CHECKPOINT, LOCK, FETCH, MOVE,
    CLOSE, DECLARE), other.
    """
    norm, scs_dependent = normalize_ex(sql)
    if len(norm) <= _CACHE_MAX_TEXT:
        return _analyze_cached_scs(norm) if scs_dependent else _analyze_cached(norm)
    if len(norm) <= _BIG_CACHE_MAX_TEXT:
        return _analyze_cached_big(norm, scs_dependent)
    return _analyze_normalized(norm, scs_dependent)


def clear_cache() -> None:
    """Empty the analysis cache (tests, and after a change to the allow-lists in a running process)."""
    _analyze_cached.cache_clear()
    _analyze_cached_scs.cache_clear()
    _analyze_cached_big.cache_clear()


def named_statement(sql: str) -> str | None:
    """The prepared-statement name a SQL ``DEALLOCATE [PREPARE] name`` frees or a SQL ``PREPARE name``
    creates, as the protocol names it (folded like an identifier); ``"*"`` for ``DEALLOCATE ALL`` and
    ``DISCARD ALL``; None for any other statement. The session forgets what it knew under that name: SQL
    and the extended protocol share one namespace, so the text it kept may no longer be the one that runs."""
    toks = _tokens(normalize(sql))
    k = _first_index(toks)
    first = _word(toks, k)
    if first == "discard":
        return "*" if _word(toks, k + 1) == "all" else None
    if first == "prepare":
        if _word(toks, k + 1) == "transaction":
            return None
        k += 1
    elif first == "deallocate":
        k += 1
        if _word(toks, k) == "prepare":
            k += 1
        if _word(toks, k) == "all":
            return "*"
    else:
        return None
    if k >= len(toks):
        return None
    kind, value = toks[k]
    if kind == "w":
        return value
    if kind == "q" and value.startswith('"'):
        return value[1:-1].replace('""', '"')
    if kind == "q":
        return value
    return None
