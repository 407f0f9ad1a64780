"""pgwire.scram: RFC 7677's vector, a full exchange against an independent (stdlib) SCRAM server, every
refusal of a misbehaving server, SASLprep as PostgreSQL applies it, md5, and channel-binding data."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pgwire import messages as m
from gateway.pgwire import scram
from gateway.pgwire.scram import (
    AuthError,
    PasswordAuthenticator,
    ScramKeyCache,
    ScramSha256Client,
    md5_password,
    saslprep,
    tls_server_end_point,
)

RFC_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

SECRET = "Zq-9!correct horse"  # distinctive, so a leak into any error text would be found


# --- an independent server side (stdlib only) -----------------------------------------------------------


class FakeScramServer:
    """RFC 5802 server side written with hashlib/hmac, independent of the client's cryptography code."""

    def __init__(
        self,
        password: bytes,
        *,
        salt: bytes = b"0123456789abcdef",
        iterations: int = 4096,
        cb_data: bytes | None = None,
        mechanisms: tuple[str, ...] = ("SCRAM-SHA-256",),
    ) -> None:
        salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
        self.stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
        self.server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.salt, self.iterations, self.cb_data, self.mechanisms = salt, iterations, cb_data, mechanisms
        self.nonce = ""
        self.gs2 = ""
        self.first_bare = ""
        self.server_first = ""
        self.mechanism = ""

    def first(self, mechanism: str, client_first: bytes) -> bytes:
        self.mechanism = mechanism
        text = client_first.decode()
        flag, authzid, rest = text.split(",", 2)
        self.gs2 = f"{flag},{authzid},"
        self.first_bare = rest
        assert rest.startswith("n=,r="), rest  # PostgreSQL sends an empty SCRAM username
        self.nonce = rest[5:] + "SeRvEr+nonce/42"
        self.server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={self.iterations}"
        return self.server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        text = client_final.decode()
        without_proof, proof_b64 = text.rsplit(",p=", 1)
        c, r = without_proof.split(",")
        expected_cbind = self.gs2.encode() + (self.cb_data or b"" if self.gs2.startswith("p=") else b"")
        assert base64.b64decode(c[2:]) == expected_cbind
        assert r == f"r={self.nonce}"
        auth = f"{self.first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.digest(self.stored_key, auth, "sha256")
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof_b64), signature, strict=True))
        if hashlib.sha256(client_key).digest() != self.stored_key:
            return b"e=invalid-proof"
        return b"v=" + base64.b64encode(hmac.digest(self.server_key, auth, "sha256"))


def run_scram(client: ScramSha256Client, server: FakeScramServer) -> None:
    mech = client.mechanism_for(list(server.mechanisms))
    server_first = server.first(mech, client.client_first())
    server_final = server.final(client.client_final(server_first))
    client.verify_server_final(server_final)


# --- RFC 7677 -------------------------------------------------------------------------------------------


def test_rfc7677_vector() -> None:
    client = ScramSha256Client("user", "pencil", nonce=RFC_NONCE, username="user")
    assert client.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert client.client_final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    assert not client.verified
    client.verify_server_final(RFC_SERVER_FINAL)
    assert client.verified


def test_rfc7677_vector_with_a_wrong_password_gives_another_proof_and_fails_the_server() -> None:
    client = ScramSha256Client("user", "pencil!", nonce=RFC_NONCE, username="user")
    client.client_first()
    assert client.client_final(RFC_SERVER_FIRST) != RFC_CLIENT_FINAL
    with pytest.raises(AuthError, match="signature"):
        client.verify_server_final(RFC_SERVER_FINAL)
    assert not client.verified


def test_postgresql_style_client_first_has_an_empty_username() -> None:
    client = ScramSha256Client("alice", "pw", nonce="abc")
    assert client.client_first() == b"n,,n=,r=abc"
    escaped = ScramSha256Client("u", "pw", nonce="abc", username="a=b,c")
    assert escaped.client_first() == b"n,,n=a=3Db=2Cc,r=abc"


