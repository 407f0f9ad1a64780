"""Derivations from the validated configuration that several commands share."""

from __future__ import annotations

import ssl
from typing import Any

from nats.aio.client import RawCredentials

from pcigate.config import Config, resolve_secret
from pcigate.nats_provision import Settings


def provision_settings(config: Config) -> Settings:
    """The stream settings the configuration asks for (duplicate window, replicas, retention)."""
    return Settings(
        duplicate_window=config.nats.duplicate_window.total_seconds(),
        replicas=config.nats.replicas,
        audit_max_age=config.retention.audit.total_seconds(),
        recordings_max_age=config.retention.recordings_kept.total_seconds(),
    )


def nats_servers(config: Config) -> list[str]:
    url = config.nats.url
    return [url] if isinstance(url, str) else list(url)


def nats_connect_options(config: Config) -> dict[str, Any]:
    """Credentials and TLS trust for every NATS connection the configuration's components open.

    Credentials are resolved here (not at load time) so a missing or world-readable .creds file is
    reported by the command that needs it; their content is passed in memory, never re-written to disk.
    """
    options: dict[str, Any] = {}
    if config.nats.credentials:
        options["user_credentials"] = RawCredentials(
            resolve_secret(config.nats.credentials, key="nats.credentials")
        )
    if config.nats.tls_ca:
        options["tls"] = ssl.create_default_context(cafile=str(config.nats.tls_ca))
    return options
