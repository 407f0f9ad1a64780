"""pcigate.yaml loading: the example loads, and every broken file names the exact key and line."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import pydantic
import pytest
import rfc8785

from pcigate.config import (
    CONFIG_ENV,
    Config,
    ConfigError,
    Problem,
    ResultLimit,
    find_config,
    load_config,
    parse_config,
)
from pcigate.config.errors import format_key

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pcigate.yaml"

# A small valid config; the broken variants below each change one thing.
BASE = """\
version: 1
identity:
  issuer: https://idp.example.com
  audience: pcigate
  jwks: file:/etc/pcigate/jwks.json
  algorithms: [ES256, RS256]
  leeway: 30s
nats:
  url: nats://127.0.0.1:4222
  duplicate_window: 2m
  publish_retry_horizon: 1m
connections:
  - name: payments
    listen: 127.0.0.1:15432
    upstream:
      host: 127.0.0.1
      port: 5432
      database: payments
      tls: {mode: disable}
    roles:
      - groups: [engineers]
        user: pcigate_ro
        password: file:/etc/pcigate/secrets/ro
    policy: default
  - name: reporting
    listen: 127.0.0.1:15433
    upstream:
      host: 127.0.0.1
      database: reporting
      tls:
        mode: verify-full
        ca: /etc/pcigate/ca.pem
    roles:
      - groups: [analysts]
        user: pcigate_reporting
        password: env:PCIGATE_REPORTING_PASSWORD
ledger:
  dsn: env:PCIGATE_LEDGER_DSN
  origin: pcigate.dev/ledger
  signing_key: file:/etc/pcigate/ledger.key
retention:
  audit: 400d
  online: 90d
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the one line containing ``needle`` (asserting it is unique, so tests stay exact)."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} occurs on lines {hits}"
    return hits[0]


def broken(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "pcigate.yaml")
    return info.value.problems


def only_problem(text: str) -> Problem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# --- valid files ------------------------------------------------------------------------------------------


def test_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert [c.name for c in config.connections] == ["payments", "reporting"]
    payments = config.connections[0]
    assert payments.listen.host == "0.0.0.0" and payments.listen.port == 15432
    assert payments.tls_required and not config.connections[1].tls_required
    assert payments.upstream.tls.mode == "verify-full"
    assert config.retention.audit == timedelta(days=400)
    assert config.retention.recordings is None and config.retention.recordings_kept == timedelta(days=400)
    assert payments.recording.enabled and payments.recording.rows_per_statement == 100
    assert "PCIGATE_PAYMENTS_RO_PASSWORD" in payments.roles[1].password


def test_example_has_no_inline_secrets() -> None:
    config = load_config(EXAMPLE)
    refs = [r.password for c in config.connections for r in c.roles]
    refs += [config.ledger.dsn, config.ledger.signing_key]
    refs += [config.nats.credentials] if config.nats.credentials else []
    assert refs and all(r.startswith(("env:", "file:/")) for r in refs)


def test_base_loads_with_safe_defaults() -> None:
    config = parse_config(BASE)
    assert config.nats.url == ("nats://127.0.0.1:4222",)  # one URL becomes a list of one
    assert config.nats.spool_dir == Path("/var/lib/pcigate/spool")
    assert config.identity.jwks_refresh == timedelta(minutes=10)
    assert config.identity.default_kind == "human"
    assert set(config.policies) == {"default"}
    assert config.policies["default"].default_action == "require_approval"
    assert config.policies["default"].opaque_action == "require_approval"
    masked = {rule.match: rule.action for rule in config.masking["default"].columns}
    assert masked["pan"] == "bin_last4" and masked["cvv"] == "null" and masked["track2"] == "null"
    assert config.approvals.approver_groups == () and not config.approvals.allow_self_approval
    limits = config.connections[0].limits
    assert limits.max_message_bytes == 16 << 20
    assert limits.results == {"agent": ResultLimit(statement_rows=1000)}  # humans and services: unbounded
    assert config.connections[1].upstream.port == 5432


def test_config_is_frozen() -> None:
    config = parse_config(BASE)
    with pytest.raises(pydantic.ValidationError):
        config.version = 2  # type: ignore[misc]


