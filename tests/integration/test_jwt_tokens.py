"""JWT connection tokens (``snorky_sync.auth.JWTTokens``) on a real server.

Keys are made here (cryptography); a JWKS is served by a small HTTP server in
this process, whose key set the tests change while the snorky_sync server
runs (key rotation).  The server is tests/support/token_app.py under every
serving mode; its public keys and JWKS URL are given in its environment.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from support.tokens import MODES, token_server
from support.tokens import SECRET as HS_SECRET
from support.wsclient import SnorkyTestClient, refusal


class JWKSServer:
    """A JWKS endpoint on a free port; ``keys`` (a list of JWK dicts) can change."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.fetches += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def public_jwk(private_key, kid: str) -> dict:
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
        jwk["alg"] = "RS256"
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(private_key.public_key()))
        jwk["alg"] = "ES256"
    jwk.update(kid=kid, use="sig")
    return jwk


def pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def token(key, alg: str, claims: dict, kid: str | None = None, ttl: float | None = 600) -> str:
    now = int(time.time())
    body = {"iat": now, **claims}
    if ttl is not None:
        body["exp"] = now + ttl
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


@pytest.fixture(scope="module")
def keys():
    return {"rs": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "es": ec.generate_private_key(ec.SECP256R1()),
            "rs2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "es2": ec.generate_private_key(ec.SECP256R1()),
            "other": rsa.generate_private_key(public_exponent=65537, key_size=2048)}


@pytest.fixture(scope="module")
def jwks(keys):
    server = JWKSServer()
    server.keys = [public_jwk(keys["rs"], "rs-1"), public_jwk(keys["es"], "es-1")]
    yield server
    server.close()


@pytest.fixture(scope="module", params=MODES)
def server(request, keys, jwks):
    yield from token_server(request, {"TEST_RS_PEM": pem(keys["rs"]), "TEST_ES_PEM": pem(keys["es"]),
                                      "TEST_JWKS_URL": jwks.url})


def whoami(server, path: str, tok: str):
    c = SnorkyTestClient(f"{server.ws_url}{path}?token={tok}")
    try:
        return c.ok("who", "whoami")
    finally:
        c.close()


def refused(server, path: str, tok: str | None) -> int | None:
    """The HTTP status of the refusal, or under gevent-websocket the close code
    right after the upgrade (1008); None if the connection was let in."""
    return refusal(server.ws_url + path + ("" if tok is None else f"?token={tok}"), wait=3)


def expect_refusal(server, path: str, tok: str | None, status: int) -> None:
    assert refused(server, path, tok) == (1008 if server.mode == "gunicorn-geventwebsocket" else status)


SSO = {"aud": "snorky", "iss": "https://sso.example"}


def test_hs256_identity_from_the_configured_claim(server):
    tok = token(HS_SECRET, "HS256", {"sub": "42", "email": "ann@example.org", **SSO})
    assert whoami(server, "/ws-hs", tok) == "ann@example.org"


def test_hs256_refusals(server):
    expect_refusal(server, "/ws-hs", token(HS_SECRET, "HS256", {"email": "a@x", **SSO}, ttl=-60), 401)
    wrong = token("another-secret-0123456789-abcdefghijkl", "HS256", {"email": "a@x", **SSO})
    expect_refusal(server, "/ws-hs", wrong, 403)
    expect_refusal(server, "/ws-hs", token(HS_SECRET, "HS256", {"email": "a@x", "aud": "other",
                                                                 "iss": SSO["iss"]}), 403)
    expect_refusal(server, "/ws-hs", token(HS_SECRET, "HS256", {"email": "a@x", "aud": "snorky",
                                                                 "iss": "https://evil.example"}), 403)
    expect_refusal(server, "/ws-hs", token(HS_SECRET, "HS256", {"sub": "no email", **SSO}), 403)
    expect_refusal(server, "/ws-hs", "not.a.jwt", 403)
    unsigned = jwt.encode({"email": "a@x", **SSO}, None, algorithm="none")
    expect_refusal(server, "/ws-hs", unsigned, 403)
    assert whoami(server, "/ws-hs", "") is None  # no token: anonymous (required=False)


