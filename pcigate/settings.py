"""Derivations from the validated configuration that several commands share."""

from __future__ import annotations

from pcigate.config import Config
from pcigate.nats_provision import Settings


def provision_settings(config: Config) -> Settings:
    """The stream settings the configuration asks for (duplicate window, replicas, retention)."""
    return Settings(
        duplicate_window=config.nats.duplicate_window.total_seconds(),
        replicas=config.nats.replicas,
        audit_max_age=config.retention.audit.total_seconds(),
        recordings_max_age=config.retention.recordings.total_seconds(),
    )


def nats_servers(config: Config) -> list[str]:
    url = config.nats.url
    return [url] if isinstance(url, str) else list(url)