def test_digest_is_sha256_of_canonical_json() -> None:
    config = parse_config(BASE)
    expected = hashlib.sha256(rfc8785.dumps(config.model_dump(mode="json"))).hexdigest()
    assert config.digest() == f"sha256:{expected}"
    # Formatting, comments and key order do not change the digest; values do.
    reformatted = BASE.replace("leeway: 30s", "leeway: 30   # seconds").replace(
        "version: 1", "version: 1  # v"
    )
    assert parse_config(reformatted).digest() == config.digest()
    assert parse_config(broken("leeway: 30s", "leeway: 31s")).digest() != config.digest()


def test_policy_version_tracks_policy_not_plumbing() -> None:
    config = parse_config(BASE)
    moved_nats = parse_config(broken("url: nats://127.0.0.1:4222", "url: nats://10.0.0.1:4222"))
    assert moved_nats.policy_version() == config.policy_version()
    assert moved_nats.digest() != config.digest()
    blocking = parse_config(BASE + "policies:\n  default: {default_action: block}\n")
    assert blocking.policy_version() != config.policy_version()
    more_groups = parse_config(broken("groups: [engineers]", "groups: [engineers, contractors]"))
    assert more_groups.policy_version() != config.policy_version()


def test_yaml_aliases_are_followed() -> None:
    text = broken("      - groups: [engineers]", "      - groups: &g [engineers, oncall]")
    text = broken("      - groups: [analysts]", "      - groups: *g", text)
    assert parse_config(text).connections[1].roles[0].groups == ("engineers", "oncall")


def test_masking_null_action_and_column_matching() -> None:
    text = BASE + 'masking:\n  default:\n    columns:\n      - {match: "/^card_/", action: null}\n'
    (rule,) = parse_config(text).masking["default"].columns
    assert rule.action == "null"
    assert rule.matches("CARD_number") and not rule.matches("discard_x")


def test_tls_not_required_when_explicitly_disabled_on_public_listen() -> None:
    text = broken("    listen: 127.0.0.1:15432", "    listen: 0.0.0.0:15432\n    tls: {require: false}")
    assert not parse_config(text).connections[0].tls_required


def test_ipv6_listen() -> None:
    config = parse_config(broken("listen: 127.0.0.1:15432", "listen: '[::1]:15432'"))
    assert config.connections[0].listen.host == "::1"
    assert str(config.connections[0].listen) == "[::1]:15432"
    assert not config.connections[0].tls_required


# --- broken files: exact key and line ---------------------------------------------------------------------