def test_generated_nonces_are_fresh_and_printable() -> None:
    firsts = {ScramSha256Client("u", "p").client_first() for _ in range(20)}
    assert len(firsts) == 20
    for first in firsts:
        nonce = first.decode().split("r=", 1)[1]
        assert len(nonce) == 24  # 18 random bytes, base64
        assert "," not in nonce and nonce.isprintable()
    with pytest.raises(ValueError):
        ScramSha256Client("u", "p", nonce="a,b")


# --- against an independent server ----------------------------------------------------------------------


@pytest.mark.parametrize("password", ["pencil", SECRET, "pässwörd", "I\u00adX", ""])
def test_exchange_against_independent_server(password: str) -> None:
    server = FakeScramServer(saslprep(password))
    client = ScramSha256Client("alice", password)
    run_scram(client, server)
    assert client.verified
    assert client.mechanism == "SCRAM-SHA-256"


def test_wrong_password_is_refused_by_server_and_reported() -> None:
    server = FakeScramServer(b"the real one")
    client = ScramSha256Client("alice", SECRET)
    with pytest.raises(AuthError) as exc:
        run_scram(client, server)
    assert "invalid-proof" in str(exc.value)
    assert SECRET not in str(exc.value)
    assert not client.verified


def test_channel_binding_plus_is_chosen_and_bound() -> None:
    cb = hashlib.sha256(b"server certificate DER").digest()
    server = FakeScramServer(b"pw", cb_data=cb, mechanisms=("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"))
    client = ScramSha256Client("u", "pw", channel_binding=cb, nonce="n0nce")
    assert client.mechanism_for(["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]) == "SCRAM-SHA-256-PLUS"
    first = client.client_first()
    assert first == b"p=tls-server-end-point,,n=,r=n0nce"
    final = client.client_final(server.first("SCRAM-SHA-256-PLUS", first))
    cbind = base64.b64decode(final.split(b",")[0][2:])
    assert cbind == b"p=tls-server-end-point,," + cb
    client.verify_server_final(server.final(final))
    assert client.verified


def test_channel_binding_data_for_a_different_certificate_fails() -> None:
    server = FakeScramServer(b"pw", cb_data=b"A" * 32, mechanisms=("SCRAM-SHA-256-PLUS",))
    client = ScramSha256Client("u", "pw", channel_binding=b"B" * 32)
    with pytest.raises(AssertionError):  # our fake server asserts on the binding, as a real one refuses it
        run_scram(client, server)


def test_mechanism_choice() -> None:
    both = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    assert ScramSha256Client("u", "p").mechanism_for(both) == "SCRAM-SHA-256"
    assert ScramSha256Client("u", "p", channel_binding=b"x").mechanism_for(both) == "SCRAM-SHA-256-PLUS"
    # Binding data but no -PLUS offered: plain mechanism with the "y" flag, so a server that could bind
    # detects the downgrade.
    y = ScramSha256Client("u", "p", channel_binding=b"x", nonce="n")
    assert y.mechanism_for(["SCRAM-SHA-256"]) == "SCRAM-SHA-256"
    assert y.client_first() == b"y,,n=,r=n"
    with pytest.raises(AuthError, match="no supported SASL mechanism"):
        ScramSha256Client("u", "p").mechanism_for(["SCRAM-SHA-256-PLUS"])
    with pytest.raises(AuthError, match="no supported SASL mechanism"):
        ScramSha256Client("u", "p").mechanism_for(["OAUTHBEARER"])
    with pytest.raises(AuthError, match="required"):
        ScramSha256Client("u", "p", channel_binding=b"x", require_channel_binding=True).mechanism_for(
            ["SCRAM-SHA-256"]
        )
    with pytest.raises(AuthError, match="required"):
        ScramSha256Client("u", "p", require_channel_binding=True)


@pytest.mark.parametrize(
    ("server_first", "match"),
    [
        (b"r=abcXYZ,s=c2FsdA==,i=4095", "fewer than the minimum"),
        (b"r=abcXYZ,s=c2FsdA==,i=1", "fewer than the minimum"),
        (b"r=abcXYZ,s=c2FsdA==,i=0", "fewer than the minimum"),
        (b"r=abcXYZ,s=c2FsdA==,i=1000001", "more than the maximum"),
        (b"r=abcXYZ,s=c2FsdA==,i=-4096", "iteration count"),
        (b"r=abcXYZ,s=c2FsdA==,i=4096x", "iteration count"),
        (b"r=abcXYZ,s=c2FsdA==,i=", "iteration count"),
        (b"r=abcXYZ,s=c2FsdA==,i=\xd9\xa4\xd9\xa0\xd9\xa9\xd9\xa6", "not ASCII"),
        (b"r=xyzXYZ,s=c2FsdA==,i=4096", "nonce"),  # does not extend ours
        (b"r=abc,s=c2FsdA==,i=4096", "nonce"),  # adds nothing
        (b"r=ab,s=c2FsdA==,i=4096", "nonce"),
        (b"r=abcXYZ,s=c2Fsd!==,i=4096", "base64"),
        (b"r=abcXYZ,s=,i=4096", "empty salt"),
        (b"r=abcXYZ,s=c2FsdA==,i=4096,x=ext", "nothing else"),
        (b"s=c2FsdA==,r=abcXYZ,i=4096", "r=,s=,i="),
        (b"m=ext,r=abcXYZ,s=c2FsdA==,i=4096", "mandatory extension"),
        (b"", "r=,s=,i="),
        (b"e=other-error", "r=,s=,i="),
    ],
)
def test_server_first_is_validated(server_first: bytes, match: str) -> None:
    client = ScramSha256Client("u", SECRET, nonce="abc")
    client.client_first()
    with pytest.raises(AuthError, match=match) as exc:
        client.client_final(server_first)
    assert SECRET not in str(exc.value)
    # A failed exchange cannot be continued.
    with pytest.raises(AuthError):
        client.client_final(b"r=abcXYZ,s=c2FsdA==,i=4096")


def test_iteration_bounds_are_configurable() -> None:
    client = ScramSha256Client("u", "p", nonce="abc", min_iterations=1, max_iterations=10)
    client.client_first()
    assert client.client_final(b"r=abcX,s=c2FsdA==,i=2").startswith(b"c=biws,r=abcX,p=")


@pytest.mark.parametrize(
    ("server_final", "match"),
    [
        (b"e=invalid-proof", "rejected SCRAM authentication: invalid-proof"),
        (b"e=other-error\x07\n", "rejected SCRAM authentication: other-error$"),
        (b"v=AAAA", "signature is wrong"),
        (b"v=" + base64.b64encode(b"\x00" * 32), "signature is wrong"),
        (b"v=!!", "base64"),
        (b"x=abc", "expected v="),
        (RFC_SERVER_FINAL + b",ext=1", "expected v="),
        (b"", "expected v="),
        (b"v=\xff", "not ASCII"),
    ],
)
def test_server_final_is_validated(server_final: bytes, match: str) -> None:
    client = ScramSha256Client("user", "pencil", nonce=RFC_NONCE, username="user")
    client.client_first()
    client.client_final(RFC_SERVER_FIRST)
    with pytest.raises(AuthError, match=match):
        client.verify_server_final(server_final)
    assert not client.verified
    with pytest.raises(AuthError):  # no second chance
        client.verify_server_final(RFC_SERVER_FINAL)


def test_steps_out_of_order_are_refused() -> None:
    client = ScramSha256Client("user", "pencil", nonce=RFC_NONCE, username="user")
    with pytest.raises(AuthError):
        client.client_final(RFC_SERVER_FIRST)
    with pytest.raises(AuthError):
        client.verify_server_final(RFC_SERVER_FINAL)
    client.client_first()
    with pytest.raises(AuthError):
        client.client_first()
    with pytest.raises(AuthError):
        client.mechanism_for(["SCRAM-SHA-256"])
    with pytest.raises(AuthError):
        client.verify_server_final(RFC_SERVER_FINAL)


def test_key_cache_skips_pbkdf2_and_gives_the_same_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = scram.derive_keys

    def counting(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
        calls.append(iterations)
        return real(password, salt, iterations)

    monkeypatch.setattr(scram, "derive_keys", counting)
    cache = ScramKeyCache(maxsize=2)
    finals = []
    for _ in range(3):
        client = ScramSha256Client("user", "pencil", nonce=RFC_NONCE, username="user", key_cache=cache)
        client.client_first()
        finals.append(client.client_final(RFC_SERVER_FIRST))
        client.verify_server_final(RFC_SERVER_FINAL)
    assert finals == [RFC_CLIENT_FINAL] * 3
    assert calls == [4096]
    assert len(cache) == 1
    # Another password with the same salt is a different entry; the cache stays bounded.
    for pw in ("a", "b", "c"):
        client = ScramSha256Client("user", pw, nonce=RFC_NONCE, username="user", key_cache=cache)
        client.client_first()
        client.client_final(RFC_SERVER_FIRST)
    assert calls == [4096] * 4
    assert len(cache) == 2


# --- SASLprep -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        # RFC 4013 section 3 examples
        ("I\u00adX", b"IX"),  # SOFT HYPHEN mapped to nothing
        ("user", b"user"),
        ("USER", b"USER"),
        ("\u00aa", b"a"),  # NFKC
        ("\u2168", b"IX"),  # NFKC
        ("\u0007", b"\x07"),  # prohibited: PostgreSQL passes pure ASCII through untouched
        ("\u0627\u0031", "\u0627\u0031".encode()),  # bidi violation: raw password
        # More PostgreSQL behaviour
        ("a\u00a0b\u3000c", b"a b c"),  # non-ASCII spaces become SPACE
        ("\u00ad", "\u00ad".encode()),  # empty after mapping: raw password
        ("caf\u0065\u0301", "caf\u00e9".encode()),  # composed by NFKC
        ("pw\u0221", "pw\u0221".encode()),  # unassigned in Unicode 3.2: raw
        ("pw\ue000", "pw\ue000".encode()),  # private use: prohibited, raw
        ("\u05d0\u05d1", "\u05d0\u05d1".encode()),  # RandALCat only: fine
        ("\u05d0a\u05d1", "\u05d0a\u05d1".encode()),  # RandALCat with LCat: raw
        ("\u05d01", "\u05d01".encode()),  # must end with RandALCat: raw
        ("pw\udcff", b"pw\xff"),  # bytes smuggled by surrogateescape: not UTF-8, raw
        ("\uff21\uff22", b"AB"),  # fullwidth letters fold
    ],
)
def test_saslprep(password: str, prepared: bytes) -> None:
    assert saslprep(password) == prepared


def test_unencodable_password_is_an_auth_error_without_the_password() -> None:
    with pytest.raises(AuthError) as exc:
        saslprep("x\ud800y")
    assert "x\ud800y" not in str(exc.value)
    assert exc.value.__cause__ is None


# --- md5 ------------------------------------------------------------------------------------------------


def test_md5_password() -> None:
    salt = b"\x01\x02\x03\x04"
    inner = hashlib.md5(b"secretalice").hexdigest()
    expected = b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode()
    assert md5_password("alice", "secret", salt) == expected
    # Pinned from PostgreSQL itself: md5(convert_to(md5('secretalice'), 'UTF8') || '\x01020304'::bytea)
    assert md5_password("alice", "secret", salt) == b"md598a0412b9c31436fc53776e863350083"
    assert len(expected) == 35
    assert md5_password("alice", "secret", b"\x01\x02\x03\x05") != expected
    with pytest.raises(AuthError, match="salt"):
        md5_password("alice", "secret", b"abc")


# --- tls-server-end-point -------------------------------------------------------------------------------


def make_cert(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, algorithm: hashes.HashAlgorithm | None
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db.example")])
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, algorithm)  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("sign_with", "hash_with"),
    [
        (hashes.SHA256(), hashlib.sha256),
        (hashes.SHA384(), hashlib.sha384),
        (hashes.SHA512(), hashlib.sha512),
        (hashes.SHA224(), hashlib.sha224),
    ],
)
def test_tls_server_end_point_uses_the_certificates_hash(
    ec_key: ec.EllipticCurvePrivateKey, sign_with: hashes.HashAlgorithm, hash_with: Callable[..., object]
) -> None:
    der = make_cert(ec_key, sign_with)
    digest = hash_with(der)
    assert tls_server_end_point(der) == digest.digest()  # type: ignore[attr-defined]


