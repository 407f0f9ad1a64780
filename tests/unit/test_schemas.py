"""Contract tests for ``schemas``: the JSON Schema files and the pydantic models must say the same thing.

Pure: reads only the package's own files. Every event type gets a valid example and a battery of
invalid ones, each judged by both the JSON Schema validator and the models, which must agree.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

import schemas
from pcigate.devstack.testcards import luhn_valid
from schemas import (
    EVENT_MODELS,
    EVENT_TYPES,
    EventInvalid,
    load_schema,
    parse_event,
    pci_requirements,
    validate,
    validator,
)
from schemas.registry import schema_types

SCHEMA_DIR = Path(schemas.__file__).parent / "json"
BASE_URI = "https://schemas.pcigate.dev/v1/"
PCI_SIX = ("actor", "type", "time", "outcome", "origin", "target")  # PCI DSS 10.2.2 details


def _luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit: builds a test PAN at run time so no card number sits in the repo."""
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


PAN = _luhn_complete("4" + "1" * 14)


def _sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


# --- one valid example per type -------------------------------------------------------------------
ISS = "https://login.example.com/oauth2/default"
DBA = {"sub": "00u1a2b3c4", "iss": ISS, "name": "Dana Okafor", "groups": ["payments-dba"], "kind": "human"}
LEAD = {"sub": "00u5d6e7f8", "iss": ISS, "name": "Lee Marsh", "groups": ["payments-leads"], "kind": "human"}
AGENT = {
    "sub": "agent-billing-assistant",
    "iss": ISS,
    "name": "Billing assistant",
    "groups": ["support-agents"],
    "kind": "agent",
    "on_behalf_of": "00u9z8y7x6",
}
GATEWAY: dict[str, Any] = {
    "sub": "svc-pcigate-gateway",
    "iss": ISS,
    "name": None,
    "groups": [],
    "kind": "service",
}
EVIDENCE: dict[str, Any] = {
    "sub": "svc-pcigate-evidence",
    "iss": ISS,
    "name": None,
    "groups": [],
    "kind": "service",
}
AUDITOR = {
    "sub": "qsa-ext-017",
    "iss": ISS,
    "name": "R. Alvarez (QSA)",
    "groups": ["auditors"],
    "kind": "human",
}

PG = {
    "connection": "payments-prod",
    "protocol": "postgres",
    "host": "pg-payments-1.internal",
    "database": "payments",
    "object": "public.cards",
}
LEDGER = {
    "connection": None,
    "protocol": "ledger",
    "host": "evidence-1.internal",
    "database": "pcigate_ledger",
    "object": "pcigate.example/ledger",
}
DBA_ORIGIN = {"addr": "10.20.3.14", "port": 52814, "client_app": "psql"}
AGENT_ORIGIN = {"addr": "10.20.9.2", "port": 40122, "client_app": "billing-assistant/2.3"}
SESSION = "019a8f3e-51c2-7b10-8d4e-2f6a1c9b0e11"
AGENT_SESSION = "019a8f40-0a1d-7e55-a0c3-5b7d2e9f4a22"
POLICY = "2026-11-20.3"
KEY = {"key_id": "stmt-2026-11", "hmac_sha256": _sha("hmac")}
OK = {"result": "success", "code": None, "message": None}


def _actor(base: Mapping[str, Any]) -> dict[str, Any]:
    fields = ("sub", "iss", "name", "groups", "kind", "on_behalf_of")
    return {name: copy.deepcopy(base.get(name)) for name in fields}


def _statement(
    text: str, kind: str, objects: list[str], *, params: list[str | None] | None = None
) -> dict[str, Any]:
    return {
        "text": text,
        "text_truncated": False,
        "masked_literals": text.count("******"),
        "fingerprint": _sha("fp:" + text),
        "digest": {**KEY, "hmac_sha256": _sha("digest:" + text)},
        "parameters": params,
        "parameters_truncated": False,
        "kind": kind,
        "objects": objects,
    }


SELECT = _statement(
    "SELECT id, pan, expiry FROM public.cards WHERE pan = '411111******1111'", "dql", ["public.cards"]
)
DELETE = _statement(
    "DELETE FROM public.cards WHERE created_at < $1", "dml", ["public.cards"], params=["2019-01-01"]
)
UPDATE = _statement(
    "UPDATE public.cards SET status = 'blocked' WHERE id = $1", "dml", ["public.cards"], params=["8841"]
)


def _event(
    type_: str,
    event_id: str,
    time: str,
    actor: Mapping[str, Any],
    origin: Mapping[str, Any],
    target: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    session_id: str | None = None,
    outcome: Mapping[str, Any] = OK,
    policy: Mapping[str, Any] | None = None,
    pci: list[str] | None = None,
    schema_version: str = "1.0",
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": type_,
        "schema_version": schema_version,
        "time": time,
        "actor": _actor(actor),
        "origin": dict(origin),
        "target": dict(target),
        "session_id": session_id,
        "outcome": dict(outcome),
        "policy": None if policy is None else dict(policy),
        "pci": pci if pci is not None else list(pci_requirements(type_)),
        "data": copy.deepcopy(dict(data)),
    }