# (id, old, new, key, needle whose line the problem must be on, message fragment)
CASES = [
    (
        "wrong type",
        "      port: 5432",
        "      port: abc",
        "connections[0].upstream.port",
        "port: abc",
        "must be an integer (got a string)",
    ),
    (
        "port out of range",
        "      port: 5432",
        "      port: 70000",
        "connections[0].upstream.port",
        "port: 70000",
        "must be between 1 and 65535",
    ),
    (
        "bad reference",
        "    policy: default",
        "    policy: defualt",
        "connections[0].policy",
        "policy: defualt",
        "no policies entry named 'defualt' (defined: default); did you mean 'default'?",
    ),
    (
        "inline secret",
        "password: env:PCIGATE_REPORTING_PASSWORD",
        "password: hunter2",
        "connections[1].roles[0].password",
        "password: hunter2",
        "secrets must be references: env:NAME or file:/path",
    ),
    (
        "inline ledger dsn",
        "dsn: env:PCIGATE_LEDGER_DSN",
        "dsn: postgresql://ledger:s3cret@db/ledger",
        "ledger.dsn",
        "dsn: postgresql",
        "secrets must be references: env:NAME or file:/path",
    ),
    (
        "relative secret file",
        "signing_key: file:/etc/pcigate/ledger.key",
        "signing_key: file:ledger.key",
        "ledger.signing_key",
        "signing_key:",
        "absolute path",
    ),
    (
        "retention below PCI minimum",
        "  audit: 400d",
        "  audit: 300d",
        "retention.audit",
        "audit: 300d",
        "must be at least 365d (PCI DSS 10.5.1: 12 months)",
    ),
    (
        "online retention below PCI minimum",
        "  online: 90d",
        "  online: 30d",
        "retention.online",
        "online: 30d",
        "must be at least 90d",
    ),
    (
        "online retention above audit",
        "  online: 90d",
        "  online: 500d",
        "retention.online",
        "online: 500d",
        "must be <= audit (400d)",
    ),
    (
        "recordings kept less than the ledger keeps their hashes",
        "  online: 90d",
        "  online: 90d\n  recordings: 30d",
        "retention.recordings",
        "recordings: 30d",
        "must be >= audit (400d)",
    ),
    (
        "verify-full without ca",
        "        ca: /etc/pcigate/ca.pem\n",
        "",
        "connections[1].upstream.tls.ca",
        "mode: verify-full",  # the key is missing: the line of its parent mapping
        "required when mode is verify-full",
    ),
    (
        "verify-full with null ca",
        "        ca: /etc/pcigate/ca.pem",
        "        ca: null",
        "connections[1].upstream.tls.ca",
        "ca: null",
        "required when mode is verify-full",
    ),
    (
        "duplicate listen",
        "    listen: 127.0.0.1:15433",
        "    listen: 127.0.0.1:15432  # again",
        "connections[1].listen",
        "# again",
        "127.0.0.1:15432 clashes with connections[0].listen (127.0.0.1:15432)",
    ),
    (
        "HS256 in algorithms",
        "algorithms: [ES256, RS256]",
        "algorithms: [ES256, RS256, HS256]",
        "identity.algorithms[2]",
        "algorithms:",
        "HS256 is never accepted",
    ),
    (
        "alg none",
        "algorithms: [ES256, RS256]",
        "algorithms:\n    - ES256\n    - none",
        "identity.algorithms[1]",
        "- none",
        "none is never accepted",
    ),
    (
        "unknown algorithm",
        "algorithms: [ES256, RS256]",
        "algorithms: [ES256, XS1]",
        "identity.algorithms[1]",
        "algorithms:",
        "must be one of 'RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384' or 'EdDSA'",
    ),
    (
        "mysql not supported yet",
        "  - name: reporting",
        "  - name: reporting\n    protocol: mysql",
        "connections[1].protocol",
        "protocol: mysql",
        "mysql is not supported yet; supported: postgres",
    ),
    (
        "duplicate window shorter than retry horizon",
        "  duplicate_window: 2m",
        "  duplicate_window: 30s",
        "nats.duplicate_window",
        "duplicate_window: 30s",
        "must be >= publish_retry_horizon (1m)",
    ),
    (
        "unsupported version",
        "version: 1",
        "version: 2",
        "version",
        "version: 2",
        "must be 1",
    ),
    (
        "roles empty",
        "    roles:\n      - groups: [analysts]\n        user: pcigate_reporting\n"
        "        password: env:PCIGATE_REPORTING_PASSWORD\n",
        "    roles: []\n",
        "connections[1].roles",
        "roles: []",
        "must not be empty",
    ),
    (
        "leeway above 5m",
        "  leeway: 30s",
        "  leeway: 10m",
        "identity.leeway",
        "leeway: 10m",
        "must be between 0s and 5m",
    ),
    (
        "not a duration",
        "  leeway: 30s",
        "  leeway: 30 sec",
        "identity.leeway",
        "leeway: 30 sec",
        "'30 sec' is not a duration",
    ),
    (
        "section of the wrong type",
        "nats:\n  url: nats://127.0.0.1:4222\n  duplicate_window: 2m\n  publish_retry_horizon: 1m\n",
        "nats: 4222\n",
        "nats",
        "nats: 4222",
        "must be a mapping (got an integer)",
    ),
    (
        "plain http issuer",
        "issuer: https://idp.example.com",
        "issuer: http://idp.example.com",
        "identity.issuer",
        "issuer:",
        "http:// is only allowed for loopback hosts",
    ),
    (
        "non-loopback listen without tls",
        "    listen: 127.0.0.1:15433",
        "    listen: 10.0.0.5:15433",
        "connections[1].tls.cert",
        "  - name: reporting",  # tls is missing: the line of the connection mapping
        "listen 10.0.0.5:15433 is not loopback, so clients must use TLS",
    ),
    (
        "bad listen address",
        "    listen: 127.0.0.1:15433",
        "    listen: 127.0.0.1  # no port",
        "connections[1].listen",
        "# no port",
        "is not host:port",
    ),
    (
        "invalid connection name",
        "  - name: reporting",
        "  - name: Reporting",
        "connections[1].name",
        "name: Reporting",
        "must be a lowercase name",
    ),
    (
        "boolean where a number goes",
        "      port: 5432",
        "      port: yes",
        "connections[0].upstream.port",
        "port: yes",
        "must be an integer (got a boolean)",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "key", "needle", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_file_names_key_and_line(old: str, new: str, key: str, needle: str, message: str) -> None:
    text = broken(old, new)
    problem = only_problem(text)
    assert (problem.key, problem.line) == (key, line_of(text, needle))
    assert message in problem.message


def test_unknown_key_suggests_closest() -> None:
    text = broken(
        "    upstream:\n      host: 127.0.0.1\n      port: 5432",
        "    upstrem:\n      host: 127.0.0.1\n      port: 5432",
    )
    problems = {p.key: p for p in problems_of(text)}
    assert set(problems) == {"connections[0].upstrem", "connections[0].upstream"}
    typo = problems["connections[0].upstrem"]
    assert typo.line == line_of(text, "upstrem:")
    assert typo.message == "unknown key; did you mean 'upstream'?"
    missing = problems["connections[0].upstream"]
    assert missing.line == line_of(text, "- name: payments")  # the parent mapping
    assert missing.message == "required key is missing"


def test_unknown_key_without_close_match_lists_allowed_keys() -> None:
    text = broken("  leeway: 30s", "  leeway: 30s\n  colour: blue")
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("identity.colour", line_of(text, "colour"))
    assert problem.message.startswith("unknown key; allowed here: issuer, audience, jwks,")


def test_yaml_keys_are_taken_as_written() -> None:
    # YAML 1.1 reads `on:` as the boolean True; as a config key it is the word "on".
    problem = only_problem(broken("  leeway: 30s", "  leeway: 30s\n  on: 1"))
    assert problem.key == "identity.on"


@pytest.mark.parametrize("section", ["identity", "nats", "connections", "ledger"])
def test_missing_required_section(section: str) -> None:
    lines = BASE.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{section}:"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    text = "".join(lines[:start] + lines[end:])
    problem = only_problem(text)
    assert (problem.key, problem.line, problem.message) == (section, 1, "required key is missing")


def test_missing_version() -> None:
    text = broken("version: 1\n", "")
    assert only_problem(text) == Problem(1, "version", "required key is missing")


def test_duplicate_key() -> None:
    text = broken("  audience: pcigate\n", "  audience: pcigate\n  audience: other  # second\n")
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("identity.audience", line_of(text, "# second"))
    assert (
        problem.message
        == f"duplicate key: first defined on line {line_of(text, 'audience: pcigate')}; remove one"
    )


def test_duplicate_connection_name() -> None:
    text = broken("  - name: reporting", "  - name: payments  # again")
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("connections[1].name", line_of(text, "# again"))
    assert problem.message == "duplicate connection name; first used by connections[0]"


def test_wildcard_listen_clashes_with_any_host_on_the_same_port() -> None:
    text = broken("    listen: 127.0.0.1:15433", "    listen: 0.0.0.0:15432\n    tls: {require: false}")
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("connections[1].listen", line_of(text, "0.0.0.0:15432"))


def test_yaml_syntax_error_has_line() -> None:
    text = broken("algorithms: [ES256, RS256]", "algorithms: [ES256, RS256")
    problem = only_problem(text)
    assert problem.key == ""
    assert problem.line == line_of(text, "leeway:")  # where the parser found the problem
    assert problem.message.startswith("YAML syntax error: while parsing a flow sequence")


def test_yaml_syntax_error_does_not_quote_the_source_line() -> None:
    # PyYAML's own message quotes the offending line; a half-typed secret must not end up in logs.
    text = broken("dsn: env:PCIGATE_LEDGER_DSN", 'dsn: "postgresql://ledger:s3cret@db')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "pcigate.yaml")
    assert "s3cret" not in str(info.value)
    assert info.value.problems[0].line is not None


def test_inline_secret_is_never_echoed() -> None:
    text = broken("password: env:PCIGATE_REPORTING_PASSWORD", "password: hunter2")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "pcigate.yaml")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value.problems)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no pydantic traceback


