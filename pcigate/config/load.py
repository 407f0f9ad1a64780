"""Read, parse and validate ``pcigate.yaml``; turn every failure into a :class:`ConfigError`.

Validation errors from pydantic carry a ``loc`` into the data; the YAML layer kept the line of every key
and value, so each problem can be reported as ``file:line: key.path: message`` without a traceback.
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterable
from datetime import date
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from pcigate.config.errors import ConfigError, Loc, Problem, format_key
from pcigate.config.models import Config, IssuesError
from pcigate.config.yamlmarks import Marked, parse_yaml

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG_NAME", "find_config", "load_config", "parse_config"]

CONFIG_ENV = "PCIGATE_CONFIG"
DEFAULT_CONFIG_NAME = "pcigate.yaml"
_MAX_FILE_BYTES = 4 << 20


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    """Pick the config file: ``explicit`` (``--config``), else ``$PCIGATE_CONFIG``, else ``./pcigate.yaml``.

    A file named by ``--config`` or the environment must exist: falling back silently to another file
    would run the gateway with a config the operator did not choose.
    """
    if explicit is not None and os.fspath(explicit):
        return _must_exist(Path(explicit), "given by --config")
    from_env = os.environ.get(CONFIG_ENV, "")
    if from_env:
        return _must_exist(Path(from_env), f"named by ${CONFIG_ENV}")
    default = Path(DEFAULT_CONFIG_NAME)
    if default.is_file():
        return default
    raise ConfigError(
        None,
        [
            Problem(
                None,
                "",
                f"no config file: pass --config PATH, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG_NAME} "
                "(see examples/pcigate.yaml)",
            )
        ],
    )


def _must_exist(path: Path, how: str) -> Path:
    if not path.is_file():
        raise ConfigError(str(path), [Problem(None, "", f"config file not found ({how})")])
    return path


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise :class:`ConfigError` listing every problem found."""
    display = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(display, [Problem(None, "", f"cannot read config: {exc.strerror}")]) from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(display, [Problem(None, "", "config file is larger than 4 MiB")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(display, [Problem(line, "", "config file is not valid UTF-8")]) from None
    return parse_config(text, display)


def parse_config(text: str, path: str | None = None) -> Config:
    """Validate config text (``path`` is only used in messages); raise :class:`ConfigError`."""
    marked = parse_yaml(text)
    problems = list(marked.problems)
    if marked.data is None:
        raise ConfigError(path, problems)
    try:
        config = Config.model_validate(marked.data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, marked))
        # `from None`: the pydantic error (and its inputs, which may include secrets) stays out of tracebacks.
        raise ConfigError(path, problems) from None
    if problems:
        raise ConfigError(path, problems)
    return config


def _problems_from(exc: ValidationError, marked: Marked) -> list[Problem]:
    return _translate(exc.errors(), (), marked)


def _translate(
    errors: Iterable[ErrorDetails], prefix: tuple[int | str, ...], marked: Marked
) -> list[Problem]:
    out: list[Problem] = []
    for err in errors:
        raw = (*prefix, *err["loc"])
        loc, on_key = _clean_loc(raw, marked.data)
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, IssuesError):
            for sub, message in error.issues:
                full = (*loc, *sub)
                out.append(Problem(marked.line_of(full), format_key(full), message))
            out.extend(_translate(error.nested, raw, marked))
            continue
        line = marked.line_of(loc)
        if on_key or err["type"] == "extra_forbidden":
            line = marked.key_lines.get(loc, line)
        out.append(Problem(line, format_key(loc), _message(err, loc)))
    return out


_ABSENT = object()


def _clean_loc(raw: tuple[int | str, ...], data: Any) -> tuple[Loc, bool]:
    """Map a pydantic ``loc`` onto the document: drop union/type tags (``list``, ``function-after[...]``)
    that are not keys of the data, and report whether the error is about a mapping key (``[key]``)."""
    loc: list[str | int] = []
    on_key = False
    current = data
    for part in raw:
        if part == "[key]":
            on_key = True
        elif isinstance(current, dict) and isinstance(part, str):
            loc.append(part)
            current = current.get(part, _ABSENT)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            loc.append(part)
            current = current[part]
        elif isinstance(part, str) and current is not _ABSENT:
            continue  # a tag pydantic adds inside unions; the data has no such key
        else:
            loc.append(part)
            current = _ABSENT
    return tuple(loc), on_key


_EXPECTED_TYPE = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _message(err: ErrorDetails, loc: Loc) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "invalid-json-value":
        return "must be plain data: strings, numbers, booleans, null, lists and mappings (no dates or binary)"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must have at least {least} items"
    if kind in _EXPECTED_TYPE:
        return f"must be {_EXPECTED_TYPE[kind]} (got {_yaml_kind(err.get('input'))})"
    return str(err["msg"])


def _yaml_kind(value: object) -> str:
    # The kind only, never the value: it may be a secret someone pasted into the wrong key.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, date):
        return "a date"
    return type(value).__name__


def _unknown_key(loc: Loc) -> str:
    known = _known_keys(loc[:-1])
    if not known:
        return "unknown key"
    key = str(loc[-1]) if loc else ""
    close = get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; allowed here: {', '.join(known)}"


def _known_keys(parent: Loc) -> list[str]:
    """Field names of the model at ``parent``, found by walking the model's type annotations."""
    annotation: Any = Config
    for part in parent:
        annotation = _child(annotation, part)
        if annotation is None:
            return []
    model = _unwrap(annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _child(annotation: Any, part: str | int) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part) if isinstance(part, str) else None
        return None if field is None else field.annotation
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (tuple, list) and isinstance(part, int) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None
