"""The ``pcigate.yaml`` every component of the dev stack runs with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pcigate.devstack.files import write_private
from pcigate.devstack.issuer import DEV_AUDIENCE, DEV_ISSUER
from pcigate.devstack.layout import Layout

GATEWAY_PG_LISTEN = "127.0.0.1:15432"
APPROVER_GROUP = "approvers"
DIGEST_KEY_SECRET = "statement-digest.key"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class DevEndpoints:
    nats_url: str
    pg_host: str
    pg_port: int
    gateway_listen: str = GATEWAY_PG_LISTEN


def render(layout: Layout, ep: DevEndpoints) -> dict[str, Any]:
    secret = layout.secret
    return {
        "version": 1,
        "identity": {
            "issuer": DEV_ISSUER,
            "audience": DEV_AUDIENCE,
            "jwks": f"file:{layout.jwks_file}",
            "algorithms": ["ES256"],
            "leeway": "30s",
            "claims": {"groups": "groups", "kind": "kind", "on_behalf_of": "on_behalf_of", "name": "name"},
            "default_kind": "human",
        },
        "nats": {
            "url": ep.nats_url,
            "spool_dir": str(layout.spool_dir),
            "duplicate_window": "2m",
            "publish_retry_horizon": "1m",
            "replicas": 1,
        },
        "connections": [
            {
                "name": "payments",
                "protocol": "postgres",
                "listen": ep.gateway_listen,
                "tls": {
                    "cert": str(layout.tls_dir / "server.pem"),
                    "key": str(layout.tls_dir / "server-key.pem"),
                },
                "upstream": {
                    "host": ep.pg_host,
                    "port": ep.pg_port,
                    "database": "payments",
                    "tls": {"mode": "disable"},
                },
                "roles": [
                    {
                        "groups": ["payments-admins"],
                        "user": "pcigate_rw",
                        "password": f"file:{secret('pcigate_rw')}",
                    },
                    {
                        "groups": ["engineers", "agents", "ci"],
                        "user": "pcigate_ro",
                        "password": f"file:{secret('pcigate_ro')}",
                    },
                ],
                "policy": "default",
                "masking": "default",
            }
        ],
        "policies": {
            "default": {
                "default_action": "allow",
                "opaque_action": "require_approval",
                "rules": [
                    {
                        "name": "no-destruction",
                        "match": {"commands": ["drop", "truncate", "alter system"]},
                        "action": "block",
                        "message": "DROP, TRUNCATE and ALTER SYSTEM do not run through the gateway; "
                        "ship them as a reviewed migration",
                    },
                    {
                        # every write touching cards, not just statements that start with UPDATE or
                        # DELETE: a first keyword misses `WITH x AS (...) UPDATE cards ...`
                        "name": "card-writes",
                        "match": {"statements": ["write"], "tables": ["public.cards"]},
                        "action": "require_approval",
                        "approval": {"groups": [APPROVER_GROUP], "quorum": 1, "timeout": "300s"},
                    },
                    {
                        "name": "agent-card-reads",
                        "match": {"kinds": ["agent"], "tables": ["public.cards"], "rows_over": 100},
                        "action": "require_approval",
                        "approval": {"groups": [APPROVER_GROUP], "quorum": 1, "timeout": "300s"},
                    },
                ],
            },
        },
        "approvals": {"approver_groups": [APPROVER_GROUP], "default_timeout": "15m", "default_quorum": 1},
        "gateway": {"digest_key": f"file:{secret(DIGEST_KEY_SECRET)}", "digest_key_id": "dev1"},
        "ledger": {
            "dsn": f"file:{secret('ledger_dsn')}",
            "origin": "pcigate.dev/ledger",
            "signing_key": f"file:{secret('ledger-signing.key')}",
            "checkpoint_every": 1000,
            "checkpoint_interval": "10s",
        },
        "retention": {"audit": "400d", "online": "90d"},
    }


def write(layout: Layout, ep: DevEndpoints) -> Path:
    body = yaml.safe_dump(render(layout, ep), sort_keys=False, default_flow_style=False)
    header = (
        "# Written by `pcigate dev up` for the local dev stack; rewritten on every `dev up`.\n"
        "# Secrets are file: references into ./secrets (mode 0600).\n"
        "# examples/pcigate.yaml documents every key.\n"
    )
    write_private(layout.config_file, header + body, 0o600)
    return layout.config_file