def test_error_renders_one_line_per_problem_sorted_by_line() -> None:
    text = broken("      port: 5432", "      port: 70000")
    text = broken("  audit: 400d", "  audit: 30d", text)
    text = broken("  leeway: 30s", "  leeway: 1h", text)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "pcigate.yaml")
    assert info.value.path == "pcigate.yaml"
    port, leeway, audit = (line_of(text, n) for n in ("port: 70000", "leeway: 1h", "audit: 30d"))
    assert str(info.value).splitlines() == [
        f"pcigate.yaml:{leeway}: identity.leeway: must be between 0s and 5m",
        f"pcigate.yaml:{port}: connections[0].upstream.port: must be between 1 and 65535",
        f"pcigate.yaml:{audit}: retention.audit: must be at least 365d (PCI DSS 10.5.1: 12 months)",
    ]


def test_problems_inside_a_connection_and_across_connections_are_reported_together() -> None:
    text = broken("    listen: 127.0.0.1:15433", "    listen: 127.0.0.1:15432")
    text = broken("      port: 5432", "      port: 0", text)
    keys = [p.key for p in problems_of(text)]
    assert keys == ["connections[0].upstream.port", "connections[1].listen"]


def test_policy_rules_are_checked() -> None:
    text = BASE + (
        "policies:\n"
        "  default:\n"
        "    rules:\n"
        "      - {name: reads, match: {statements: [read]}, action: allow}\n"
        "      - name: reads\n"
        "        match: {}\n"
        "        action: block\n"
        "        approval: {quorum: 2}\n"
    )
    problems = {p.key: p for p in problems_of(text)}
    assert set(problems) == {"policies.default.rules[1].name", "policies.default.rules[1].approval"}
    assert problems["policies.default.rules[1].name"].line == line_of(text, "- name: reads")
    assert problems["policies.default.rules[1].approval"].line == line_of(text, "approval:")
    assert (
        "only allowed with action: require_approval" in problems["policies.default.rules[1].approval"].message
    )


