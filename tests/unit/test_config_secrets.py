"""Secret references: syntax at load time, resolution (env, file, permissions) when a component needs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pcigate.config import ConfigError, SecretError, resolve_secret
from pcigate.config.secrets import INLINE_SECRET_MESSAGE, check_secret_ref


@pytest.mark.parametrize("ref", ["env:PCIGATE_X", "env:_x1", "file:/run/secrets/db", "file:/a b/c"])
def test_valid_references(ref: str) -> None:
    assert check_secret_ref(ref) == ref


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("hunter2", INLINE_SECRET_MESSAGE),
        ("postgresql://u:p@db/x", INLINE_SECRET_MESSAGE),
        ("ENV:X", INLINE_SECRET_MESSAGE),
        ("", INLINE_SECRET_MESSAGE),
        (12345, INLINE_SECRET_MESSAGE),
        (None, INLINE_SECRET_MESSAGE),
        ("env:", "env: reference needs a variable name"),
        ("env:1BAD", "env: reference needs a variable name"),
        ("env:A-B", "env: reference needs a variable name"),
        ("file:relative/key", "file: reference needs an absolute path"),
        ("file://host/key", "file: reference needs an absolute path"),
        ("file:", "file: reference needs an absolute path"),
    ],
)
def test_invalid_references(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message) as info:
        check_secret_ref(value)
    if message == INLINE_SECRET_MESSAGE:
        assert str(info.value) == INLINE_SECRET_MESSAGE  # the value itself is never echoed


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCIGATE_TEST_SECRET", "s3cret\n")
    assert resolve_secret("env:PCIGATE_TEST_SECRET") == "s3cret\n"  # env values are taken as they are


@pytest.mark.parametrize("value", [None, ""])
def test_env_unset_or_empty(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("PCIGATE_TEST_SECRET", raising=False)
    else:
        monkeypatch.setenv("PCIGATE_TEST_SECRET", value)
    with pytest.raises(SecretError) as info:
        resolve_secret("env:PCIGATE_TEST_SECRET", key="ledger.dsn")
    assert str(info.value) == (
        "ledger.dsn: environment variable PCIGATE_TEST_SECRET is not set or empty "
        "(from env:PCIGATE_TEST_SECRET)"
    )
    assert isinstance(info.value, ConfigError)


def write_secret(path: Path, data: bytes, mode: int) -> str:
    path.write_bytes(data)
    os.chmod(path, mode)
    return f"file:{path}"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"s3cret\n", "s3cret"),
        (b"s3cret", "s3cret"),
        (b"s3cret\r\n", "s3cret"),
        (b"s3cret\n\n", "s3cret\n"),  # only one newline is stripped
        (b"-----BEGIN KEY-----\nabc\n-----END KEY-----\n", "-----BEGIN KEY-----\nabc\n-----END KEY-----"),
    ],
)
def test_file(tmp_path: Path, data: bytes, expected: str) -> None:
    assert resolve_secret(write_secret(tmp_path / "s", data, 0o600)) == expected


def test_file_read_only_by_owner(tmp_path: Path) -> None:
    assert resolve_secret(write_secret(tmp_path / "s", b"x", 0o400)) == "x"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620, 0o602])
def test_file_too_open(tmp_path: Path, mode: int) -> None:
    ref = write_secret(tmp_path / "s", b"s3cret", mode)
    with pytest.raises(SecretError) as info:
        resolve_secret(ref, key="connections[0].roles[0].password")
    message = str(info.value)
    assert message.startswith(f"connections[0].roles[0].password: {ref}: permissions {mode:04o} are too open")
    assert f"chmod 600 {tmp_path / 's'}" in message
    assert "s3cret" not in message


def test_file_missing(tmp_path: Path) -> None:
    ref = f"file:{tmp_path / 'nope'}"
    with pytest.raises(SecretError, match="file does not exist"):
        resolve_secret(ref)


def test_file_is_a_directory(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o700)
    with pytest.raises(SecretError, match="not a regular file"):
        resolve_secret(f"file:{tmp_path}")


def test_file_empty(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="file is empty"):
        resolve_secret(write_secret(tmp_path / "s", b"\n", 0o600))


def test_file_not_text(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="not UTF-8 text"):
        resolve_secret(write_secret(tmp_path / "s", b"\xff\xfe", 0o600))


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(SecretError, match="not a regular file"):
        resolve_secret(f"file:{fifo}")


def test_inline_value_is_not_resolved_or_echoed() -> None:
    with pytest.raises(SecretError) as info:
        resolve_secret("hunter2")
    assert str(info.value) == INLINE_SECRET_MESSAGE


def test_file_too_large(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="larger than 1 MiB"):
        resolve_secret(write_secret(tmp_path / "s", b"x" * ((1 << 20) + 1), 0o600))
    assert len(resolve_secret(write_secret(tmp_path / "t", b"x" * (1 << 20), 0o600))) == 1 << 20
