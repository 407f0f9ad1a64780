"""Secret references: ``env:NAME`` or ``file:/absolute/path``, never the secret itself.

Config files get copied into tickets, repos and support bundles; a reference is safe to copy, a password is
not. ``load_config`` only checks the syntax; :func:`resolve_secret` reads the value when a component needs
it, so a rotated file is picked up on the next connect and a missing secret fails only what uses it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import PurePosixPath

from pcigate.config.errors import ConfigError, Problem

__all__ = ["INLINE_SECRET_MESSAGE", "SecretError", "check_secret_ref", "resolve_secret"]

INLINE_SECRET_MESSAGE = "secrets must be references: env:NAME or file:/path"  # noqa: S105 (a message)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_SECRET_BYTES = 1 << 20


class SecretError(ConfigError):
    """A secret reference could not be resolved; ``key`` (if given) is where the config uses it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(None, [Problem(None, key, message)])


def check_secret_ref(value: object) -> str:
    """Validate the syntax of a secret reference; raise ``ValueError`` without echoing the value."""
    if not isinstance(value, str):
        raise ValueError(INLINE_SECRET_MESSAGE)
    scheme, sep, rest = value.partition(":")
    if sep and scheme == "env":
        if not _ENV_NAME.fullmatch(rest):
            raise ValueError("env: reference needs a variable name like env:PCIGATE_LEDGER_DSN")
        return value
    if sep and scheme == "file":
        if not rest.startswith("/") or rest.startswith("//"):
            raise ValueError("file: reference needs an absolute path like file:/etc/pcigate/secret")
        if "\0" in rest:
            raise ValueError("file: reference path must not contain NUL")
        return value
    raise ValueError(INLINE_SECRET_MESSAGE)


def resolve_secret(ref: str, *, key: str = "") -> str:
    """Return the secret a reference points to.

    ``env:NAME`` must be set and non-empty. ``file:/path`` must be a regular file that group and other
    cannot access (as ssh insists for private keys); one trailing newline is stripped, since editors and
    ``echo`` add one. ``key`` names the config key in errors. Raises :class:`SecretError`.
    """
    try:
        check_secret_ref(ref)
    except ValueError as exc:
        raise SecretError(key, str(exc)) from None
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(rest, "")
        if not value:
            raise SecretError(key, f"environment variable {rest} is not set or empty (from {ref})")
        return value
    return _read_secret_file(PurePosixPath(rest), ref, key)


def _read_secret_file(path: PurePosixPath, ref: str, key: str) -> str:
    # O_NONBLOCK: opening a FIFO must not hang start-up; regular files ignore the flag.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SecretError(key, f"{ref}: file does not exist") from None
    except OSError as exc:
        raise SecretError(key, f"{ref}: cannot open: {exc.strerror}") from None
    try:
        # fstat the descriptor we read from, so the checked file is the file read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretError(key, f"{ref}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise SecretError(
                key,
                f"{ref}: permissions {mode:04o} are too open: group/other must have no access; "
                f"set mode 0600 or 0400 (chmod 600 {path})",
            )
        data = b""
        while len(data) <= _MAX_SECRET_BYTES and (chunk := os.read(fd, _MAX_SECRET_BYTES + 1 - len(data))):
            data += chunk
        if len(data) > _MAX_SECRET_BYTES:
            raise SecretError(key, f"{ref}: larger than 1 MiB; is this the right file?")
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(key, f"{ref}: not UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise SecretError(key, f"{ref}: file is empty")
    return text