def test_a_rules_mask_columns_only_with_action_mask_and_never_empty() -> None:
    text = BASE + (
        "policies:\n"
        "  default:\n"
        "    rules:\n"
        "      - name: agents-see-less\n"
        "        match: {kinds: [agent]}\n"
        "        action: mask\n"
        "        mask: {columns: [{match: email, action: full}, {match: /phone/, action: last4}]}\n"
        "      - name: reads\n"
        "        match: {}\n"
        "        action: allow\n"
        "        mask: {columns: [{match: email, action: full}]}\n"
        "      - name: empty\n"
        "        match: {}\n"
        "        action: mask\n"
        "        mask: {columns: []}\n"
    )
    problems = {p.key: p for p in problems_of(text)}
    assert set(problems) == {"policies.default.rules[1].mask", "policies.default.rules[2].mask.columns"}
    assert "only allowed with action: mask" in problems["policies.default.rules[1].mask"].message


def test_session_for_only_with_session_scope() -> None:
    text = BASE + (
        "policies:\n"
        "  default:\n"
        "    rules:\n"
        "      - name: held\n"
        "        match: {}\n"
        "        action: require_approval\n"
        "        approval: {scope: statement, session_for: 10m}\n"
    )
    problem = only_problem(text)
    assert problem.key == "policies.default.rules[0].approval.session_for"
    assert "only allowed with scope: session" in problem.message
    fine = parse_config(text.replace("scope: statement", "scope: session"), "pcigate.yaml")
    (rule,) = fine.policies["default"].rules
    assert rule.approval is not None and rule.approval.session_for == timedelta(minutes=10)


def test_result_limits_and_jit_access() -> None:
    text = BASE.replace(
        "    policy: default\n",
        "    policy: default\n"
        "    limits:\n"
        "      results:\n"
        "        service: {statement_bytes: 1048576, session_rows: 10}\n"
        "    jit:\n"
        "      grant: 30m\n"
        "      kinds: [human, agent]\n"
        "      approval: {groups: [oncall], timeout: 5m}\n",
        1,
    )
    conn = parse_config(text, "pcigate.yaml").connections[0]
    assert conn.limits.results == {"service": ResultLimit(statement_bytes=1 << 20, session_rows=10)}
    jit = conn.jit
    assert jit is not None and jit.grant == timedelta(minutes=30) and jit.approval.groups == ("oncall",)
    assert jit.applies_to("human", ["engineers"]) and not jit.applies_to("service", ["engineers"])
    grouped = jit.model_copy(update={"groups": ("contractors",)})
    assert grouped.applies_to("agent", ["contractors"]) and not grouped.applies_to("agent", ["engineers"])
    assert parse_config(BASE, "pcigate.yaml").connections[0].jit is None
    for bad, key in (
        ("session_rows: 10", "connections[0].limits.results.service.session_rows"),
        ("grant: 30m", "connections[0].jit.grant"),
        ("kinds: [human, agent]", "connections[0].jit.kinds[1]"),
    ):
        broken = text.replace(
            bad,
            {"session_rows: 10": "session_rows: 0", "grant: 30m": "grant: 2s"}.get(
                bad, "kinds: [human, robot]"
            ),
        )
        assert only_problem(broken).key == key, bad
    assert only_problem(text.replace("service:", "robots:")).key.startswith("connections[0].limits.results")