def examples() -> dict[str, dict[str, Any]]:
    """A realistic, valid event of every type (the README shows the same ones)."""
    ledger_origin = {"addr": "10.20.0.7", "port": None, "client_app": "pcigate-evidence"}
    gw_target = {**PG, "object": None}
    out = [
        _event(
            "session.opened",
            "019a8f3e-51c3-7000-9a11-3c5e7f9b1d20",
            "2026-11-22T09:14:03.512204Z",
            DBA,
            DBA_ORIGIN,
            gw_target,
            {
                "auth_method": "oidc_token",
                "token_jti": "AT.qk3Jx9Lw2mZ",
                "token_expires_at": "2026-11-22T10:14:01.000000Z",
                "amr": ["pwd", "hwk"],
                "tls_version": "TLSv1.3",
                "tls_cipher": "TLS_AES_256_GCM_SHA384",
                "upstream_role": "payments_ro",
                "matched_groups": ["payments-dba"],
                "idle_timeout_s": 900,
            },
            session_id=SESSION,
            policy={"version": POLICY, "rule": "dba-interactive"},
        ),
        _event(
            "session.closed",
            "019a8f62-7d01-7a2b-8c3d-4e5f6a7b8c9d",
            "2026-11-22T09:53:41.090811Z",
            DBA,
            DBA_ORIGIN,
            gw_target,
            {
                "reason": "idle_timeout",
                "duration_ms": 2377578.6,
                "statements": 14,
                "statements_blocked": 1,
                "rows": 212,
                "bytes_from_client": 4811,
                "bytes_to_client": 90210,
                "masked_values": 37,
            },
            session_id=SESSION,
            policy={"version": POLICY, "rule": "idle-timeout"},
        ),
        _event(
            "auth.failed",
            "019a8f3d-e0aa-7c01-b2c3-d4e5f6a7b8c9",
            "2026-11-22T09:13:58.004117Z",
            {**DBA, "groups": []},
            DBA_ORIGIN,
            gw_target,
            {
                "reason": "credential_expired",
                "auth_method": "oidc_token",
                "claimed_identity_source": "token_claims",
                "token_jti": "AT.Zp7Qm1Vr8sK",
                "consecutive_failures": 1,
                "lockout_until": None,
            },
            outcome={
                "result": "failure",
                "code": "28000",
                "message": "token expired: get a new one with `pcigate token` and reconnect",
            },
        ),
        _event(
            "command.executed",
            "019a8f3f-02b4-7d10-9e21-0f3a4b5c6d7e",
            "2026-11-22T09:15:20.733019Z",
            DBA,
            DBA_ORIGIN,
            PG,
            {
                "statement": SELECT,
                "sequence": 3,
                "command_tag": "SELECT 1",
                "rows": 1,
                "duration_ms": 2.314,
                "chd_access": True,
                "privileged": False,
                "masked_values": 1,
                "approval_id": None,
            },
            session_id=SESSION,
            policy={"version": POLICY, "rule": "dba-read-cards-masked"},
        ),
        _event(
            "command.blocked",
            "019a8f41-33c0-7f01-8a02-b1c2d3e4f5a6",
            "2026-11-22T09:17:45.201556Z",
            AGENT,
            AGENT_ORIGIN,
            PG,
            {
                "statement": DELETE,
                "sequence": 7,
                "reason": "policy_rule",
                "limit": None,
                "chd_access": True,
                "privileged": False,
                "approval_id": None,
            },
            session_id=AGENT_SESSION,
            outcome={
                "result": "blocked",
                "code": "42501",
                "message": "blocked by rule agents-read-only: agents may not change data; ask for approval",
            },
            policy={"version": POLICY, "rule": "agents-read-only"},
        ),
        _event(
            "masking.applied",
            "019a8f3f-02b5-7a00-8b11-1a2b3c4d5e6f",
            "2026-11-22T09:15:20.734101Z",
            DBA,
            DBA_ORIGIN,
            PG,
            {
                "command_event_id": "019a8f3f-02b4-7d10-9e21-0f3a4b5c6d7e",
                "statement_fingerprint": SELECT["fingerprint"],
                "surface": "result_set",
                "locations": [
                    {
                        "table": "public.cards",
                        "column": "pan",
                        "ordinal": 1,
                        "detector": "column_policy",
                        "method": "first6_last4",
                        "count": 1,
                    }
                ],
                "locations_truncated": False,
                "total_values": 1,
            },
            session_id=SESSION,
            policy={"version": POLICY, "rule": "mask-pan"},
        ),
        _event(
            "sad.detected",
            "019a8f44-1b2c-7d3e-8f40-5a6b7c8d9e0f",
            "2026-11-22T09:20:51.618342Z",
            DBA,
            DBA_ORIGIN,
            {**PG, "object": "legacy.card_import"},
            {
                "kind": "cvv",
                "surface": "result_set",
                "location": {"table": "legacy.card_import", "column": "cvv2", "ordinal": 3},
                "detector": "column_policy",
                "action": "redacted",
                "count": 12,
                "command_event_id": "019a8f44-1b2b-7c00-9d11-2e3f4a5b6c7d",
                "statement_fingerprint": _sha("fp:legacy"),
            },
            session_id=SESSION,
            outcome={"result": "success", "code": None, "message": "CVV values removed from the results"},
            policy={"version": POLICY, "rule": "never-pass-sad"},
            pci=["3.3.1", "3.3.1.2", "10.2.2"],
        ),
        _event(
            "approval.requested",
            "019a8f46-70a1-7b22-9c33-d4e5f6a7b8c9",
            "2026-11-22T09:23:10.011870Z",
            DBA,
            DBA_ORIGIN,
            PG,
            {
                "request_id": "019a8f46-70a0-7e11-8f22-a3b4c5d6e7f8",
                "statement": UPDATE,
                "approver_groups": ["payments-leads"],
                "quorum": 1,
                "expires_at": "2026-11-22T09:38:10.011870Z",
                "scope": "once",
                "max_executions": 1,
                "chd_access": True,
                "privileged": False,
                "justification": "Customer reported the card stolen",
                "ticket": "INC-4821",
            },
            session_id=SESSION,
            outcome={"result": "pending", "code": None, "message": "held for approval by payments-leads"},
            policy={"version": POLICY, "rule": "chd-writes-need-approval"},
        ),
        _event(
            "approval.decided",
            "019a8f48-0c3d-7e4f-a051-6b7c8d9e0f1a",
            "2026-11-22T09:24:52.470215Z",
            LEAD,
            {"addr": "10.20.4.31", "port": None, "client_app": "pcigate-approve"},
            PG,
            {
                "request_id": "019a8f46-70a0-7e11-8f22-a3b4c5d6e7f8",
                "decision": "approve",
                "reason": "Matches INC-4821; single card, status change only",
                "requester": {"sub": DBA["sub"], "iss": ISS, "name": DBA["name"]},
                "approver_groups_matched": ["payments-leads"],
                "statement_fingerprint": UPDATE["fingerprint"],
                "statement_digest": UPDATE["digest"],
                "approvals": 1,
                "quorum": 1,
                "final": True,
                "channel": "tui",
            },
            policy={"version": POLICY, "rule": "chd-writes-need-approval"},
        ),
        _event(
            "approval.expired",
            "019a8f5a-9e01-7f12-8a23-c4d5e6f7a8b9",
            "2026-11-22T09:44:00.000213Z",
            GATEWAY,
            {"addr": "local", "port": None, "client_app": None},
            PG,
            {
                "request_id": "019a8f4f-2b00-7c11-9d22-e3f4a5b6c7d8",
                "requester": {"sub": AGENT["sub"], "iss": ISS, "name": AGENT["name"]},
                "statement_fingerprint": DELETE["fingerprint"],
                "expires_at": "2026-11-22T09:44:00.000000Z",
                "approvals": 0,
                "quorum": 2,
            },
            session_id=AGENT_SESSION,
            outcome={"result": "failure", "code": "approval_expired", "message": "no quorum before expiry"},
            policy={"version": POLICY, "rule": "agents-write-need-two"},
        ),
        _event(
            "access.granted",
            "019a8f50-4d5e-7f60-8172-839a4b5c6d7e",
            "2026-11-22T09:32:17.902244Z",
            LEAD,
            {"addr": "10.20.4.31", "port": None, "client_app": "pcigate-approve"},
            {**PG, "object": None},
            {
                "grant_id": "019a8f50-4d5d-7a00-9b11-2c3d4e5f6a7b",
                "grantee": {"kind": "identity", "id": DBA["sub"], "iss": ISS},
                "privileges": ["connect", "read", "write"],
                "role": "payments_rw",
                "valid_from": "2026-11-22T09:32:17.902244Z",
                "valid_until": "2026-11-22T11:32:17.902244Z",
                "mechanism": "jit_approval",
                "approval_id": "019a8f4e-11a0-7b22-8c33-d4e5f6a7b8c9",
                "justification": "Card status corrections for INC-4821",
                "ticket": "CHG-1042",
            },
            policy={"version": POLICY, "rule": "jit-write-access"},
        ),
        _event(
            "access.revoked",
            "019a8fc2-66f7-7a08-9b19-2a3b4c5d6e7f",
            "2026-11-22T11:32:18.004519Z",
            GATEWAY,
            {"addr": "local", "port": None, "client_app": None},
            {**PG, "object": None},
            {
                "grant_id": "019a8f50-4d5d-7a00-9b11-2c3d4e5f6a7b",
                "grantee": {"kind": "identity", "id": DBA["sub"], "iss": ISS},
                "privileges": ["connect", "read", "write"],
                "role": "payments_rw",
                "reason": "expired",
                "sessions_terminated": 1,
                "ticket": "CHG-1042",
            },
            policy={"version": POLICY, "rule": "jit-write-access"},
        ),
        _event(
            "ledger.started",
            "019a8e10-0001-7000-8000-5a1b2c3d4e5f",
            "2026-11-22T06:00:00.412007Z",
            EVIDENCE,
            ledger_origin,
            LEDGER,
            {
                "log_origin": "pcigate.example/ledger",
                "initialized": False,
                "tree_size": 18233,
                "root_hash": _sha("root:18233"),
                "signing_key_id": "5c1f02ab",
                "stream": "PCIGATE_AUDIT",
                "consumer": "evidence",
                "resume_after_sequence": 18240,
                "software_version": "0.1.0",
            },
        ),
        _event(
            "ledger.stopped",
            "019a9161-7f00-7000-8a00-6b1c2d3e4f50",
            "2026-11-22T21:30:02.881950Z",
            EVIDENCE,
            ledger_origin,
            LEDGER,
            {
                "log_origin": "pcigate.example/ledger",
                "reason": "shutdown",
                "clean": True,
                "tree_size": 20511,
                "root_hash": _sha("root:20511"),
                "last_sequence": 20522,
            },
        ),
        _event(
            "ledger.read",
            "019a8fa0-3c4d-7e5f-8061-728394a5b6c7",
            "2026-11-22T10:55:12.330146Z",
            AUDITOR,
            {"addr": "198.51.100.24", "port": 61022, "client_app": "pcigate-cli"},
            LEDGER,
            {
                "log_origin": "pcigate.example/ledger",
                "operation": "export",
                "first_index": 0,
                "last_index": 18232,
                "tree_size": 18233,
                "filter": {
                    "types": ["command.executed", "command.blocked"],
                    "since": "2026-11-01T00:00:00.000000Z",
                    "until": "2026-11-22T00:00:00.000000Z",
                    "actor_sub": None,
                    "requirement": "10.2.1.1",
                },
                "results": 4120,
                "purpose": "QSA assessment 2026: sample for 10.2.1.1",
            },
            session_id=None,
            policy={"version": POLICY, "rule": "auditors-read-ledger"},
        ),
        _event(
            "audit.gap",
            "019a8e10-0002-7000-9000-7c1d2e3f4a5b",
            "2026-11-22T06:00:00.918250Z",
            EVIDENCE,
            ledger_origin,
            {**LEDGER, "object": "PCIGATE_AUDIT"},
            {
                "stream": "PCIGATE_AUDIT",
                "subject": None,
                "first_missing": 18241,
                "last_missing": 18244,
                "detected_by": "evidence_consumer",
                "cause": "unknown",
                "producer": "gw-2",
                "last_event_id": "019a8e0f-fa11-7b22-8c33-0d4e5f6a7b8c",
            },
            outcome={"result": "failure", "code": "audit_gap", "message": "4 audit records missing"},
        ),
        _event(
            "config.changed",
            "019a8f80-2a3b-7c4d-8e5f-60718293a4b5",
            "2026-11-22T10:20:05.552190Z",
            GATEWAY,
            {"addr": "local", "port": None, "client_app": "pcigate-gateway"},
            {
                "connection": None,
                "protocol": "pcigate",
                "host": "gw-1.internal",
                "database": None,
                "object": "/etc/pcigate/pcigate.yaml",
            },
            {
                "component": "gateway",
                "trigger": "reload",
                "hash_before": _sha("config:before"),
                "hash_after": _sha("config:now"),
                "changed_keys": [
                    "connections.payments-prod.policy.rules",
                    "limits.results.agent.statement_rows",
                ],
                "changed_keys_truncated": False,
                "policy_version_before": "2026-11-20.2",
                "policy_version_after": POLICY,
            },
        ),
        _event(
            "recording.chunk",
            "019a8f3f-ee21-7a40-8b52-6c7d8e9f0a1b",
            "2026-11-22T09:16:20.118305Z",
            DBA,
            DBA_ORIGIN,
            gw_target,
            {
                "seq": 2,
                "sha256": _sha("chunk:2"),
                "bytes": 48213,
                "subject": f"pcigate.recordings.{SESSION}",
                "msg_id": f"{SESSION}.2",
                "records": 14,
                "first_sequence": 3,
                "last_sequence": 6,
                "rows_recorded": 500,
                "rows_omitted": 1840,
                "final": False,
                "format": "pcigate-recording/1",
            },
            session_id=SESSION,
            policy={"version": POLICY, "rule": "dba-interactive"},
            schema_version="1.1",  # added in 1.1
        ),
    ]
    return {event["type"]: event for event in out}