# Self-signed certificates made with the openssl CLI (cryptography refuses to sign with SHA-1/MD5).
SHA1_CERT = base64.b64decode(
    "MIIBgDCCASigAwIBAgIULe84N9Eduz5koZlYmVbLeM36BlEwCQYHKoZIzj0EATAXMRUwEwYDVQQDDAxzaGExLmV4YW1wbGUwHhcN"
    "MjYxMTIyMDI0MzAxWhcNMjYxMTIzMDI0MzAxWjAXMRUwEwYDVQQDDAxzaGExLmV4YW1wbGUwWTATBgcqhkjOPQIBBggqhkjOPQMB"
    "BwNCAATSNUdRNQkGZoiwf5k4XgqQPBXrHj6JAOy7zLS+IKN9vcxHRpXN3AKwgVAPJHQ00gj1IsmrolWr99z5s/KL7kW0o1MwUTAd"
    "BgNVHQ4EFgQUQwYCOMENWIvgy4ApQc40bN5JlTcwHwYDVR0jBBgwFoAUQwYCOMENWIvgy4ApQc40bN5JlTcwDwYDVR0TAQH/BAUw"
    "AwEB/zAJBgcqhkjOPQQBA0cAMEQCIGBNLicOrK257IbvltAkbxxcgUo7t0pQkmRKsTuz7YcgAiBeGNr8wsx4IBL5Y7HtTyN8RVa0"
    "oxO+a8LgYRm3HSu4LA=="
)
MD5_CERT = base64.b64decode(
    "MIICCDCCAXGgAwIBAgIUKDd2IR8Trb3Z6VunrWeqeGjEGtUwDQYJKoZIhvcNAQEEBQAwFjEUMBIGA1UEAwwLbWQ1LmV4YW1wbGUw"
    "HhcNMjYxMTIyMDI0MzA0WhcNMjYxMTIzMDI0MzA0WjAWMRQwEgYDVQQDDAttZDUuZXhhbXBsZTCBnzANBgkqhkiG9w0BAQEFAAOB"
    "jQAwgYkCgYEApKQwKAIHIxPdLKwI4hs6PWnlmOOygHrH/ZxvIa18OUaVu7gjSiHUZ7aFsQhw4iVAbIKzRoYizUWd/wWl7/g2hpyj"
    "+rVss0sq8ow7v7mVNK7QGN9/ByEELcFFPhlwOJg30fHN/ypO/zI45O4g/bzkZQ+Pe4Jg1gLOZAf8WVLLMjsCAwEAAaNTMFEwHQYD"
    "VR0OBBYEFCaKL7xSJOQoHZmwqPXlqmXSSsl8MB8GA1UdIwQYMBaAFCaKL7xSJOQoHZmwqPXlqmXSSsl8MA8GA1UdEwEB/wQFMAMB"
    "Af8wDQYJKoZIhvcNAQEEBQADgYEARRDQi5w2FD5+Q3L11lqIW8VcL+Ppe+lEX8S05gKEq0crqL9LFoFOnn4WBI4O7MpLaGMNe+l/"
    "SnccYzN4/kJqpIxSid3sXfs0A36Czahi9SSbiwSsFfOcsVrBCuw8eQFE7QKQwmCwxCEZEtBbA14GO96zqncU/Y0uLE0eSZpXeW4="
)


