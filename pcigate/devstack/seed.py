"""The demo data: roles with vaulted passwords, the ``payments`` database and the ledger database.

Idempotent: roles get their passwords reset to the stored secrets, and tables are filled only when empty,
so ``dev up`` can run any number of times.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from pcigate.devstack.testcards import TEST_PANS

PAYMENTS_DB = "payments"
LEDGER_DB = "pcigate_ledger"
CARDS = 10_000
CUSTOMERS = 5_000
TRANSACTIONS = 100_000


@dataclass(frozen=True)
class Roles:
    """Passwords of the roles the gateway and the evidence service log in as (never shown to clients)."""

    rw: str
    ro: str
    ledger: str


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def _ensure_role(conn: asyncpg.Connection, name: str, password: str) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
    verb = "ALTER" if exists else "CREATE"
    await conn.execute(f"{verb} ROLE {name} LOGIN NOSUPERUSER NOCREATEROLE PASSWORD {_lit(password)}")


async def _ensure_database(conn: asyncpg.Connection, name: str, owner: str) -> None:
    if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        await conn.execute(f"CREATE DATABASE {name} OWNER {owner} ENCODING 'UTF8' TEMPLATE template0")
    await conn.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
    await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {owner}")


SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS public.customers (
    customer_id  bigint PRIMARY KEY,
    full_name    text NOT NULL,
    email        text NOT NULL,
    country      char(2) NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS public.cards (
    card_id      bigint PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES public.customers,
    holder_name  text NOT NULL,
    brand        text NOT NULL,
    pan          text NOT NULL,
    cvv          text NOT NULL,
    exp_month    smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year     smallint NOT NULL
);
CREATE TABLE IF NOT EXISTS public.transactions (
    txn_id       bigint PRIMARY KEY,
    card_id      bigint NOT NULL REFERENCES public.cards,
    amount_cents bigint NOT NULL,
    currency     char(3) NOT NULL,
    merchant     text NOT NULL,
    status       text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_card_id ON public.transactions (card_id);
"""


FILL_CUSTOMERS = """
WITH first(n) AS (SELECT ARRAY['Ada','Alan','Grace','Edsger','Barbara','Donald','Frances','Ken','Radia','Tim',
                               'Margaret','Dennis','Hedy','Linus','Sophie','John','Katherine','Niklaus']),
     last(n) AS (SELECT ARRAY['Lovelace','Turing','Hopper','Dijkstra','Liskov','Knuth','Allen','Thompson',
                              'Perlman','Berners-Lee','Hamilton','Ritchie','Lamarr','Torvalds','Wilson','Backus',
                              'Johnson','Wirth'])
INSERT INTO public.customers
SELECT i,
       first.n[1 + i % 18] || ' ' || last.n[1 + (i / 18) % 18],
       lower(first.n[1 + i % 18]) || '.' || i || '@example.com',
       (ARRAY['US','GB','DE','FR','NL','SE','PL','ES','IT','CA'])[1 + i % 10],
       timestamptz '2024-01-01' + make_interval(mins => i * 37)
FROM generate_series(1, $1::int) AS i, first, last
"""

# $1 customers, $2 cards, $3 brands[], $4 pans[] (parallel arrays of published test numbers)
FILL_CARDS = """
INSERT INTO public.cards
SELECT i,
       c.customer_id,
       c.full_name,
       ($3::text[])[1 + i % cardinality($3::text[])],
       ($4::text[])[1 + i % cardinality($4::text[])],
       CASE WHEN ($3::text[])[1 + i % cardinality($3::text[])] = 'amex'
            THEN lpad(((i * 7127) % 10000)::text, 4, '0')
            ELSE lpad(((i * 7127) % 1000)::text, 3, '0') END,
       1 + i % 12,
       2027 + i % 6
FROM generate_series(1, $2::int) AS i
JOIN public.customers c ON c.customer_id = 1 + (i * 7919) % $1::int
"""

FILL_TRANSACTIONS = """
INSERT INTO public.transactions
SELECT i,
       1 + (i::bigint * 104729) % $1::int,
       100 + (i::bigint * 2654435761) % 250000,
       (ARRAY['USD','EUR','GBP','PLN','SEK'])[1 + i % 5],
       (ARRAY['Coffee Corner','Book Barn','Rail Tickets','Grocer & Co','Cloud Hosting','Pharmacy 24',
              'Cinema City','Fuel Stop'])[1 + i % 8],
       (ARRAY['captured','captured','captured','authorized','refunded','declined'])[1 + i % 6],
       timestamptz '2025-01-01' + make_interval(secs => i * 97)
FROM generate_series(1, $2::int) AS i
"""


async def _fill(conn: asyncpg.Connection) -> None:
    pans = [(brand, pan) for brand, group in TEST_PANS.items() for pan in group]
    await conn.execute(FILL_CUSTOMERS, CUSTOMERS)
    await conn.execute(FILL_CARDS, CUSTOMERS, CARDS, [b for b, _ in pans], [p for _, p in pans])
    await conn.execute(FILL_TRANSACTIONS, CARDS, TRANSACTIONS)


async def seed(superuser_dsn: str, roles: Roles) -> None:
    """Create roles, databases, tables and rows; safe to run again."""
    conn = await asyncpg.connect(superuser_dsn)
    try:
        await _ensure_role(conn, "pcigate_rw", roles.rw)
        await _ensure_role(conn, "pcigate_ro", roles.ro)
        await _ensure_role(conn, "pcigate_ledger", roles.ledger)
        await _ensure_database(conn, PAYMENTS_DB, "pcigate_rw")
        await conn.execute(f"GRANT CONNECT ON DATABASE {PAYMENTS_DB} TO pcigate_ro")
        await _ensure_database(conn, LEDGER_DB, "pcigate_ledger")
    finally:
        await conn.close()

    # lock_timeout: a client holding locks on the demo tables makes `dev up` fail with a reason, not hang.
    conn = await asyncpg.connect(superuser_dsn, database=PAYMENTS_DB, server_settings={"lock_timeout": "15s"})
    try:
        if await conn.fetchval("SELECT to_regclass('public.cards') IS NOT NULL") and await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM public.cards)"
        ):
            return  # seeded by an earlier `dev up`
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE pcigate_rw")
            await conn.execute(SCHEMA_SQL)
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM public.cards)"):
                await _fill(conn)
            await conn.execute(
                "GRANT USAGE ON SCHEMA public TO pcigate_ro;"
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pcigate_ro;"
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO pcigate_ro;"
            )
        await conn.execute("ANALYZE public.customers, public.cards, public.transactions")
    finally:
        await conn.close()