EXAMPLES = examples()


# --- schema files ----------------------------------------------------------------------------------
def _files() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SCHEMA_DIR.glob("*.json"))}


FILES = _files()


def test_one_file_per_type_plus_envelope() -> None:
    expected = {"envelope.schema.json"} | {f"{t}.schema.json" for t in EVENT_TYPES}
    assert set(FILES) == expected
    assert set(schema_types()) == set(EVENT_TYPES) == set(EXAMPLES)
    assert len(EVENT_TYPES) == 18


@pytest.mark.parametrize("name", sorted(FILES))
def test_file_is_valid_2020_12_with_id_title_description(name: str) -> None:
    doc = FILES[name]
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == BASE_URI + name
    assert doc["title"]
    assert doc["description"]


@cache
def _registry() -> Registry[Any]:
    return Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012)) for doc in FILES.values()
    )


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_ref_resolves_offline(name: str) -> None:
    resolver = _registry().resolver(base_uri=FILES[name]["$id"])
    refs = list(_refs(FILES[name]))
    assert refs or name == "envelope.schema.json"
    for ref in refs:
        assert resolver.lookup(ref).contents is not None


def test_unknown_ref_is_not_fetched() -> None:
    resolver = _registry().resolver(base_uri=BASE_URI + "envelope.schema.json")
    with pytest.raises(Unresolvable):
        resolver.lookup("https://example.com/elsewhere.schema.json")


