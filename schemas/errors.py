"""The one exception the event contract raises, and how failures are described without values."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["EventInvalid", "render_path", "safe_name"]

# Letters and underscores only: a name that holds no digit cannot hold a card number.
_SAFE_NAME = re.compile(r"[A-Za-z_]{1,64}")


class EventInvalid(ValueError):  # noqa: N818 - the contract's published name
    """An event does not satisfy the contract.

    ``reason`` names the failing location and rule (``data.statement.text: too long``) but never the
    offending value: values may hold card data, and exception text ends up in logs.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def safe_name(name: object) -> str:
    """Quote a property name from an event only if it cannot carry a value worth hiding."""
    if isinstance(name, str) and _SAFE_NAME.fullmatch(name):
        return f"'{name}'"
    return "(name withheld)"


def render_path(parts: Iterable[str | int]) -> str:
    """Render an instance location as ``data.locations[0].column``; ``(event)`` for the root."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _SAFE_NAME.fullmatch(part) else "(withheld)"
            out += f".{name}" if out else name
    return out or "(event)"
