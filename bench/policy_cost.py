"""What reading a statement and judging it against the policy costs, per statement (issue 6).

Before a statement runs, the gateway's policy hook gets its facts from the connection's ``FactsCache``
(``gateway/policy/facts.py``: the lexer, then sqlglot, cached per normalized text) and has the
``PolicyEngine`` (``gateway/policy/engine.py``) walk the rules. This times exactly those two calls,
``FactsCache.facts`` + ``PolicyEngine.decide``, in this process, with the dev stack's demo policy (rendered
by ``pcigate.devstack.devconfig`` and validated by ``pcigate.config``), for a human of the dev stack's group
``payments-admins``, on a mix of statements: pgbench's SELECT, UPDATE and INSERT, a three-table join, a
data-modifying CTE, a COPY out and a COPY in, and a long statement (a 400-value IN list).

Cases, per statement:

- ``same text``: the text again, the mix taken in turn, so each ask finds the cache entry by its
  normalized text (the previous ask was another statement);
- ``new literals``: the same shape with other literals each time (pgbench's case): the same entry, found
  through the normalization of a text never seen;
- ``ask again``: the same text as the ask just before, which a session makes once more per statement (when
  it is held or judged, after ``wait_before``): the cache's last answer;
- ``uncached``: a distinct text each time (an alias that differs), so every ask parses;
- ``rules only``: ``decide`` on facts already in hand, the rule walk alone.

It prints µs per ask, p50 and p99 over ``--count`` asks per case (``uncached``: ``--uncached`` asks), and
what the policy decides for each statement. No I/O: no stack, no database.

    PYTHONPATH=. .venv/bin/python bench/policy_cost.py [--count 5000] [--uncached 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.approval_roundtrip import percentile
from gateway.policy.engine import Decision, PolicyEngine, Requester
from gateway.policy.facts import Facts, FactsCache
from pcigate.config.models import Approvals, Policy
from pcigate.devstack.devconfig import DevEndpoints, render
from pcigate.devstack.layout import Layout

WHO = Requester(frozenset({"payments-admins"}), "human")  # the bench identity of bench/pgbench_gateway.py
CASES = ("same text", "new literals", "ask again", "uncached", "rules only")
_LONG_IDS = 400


# Each statement: a template with ``{a}`` (an identifier suffix, empty in the base text: another one makes a
# text no cache has, the lexer's included) and ``{v}`` (a literal: another one keeps the normalized text).
STATEMENTS: dict[str, str] = {
    "pgbench select": "SELECT abalance AS b{a} FROM pgbench_accounts WHERE aid = {v}",
    "pgbench update": "UPDATE pgbench_accounts AS a{a} SET abalance = abalance + {v} WHERE aid = 4711",
    "pgbench insert": (
        "INSERT INTO pgbench_history AS h{a} (tid, bid, aid, delta, mtime) "
        "VALUES (3, 1, 4711, {v}, CURRENT_TIMESTAMP)"
    ),
    "join": (
        "SELECT c.full_name AS n{a}, t.amount_cents, t.merchant FROM transactions t "
        "JOIN cards k ON k.card_id = t.card_id JOIN customers c ON c.customer_id = k.customer_id "
        "WHERE t.txn_id = {v}"
    ),
    "CTE write": (
        "WITH moved{a} AS (UPDATE transactions SET status = 'refunded' WHERE txn_id = {v} "
        "RETURNING txn_id, amount_cents) INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
        "SELECT 1, 1, txn_id, amount_cents, now() FROM moved{a}"
    ),
    "COPY out": (
        "COPY (SELECT txn_id AS t{a}, amount_cents FROM transactions WHERE amount_cents > {v}) TO STDOUT"
    ),
    "COPY in": (
        "COPY pgbench_history{a} (tid, bid, aid, delta, mtime) FROM STDIN WITH (FORMAT csv, NULL '{v}')"
    ),
    "long statement": (
        "SELECT txn_id AS t{a}, card_id, amount_cents, currency, merchant, status, created_at "
        "FROM transactions WHERE merchant <> 'x{v}' AND txn_id IN ("
        + ", ".join(str(i * 7) for i in range(_LONG_IDS))
        + ") ORDER BY created_at DESC, txn_id"
    ),
}


# ============================================================================================ pure parts


@dataclass(frozen=True)
class Row:
    statement: str
    case: str
    n: int
    p50_us: float
    p99_us: float


def row(statement: str, case: str, samples_ns: Sequence[int]) -> Row:
    us = [s / 1000.0 for s in samples_ns]
    return Row(statement, case, len(us), percentile(us, 50), percentile(us, 99))


def format_table(rows: Sequence[Row], verdicts: dict[str, str]) -> str:
    """One line per statement: p50/p99 µs per case, then what the policy decided."""
    by = {(r.statement, r.case): r for r in rows}
    statements = list(dict.fromkeys(r.statement for r in rows))
    cases = [c for c in CASES if any(r.case == c for r in rows)]
    header = ["statement", *[f"{c} p50/p99" for c in cases], "decision"]
    lines = [header]
    for s in statements:
        cells = [s]
        for c in cases:
            r = by.get((s, c))
            cells.append("-" if r is None else f"{r.p50_us:.1f} / {r.p99_us:.1f}")
        cells.append(verdicts.get(s, ""))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [
            c.ljust(w) if i in (0, len(header) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


# ============================================================================================ measuring


def demo_policy() -> tuple[Policy, Approvals]:
    """The dev stack's policy and approvals sections, as ``pcigate dev up`` writes them (the paths and
    endpoints it renders do not matter here: only the policy is read)."""
    rendered = render(
        Layout(Path("/nonexistent/pcigate")), DevEndpoints("nats://127.0.0.1:4222", "127.0.0.1", 5432)
    )
    return Policy.model_validate(rendered["policies"]["default"]), Approvals.model_validate(
        rendered["approvals"]
    )


def _timed(ask: Callable[[str], object], texts: Sequence[str]) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for text in texts:
        start = clock()
        ask(text)
        out.append(clock() - start)
    return out


def measure(count: int, uncached: int) -> tuple[list[Row], dict[str, str]]:
    policy, approvals = demo_policy()
    engine = PolicyEngine(policy, approvals)
    cache = FactsCache()

    def ask(text: str) -> Decision:
        return engine.decide(WHO, cache.facts(text))

    names = list(STATEMENTS)
    base = {n: STATEMENTS[n].format(a="", v=1234) for n in names}
    verdicts = {}
    for n in names:
        decision = ask(base[n])
        facts = cache.facts(base[n])
        opaque = f" (opaque: {facts.opaque})" if facts.opaque else ""
        verdicts[n] = f"{decision.action} ({decision.rule}){opaque}"
    samples: dict[tuple[str, str], list[int]] = {}
    gc.collect()
    gc.disable()  # a collection would land on whichever ask happens to trigger it
    try:
        # same text, in turn: the previous ask was always another statement
        for _ in range(count):
            for n in names:
                samples.setdefault((n, "same text"), []).extend(_timed(ask, [base[n]]))
        for n in names:
            texts = [STATEMENTS[n].format(a="", v=10_000 + i) for i in range(count)]
            samples[(n, "new literals")] = _timed(ask, texts)
            ask(base[n])
            samples[(n, "ask again")] = _timed(ask, [base[n]] * count)
            texts = [STATEMENTS[n].format(a=f"_{i}", v=1234) for i in range(uncached)]
            samples[(n, "uncached")] = _timed(ask, texts)
            facts = cache.facts(base[n])

            def rules_only(_text: str, facts: Facts = facts) -> object:
                return engine.decide(WHO, facts)

            samples[(n, "rules only")] = _timed(rules_only, [""] * count)
    finally:
        gc.enable()
    rows = [row(n, c, samples[(n, c)]) for n in names for c in CASES]
    return rows, verdicts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="µs per statement of FactsCache.facts + PolicyEngine.decide")
    p.add_argument("--count", type=int, default=5000, help="asks per cached case and statement")
    p.add_argument("--uncached", type=int, default=500, help="asks per statement that parse (distinct texts)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    if min(args.count, args.uncached) < 1:
        p.error("--count and --uncached must be >= 1")
    started = time.monotonic()
    rows, verdicts = measure(args.count, args.uncached)
    print(
        f"FactsCache.facts + PolicyEngine.decide, dev stack demo policy, {WHO.kind} in payments-admins; "
        f"µs per ask, p50 / p99 ({args.count} asks per cached case, {args.uncached} uncached); "
        f"Python {sys.version.split()[0]}, {time.monotonic() - started:.1f} s"
    )
    print()
    print(format_table(rows, verdicts))
    if args.json:
        doc = {"rows": [asdict(r) for r in rows], "decisions": verdicts, "count": args.count}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
