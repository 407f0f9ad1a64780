"""YAML text → plain Python data plus the line of every key and value.

PyYAML's ``safe_load`` throws away positions and silently keeps the last of two duplicate keys. Config
errors must name the line, and a duplicated key in a security config is almost always a mistake, so we
compose the node graph ourselves (SafeLoader: no arbitrary objects), build dicts/lists/scalars from it, and
record ``Loc → line`` as we go. Pure: no file I/O, no validation beyond YAML itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pcigate.config.errors import Loc, Problem, format_key

__all__ = ["MAX_NODES", "Marked", "parse_yaml"]

MAX_NODES = 100_000
"""Cap on built nodes: aliases can expand exponentially ("billion laughs"); a real config is far smaller."""

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class Marked:
    """The parsed document with ``value_lines`` (line of each value) and ``key_lines`` (line of each key).

    ``data`` is None when the document is empty or could not be parsed; ``problems`` then says why.
    """

    data: Any = None
    value_lines: dict[Loc, int] = field(default_factory=dict)
    key_lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, loc: Loc) -> int | None:
        """Line of the value at ``loc``, else of its closest ancestor that exists (for missing keys)."""
        for end in range(len(loc), -1, -1):
            line = self.value_lines.get(loc[:end])
            if line is not None:
                return line
        return None


class _TooLargeError(Exception):
    pass


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, marked: Marked) -> None:
        self._loader = loader
        self._marked = marked
        self._active: set[int] = set()
        self._count = 0

    def _problem(self, node: yaml.Node, loc: Loc, message: str) -> None:
        self._marked.problems.append(Problem(node.start_mark.line + 1, format_key(loc), message))

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise _TooLargeError
        self._marked.value_lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        if id(node) in self._active:
            self._problem(node, loc, "recursive YAML alias: a value cannot contain itself")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    self._problem(node, loc, f"unsupported YAML tag {node.tag!r}: use a plain list")
                return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                if node.tag != _MAP_TAG:
                    self._problem(node, loc, f"unsupported YAML tag {node.tag!r}: use a plain mapping")
                return self._mapping(node, loc)
        finally:
            self._active.discard(id(node))
        raise AssertionError(f"unexpected YAML node {type(node).__name__}")  # pragma: no cover

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            # The problem text only: PyYAML's snippet would quote the line, which may hold a secret.
            self._problem(node, loc, f"invalid YAML value: {exc.problem}")
            return None

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self._problem(key_node, loc, "YAML merge keys (<<) are not supported: write the keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, loc, "mapping keys must be plain strings")
                continue
            # Keys as written: `on:` or `yes:` stay strings instead of YAML 1.1 booleans.
            key = str(key_node.value)
            key_loc = (*loc, key)
            if key in first_line:
                self._problem(
                    key_node, key_loc, f"duplicate key: first defined on line {first_line[key]}; remove one"
                )
                continue
            first_line[key] = key_line
            self._marked.key_lines[key_loc] = key_line
            out[key] = self.build(value_node, key_loc)
        return out


def parse_yaml(text: str) -> Marked:
    """Parse one YAML document; syntax errors and YAML-level mistakes come back as ``problems``."""
    marked = Marked()
    try:
        _parse_into(marked, text)
    except yaml.reader.ReaderError as exc:
        problem = f"YAML syntax error: character #x{exc.character:04x} is not allowed"
        marked.problems.append(Problem(text.count("\n", 0, exc.position) + 1, "", problem))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        mark_line = mark.line + 1 if mark is not None else None
        # PyYAML's str() quotes the offending source line; it may hold a secret, so rebuild the text.
        what = "; ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        marked.problems.append(Problem(mark_line, "", f"YAML syntax error: {what}"))
    except yaml.YAMLError as exc:
        marked.problems.append(Problem(None, "", f"YAML error: {type(exc).__name__}"))
    except _TooLargeError:
        marked.problems.append(
            Problem(None, "", f"document expands to more than {MAX_NODES} values (YAML alias bomb?)")
        )
    except RecursionError:
        marked.problems.append(Problem(None, "", "document is nested too deeply"))
    else:
        return marked
    marked.data = None
    return marked


def _parse_into(marked: Marked, text: str) -> None:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            marked.problems.append(
                Problem(None, "", "the file is empty: expected a mapping with `version: 1`")
            )
            return
        marked.data = _Builder(loader, marked).build(root, ())
    finally:
        loader.dispose()
