"""payql.auth: token verification, the Authorization header, development tokens and the Starlette backend."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from payql.auth import (
    AuthError,
    JWTAuthBackend,
    Principal,
    TokenVerifier,
    bearer_token,
    issue_token,
    principal_from_scope,
)
from payql.settings import Settings

SECRET = "unit-test-secret-0123456789-abcdefghijklmnop"
OTHER_SECRET = "another-secret-0123456789-abcdefghijklmnopqr"
ISSUER = "https://auth.example.test/"
AUDIENCE = "payql"


def make_settings(**overrides: Any) -> Settings:
    """Settings from explicit values only: no `.env`, and every JWT field set so the environment stays out."""
    values: dict[str, Any] = {
        "payql_env": "test",
        "jwt_secret": SecretStr(SECRET),
        "jwt_algorithm": "HS256",
        "jwt_public_key": None,
        "jwt_private_key": None,
        "jwt_jwks_url": None,
        "jwt_issuer": None,
        "jwt_audience": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def in_(seconds: int) -> int:
    return int((datetime.now(UTC) + timedelta(seconds=seconds)).timestamp())


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "user-1", "exp": in_(600), "iat": in_(0)}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not ...}


def hs256(payload: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_public(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def forged_hs256(payload: dict[str, Any], secret: str, **headers: Any) -> str:
    """HS256 by hand, for secrets PyJWT rightly refuses to sign with (a public key PEM)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", **headers}).encode())
    body = b64url(json.dumps(payload).encode())
    mac = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(mac)}"


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    assert caught.value.code == "UNAUTHENTICATED"
    assert not token or token not in caught.value.message
    return caught.value.message


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rotated_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(make_settings())


# --- HS256 -------------------------------------------------------------------------------------------------


def test_a_valid_token_with_a_roles_list_gives_its_principal(verifier):
    principal = verifier.verify(hs256(claims(roles=["admin", "provider"])))

    assert principal == Principal(user_id="user-1", roles=frozenset({"admin", "provider"}))
    assert principal.is_admin
    assert principal.is_provider


def test_a_single_role_claim_is_accepted(verifier):
    principal = verifier.verify(hs256(claims(role="provider")))

    assert principal.roles == frozenset({"provider"})
    assert principal.is_provider
    assert not principal.is_admin


def test_a_token_without_roles_is_a_plain_user(verifier):
    principal = verifier.verify(hs256(claims()))

    assert principal.roles == frozenset()
    assert not principal.is_admin
    assert not principal.is_provider


@pytest.mark.parametrize(
    "bad",
    [
        {"roles": "admin"},
        {"roles": [1]},
        {"roles": ["admin", ""]},
        {"roles": {"admin": True}},
        {"role": ["admin"]},
        {"role": ""},
    ],
)
def test_roles_claims_of_the_wrong_shape_are_refused(verifier, bad):
    assert refused(verifier, hs256(claims(**bad))) == "invalid roles claim"


def test_an_unsigned_alg_none_token_is_refused(verifier):
    token = jwt.encode(claims(roles=["admin"]), None, algorithm="none")

    assert refused(verifier, token) == "token algorithm not allowed"


def test_an_expired_token_is_refused(verifier):
    assert refused(verifier, hs256(claims(exp=in_(-5), iat=in_(-600)))) == "token expired"


def test_a_token_not_valid_before_a_future_time_is_refused(verifier):
    assert refused(verifier, hs256(claims(nbf=in_(300)))) == "token not yet valid"


@pytest.mark.parametrize("claim", ["exp", "sub"])
def test_exp_and_sub_are_required(verifier, claim):
    token = hs256(claims(**{claim: ...}))

    assert refused(verifier, token) == f"token is missing the '{claim}' claim"


@pytest.mark.parametrize("sub", ["", "   "])
def test_an_empty_subject_is_refused(verifier, sub):
    assert refused(verifier, hs256(claims(sub=sub))) == "token has an empty 'sub' claim"


def test_a_subject_that_is_not_a_string_is_refused(verifier):
    assert refused(verifier, hs256(claims(sub=42))) == "token 'sub' claim must be a string"


