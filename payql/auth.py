"""Bearer-token authentication: the only module that decodes JWTs.

CONTRACT.md "Authentication", DESIGN.md §7. `TokenVerifier.verify` turns a token into a `Principal` or raises
`AuthError`, whose message is safe to show a client. The algorithm list is fixed by configuration
(`[settings.jwt_algorithm]`), never taken from the token, so `alg: none` and HS256/RS256 confusion are
refused. `exp` and `sub` are required; `iss` is checked when configured. `aud` is checked against JWT_AUDIENCE,
and a token that names an audience is refused when none is configured (it was minted for some other service).

Time claims are checked here, not by PyJWT, which coerces them with `int()` and so took `"exp": "9999999999"`.
`exp`, `iat` and `nbf` must be JSON numbers: integers or, since RFC 7519's NumericDate may be non-integer,
finite floats; never strings or booleans. A token lives at most JWT_MAX_LIFETIME seconds, counted from `iat`, or
from now when it has no `iat` (so `exp` in the year 9999 is refused either way).

A verified token is remembered (a bounded cache keyed by the token string, never a refusal) when the key is fixed
(HS256, or an RSA public key from the settings; never with a JWKS, whose keys may be withdrawn): what PyJWT checks
(signature, algorithm, issuer, audience, required claims) depends on the token alone then, and the time rules
(`exp`, `nbf`, `iat`, the maximum lifetime) are checked again on every use, from the claims kept with it.

`JWTAuthBackend` plugs the verifier into Starlette's `AuthenticationMiddleware`. A bad token does not end the
request: public GraphQL fields must still answer, so the error is left in the scope under
`AUTH_ERROR_SCOPE_KEY` for the GraphQL layer to report as UNAUTHENTICATED on protected fields
(`principal_from_scope`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import anyio.to_thread
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from jwt.exceptions import InvalidSubjectError
from jwt.types import Options
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.requests import HTTPConnection

from payql.memo import Memo
from payql.settings import Settings

__all__ = [
    "AUTH_ERROR_SCOPE_KEY",
    "AuthError",
    "JWTAuthBackend",
    "Principal",
    "PrincipalUser",
    "TokenVerifier",
    "bearer_token",
    "issue_token",
    "principal_from_scope",
]

logger = logging.getLogger(__name__)

AUTH_ERROR_SCOPE_KEY = "payql.auth_error"
ADMIN_ROLE = "admin"
PROVIDER_ROLE = "provider"
MAX_SUBJECT_LENGTH = 128
# Far above any real token; refusing larger ones early keeps a hostile header from costing base64/JSON work.
MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: the token's `sub` and its roles."""

    user_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    @property
    def is_provider(self) -> bool:
        return PROVIDER_ROLE in self.roles


class AuthError(Exception):
    """A token or header that does not authenticate; `message` is short and safe to show a client."""

    code: ClassVar[str] = "UNAUTHENTICATED"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Most specific first: InvalidSignatureError is a DecodeError, every token error an InvalidTokenError.
_ERROR_MESSAGES: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "invalid token signature"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
    (jwt.InvalidIssuerError, "invalid token issuer"),
    (jwt.InvalidAudienceError, "invalid token audience"),
    (jwt.InvalidIssuedAtError, "invalid 'iat' claim"),
    (InvalidSubjectError, "token 'sub' claim must be a string"),
    (jwt.DecodeError, "malformed token"),
    (jwt.PyJWKClientConnectionError, "signing keys unavailable"),
    (jwt.PyJWKSetError, "signing keys unavailable"),
    (jwt.PyJWKClientError, "unknown signing key"),
    (jwt.PyJWKError, "unknown signing key"),
)


def _auth_error(exc: jwt.PyJWTError) -> AuthError:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return AuthError(f"token is missing the '{exc.claim}' claim")
    for error_type, message in _ERROR_MESSAGES:
        if isinstance(exc, error_type):
            return AuthError(message)
    return AuthError("invalid token")


