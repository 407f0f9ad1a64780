"""A policy rule's ``mask.columns`` end to end, through psql (simple protocol) and psycopg (extended): an
agent's reads get the rule's column masking on top of the connection's profile, a person's do not; the
rule never shows more than the profile does, and COPY of what it names is hidden in full."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.test_masking_e2e import psql_path
from tests.gateway_support import GatewayEndpoint, events_for, private_gateway

pytestmark = pytest.mark.e2e

AGENT_MASKS = [
    {
        "name": "agents-see-less",
        "match": {"kinds": ["agent"], "tables": ["public.customers", "public.cards"]},
        "action": "mask",
        "mask": {
            "columns": [
                {"match": "email", "action": "full"},
                {"match": "/_name$/", "action": "full"},
                {"match": "pan", "action": "last4"},
                {"match": "cvv", "action": "last4"},  # weaker than the profile's null: the profile wins
            ]
        },
    }
]
CUSTOMERS = "SELECT full_name, email, country FROM customers ORDER BY customer_id LIMIT 3"
CARDS = "SELECT holder_name, brand, pan, cvv FROM cards ORDER BY card_id LIMIT 3"


@pytest.fixture(scope="module")
def masked_gateway(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayEndpoint]:
    with private_gateway(dev_stack["config"], gateway, tmp_path_factory.mktemp("mask"), AGENT_MASKS) as gw:
        yield gw


def agent_token(gw: GatewayEndpoint, sub: str) -> str:
    return gw.token(sub=sub, groups=("payments-admins",), kind="agent", on_behalf_of="alice@example.com")


def psql_rows(gw: GatewayEndpoint, token: str, sub: str, sql: str) -> list[list[str]]:
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable"}
    argv = [psql_path(), "-X", "-At", "-F", "|", "-h", gw.host, "-p", str(gw.port), "-U", sub]
    run = subprocess.run(
        [*argv, "-d", gw.database, "-c", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return [line.split("|") for line in run.stdout.splitlines()]


def hidden(value: str | None) -> bool:
    """Masked in full: letters and digits became ``*`` (punctuation stays)."""
    if not value:
        return False
    return "*" in value and not any(c.isalnum() for c in value)


def test_an_agents_reads_get_the_rules_column_masks_with_psql_and_psycopg(
    masked_gateway: GatewayEndpoint,
) -> None:
    gw = masked_gateway
    sub = f"agent-{uuid.uuid4().hex[:8]}@example.com"
    token = agent_token(gw, sub)
    with psycopg.connect(gw.dsn(token), connect_timeout=10, autocommit=True) as conn:
        extended = {
            "customers": [list(r) for r in conn.execute(CUSTOMERS, prepare=True).fetchall()],
            "cards": [list(r) for r in conn.execute(CARDS, prepare=True).fetchall()],
        }
    simple = {"customers": psql_rows(gw, token, sub, CUSTOMERS), "cards": psql_rows(gw, token, sub, CARDS)}
    # renamed or computed from a column the rule names: hidden like the column (lineage, not names)
    for x, country in psql_rows(gw, token, sub, "SELECT lower(email) AS x, country FROM customers LIMIT 2"):
        assert hidden(x) and country.isalpha()
    for rows in (extended, simple):
        assert len(rows["customers"]) == 3 and len(rows["cards"]) == 3
        for full_name, email, country in rows["customers"]:
            assert hidden(full_name) and hidden(email) and country.isalpha()
        for holder, brand, pan, cvv in rows["cards"]:
            assert hidden(holder) and brand.isalpha()
            assert pan[-4:].isdigit() and hidden(pan[:-4])  # last4, stricter than the profile's bin_last4
            assert cvv in (None, "")  # the profile's null stands against the rule's weaker last4
    (event,) = events_for(
        gw.nats_url,
        lambda e: (
            e["type"] == "masking.applied"
            and e["actor"]["sub"] == sub
            and any(loc.get("detector") == "custom_rule" for loc in e["data"].get("locations", []))
        ),
        1,
    )[:1]
    assert event["actor"]["kind"] == "agent"


def test_a_persons_reads_keep_the_profile_and_copy_of_named_columns_is_hidden(
    masked_gateway: GatewayEndpoint,
) -> None:
    gw = masked_gateway
    sub = f"person-{uuid.uuid4().hex[:8]}@example.com"
    person = gw.token(sub=sub, groups=("payments-admins",))
    (row,) = psql_rows(gw, person, sub, "SELECT full_name, email, pan FROM customers JOIN cards USING "
                       "(customer_id) ORDER BY card_id LIMIT 1")  # fmt: skip
    full_name, email, pan = row
    assert "@" in email and not hidden(full_name)
    assert pan[:6].isdigit() and pan[-4:].isdigit() and "*" in pan  # the profile's bin_last4
    agent = f"agent-{uuid.uuid4().hex[:8]}@example.com"
    copy_sql = "COPY (SELECT email, country FROM customers LIMIT 2) TO STDOUT"
    with (
        psycopg.connect(gw.dsn(agent_token(gw, agent)), connect_timeout=10, autocommit=True) as conn,
        conn.cursor().copy(copy_sql) as copy,
    ):
        lines = [bytes(chunk).decode() for chunk in copy]
    fields = [f for line in "".join(lines).splitlines() for f in line.split("\t")]
    assert len(fields) == 4 and all(hidden(f) for f in fields)  # COPY data names no columns: all hidden