def test_a_subject_longer_than_128_characters_is_refused(verifier):
    assert verifier.verify(hs256(claims(sub="u" * 128))).user_id == "u" * 128
    assert refused(verifier, hs256(claims(sub="u" * 129))) == "token 'sub' claim is too long"


def test_a_tampered_payload_fails_the_signature_check(verifier):
    header, _, signature = hs256(claims()).split(".")
    forged_payload = b64url(json.dumps(claims(roles=["admin"])).encode())

    assert refused(verifier, f"{header}.{forged_payload}.{signature}") == "invalid token signature"


def test_a_tampered_signature_is_refused(verifier):
    header, payload, signature = hs256(claims()).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    assert refused(verifier, f"{header}.{payload}.{flipped}") == "invalid token signature"


def test_a_token_signed_with_another_secret_is_refused(verifier):
    assert refused(verifier, hs256(claims(), secret=OTHER_SECRET)) == "invalid token signature"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "", "x" * 10_000])
def test_garbage_is_a_malformed_token(verifier, token):
    assert refused(verifier, token) == "malformed token"


def test_error_messages_never_carry_the_secret(verifier):
    for token in (hs256(claims(exp=in_(-5))), hs256(claims(), secret=OTHER_SECRET), "garbage"):
        message = refused(verifier, token)
        assert SECRET not in message
        assert OTHER_SECRET not in message


# --- issuer and audience -----------------------------------------------------------------------------------


@pytest.fixture
def strict_verifier() -> TokenVerifier:
    return TokenVerifier(make_settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE))


def test_issuer_and_audience_are_accepted_when_they_match(strict_verifier):
    principal = strict_verifier.verify(hs256(claims(iss=ISSUER, aud=AUDIENCE)))

    assert principal.user_id == "user-1"


def test_an_audience_list_containing_ours_is_accepted(strict_verifier):
    assert strict_verifier.verify(hs256(claims(iss=ISSUER, aud=["other", AUDIENCE]))).user_id == "user-1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://evil.example.test/", "aud": AUDIENCE}, "invalid token issuer"),
        ({"iss": ISSUER, "aud": "someone-else"}, "invalid token audience"),
        ({"aud": AUDIENCE}, "token is missing the 'iss' claim"),
        ({"iss": ISSUER}, "token is missing the 'aud' claim"),
    ],
)
def test_a_wrong_or_missing_issuer_or_audience_is_refused(strict_verifier, overrides, message):
    assert refused(strict_verifier, hs256(claims(**overrides))) == message


def test_the_issuer_is_not_checked_when_not_configured(verifier):
    principal = verifier.verify(hs256(claims(iss="anyone")))

    assert principal.user_id == "user-1"


@pytest.mark.parametrize("aud", ["some-other-api", ["some-other-api", "payql"], "", []])
def test_a_token_with_an_audience_is_refused_when_none_is_configured(verifier, aud):
    # A token minted for another service (same issuer, same key) must not pass here just because we set no audience.
    assert refused(verifier, hs256(claims(aud=aud))) == "invalid token audience"


def test_production_without_an_audience_warns_once_at_start(caplog):
    with caplog.at_level(logging.WARNING, logger="payql.auth"):
        verifier = TokenVerifier(make_settings(payql_env="production"))
        verifier.verify(hs256(claims()))
        verifier.verify(hs256(claims()))

    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "JWT_AUDIENCE" in warnings[0].getMessage()


def test_no_audience_warning_in_production_with_an_audience_or_in_development(caplog):
    with caplog.at_level(logging.WARNING, logger="payql.auth"):
        TokenVerifier(make_settings(payql_env="production", jwt_audience=AUDIENCE))
        TokenVerifier(make_settings(payql_env="development"))

    assert caplog.records == []


# --- lifetime and numeric dates ----------------------------------------------------------------------------

DAY = 86_400


def test_a_token_may_live_exactly_jwt_max_lifetime_from_iat(verifier):
    issued = in_(-10)

    assert verifier.verify(hs256(claims(iat=issued, exp=issued + DAY))).user_id == "user-1"
    assert verifier.verify(hs256(claims(iat=..., exp=in_(DAY - 60)))).user_id == "user-1"


