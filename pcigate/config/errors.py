"""Config problems and the error that carries them.

Every problem names the file, the line and the dotted key path, so an operator can fix a config without
reading a traceback. Messages never echo a configured value that might be a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "Loc", "Problem", "format_key"]

Loc = tuple[str | int, ...]
"""A path into the config document: mapping keys and list indexes, outermost first."""

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key(loc: Iterable[str | int]) -> str:
    """Render ``("connections", 0, "upstream", "port")`` as ``connections[0].upstream.port``.

    Keys that are not plain words are quoted (``policies["a b"]``) so the path stays unambiguous.
    """
    out: list[str] = []
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.fullmatch(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config: 1-based ``line`` (None if unknown), dotted ``key``, ``message``."""

    line: int | None
    key: str
    message: str

    def render(self, path: str | None) -> str:
        """Format as ``file:line: key: message``, leaving out the parts that are unknown."""
        where = path or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        parts = [p for p in (where, self.key) if p]
        return ": ".join([*parts, self.message])


def _sort_key(problem: Problem) -> tuple[int, int, str]:
    return (problem.line is None, problem.line or 0, problem.key)


class ConfigError(Exception):
    """The config cannot be used. ``str(err)`` is one line per problem, sorted by line."""

    def __init__(self, path: str | None, problems: Iterable[Problem]) -> None:
        self.path = path
        self.problems: list[Problem] = sorted(problems, key=_sort_key)
        if not self.problems:
            raise ValueError("ConfigError needs at least one problem")
        super().__init__("\n".join(p.render(path) for p in self.problems))