def _object_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _object_nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _object_nodes(value, f"{path}/{index}")


def _types_of(node: Mapping[str, Any]) -> set[str]:
    declared = node.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


@pytest.mark.parametrize("name", sorted(FILES))
def test_objects_closed_and_values_bounded(name: str) -> None:
    """No open object (stray fields could carry card data) and no unbounded string, array or integer."""
    for path, node in _object_nodes(FILES[name]):
        kinds = _types_of(node)
        where = f"{name}{path}"
        if "object" in kinds and "properties" in node:
            assert node.get("additionalProperties") is False or node.get("unevaluatedProperties") is False, (
                where
            )
            if path or name == "envelope.schema.json":  # a type file's root inherits `required`
                optional = {prop for prop, sub in node["properties"].items() if "x-since" in sub}
                assert set(node["required"]) == set(node["properties"]) - optional, (
                    f"{where}: only properties added after 1.0 (marked x-since) may be optional"
                )
            for prop, sub in node["properties"].items():
                assert "description" in sub or set(sub) <= {"type", "const", "$ref"}, f"{where}/{prop}"
        if "string" in kinds and "const" not in node and "enum" not in node:
            assert "maxLength" in node and "pattern" in node, where
        if "array" in kinds:
            assert "maxItems" in node, where
        if "integer" in kinds or "number" in kinds:
            assert "minimum" in node and "maximum" in node, where
    if name != "envelope.schema.json":
        assert FILES[name]["unevaluatedProperties"] is False
        assert FILES[name]["allOf"] == [{"$ref": "envelope.schema.json"}]