@pytest.mark.parametrize("der", [SHA1_CERT, MD5_CERT], ids=["sha1", "md5"])
def test_tls_server_end_point_upgrades_sha1_and_md5_to_sha256(der: bytes) -> None:
    algorithm = x509.load_der_x509_certificate(der).signature_hash_algorithm
    assert isinstance(algorithm, hashes.SHA1 | hashes.MD5)
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()


def test_tls_server_end_point_refuses_hashless_and_garbage() -> None:
    der = make_cert(ed25519.Ed25519PrivateKey.generate(), None)
    with pytest.raises(AuthError, match="no hash"):
        tls_server_end_point(der)
    with pytest.raises(AuthError, match="cannot read"):
        tls_server_end_point(b"not a certificate")


# --- the whole exchange ---------------------------------------------------------------------------------


def drive(auth: PasswordAuthenticator, server_msgs: list[bytes]) -> list[bytes | None]:
    """Feed whole 'R' messages through parse_authentication, as a session would."""
    out = []
    for msg in server_msgs:
        assert msg[:1] == b"R"
        out.append(auth.respond(*m.parse_authentication(msg[5:])))
    return out


def test_scram_flow_end_to_end() -> None:
    server = FakeScramServer(saslprep(SECRET))
    auth = PasswordAuthenticator("alice", SECRET)
    initial = auth.respond(*m.parse_authentication(m.authentication_sasl(["SCRAM-SHA-256"])[5:]))
    assert initial is not None and initial[:1] == b"p"
    mech, client_first = m.parse_sasl_initial_response(initial[5:])
    assert mech == "SCRAM-SHA-256" and client_first is not None
    response = auth.respond(
        *m.parse_authentication(m.authentication_sasl_continue(server.first(mech, client_first))[5:])
    )
    assert response is not None and response[:1] == b"p"
    server_final = server.final(response[5:])
    assert drive(auth, [m.authentication_sasl_final(server_final), m.authentication_ok()]) == [None, None]
    assert auth.done and auth.method == "scram-sha-256"


