"""The YAML layer: plain data, the line of every key and value, and YAML-level mistakes as problems."""

from __future__ import annotations

from pcigate.config.errors import Problem
from pcigate.config.yamlmarks import MAX_NODES, parse_yaml


def test_data_and_lines() -> None:
    marked = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - {d: true}\n")
    assert marked.problems == []
    assert marked.data == {"a": {"b": 1, "c": ["x", {"d": True}]}}
    assert marked.value_lines[("a",)] == 2  # a block mapping starts at its first key
    assert marked.value_lines[("a", "b")] == 2
    assert marked.value_lines[("a", "c", 1, "d")] == 5
    assert marked.key_lines[("a", "c")] == 3
    assert marked.line_of(("a", "c", 1, "missing")) == 5  # missing keys: the parent mapping


def test_duplicate_keys_are_problems() -> None:
    marked = parse_yaml("a: 1\nb: 2\na: 3\n")
    assert marked.problems == [Problem(3, "a", "duplicate key: first defined on line 1; remove one")]
    assert marked.data == {"a": 1, "b": 2}


def test_nested_duplicate_with_quoted_spelling() -> None:
    marked = parse_yaml("x:\n  k: 1\n  'k': 2\n")
    assert [(p.line, p.key) for p in marked.problems] == [(3, "x.k")]


def test_keys_are_strings_as_written() -> None:
    assert parse_yaml("on: 1\n1: 2\nnull: 3\n").data == {"on": 1, "1": 2, "null": 3}


def test_complex_keys_are_problems() -> None:
    marked = parse_yaml("? [a, b]\n: 1\n")
    assert marked.problems == [Problem(1, "", "mapping keys must be plain strings")]


def test_syntax_error() -> None:
    marked = parse_yaml("a: 1\nb: [1, 2\nc: 3\n")
    assert marked.data is None
    (problem,) = marked.problems
    assert problem.line == 3 and problem.key == ""
    assert problem.message.startswith("YAML syntax error:")


def test_multiple_documents_are_a_syntax_error() -> None:
    marked = parse_yaml("a: 1\n---\nb: 2\n")
    assert marked.data is None
    assert marked.problems[0].line == 2


def test_control_character() -> None:
    marked = parse_yaml("a: 1\nb: \x07\n")
    assert marked.problems == [Problem(2, "", "YAML syntax error: character #x0007 is not allowed")]


def test_python_tags_are_not_constructed() -> None:
    marked = parse_yaml("a: !!python/object/apply:os.system ['true']\nb: !!python/name:os.system ''\n")
    assert [(p.line, p.key) for p in marked.problems] == [(1, "a"), (2, "b")]
    assert all(
        "unsupported YAML tag" in p.message or "invalid YAML value" in p.message for p in marked.problems
    )


def test_recursive_alias() -> None:
    marked = parse_yaml("a: &x [1, *x]\n")
    assert [(p.line, p.key) for p in marked.problems] == [(1, "a[1]")]
    assert "recursive" in marked.problems[0].message


def test_alias_bomb_is_capped() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    marked = parse_yaml("\n".join(lines) + "\n")
    assert marked.data is None
    assert marked.problems == [
        Problem(None, "", f"document expands to more than {MAX_NODES} values (YAML alias bomb?)")
    ]


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    marked = parse_yaml("[" * 5000 + "]" * 5000)
    assert marked.data is None
    assert marked.problems == [Problem(None, "", "document is nested too deeply")]


def test_empty() -> None:
    marked = parse_yaml("# nothing\n")
    assert marked.data is None
    assert marked.problems[0].message.startswith("the file is empty")