def _check_subject(sub: object) -> str:
    if not isinstance(sub, str):
        raise AuthError("token 'sub' claim must be a string")
    if not sub.strip():
        raise AuthError("token has an empty 'sub' claim")
    if len(sub) > MAX_SUBJECT_LENGTH:
        raise AuthError("token 'sub' claim is too long")
    return sub


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """The claim as a number of seconds, None when absent; a present claim that is not a finite JSON number is
    refused (a string, a bool, null, a list, NaN or infinity)."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(f"invalid '{name}' claim")
    if isinstance(value, float) and not math.isfinite(value):
        raise AuthError(f"invalid '{name}' claim")
    return value


# A token's time claims: `exp`, `iat`, `nbf` (None when absent), read and checked to be numbers.
Times = tuple[float, float | None, float | None]


def _times(claims: Mapping[str, Any]) -> Times:
    expires = _numeric_date(claims, "exp")
    issued = _numeric_date(claims, "iat")
    not_before = _numeric_date(claims, "nbf")
    if expires is None:  # `require` has PyJWT refuse a missing one first
        raise AuthError("token is missing the 'exp' claim")
    return expires, issued, not_before


def _check_times(times: Times, max_lifetime: int, now: float) -> None:
    expires, issued, not_before = times
    if expires <= now:
        raise AuthError("token expired")
    if (not_before is not None and not_before > now) or (issued is not None and issued > now):
        raise AuthError("token not yet valid")
    # A sum, not `expires - issued`: an integer too large for a float (JSON allows any) must not overflow.
    if expires > (issued if issued is not None else now) + max_lifetime:
        raise AuthError("token lifetime too long")


def _roles(claims: Mapping[str, Any]) -> frozenset[str]:
    roles: set[str] = set()
    many = claims.get("roles")
    if many is not None:
        if not isinstance(many, list) or not all(isinstance(role, str) and role for role in many):
            raise AuthError("invalid roles claim")
        roles.update(many)
    one = claims.get("role")
    if one is not None:
        if not isinstance(one, str) or not one:
            raise AuthError("invalid roles claim")
        roles.add(one)
    return frozenset(roles)


def _rsa_public_key(settings: Settings) -> RSAPublicKey:
    if settings.jwt_public_key is not None:
        key: object = load_pem_public_key(settings.jwt_public_key.get_secret_value().encode())
    elif settings.jwt_private_key is not None:
        # Development convenience: `payql token` signs with the private key, the server checks with its half.
        private = load_pem_private_key(settings.jwt_private_key.get_secret_value().encode(), password=None)
        if not isinstance(private, RSAPrivateKey):
            raise TypeError("JWT_PRIVATE_KEY is not an RSA private key")
        key = private.public_key()
    else:
        raise ValueError("JWT_ALGORITHM=RS256 needs JWT_PUBLIC_KEY or JWT_JWKS_URL")
    if not isinstance(key, RSAPublicKey):
        raise TypeError("JWT_PUBLIC_KEY is not an RSA public key")
    return key


# Verified tokens remembered per verifier: enough for every caller active at once on a replica.
VERIFIED_CACHE_SIZE = 4096


class TokenVerifier:
    """Verifies bearer tokens against the configured key; build once at startup and share. `clock` gives the time
    the time claims are checked against (seconds since the epoch)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._verified: Memo[tuple[Principal, Times]] = Memo(VERIFIED_CACHE_SIZE)
        self._algorithms = [settings.jwt_algorithm]
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._max_lifetime = settings.jwt_max_lifetime
        if settings.production and self._audience is None:
            # Built once per app: this is the start-up warning. Without an audience, a token the same issuer (or
            # key) minted for any other service is good here too.
            logger.warning("JWT_AUDIENCE is not set: tokens are not bound to this service; set it in production")
        self._keys: str | RSAPublicKey | jwt.PyJWKClient
        if settings.jwt_algorithm == "HS256":
            self._keys = settings.jwt_secret.get_secret_value()
        elif settings.jwt_jwks_url:
            try:
                self._keys = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True)
            except jwt.PyJWKClientError as exc:
                raise ValueError(f"JWT_JWKS_URL is not usable: {exc}") from exc
        else:
            self._keys = _rsa_public_key(settings)
        # a JWKS key may be withdrawn: its tokens are checked against it every time
        self._remembers = not isinstance(self._keys, jwt.PyJWKClient)
        self._options: Options = {
            "require": ["exp", "sub"],
            # `_check_times` does these: PyJWT would coerce strings.
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
            # With no audience configured PyJWT refuses a non-empty `aud`; `verify` refuses an empty one too.
            "verify_aud": True,
        }

    @property
    def uses_jwks(self) -> bool:
        """Whether `verify` may do blocking HTTP (fetching the JWKS) and so belongs in a worker thread."""
        return isinstance(self._keys, jwt.PyJWKClient)

    def verify(self, token: str) -> Principal:
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[Principal, float]:
        """`verify`, with the time the token expires (its `exp`, seconds since the epoch): a WebSocket connection
        authenticates once and ends then."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("malformed token")
        known = self._verified.get(token)
        if known is not None:
            principal, times = known
            try:
                _check_times(times, self._max_lifetime, self._clock())
            except AuthError:
                self._verified.discard(token)
                raise
            return principal, times[0]
        principal, times = self._decode(token)
        if self._remembers:
            self._verified.put(token, (principal, times))
        return principal, times[0]

    def now(self) -> float:
        """The verifier's clock (seconds since the epoch)."""
        return self._clock()

    def _decode(self, token: str) -> tuple[Principal, Times]:
        """Every check, in order; all but the time rules depend on the token alone (with a fixed key)."""
        try:
            claims = jwt.decode(
                token,
                key=self._signing_key(token),
                algorithms=self._algorithms,
                options=self._options,
                issuer=self._issuer,
                audience=self._audience,
            )
        except jwt.PyJWTError as exc:
            raise _auth_error(exc) from exc
        times = _times(claims)
        _check_times(times, self._max_lifetime, self._clock())
        if self._audience is None and "aud" in claims:
            raise AuthError("invalid token audience")
        return Principal(user_id=_check_subject(claims.get("sub")), roles=_roles(claims)), times

    def _signing_key(self, token: str) -> str | RSAPublicKey | jwt.PyJWK:
        if not isinstance(self._keys, jwt.PyJWKClient):
            return self._keys
        kid = jwt.get_unverified_header(token).get("kid")
        if not kid:
            raise AuthError("token is missing the 'kid' header")
        return self._keys.get_signing_key(kid)