def test_envelope_requires_the_pci_10_2_2_details() -> None:
    envelope = FILES["envelope.schema.json"]
    assert set(PCI_SIX) <= set(envelope["required"])
    assert set(envelope["required"]) == set(envelope["properties"])
    for nullable in ("session_id", "policy"):
        assert nullable in envelope["required"]


def test_load_schema_returns_a_copy() -> None:
    schema = load_schema("command.executed")
    schema["properties"].clear()
    assert load_schema("command.executed")["properties"]
    validate(EXAMPLES["command.executed"])
    with pytest.raises(KeyError):
        load_schema("command.exploded")


# --- PCI mapping ---------------------------------------------------------------------------------
REQUIRED_MAPPING = {
    "auth.failed": {"10.2.1.4", "10.2.2"},
    "ledger.started": {"10.2.1.6"},
    "ledger.stopped": {"10.2.1.6"},
    "ledger.read": {"10.2.1.3"},
    "audit.gap": {"10.7.2"},
    "access.granted": {"10.2.1.5", "7.2.2"},
    "access.revoked": {"10.2.1.5", "7.2.2"},
    "command.executed": {"10.2.1.1", "10.2.1.2"},
    "masking.applied": {"3.4.1", "3.5.1"},
    "sad.detected": {"3.3.1"},
    "recording.chunk": {"10.2.1.1", "10.2.1.2"},
}


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_pci_mapping(event_type: str) -> None:
    mapping = pci_requirements(event_type)
    assert "10.2.2" in mapping, "every event carries the 10.2.2 details"
    assert REQUIRED_MAPPING.get(event_type, set()) <= set(mapping)
    assert len(set(mapping)) == len(mapping)
    assert set(mapping) <= set(EXAMPLES[event_type]["pci"])


# --- valid and invalid examples, judged by both validators ------------------------------------------
def _model_accepts(event: Any) -> bool:
    try:
        parse_event(event)
    except EventInvalid:
        return False
    return True


def _schema_accepts(event: Any) -> bool:
    try:
        validate(event)
    except EventInvalid:
        return False
    return True


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_valid_example_passes_both_and_round_trips(event_type: str) -> None:
    event = EXAMPLES[event_type]
    validate(event)
    model = parse_event(event)
    assert type(model) is EVENT_MODELS[event_type]
    assert model.type == event_type
    dumped = model.model_dump(mode="json")
    assert dumped == event
    assert rfc8785.dumps(dumped) == rfc8785.dumps(event), "re-serializing must not change the leaf hash"
    assert parse_event(json.dumps(event)) == model
    assert parse_event(json.dumps(event).encode()) == model
    assert validator(event_type).is_valid(event)


Mutation = Callable[[dict[str, Any]], None]


def _drop(key: str) -> Mutation:
    def mutate(event: dict[str, Any]) -> None:
        del event[key]

    return mutate


def _set(*path_and_value: Any) -> Mutation:
    *path, value = path_and_value

    def mutate(event: dict[str, Any]) -> None:
        node = event
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _other_type(event: dict[str, Any]) -> None:
    others = [t for t in EVENT_TYPES if t != event["type"]]
    event["type"] = others[0]


def _id_version(version: str) -> Mutation:
    return lambda event: event.__setitem__("id", event["id"][:14] + version + event["id"][15:])


