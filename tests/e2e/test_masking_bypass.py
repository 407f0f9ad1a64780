"""The bypass corpus (``tests/masking_corpus.py``) run for real through the gateway against the demo tables:
no statement may return a clear PAN or a simple transformation of one — reversed, split across columns or
rows, base64 or hex encoded, digits shifted, hashed. A refused statement (SQLSTATE 42501) passes; a wrong
answer does not."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess

import psycopg
import pytest

from pcigate.devstack import binaries
from pcigate.devstack.testcards import TEST_PANS
from tests.gateway_support import AutoApprover, GatewayEndpoint
from tests.masking_corpus import BYPASS_CORPUS

pytestmark = pytest.mark.e2e

PANS = [p for group in TEST_PANS.values() for p in group]
_MASKED = re.compile(r"[0-9]{6,8}\*+[0-9]{4}")


def _shifted(pan: str, k: int) -> str:
    return pan.translate(str.maketrans("0123456789", "".join(str((d + k) % 10) for d in range(10))))


def _forms(pan: str) -> list[str]:
    raw = pan.encode()
    return [
        pan,
        pan[::-1],
        base64.b64encode(raw).decode(),
        raw.hex(),
        hashlib.md5(raw).hexdigest(),  # what a client could ask md5() for
        hashlib.sha256(raw).hexdigest(),
        *(_shifted(pan, k) for k in range(1, 10)),
    ]


FORMS = {form: pan for pan in PANS for form in _forms(pan)}


def leaked(output: str) -> str | None:
    """The first PAN ``output`` reveals in any form, else None (the PAN's brand prefix only)."""
    for form, pan in FORMS.items():
        if form in output:
            return pan[:4]
    digits = re.sub(r"\D", "", _MASKED.sub("", output))  # split across columns or rows
    for pan in PANS:
        if pan in digits or pan[::-1] in digits:
            return pan[:4]
    return None


# The dev stack holds every write to cards for approval: the corpus's writes (UPDATE ... RETURNING pan and
# the like) run once an approver (AutoApprover) has said yes, so what they return is what is checked.
SUB = "masking-bypass@example.com"


def run_psql(gw: GatewayEndpoint, sql: str) -> str:
    psql = shutil.which("psql") or str(binaries.postgres_bindir() / "psql")
    token = gw.token(sub=SUB, groups=("payments-admins",))
    done = subprocess.run(
        [psql, gw.dsn(token), "-X", "-At", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


def run_psycopg(gw: GatewayEndpoint, sql: str, *, binary: bool) -> str:
    out: list[str] = []
    with psycopg.connect(gw.dsn(gw.token(sub=SUB, groups=("payments-admins",))), connect_timeout=10) as conn:
        try:
            cur = conn.cursor(binary=binary)
            if sql.lstrip().upper().startswith("COPY"):
                with cur.copy(sql) as copy:
                    out.append(b"".join(bytes(chunk) for chunk in copy).decode("latin-1"))
            else:
                cur.execute(sql)
                if cur.description is not None:
                    out.append(repr(cur.fetchall()))
        except psycopg.Error as exc:
            out.append(f"{exc.sqlstate} {exc}")
        conn.rollback()
    return "\n".join(out)


def test_corpus_is_large_enough() -> None:
    assert len(BYPASS_CORPUS) >= 30
    assert len({name for name, _ in BYPASS_CORPUS}) == len(BYPASS_CORPUS)


@pytest.mark.parametrize(("name", "sql"), BYPASS_CORPUS, ids=[name for name, _ in BYPASS_CORPUS])
def test_no_pan_in_any_form_reaches_the_client(gateway: GatewayEndpoint, name: str, sql: str) -> None:
    with AutoApprover(gateway, SUB):
        outputs = [run_psql(gateway, sql)]
        if ";" not in sql.strip().rstrip(";"):  # one statement: the extended protocol too, text and binary
            outputs += [run_psycopg(gateway, sql, binary=False), run_psycopg(gateway, sql, binary=True)]
    for output in outputs:
        found = leaked(output)
        assert found is None, f"{name}: a PAN starting {found} reached the client"


def test_the_corpus_is_answered_not_just_refused(gateway: GatewayEndpoint) -> None:
    """Masking, not refusal, is the normal answer: most corpus statements must return rows."""
    answered = 0
    with AutoApprover(gateway, SUB):
        for _name, sql in BYPASS_CORPUS:
            output = run_psql(gateway, sql)
            if "ERROR" not in output and output.strip():
                answered += 1
    assert answered >= len(BYPASS_CORPUS) // 2


def test_the_leak_detector_sees_every_form() -> None:
    """The check above can fail: each transformation of a PAN, and a PAN split over rows, is seen."""
    pan = PANS[0]
    for form in _forms(pan):
        assert leaked(f"x|{form}|y") == pan[:4]
    assert leaked(f"{pan[:8]}\n{pan[8:]}") == pan[:4]
    assert leaked("411111******1111\n555555******4444") is None