def test_bad_policy_name_points_at_the_key() -> None:
    text = BASE + "policies:\n  Strict Mode: {}\n"
    problem = only_problem(text)
    assert (problem.key, problem.line) == ('policies["Strict Mode"]', line_of(text, "Strict Mode"))


def test_references_to_masking_profiles_are_checked() -> None:
    text = broken("    policy: default", "    policy: default\n    masking: pci")
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("connections[0].masking", line_of(text, "masking: pci"))
    assert problem.message == "no masking entry named 'pci' (defined: default)"


def test_match_keys_are_checked() -> None:
    text = (
        BASE
        + "policies:\n  default:\n    rules:\n"
        + "      - {name: r, match: {since: 2024-01-01}, action: block}\n"
        + "      - name: s\n"
        + "        match:\n"
        + "          statements: [reads]\n"
        + "          tables: ['public.cards;']\n"
        + "          time: {start: '25:00', tz: Mars/Olympus}\n"
        + "        action: block\n"
    )
    problems = {p.key: p for p in problems_of(text)}
    assert set(problems) == {
        "policies.default.rules[0].match.since",
        "policies.default.rules[1].match.statements[0]",
        "policies.default.rules[1].match.tables[0]",
        "policies.default.rules[1].match.time.start",
        "policies.default.rules[1].match.time.tz",
    }
    assert problems["policies.default.rules[0].match.since"].line == line_of(text, "since")
    assert "unknown time zone 'Mars/Olympus'" in problems["policies.default.rules[1].match.time.tz"].message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty: expected a mapping with `version: 1`"),
        ("# only a comment\n", "the file is empty: expected a mapping with `version: 1`"),
        ("- version: 1\n", "must be a mapping (got a list)"),
    ],
)
def test_not_a_mapping(text: str, message: str) -> None:
    assert only_problem(text).message == message


def test_merge_keys_are_rejected() -> None:
    text = broken("  leeway: 30s", "  <<: {leeway: 30s}")
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("identity", line_of(text, "<<:"))
    assert "merge keys" in problem.message


def test_format_key() -> None:
    assert format_key(("connections", 0, "upstream", "port")) == "connections[0].upstream.port"
    assert format_key(("policies", "a.b", "rules")) == 'policies["a.b"].rules'
    assert format_key(()) == ""


# --- files and search order -------------------------------------------------------------------------------


def test_load_config_reports_file_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(broken("      port: 5432", "      port: 0"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = line_of(path.read_text(), "port: 0")
    assert str(info.value) == f"{path}:{line}: connections[0].upstream.port: must be between 1 and 65535"


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: cannot read config: No such file or directory"


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nidentity:\n  audience: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [Problem(3, "", "config file is not valid UTF-8")]


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    with pytest.raises(ConfigError, match="no config file: pass --config PATH, set PCIGATE_CONFIG"):
        find_config(None)
    (tmp_path / "pcigate.yaml").write_text(BASE)
    assert find_config(None) == Path("pcigate.yaml")
    from_env = tmp_path / "env.yaml"
    from_env.write_text(BASE)
    monkeypatch.setenv(CONFIG_ENV, os.fspath(from_env))
    assert find_config(None) == from_env
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(BASE)
    assert find_config(os.fspath(explicit)) == explicit


def test_find_config_does_not_fall_back_when_named_file_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pcigate.yaml").write_text(BASE)
    monkeypatch.setenv(CONFIG_ENV, os.fspath(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"config file not found \(named by \$PCIGATE_CONFIG\)"):
        find_config(None)
    with pytest.raises(ConfigError, match=r"config file not found \(given by --config\)"):
        find_config("missing.yaml")


def test_config_error_needs_a_problem() -> None:
    with pytest.raises(ValueError, match="at least one problem"):
        ConfigError("x.yaml", [])


def test_config_model_validates_directly() -> None:
    config = parse_config(BASE)
    assert Config.model_validate(config.model_dump()) == config