MUTATIONS: dict[str, Mutation] = {
    **{f"missing-{key}": _drop(key) for key in PCI_SIX},
    **{
        f"missing-{key}": _drop(key)
        for key in ("id", "schema_version", "pci", "data", "session_id", "policy")
    },
    "type-of-another-event": _other_type,
    "type-unknown": _set("type", "command.exploded"),
    "type-not-a-string": _set("type", 7),
    "extra-field-in-data": _set("data", "card_number", PAN),
    "pan-as-data-key": _set("data", PAN, "x"),
    "pan-in-unknown-actor-field": _set("actor", "pan", PAN),
    "pan-in-unknown-origin-field": _set("origin", "note", PAN),
    "pan-in-unknown-top-field": _set("pan", PAN),
    "extra-field-in-outcome": _set("outcome", "detail", "x"),
    "extra-field-in-target": _set("target", "table", "x"),
    "uuid-version-4": _id_version("4"),
    "uuid-uppercase": lambda event: event.__setitem__("id", event["id"].upper()),
    "time-without-microseconds": _set("time", "2026-11-22T01:02:03Z"),
    "time-with-offset": _set("time", "2026-11-22T01:02:03.123456+00:00"),
    "time-february-30": _set("time", "2026-02-30T01:02:03.123456Z"),
    "time-trailing-newline": _set("time", "2026-11-22T01:02:03.123456Z\n"),
    "schema-version-2": _set("schema_version", "2.0"),
    "schema-version-trailing-newline": _set("schema_version", "1.0\n"),
    "pci-empty": _set("pci", []),
    "pci-not-an-id": _set("pci", ["Req 10"]),
    "pci-duplicate": _set("pci", ["10.2.2", "10.2.2"]),
    "actor-sub-null": _set("actor", "sub", None),
    "actor-kind-unknown": _set("actor", "kind", "robot"),
    "actor-sub-control-char": _set("actor", "sub", "dana\nroot"),
    "actor-sub-bidi-override": _set("actor", "sub", "dana\u202eroot"),
    "actor-sub-too-long": _set("actor", "sub", "x" * 257),
    "actor-groups-duplicate": _set("actor", "groups", ["a", "a"]),
    "origin-port-float": _set("origin", "port", 5432.0),
    "origin-port-string": _set("origin", "port", "5432"),
    "origin-port-bool": _set("origin", "port", True),
    "origin-port-too-big": _set("origin", "port", 65536),
    "outcome-result-unknown": _set("outcome", "result", "maybe"),
    "target-protocol-unknown": _set("target", "protocol", "oracle"),
    "policy-not-object": _set("policy", "v1"),
    "data-null": _set("data", None),
    "data-empty": _set("data", {}),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_invalid_examples_rejected_by_both(event_type: str, mutation: str) -> None:
    event = copy.deepcopy(EXAMPLES[event_type])
    MUTATIONS[mutation](event)
    assert not _schema_accepts(event), "JSON Schema accepted it"
    assert not _model_accepts(event), "model accepted it"


def _data_field_mutations(event_type: str) -> Iterator[tuple[str, Any]]:
    """For every data field: a wrong-typed value, and null where the field is not nullable."""
    data_schema = FILES[f"{event_type}.schema.json"]["$defs"]["data"]
    for name, prop in data_schema["properties"].items():
        kinds = _types_of(prop)
        yield name, {"unexpected": "object"} if "object" not in kinds else "not-an-object"
        if "null" not in kinds and "anyOf" not in prop:
            yield name, None


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_data_field_is_checked_by_both(event_type: str) -> None:
    for name, value in _data_field_mutations(event_type):
        event = copy.deepcopy(EXAMPLES[event_type])
        event["data"][name] = value
        assert not _schema_accepts(event), f"{name}={value!r}: JSON Schema accepted it"
        assert not _model_accepts(event), f"{name}={value!r}: model accepted it"
        event["data"].pop(name)
        assert not _schema_accepts(event), f"missing {name}: JSON Schema accepted it"
        assert not _model_accepts(event), f"missing {name}: model accepted it"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -0.5, 2.0**53])
@pytest.mark.parametrize("event_type", ["command.executed", "session.closed"])
def test_non_finite_or_out_of_range_numbers_rejected_by_both(event_type: str, value: float) -> None:
    event = copy.deepcopy(EXAMPLES[event_type])
    event["data"]["duration_ms"] = value
    assert not _schema_accepts(event)
    assert not _model_accepts(event)
    event["data"]["duration_ms"] = 12  # an integer is a valid JSON number
    assert _schema_accepts(event) and _model_accepts(event)


def test_integers_beyond_canonical_json_rejected_by_both() -> None:
    event = copy.deepcopy(EXAMPLES["command.executed"])
    event["data"]["rows"] = 2**53
    assert not _schema_accepts(event)
    assert not _model_accepts(event)
    event["data"]["rows"] = 2**53 - 1
    assert _schema_accepts(event) and _model_accepts(event)


# --- versions: v1 is additive-only -------------------------------------------------------------------
def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.mark.parametrize("version", ["1.0", "1.1", schemas.SCHEMA_VERSION, "1.12"])
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_v1_minor_is_accepted_by_both(event_type: str, version: str) -> None:
    """Stored 1.0 events stay valid after a minor bump; consumers accept any 1.x (additive-only)."""
    event = copy.deepcopy(EXAMPLES[event_type])
    event["schema_version"] = version
    assert _schema_accepts(event) and _model_accepts(event)


def test_x_since_names_a_released_minor() -> None:
    """A type or property added after 1.0 says since when, never later than what producers write."""
    current = _version(schemas.SCHEMA_VERSION)
    since = {
        f"{name}{path}": node["x-since"]
        for name, doc in FILES.items()
        for path, node in _object_nodes(doc)
        if "x-since" in node
    }
    for where, value in since.items():
        assert isinstance(value, str) and re.fullmatch(r"1\.[0-9]+", value), where
        assert _version(value) > (1, 0) and _version(value) <= current, where
    assert since.get("recording.chunk.schema.json") == "1.1"
    assert EXAMPLES["recording.chunk"]["schema_version"] == "1.1"


# --- error reasons never carry values ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        ("missing-time", "time: missing"),
        ("missing-actor", "actor: missing"),
        ("extra-field-in-data", "data: unexpected property 'card_number'"),
        ("pan-as-data-key", "data: unexpected property (name withheld)"),
        ("pan-in-unknown-actor-field", "actor: unexpected property 'pan'"),
        ("pan-in-unknown-top-field", "(event): unexpected property 'pan'"),
        ("uuid-version-4", "id: does not match the required format"),
        ("type-unknown", "type: unknown event type"),
    ],
)
def test_reasons_name_the_path_never_the_value(mutation: str, reason: str) -> None:
    event = copy.deepcopy(EXAMPLES["command.executed"])
    MUTATIONS[mutation](event)
    for check in (validate, parse_event):
        with pytest.raises(EventInvalid) as caught:
            check(event)
        assert caught.value.reason == reason, check.__name__
        assert caught.value.__cause__ is None and caught.value.__context__ is None
        assert PAN not in str(caught.value) and PAN[-10:] not in repr(caught.value)