# Built when the test runs, not when it is collected: a suite takes minutes, and a lifetime is counted from now.
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(lambda: {"exp": 253402300799}, id="exp-in-9999"),
        pytest.param(lambda: {"iat": in_(-10), "exp": in_(-10) + DAY + 1}, id="a-second-too-long-from-iat"),
        pytest.param(lambda: {"iat": in_(-2 * DAY), "exp": in_(60)}, id="issued-long-ago"),
        pytest.param(lambda: {"iat": ..., "exp": in_(DAY + 60)}, id="no-iat-too-far-from-now"),
        pytest.param(lambda: {"iat": ..., "exp": 253402300799}, id="no-iat-exp-in-9999"),
        pytest.param(lambda: {"iat": -(10**400), "exp": 10**400}, id="integers-beyond-any-float"),
        pytest.param(lambda: {"iat": ..., "exp": 10**400}, id="no-iat-integer-beyond-any-float"),
    ],
)
def test_a_token_living_longer_than_jwt_max_lifetime_is_refused(verifier, overrides):
    assert refused(verifier, hs256(claims(**overrides()))) == "token lifetime too long"


def test_jwt_max_lifetime_is_configurable():
    verifier = TokenVerifier(make_settings(jwt_max_lifetime=300))
    issued = in_(0)

    assert verifier.verify(hs256(claims(iat=issued, exp=issued + 300))).user_id == "user-1"
    assert refused(verifier, hs256(claims(iat=issued, exp=issued + 301))) == "token lifetime too long"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", str(in_(600))),
        ("exp", True),
        ("exp", [in_(600)]),
        ("exp", {"$date": in_(600)}),
        ("iat", str(in_(0))),
        ("iat", True),
        ("iat", None),
        ("nbf", str(in_(-60))),
        ("nbf", False),
    ],
)
def test_numeric_dates_must_be_json_numbers(verifier, claim, value):
    assert refused(verifier, hs256(claims(**{claim: value}))) == f"invalid '{claim}' claim"


@pytest.mark.parametrize(
    ("claim", "value"), [("exp", math.inf), ("exp", math.nan), ("iat", -math.inf), ("nbf", math.inf)]
)
def test_non_finite_numeric_dates_are_refused(verifier, claim, value):
    # Not JSON, but Python's json module reads `Infinity` and `NaN`, so a signed token may carry them.
    assert refused(verifier, hs256(claims(**{claim: value}))) == f"invalid '{claim}' claim"


def test_fractional_numeric_dates_are_accepted(verifier):
    # RFC 7519 NumericDate may be non-integer.
    now = datetime.now(UTC).timestamp()

    assert verifier.verify(hs256(claims(iat=now - 0.5, nbf=now - 0.25, exp=now + 600.5))).user_id == "user-1"


# --- RS256 -------------------------------------------------------------------------------------------------


def rs256(payload: dict[str, Any], key: rsa.RSAPrivateKey, **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers=headers or None)


@pytest.fixture
def rs_verifier(rsa_key) -> TokenVerifier:
    return TokenVerifier(make_settings(jwt_algorithm="RS256", jwt_public_key=SecretStr(pem_public(rsa_key))))


def test_a_valid_rs256_token_verifies_with_the_public_key(rs_verifier, rsa_key):
    principal = rs_verifier.verify(rs256(claims(roles=["admin"]), rsa_key))

    assert principal == Principal(user_id="user-1", roles=frozenset({"admin"}))


def test_an_rs256_token_from_another_key_is_refused(rs_verifier, rotated_key):
    assert refused(rs_verifier, rs256(claims(), rotated_key)) == "invalid token signature"


def test_an_hs256_token_keyed_with_the_public_pem_is_refused_by_an_rs256_verifier(rs_verifier, rsa_key):
    # The classic confusion attack: the public key is public, so an attacker can HMAC with it.
    token = forged_hs256(claims(roles=["admin"]), pem_public(rsa_key))

    assert refused(rs_verifier, token) == "token algorithm not allowed"


def test_an_rs256_token_is_refused_by_an_hs256_verifier(verifier, rsa_key):
    assert refused(verifier, rs256(claims(), rsa_key)) == "token algorithm not allowed"