def test_rs256_and_es256_with_a_public_key(server, keys):
    assert whoami(server, "/ws-rs", token(keys["rs"], "RS256", {"sub": "u-rs"})) == "u-rs"
    assert whoami(server, "/ws-es", token(keys["es"], "ES256", {"sub": "u-es"})) == "u-es"
    expect_refusal(server, "/ws-rs", token(keys["other"], "RS256", {"sub": "u"}), 403)
    expect_refusal(server, "/ws-es", token(keys["es2"], "ES256", {"sub": "u"}), 403)
    expect_refusal(server, "/ws-rs", token(keys["rs"], "RS256", {"sub": "u"}, ttl=-60), 401)
    # an ES256 token at an RS256-only endpoint: the algorithm is the server's choice
    expect_refusal(server, "/ws-rs", token(keys["es"], "ES256", {"sub": "u"}), 403)
    expect_refusal(server, "/ws-rs", None, 401)  # required=True


def test_jwks_accepts_by_kid_and_refuses_unknown_kids(server, keys):
    assert whoami(server, "/ws-jwks", token(keys["rs"], "RS256", {"sub": "j-rs"}, kid="rs-1")) == "j-rs"
    assert whoami(server, "/ws-jwks", token(keys["es"], "ES256", {"sub": "j-es"}, kid="es-1")) == "j-es"
    # signed by a key the set does not hold, under a kid it does not name
    expect_refusal(server, "/ws-jwks", token(keys["other"], "RS256", {"sub": "u"}, kid="nope"), 401)
    # signed by another key than the one its kid names
    expect_refusal(server, "/ws-jwks", token(keys["other"], "RS256", {"sub": "u"}, kid="rs-1"), 403)
    expect_refusal(server, "/ws-jwks", token(keys["rs"], "RS256", {"sub": "u"}), 403)  # no kid
    expect_refusal(server, "/ws-jwks", token(keys["rs"], "RS256", {"sub": "u"}, kid="rs-1", ttl=-60), 401)


def test_jwks_rotation(server, keys, jwks):
    kid = f"rs-rotated-{server.mode}"
    tok = token(keys["rs2"], "RS256", {"sub": "rotated"}, kid=kid)
    assert whoami(server, "/ws-jwks", token(keys["rs"], "RS256", {"sub": "x"}, kid="rs-1")) == "x"  # set cached
    expect_refusal(server, "/ws-jwks", tok, 401)  # not published yet: refetched, still unknown
    fetches = jwks.fetches
    jwks.keys = [*jwks.keys, public_jwk(keys["rs2"], kid)]  # the provider rotates
    assert whoami(server, "/ws-jwks", tok) == "rotated"
    assert jwks.fetches == fetches + 1  # the unknown kid made one refetch
    assert whoami(server, "/ws-jwks", tok) == "rotated"
    assert jwks.fetches == fetches + 1  # then served from the cached set


def test_unknown_kids_refetch_at_most_once_per_interval(keys, jwks):
    """Made-up kids cannot make every handshake fetch the set (in-process: no server needed)."""
    from snorky_sync.auth import JWTTokens
    from snorky_sync.endpoints.access import Reject

    hook = JWTTokens(jwks_url=jwks.url, algorithms=["RS256"], jwks_refetch_interval=3600)
    assert hook.verify(token(keys["rs"], "RS256", {"sub": "a"}, kid="rs-1")) == "a"
    before = jwks.fetches
    for n in range(5):
        with pytest.raises(Reject) as refused:
            hook.verify(token(keys["other"], "RS256", {"sub": "a"}, kid=f"made-up-{n}"))
        assert (refused.value.status, refused.value.reason) == (401, "Unknown key")
    assert jwks.fetches == before + 1
