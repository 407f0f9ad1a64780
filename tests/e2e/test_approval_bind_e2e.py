"""A statement held for approval in the extended protocol is held at its Bind: PostgreSQL has analysed it
(Parse) but not planned it, so nothing of it runs before the decision — not even a function marked
IMMUTABLE, which planning would fold. Denied, it is refused at the Bind; approved, it binds and runs
unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.test_approvals_e2e import approver, connect, in_thread, unique
from tests.e2e.test_masking_e2e import superuser
from tests.gateway_support import GatewayEndpoint, decide, events_for, pending_requests

pytestmark = pytest.mark.e2e

# Planning folds an IMMUTABLE call with constant arguments: this one raises when it is planned.
PLANNED = "pcigate_test_planned"
UPDATE = f"UPDATE cards SET exp_year = exp_year + public.{PLANNED}(0) WHERE card_id = %s"


@pytest.fixture(scope="module")
def planned_function(gateway: GatewayEndpoint) -> Iterator[None]:
    with superuser(gateway) as admin:
        admin.execute(
            f"CREATE OR REPLACE FUNCTION public.{PLANNED}(n int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
            "$$ BEGIN RAISE EXCEPTION 'planned before the decision'; END $$"
        )
        admin.execute(f"GRANT EXECUTE ON FUNCTION public.{PLANNED}(int) TO PUBLIC")
    yield
    with superuser(gateway) as admin:
        admin.execute(f"DROP FUNCTION IF EXISTS public.{PLANNED}(int)")


def test_a_denied_statement_is_never_planned(gateway: GatewayEndpoint, planned_function: None) -> None:
    sub = unique("bind")
    with connect(gateway, sub) as conn:
        run = in_thread(lambda: conn.execute(UPDATE, (1,), prepare=False))
        (request,) = pending_requests(gateway, sub)
        assert not run.done()  # held, and PostgreSQL has not planned it (or the client would have failed)
        assert decide(gateway, request, approver(gateway), "deny", reason="not today").refused is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            run.result(timeout=30)
        assert "not today" in str(refused.value) and "planned" not in str(refused.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    (blocked,) = events_for(
        gateway.nats_url, lambda e: e["type"] == "command.blocked" and e["actor"]["sub"] == sub, 1
    )
    assert blocked["data"]["reason"] == "approval_denied"
    assert blocked["data"]["approval_id"] == request.id
    assert blocked["policy"]["rule"] == "card-writes"


def test_an_approved_statement_binds_and_runs_unchanged(
    gateway: GatewayEndpoint, planned_function: None
) -> None:
    sub = unique("bind")
    with connect(gateway, sub) as conn:
        run = in_thread(lambda: conn.execute(UPDATE, (1,), prepare=False))
        (request,) = pending_requests(gateway, sub)
        assert decide(gateway, request, approver(gateway), reason="checked").refused is None
        with pytest.raises(psycopg.errors.RaiseException, match="planned before the decision"):
            run.result(timeout=30)  # now it is planned: the function runs, as the statement said
        ok: Any = in_thread(
            lambda: conn.execute("UPDATE cards SET exp_year = exp_year WHERE card_id = %s", (1,))
        )
        (second,) = pending_requests(gateway, sub)  # a new statement: a new request
        decide(gateway, second, approver(gateway), reason="no-op")
        assert ok.result(timeout=30).rowcount == 1