def test_rs256_without_any_key_is_a_configuration_error():
    with pytest.raises(ValueError, match="JWT_PUBLIC_KEY or JWT_JWKS_URL"):
        TokenVerifier(make_settings(jwt_algorithm="RS256"))


def test_rs256_development_tokens_round_trip_with_only_the_private_key(rsa_key):
    settings = make_settings(jwt_algorithm="RS256", jwt_private_key=SecretStr(pem_private(rsa_key)))

    principal = TokenVerifier(settings).verify(issue_token(settings, "user-9", ["provider"]))

    assert principal == Principal(user_id="user-9", roles=frozenset({"provider"}))


# --- verified tokens remembered ------------------------------------------------------------------------------


class Clock:
    """The verifier's time, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def counting_decode(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the tokens PyJWT decodes (the verifier's own entry point into PyJWT, not PyJWT itself)."""
    decoded: list[str] = []
    original = TokenVerifier._decode

    def decode(self: TokenVerifier, token: str) -> Any:
        decoded.append(token)
        return original(self, token)

    monkeypatch.setattr(TokenVerifier, "_decode", decode)
    return decoded


def test_a_verified_token_is_decoded_once(monkeypatch):
    decoded = counting_decode(monkeypatch)
    verifier = TokenVerifier(make_settings())
    token = hs256(claims(roles=["admin"]))

    principals = [verifier.verify(token) for _ in range(3)]

    assert principals == [Principal("user-1", frozenset({"admin"}))] * 3
    assert decoded == [token]


def test_a_remembered_token_expires_on_time():
    clock = Clock()
    verifier = TokenVerifier(make_settings(), clock=clock)
    token = hs256(claims(exp=int(clock.now) + 60, iat=int(clock.now)))
    assert verifier.verify(token).user_id == "user-1"

    clock.now += 59
    assert verifier.verify(token).user_id == "user-1"
    clock.now += 1
    assert refused(verifier, token) == "token expired"
    assert refused(verifier, token) == "token expired"


def test_a_remembered_token_is_checked_against_the_clock_every_time():
    # a clock moved back: before `iat`, and (without `iat`) further from `exp` than the longest lifetime
    clock = Clock()
    verifier = TokenVerifier(make_settings(jwt_max_lifetime=300), clock=clock)
    issued = hs256(claims(iat=int(clock.now), exp=int(clock.now) + 300))
    undated = hs256(claims(iat=..., exp=int(clock.now) + 300))
    assert verifier.verify(issued).user_id == verifier.verify(undated).user_id == "user-1"

    clock.now -= 10
    assert refused(verifier, issued) == "token not yet valid"
    assert refused(verifier, undated) == "token lifetime too long"
    clock.now += 10
    assert verifier.verify(issued).user_id == verifier.verify(undated).user_id == "user-1"


def test_a_refused_token_is_never_remembered(monkeypatch):
    decoded = counting_decode(monkeypatch)
    clock = Clock()
    verifier = TokenVerifier(make_settings(), clock=clock)
    early = hs256(claims(nbf=int(clock.now) + 30))
    forged = hs256(claims(roles=["admin"]), secret=OTHER_SECRET)

    assert refused(verifier, early) == "token not yet valid"
    assert refused(verifier, forged) == "invalid token signature"
    assert refused(verifier, forged) == "invalid token signature"
    clock.now += 30
    assert verifier.verify(early).user_id == "user-1"

    assert decoded == [early, forged, forged, early]


def test_the_remembered_tokens_are_bounded(monkeypatch):
    monkeypatch.setattr("payql.auth.VERIFIED_CACHE_SIZE", 2)
    decoded = counting_decode(monkeypatch)
    verifier = TokenVerifier(make_settings())
    first, second, third = (hs256(claims(sub=f"user-{n}")) for n in range(3))

    for token in (first, second, first, third, first, second):
        verifier.verify(token)

    # the least recently used goes: `second` when `third` came, then `third` when `second` came back
    assert decoded == [first, second, third, second]


# --- JWKS --------------------------------------------------------------------------------------------------