def test_md5_and_cleartext_flows() -> None:
    auth = PasswordAuthenticator("alice", "secret")
    [reply, ok] = drive(auth, [m.authentication_md5_password(b"\x01\x02\x03\x04"), m.authentication_ok()])
    assert reply == m.password_message(b"md598a0412b9c31436fc53776e863350083")
    assert ok is None and auth.done and auth.method == "md5"

    clear = PasswordAuthenticator("alice", "s\u00e9cret")
    [reply, _] = drive(clear, [m.authentication_cleartext_password(), m.authentication_ok()])
    assert reply == b"p\x00\x00\x00\x0cs\xc3\xa9cret\x00"
    assert clear.done and clear.method == "password"


def test_trust_is_accepted_only_when_allowed() -> None:
    trust = PasswordAuthenticator("alice", "pw")
    assert drive(trust, [m.authentication_ok()]) == [None]
    assert trust.done and trust.method == "none"
    strict = PasswordAuthenticator("alice", "pw", allowed={"scram-sha-256"})
    with pytest.raises(AuthError, match="none"):
        drive(strict, [m.authentication_ok()])
    assert not strict.done


@pytest.mark.parametrize(
    ("allowed", "request_msg"),
    [
        ({"scram-sha-256"}, m.authentication_md5_password(b"salt")),
        ({"scram-sha-256", "md5"}, m.authentication_cleartext_password()),
        ({"password"}, m.authentication_sasl(["SCRAM-SHA-256"])),
    ],
)
def test_disallowed_methods_are_refused(allowed: set[str], request_msg: bytes) -> None:
    auth = PasswordAuthenticator("alice", SECRET, allowed=allowed)
    with pytest.raises(AuthError, match="not allowed") as exc:
        drive(auth, [request_msg])
    assert SECRET not in str(exc.value)