def test_reason_for_nested_value_is_a_path() -> None:
    event = copy.deepcopy(EXAMPLES["command.executed"])
    event["data"]["statement"]["parameters"] = [PAN + "'; DROP TABLE cards; --" + "x" * 1024]
    for check in (validate, parse_event):
        with pytest.raises(EventInvalid) as caught:
            check(event)
        assert caught.value.reason.startswith("data.statement.parameters[0]: too long"), caught.value.reason
        assert PAN not in str(caught.value)


def test_non_objects_and_bad_json_are_refused() -> None:
    for check in (validate, parse_event):
        with pytest.raises(EventInvalid, match=r"^\(event\): not a JSON object$"):
            check([EXAMPLES["command.executed"]])  # type: ignore[arg-type]
    with pytest.raises(EventInvalid, match="not valid JSON"):
        parse_event(b'{"id": ' + PAN.encode())
    with pytest.raises(EventInvalid, match=r"^type: missing$"):
        validate({})
    with pytest.raises(EventInvalid, match=r"^type: missing$"):
        parse_event({})


# --- the files and the models agree, both ways -------------------------------------------------------
ANNOTATIONS = {
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "$id",
    "$schema",
    "x-pci-requirements",
    "x-since",
}
KNOWN = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "enum",
    "const",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "uniqueItems",
    "$ref",
    "$defs",
    "allOf",
    "anyOf",
}
SCALARS = (
    "const",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "uniqueItems",
)
Resolve = Callable[[str, Any], tuple[Mapping[str, Any], Any]]


def _merge(a: dict[str, Any], b: dict[str, Any], where: str) -> dict[str, Any]:
    """allOf: both apply. Same-named constraints must agree (our files never rely on intersections)."""
    out = dict(a)
    for key, value in b.items():
        if key == "types":
            out[key] = value if a.get(key) is None else (a[key] & value if value is not None else a[key])
        elif key == "properties":
            props = dict(a.get("properties", {}))
            for name, sub in value.items():
                props[name] = _merge(props[name], sub, f"{where}.{name}") if name in props else sub
            out[key] = props
        elif key == "required":
            out[key] = a.get(key, frozenset()) | value
        elif key == "closed":
            out[key] = a.get(key, False) or value
        elif key in out and out[key] != value and key not in ("pattern", "minLength", "maxLength"):
            raise AssertionError(f"{where}: conflicting {key}")
        else:
            out[key] = value
    if "const" in out:  # a constant makes the envelope's generic pattern and length moot
        for moot in ("pattern", "minLength", "maxLength", "enum"):
            out.pop(moot, None)
    return out


def shape(node: Mapping[str, Any], ctx: Any, resolve: Resolve, where: str = "$") -> dict[str, Any]:
    """Normalize a schema node into the facts both sides must agree on; unknown keywords fail loudly."""
    unknown = set(node) - KNOWN - ANNOTATIONS
    assert not unknown, f"{where}: the comparison does not understand {sorted(unknown)}"
    out: dict[str, Any] = {"types": None}
    if "$ref" in node:
        target, target_ctx = resolve(node["$ref"], ctx)
        out = _merge(out, shape(target, target_ctx, resolve, where), where)
    for sub in node.get("allOf", []):
        out = _merge(out, shape(sub, ctx, resolve, where), where)
    if "anyOf" in node:
        branches = node["anyOf"]
        nulls = [b for b in branches if b == {"type": "null"}]
        rest = [b for b in branches if b != {"type": "null"}]
        assert len(nulls) == 1 and len(rest) == 1, f"{where}: only 'X or null' unions are used"
        inner = shape(rest[0], ctx, resolve, where)
        inner["types"] = (inner["types"] or frozenset()) | {"null"}
        out = _merge(out, inner, where)
    own: dict[str, Any] = {}
    if "type" in node:
        own["types"] = frozenset([node["type"]] if isinstance(node["type"], str) else node["type"])
    if "enum" in node:
        own["enum"] = frozenset(v for v in node["enum"] if v is not None)
    for key in SCALARS:
        if key in node:
            own[key] = node[key]
    if "properties" in node:
        own["properties"] = {
            name: shape(sub, ctx, resolve, f"{where}.{name}") for name, sub in node["properties"].items()
        }
    if "required" in node:
        own["required"] = frozenset(node["required"])
    if node.get("additionalProperties") is False or node.get("unevaluatedProperties") is False:
        own["closed"] = True
    if "items" in node:
        own["items"] = shape(node["items"], ctx, resolve, f"{where}[]")
    return _merge(out, own, where)


def diff(a: Any, b: Any, where: str = "$") -> list[str]:
    """Every difference between two shapes, as readable paths."""
    if isinstance(a, dict) and isinstance(b, dict):
        problems = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                problems.append(f"{where}: {key!r} only in {'model' if key in b else 'file'}")
            else:
                problems += diff(a[key], b[key], f"{where}.{key}" if key != "properties" else where)
        return problems
    return [] if a == b else [f"{where}: file {a!r} != model {b!r}"]


def _file_resolve(ref: str, resolver: Any) -> tuple[Mapping[str, Any], Any]:
    resolved = resolver.lookup(ref)
    return resolved.contents, resolved.resolver


@cache
def file_shape(event_type: str) -> dict[str, Any]:
    doc = FILES[f"{event_type}.schema.json"]
    return shape(doc, _registry().resolver(base_uri=doc["$id"]), _file_resolve)