class JWKSServer:
    """A JWKS endpoint on 127.0.0.1 that counts how often it is fetched."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.hits = 0
        body = json.dumps(jwks).encode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256", "use": "sig"}


@pytest.fixture
def jwks_server(rsa_key, rotated_key):
    server = JWKSServer({"keys": [jwk(rsa_key, "2024-old"), jwk(rotated_key, "2025-new")]})
    yield server
    server.close()


@pytest.fixture
def jwks_settings(jwks_server) -> Settings:
    return make_settings(jwt_algorithm="RS256", jwt_jwks_url=jwks_server.url)


def test_jwks_tokens_signed_by_either_rotated_key_verify(jwks_settings, jwks_server, rsa_key, rotated_key):
    verifier = TokenVerifier(jwks_settings)
    assert verifier.uses_jwks

    old = verifier.verify(rs256(claims(sub="old-user"), rsa_key, kid="2024-old"))
    new = verifier.verify(rs256(claims(sub="new-user", roles=["admin"]), rotated_key, kid="2025-new"))
    again = verifier.verify(rs256(claims(sub="old-user"), rsa_key, kid="2024-old"))

    assert (old.user_id, new.user_id, again.user_id) == ("old-user", "new-user", "old-user")
    assert new.is_admin
    assert jwks_server.hits == 1  # the key set is cached, not fetched per request


def test_jwks_tokens_are_checked_against_the_key_set_every_time(jwks_settings, rsa_key, monkeypatch):
    # a key may be withdrawn from the set: its tokens are not remembered as verified
    decoded = counting_decode(monkeypatch)
    verifier = TokenVerifier(jwks_settings)
    token = rs256(claims(), rsa_key, kid="2024-old")

    verifier.verify(token)
    verifier.verify(token)

    assert decoded == [token, token]


def test_jwks_refuses_an_unknown_kid_without_hammering_the_endpoint(jwks_settings, jwks_server):
    verifier = TokenVerifier(jwks_settings)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    for _ in range(3):
        assert refused(verifier, rs256(claims(), stranger, kid="unknown")) == "unknown signing key"

    # PyJWKClient's refresh cooldown: unknown kids do not each trigger a fetch.
    assert jwks_server.hits == 1


def test_jwks_refuses_a_token_without_kid(jwks_settings, rsa_key):
    token = rs256(claims(), rsa_key)

    assert refused(TokenVerifier(jwks_settings), token) == "token is missing the 'kid' header"


def test_jwks_refuses_a_kid_that_names_a_different_key(jwks_settings, rsa_key):
    token = rs256(claims(), rsa_key, kid="2025-new")

    assert refused(TokenVerifier(jwks_settings), token) == "invalid token signature"


def test_jwks_refuses_hs256_even_keyed_with_a_published_key(jwks_settings, rsa_key):
    token = forged_hs256(claims(roles=["admin"]), pem_public(rsa_key), kid="2024-old")

    assert refused(TokenVerifier(jwks_settings), token) == "token algorithm not allowed"


def test_an_unreachable_jwks_endpoint_refuses_tokens(rsa_key):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    verifier = TokenVerifier(make_settings(jwt_algorithm="RS256", jwt_jwks_url=f"http://127.0.0.1:{port}/jwks"))

    assert refused(verifier, rs256(claims(), rsa_key, kid="2024-old")) == "signing keys unavailable"


def test_a_jwks_url_that_is_not_http_is_a_configuration_error():
    with pytest.raises(ValueError, match="JWT_JWKS_URL"):
        TokenVerifier(make_settings(jwt_algorithm="RS256", jwt_jwks_url="file:///etc/passwd"))


# --- the Authorization header ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("BEARER   abc.def.ghi  ", "abc.def.ghi"),
    ],
)
def test_bearer_token_extracts_the_token(header, token):
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "abc.def.ghi", "Bearer a b"])
def test_bearer_token_refuses_anything_else(header):
    with pytest.raises(AuthError, match=r"^malformed Authorization header$"):
        bearer_token(header)


# --- development tokens ------------------------------------------------------------------------------------


def test_issued_tokens_carry_the_configured_issuer_and_audience():
    settings = make_settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    now = datetime.now(UTC)

    token = issue_token(settings, "user-7", ["provider", "admin", "admin"], ttl_seconds=120, now=now)

    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert payload == {
        "sub": "user-7",
        "roles": ["admin", "provider"],
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + 120,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    assert TokenVerifier(settings).verify(token) == Principal("user-7", frozenset({"admin", "provider"}))


def test_an_issued_token_expires_after_its_ttl(verifier):
    token = issue_token(make_settings(), "user-1", ttl_seconds=60, now=datetime.now(UTC) - timedelta(minutes=5))

    assert refused(verifier, token) == "token expired"


def test_issuing_rs256_needs_the_private_key(rsa_key):
    settings = make_settings(jwt_algorithm="RS256", jwt_public_key=SecretStr(pem_public(rsa_key)))

    with pytest.raises(ValueError, match="JWT_PRIVATE_KEY"):
        issue_token(settings, "user-1")


def test_issue_token_refuses_a_ttl_above_jwt_max_lifetime():
    settings = make_settings(jwt_max_lifetime=600)

    assert TokenVerifier(settings).verify(issue_token(settings, "user-1", ttl_seconds=600)).user_id == "user-1"
    with pytest.raises(ValueError, match=r"JWT_MAX_LIFETIME \(600 seconds\)"):
        issue_token(settings, "user-1", ttl_seconds=601)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sub": ""},
        {"sub": "user-1", "ttl_seconds": 0},
        {"sub": "user-1", "now": datetime(2030, 1, 1)},  # noqa: DTZ001 - the naive time under test
    ],
)
def test_issue_token_refuses_bad_arguments(kwargs):
    with pytest.raises((ValueError, AuthError)):
        issue_token(make_settings(), **kwargs)


# --- the Starlette backend ---------------------------------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    principal, error = principal_from_scope(request.scope)
    return JSONResponse(
        {
            "user": principal.user_id if principal else None,
            "roles": sorted(principal.roles) if principal else [],
            "error": error.message if error else None,
            "code": error.code if error else None,
            "scopes": request.auth.scopes,
            "authenticated": request.user.is_authenticated,
            "identity": request.user.identity,
            "display_name": request.user.display_name,
        }
    )


def client_for(verifier: TokenVerifier) -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/whoami", whoami)],
        middleware=[Middleware(AuthenticationMiddleware, backend=JWTAuthBackend(verifier))],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://payql.test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_backend_authenticates_a_valid_bearer_token(verifier):
    token = issue_token(make_settings(), "user-3", ["admin"])

    async with client_for(verifier) as client:
        response = await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response.json() == {
        "user": "user-3",
        "roles": ["admin"],
        "error": None,
        "code": None,
        "scopes": ["authenticated", "admin"],
        "authenticated": True,
        "identity": "user-3",
        "display_name": "user-3",
    }


@pytest.mark.anyio
async def test_the_backend_leaves_requests_without_a_header_anonymous(verifier):
    async with client_for(verifier) as client:
        body = (await client.get("/whoami")).json()

    assert body["user"] is None
    assert body["error"] is None
    assert body["scopes"] == []
    assert body["authenticated"] is False


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("header", "message"),
    [
        (f"Bearer {hs256(claims(exp=in_(-5)))}", "token expired"),
        (f"Bearer {hs256(claims(), secret=OTHER_SECRET)}", "invalid token signature"),
        ("Basic dXNlcjpwdw==", "malformed Authorization header"),
    ],
)
async def test_the_backend_answers_a_bad_token_anonymously_with_the_reason(verifier, header, message):
    async with client_for(verifier) as client:
        response = await client.get("/whoami", headers={"Authorization": header})

    assert response.status_code == 200
    body = response.json()
    assert body["user"] is None
    assert body["authenticated"] is False
    assert (body["error"], body["code"]) == (message, "UNAUTHENTICATED")


@pytest.mark.anyio
async def test_the_backend_verifies_jwks_tokens_off_the_event_loop(jwks_settings, rotated_key):
    token = rs256(claims(sub="user-5", role="provider"), rotated_key, kid="2025-new")

    async with client_for(TokenVerifier(jwks_settings)) as client:
        body = (await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})).json()

    assert (body["user"], body["roles"], body["error"]) == ("user-5", ["provider"], None)


def test_principal_from_scope_of_an_unauthenticated_scope():
    assert principal_from_scope({"type": "http"}) == (None, None)