_BEARER = "bearer"


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is no header."""
    if authorization_header is None:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _BEARER or not token or " " in token:
        raise AuthError("malformed Authorization header")
    return token


def issue_token(
    settings: Settings,
    sub: str,
    roles: Iterable[str] = (),
    ttl_seconds: int = 3600,
    *,
    now: datetime | None = None,
    kid: str | None = None,
) -> str:
    """A development token signed the way `TokenVerifier` checks it (RS256 needs JWT_PRIVATE_KEY)."""
    _check_subject(sub)
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    if ttl_seconds > settings.jwt_max_lifetime:
        # `TokenVerifier` would refuse it.
        raise ValueError(
            f"a ttl of {ttl_seconds} s is longer than JWT_MAX_LIFETIME ({settings.jwt_max_lifetime} seconds)"
        )
    issued = now if now is not None else datetime.now(UTC)
    if issued.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    role_list = [roles] if isinstance(roles, str) else sorted(set(roles))
    if not all(role_list):
        raise ValueError("roles must be non-empty strings")
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": role_list,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_seconds)).timestamp()),
    }
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    key: str
    if settings.jwt_algorithm == "HS256":
        key = settings.jwt_secret.get_secret_value()
    elif settings.jwt_private_key is not None:
        key = settings.jwt_private_key.get_secret_value()
    else:
        raise ValueError("issuing RS256 tokens needs JWT_PRIVATE_KEY")
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm, headers=headers)


class PrincipalUser(BaseUser):
    """Starlette's view of a `Principal` (`request.user`)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.user_id

    @property
    def identity(self) -> str:
        return self.principal.user_id


class JWTAuthBackend(AuthenticationBackend):
    """Authenticates `Authorization: Bearer` requests; never rejects a request by itself (see module doc)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        try:
            token = bearer_token(conn.headers.get("authorization"))
            if token is None:
                return None
            if self._verifier.uses_jwks:
                principal = await anyio.to_thread.run_sync(self._verifier.verify, token)
            else:
                principal = self._verifier.verify(token)
        except AuthError as exc:
            conn.scope[AUTH_ERROR_SCOPE_KEY] = exc
            return None
        return AuthCredentials(["authenticated", *sorted(principal.roles)]), PrincipalUser(principal)


def principal_from_scope(scope: Mapping[str, Any]) -> tuple[Principal | None, AuthError | None]:
    """What `JWTAuthBackend` left in an ASGI scope: the principal, or why the presented token was refused."""
    user = scope.get("user")
    principal = user.principal if isinstance(user, PrincipalUser) else None
    error = scope.get(AUTH_ERROR_SCOPE_KEY)
    return principal, error if isinstance(error, AuthError) else None