def model_schema(event_type: str) -> dict[str, Any]:
    schema = EVENT_MODELS[event_type].model_json_schema()
    # `type` has a default only so producers need not repeat it; parse_event requires it (discriminator).
    assert "type" not in schema["required"]
    schema["required"] = [*schema["required"], "type"]
    return schema


@cache
def model_shape(event_type: str) -> dict[str, Any]:
    root = model_schema(event_type)

    def resolve(ref: str, _ctx: Any) -> tuple[Mapping[str, Any], Any]:
        assert ref.startswith("#/$defs/")
        return root["$defs"][ref.removeprefix("#/$defs/")], None

    return shape(root, None, resolve)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_files_and_models_have_the_same_shape(event_type: str) -> None:
    problems = diff(file_shape(event_type), model_shape(event_type))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_only_the_type_field_has_a_default(event_type: str) -> None:
    """Models must not fill in evidence the event lacks."""

    def walk(model: type[Any]) -> Iterator[str]:
        for name, field in model.model_fields.items():
            if not field.is_required():
                yield f"{model.__name__}.{name}"

    model = EVENT_MODELS[event_type]
    assert list(walk(model)) == [f"{model.__name__}.type"]


def test_shape_comparison_detects_drift() -> None:
    """The comparison itself can fail: a one-sided field, bound, enum value or nullability shows up."""
    base = model_shape("command.executed")
    assert not diff(file_shape("command.executed"), base)
    drifted = [copy.deepcopy(base) for _ in range(5)]
    data = [d["properties"]["data"] for d in drifted]
    data[0]["properties"]["note"] = {"types": frozenset({"string"})}
    data[1]["properties"]["statement"]["properties"]["text"]["maxLength"] = 16385
    data[2]["properties"]["statement"]["properties"]["kind"]["enum"] |= {"select"}
    data[3]["properties"]["rows"]["types"] = frozenset({"integer"})
    data[4]["required"] = data[4]["required"] - {"rows"}
    for changed in drifted:
        assert diff(base, changed)


# --- generated instances ---------------------------------------------------------------------------
def strategy(s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of a normalized shape: every bound and pattern respected, nulls where allowed."""
    types = set(s["types"] or ())
    base = _non_null(s, types - {"null"})
    return st.none() | base if "null" in types else base


def _non_null(s: Mapping[str, Any], types: set[str]) -> st.SearchStrategy[Any]:
    if "const" in s:
        return st.just(s["const"])
    if s.get("enum"):
        return st.sampled_from(sorted(s["enum"]))
    (kind,) = types
    if kind == "object":
        props = s["properties"]
        required = {k: strategy(v) for k, v in props.items() if k in s["required"]}
        optional = {k: strategy(v) for k, v in props.items() if k not in s["required"]}
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "array":
        low = s.get("minItems", 0)
        return st.lists(
            strategy(s["items"]),
            min_size=low,
            max_size=min(s.get("maxItems", low + 2), low + 2),
            unique=bool(s.get("uniqueItems")),
        )
    if kind == "string":
        low, high = s.get("minLength", 0), s.get("maxLength", 10_000)
        if s.get("format") == "date-time":
            moments = st.datetimes(min_value=datetime(1970, 1, 1))
            return moments.map(lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        text = st.from_regex(s["pattern"], fullmatch=True) if "pattern" in s else st.text()
        return text.filter(lambda v: low <= len(v) <= high)
    if kind == "integer":
        return st.integers(s.get("minimum"), s.get("maximum"))
    if kind == "number":
        low, high = s.get("minimum"), s.get("maximum")
        floats = st.floats(low, high, allow_nan=False, allow_infinity=False)
        return floats | st.integers(low, high)
    if kind == "boolean":
        return st.booleans()
    raise AssertionError(f"no strategy for {kind}")


@cache
def file_instances(event_type: str) -> st.SearchStrategy[Any]:
    return strategy(file_shape(event_type))


@cache
def model_instances(event_type: str) -> st.SearchStrategy[Any]:
    return strategy(model_shape(event_type))


GENERATED = settings(
    max_examples=25,
    database=None,  # unit tests write nothing
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@GENERATED
@given(data=st.data())
def test_instances_of_the_models_validate_against_the_files(event_type: str, data: st.DataObject) -> None:
    instance = data.draw(model_instances(event_type))
    model = EVENT_MODELS[event_type].model_validate(instance)
    dumped = model.model_dump(mode="json")
    validate(dumped)
    assert dumped == instance


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@GENERATED
@given(data=st.data())
def test_instances_valid_for_the_files_parse_as_models(event_type: str, data: st.DataObject) -> None:
    instance = data.draw(file_instances(event_type))
    validate(instance)
    model = parse_event(instance)
    assert type(model) is EVENT_MODELS[event_type]
    assert model.model_dump(mode="json") == instance


def test_public_api() -> None:
    assert set(schemas.__all__) == {
        "EVENT_MODELS",
        "EVENT_TYPES",
        "SCHEMA_VERSION",
        "AnyEvent",
        "Envelope",
        "EventInvalid",
        "format_utc",
        "load_schema",
        "new_event_id",
        "parse_event",
        "parse_utc",
        "pci_requirements",
        "utc_now",
        "validate",
        "validator",
    }
    for name in schemas.__all__:
        assert getattr(schemas, name) is not None
    assert schemas.SCHEMA_VERSION == "1.1"
    assert issubclass(EventInvalid, ValueError)