def test_ok_before_scram_completes_is_refused() -> None:
    server = FakeScramServer(b"pw")
    auth = PasswordAuthenticator("alice", "pw")
    initial = drive(auth, [m.authentication_sasl(["SCRAM-SHA-256"])])[0]
    assert initial is not None
    mech, first = m.parse_sasl_initial_response(initial[5:])
    assert first is not None
    drive(auth, [m.authentication_sasl_continue(server.first(mech, first))])
    with pytest.raises(AuthError, match="before completing SCRAM"):
        drive(auth, [m.authentication_ok()])
    assert not auth.done


def test_ok_right_after_sasl_request_is_refused() -> None:
    auth = PasswordAuthenticator("alice", "pw")
    drive(auth, [m.authentication_sasl(["SCRAM-SHA-256"])])
    with pytest.raises(AuthError, match="before completing SCRAM"):
        drive(auth, [m.authentication_ok()])


def test_server_cannot_switch_method_midway() -> None:
    auth = PasswordAuthenticator("alice", SECRET)
    drive(auth, [m.authentication_sasl(["SCRAM-SHA-256"])])
    with pytest.raises(AuthError, match="after scram-sha-256") as exc:
        drive(auth, [m.authentication_cleartext_password()])
    assert SECRET not in str(exc.value)


@pytest.mark.parametrize(
    "request_msg",
    [
        m.authentication_sasl_continue(b"r=x,s=c2FsdA==,i=4096"),  # continue with no exchange
        m.authentication_sasl_final(b"v=AAAA"),
        b"R\x00\x00\x00\x08\x00\x00\x00\x07",  # GSSAPI
        b"R\x00\x00\x00\x08\x00\x00\x00\x09",  # SSPI
        b"R\x00\x00\x00\x08\x00\x00\x00\x02",  # Kerberos V5
        b"R\x00\x00\x00\x08\x00\x00\x00\x63",  # unknown
        b"R\x00\x00\x00\x0a\x00\x00\x00\x0aX\x00",  # malformed mechanism list
        m.authentication_md5_password(b"abcd")[:-1] + b"",  # 3-byte salt
    ],
)
def test_unexpected_requests_are_refused(request_msg: bytes) -> None:
    body = request_msg[5:]
    auth = PasswordAuthenticator("alice", SECRET)
    with pytest.raises(AuthError) as exc:
        auth.respond(*m.parse_authentication(body))
    assert SECRET not in str(exc.value)


def test_request_after_ok_is_refused() -> None:
    auth = PasswordAuthenticator("alice", "pw")
    drive(auth, [m.authentication_ok()])
    with pytest.raises(AuthError):
        drive(auth, [m.authentication_cleartext_password()])


def test_required_channel_binding() -> None:
    cb = b"C" * 32
    server = FakeScramServer(b"pw", cb_data=cb, mechanisms=("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"))
    auth = PasswordAuthenticator("alice", "pw", channel_binding=cb, require_channel_binding=True)
    initial = drive(auth, [m.authentication_sasl(list(server.mechanisms))])[0]
    assert initial is not None
    mech, first = m.parse_sasl_initial_response(initial[5:])
    assert mech == "SCRAM-SHA-256-PLUS" and first is not None
    final = drive(auth, [m.authentication_sasl_continue(server.first(mech, first))])[0]
    assert final is not None
    drive(auth, [m.authentication_sasl_final(server.final(final[5:])), m.authentication_ok()])
    assert auth.done
    for request_msg in (m.authentication_ok(), m.authentication_md5_password(b"salt")):
        refused = PasswordAuthenticator("alice", "pw", channel_binding=cb, require_channel_binding=True)
        with pytest.raises(AuthError, match="channel binding is required"):
            drive(refused, [request_msg])
    no_plus = PasswordAuthenticator("alice", "pw", channel_binding=cb, require_channel_binding=True)
    with pytest.raises(AuthError, match="channel binding is required"):
        drive(no_plus, [m.authentication_sasl(["SCRAM-SHA-256"])])


def test_nul_in_password_and_unknown_methods_are_refused_up_front() -> None:
    with pytest.raises(AuthError, match="NUL") as exc:
        PasswordAuthenticator("alice", "a\x00b")
    assert "a\x00b" not in str(exc.value)
    with pytest.raises(ValueError, match="unknown"):
        PasswordAuthenticator("alice", "pw", allowed={"gss"})
    with pytest.raises(AuthError, match="no TLS server certificate"):
        PasswordAuthenticator("alice", "pw", require_channel_binding=True)


@given(st.binary(max_size=80))
@settings(max_examples=200)
def test_garbage_from_the_server_only_ever_raises_auth_error(junk: bytes) -> None:
    """Any server-first or server-final either works (never, here) or raises AuthError, never anything else,
    and no error text contains the password."""
    client = ScramSha256Client("u", SECRET, nonce="abc")
    client.client_first()
    with pytest.raises(AuthError) as exc:
        client.client_final(junk)
    assert SECRET not in str(exc.value)
    after = ScramSha256Client("user", "pencil", nonce=RFC_NONCE, username="user")
    after.client_first()
    after.client_final(RFC_SERVER_FIRST)
    with pytest.raises(AuthError):
        after.verify_server_final(junk)
