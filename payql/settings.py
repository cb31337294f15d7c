"""Settings: the only place that reads the environment (or a `.env` file).

Every variable of CONTRACT.md's configuration table is here with its default. Amounts in settings are decimal
strings (parsed by `payql.money`), never floats; timeouts are whole milliseconds.

Load them with `load_settings()`: a configuration that cannot start is a `ConfigError` whose lines name the
variables and what is wrong with them, never their values (pydantic's own message echoes the input, secrets too).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

DEV_JWT_SECRET = "payql-development-secret-change-me-0123456789"  # noqa: S105 - refused in production

# The networks YooKassa publishes for its HTTP notifications.
YOOKASSA_NETWORKS = (
    "185.71.76.0/27",
    "185.71.77.0/27",
    "77.75.153.0/25",
    "77.75.156.11",
    "77.75.156.35",
    "77.75.154.128/25",
    "2a02:5180::/32",
)


class FeePolicy(BaseModel):
    """How an enroll payment is split, in basis points (1/100 of a percent)."""

    platform_bps: int = Field(ge=0, le=10_000)
    tax_bps: int = Field(ge=0, le=10_000)


class PackageConfig(BaseModel):
    """A credit package of the catalogue; `price` is a decimal string in `currency`."""

    code: str
    name: str
    credits: int = Field(gt=0)
    price: str
    currency: str = "CNY"


DEFAULT_FEES: dict[str, FeePolicy] = {
    "STRIPE": FeePolicy(platform_bps=500, tax_bps=0),
    "YOOKASSA": FeePolicy(platform_bps=1000, tax_bps=600),
}

# seeds/004's table.
DEFAULT_PACKAGES: list[PackageConfig] = [
    PackageConfig(code="trial", name="Trial", credits=500, price="50.00"),
    PackageConfig(code="standard", name="Standard", credits=1100, price="100.00"),
    PackageConfig(code="value", name="Value", credits=6000, price="500.00"),
    PackageConfig(code="premium", name="Premium", credits=13000, price="1000.00"),
]


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False)

    payql_env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    # `json`: one JSON object per log line, with the request's id, user, operation and outcome (payql.logs)
    log_format: Literal["text", "json"] = "text"

    database_url: str = "sqlite:///./payql.db"
    # PostgreSQL connections per server process: DB_POOL_SIZE stay open, DB_MAX_OVERFLOW more open under a burst and
    # close again when returned. A burst beyond the pool is a new backend per checkout (a fork and its catalogue
    # warm-up on the server: `make bench-webhooks` spent 4.4 ms of PostgreSQL CPU per event with 10 + 20, 3.0 with
    # 40 + 10), so the pool should cover the process's usual concurrency. Mind the server's max_connections (100 by
    # default) across all workers and replicas: (size + overflow) x processes, plus one per process for live updates.
    db_pool_size: int = Field(default=20, ge=1, le=1000)
    db_max_overflow: int = Field(default=10, ge=0, le=1000)

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_public_key: SecretStr | None = None
    jwt_private_key: SecretStr | None = None  # only for `payql token` with RS256 in development
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_max_lifetime: int = Field(default=86_400, gt=0)  # seconds a token may live, from its `iat` (or from now)

    stripe_secret_key: SecretStr | None = None
    stripe_publishable_key: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"

    yookassa_shop_id: str | None = None
    yookassa_secret_key: SecretStr | None = None
    yookassa_api_url: str = "https://api.yookassa.ru/v3"
    # The payout gateway's own credentials (YooKassa authenticates payouts with them, not the shop's): unset, YooKassa
    # payouts run in mock mode.
    yookassa_payout_agent_id: str | None = None
    yookassa_payout_secret_key: SecretStr | None = None
    yookassa_trusted_ips: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(YOOKASSA_NETWORKS))
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    provider_timeout_ms: int = Field(default=10_000, gt=0)
    # Threads that run GraphQL queries. 0 (auto): none on SQLite, where a query is CPU-bound Python under the GIL and
    # runs inline on the event loop (a thread only added the hop and its convoy with the loop: bench/README.md,
    # "Fifth pass"); 4 on PostgreSQL, where queries also wait on the network. N: N threads on either. Mutations may
    # wait on a provider for up to PROVIDER_TIMEOUT_MS: they always run on their own, larger pool.
    query_threads: int = Field(default=0, ge=0, le=256)
    mutation_threads: int = Field(default=32, ge=1, le=1024)
    default_return_url: str = "http://127.0.0.1:8000/payments/return"
    # Where browsers reach this payql: the mock hosted checkout's links (`/mock/checkout/{paymentId}`) are built on
    # it. Unset: http://HOST:PORT (`payql serve --host/--port` count), `localhost` for a wildcard HOST.
    public_url: str | None = None
    hold_expiry_margin_hours: int = Field(default=24, ge=0)  # release holds this long before they would lapse
    # `payql reconcile` finishes intents (and re-fetches open payments) untouched for this long: well past
    # PROVIDER_TIMEOUT_MS, so that it never races a request still waiting on its provider.
    reconcile_after_seconds: int = Field(default=900, ge=0)
    # ... and re-reads refunds that succeeded this recently (a provider may fail one weeks later); `--report`
    # compares every payment and payout that moved in this window.
    reconcile_lookback_days: int = Field(default=120, ge=1, le=3650)
    # Crash points for the crash-recovery tests (payql.faults): refused outside PAYQL_ENV=test.
    payql_faults: Annotated[list[str], NoDecode] = Field(default_factory=list)

    enroll_fees: dict[str, FeePolicy] = Field(default_factory=lambda: dict(DEFAULT_FEES))
    payout_minimum: str = "50.00"
    credit_expiry_days: int = Field(default=180, gt=0)
    credit_packages: list[PackageConfig] = Field(default_factory=lambda: list(DEFAULT_PACKAGES))

    rate_limit: str = "120/minute"
    redis_url: str | None = None

    graphql_max_depth: int = 12
    graphql_max_aliases: int = 30
    graphql_max_cost: int = 5000
    graphql_max_bytes: int = 100_000
    # An overall deadline for reading a request body (`/graphql`, webhooks): a client that trickles one in gets 408.
    body_read_timeout_ms: int = Field(default=10_000, gt=0)
    # Subscriptions (WebSocket, graphql-transport-ws): open connections per user in one server process, operations
    # per connection, the largest message a client may send, and how long a new connection has to send
    # `connection_init`.
    subscription_max_connections: int = Field(default=10, ge=1)
    subscription_max_operations: int = Field(default=20, ge=1)
    subscription_max_message_bytes: int = Field(default=65_536, ge=1024)
    subscription_init_timeout_ms: int = Field(default=3000, gt=0)
    # Unset: `/metrics` is open (as behind a private network); set: it needs `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = None
    # prometheus-client's multiprocess mode (several workers): it reads the variable itself, at import; set, `/metrics`
    # adds up every worker's files there (payql.metrics)
    prometheus_multiproc_dir: str | None = None

    @field_validator("yookassa_trusted_ips", "trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        networks = _split_list(value)
        for item in networks:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an address or network: {item!r}") from exc
        return networks

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("payql_faults", mode="before")
    @classmethod
    def _parse_faults(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("enroll_fees", mode="before")
    @classmethod
    def _upper_providers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, dict):
            return {str(key).upper(): policy for key, policy in value.items()}
        return value

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        # Every problem at once, one per line (`load_settings` splits them), each naming variables only.
        problems: list[str] = []
        if self.jwt_algorithm == "HS256":
            secret = self.jwt_secret.get_secret_value()
            if len(secret.encode()) < 32:  # noqa: PLR2004
                problems.append("JWT_SECRET must be at least 32 bytes")
            elif secret == DEV_JWT_SECRET and (reasons := self._not_a_sandbox()):
                problems.append(
                    "JWT_SECRET is the published development default, refused because "
                    f"{', '.join(reasons)}: set JWT_SECRET to at least 32 random bytes (or use RS256 keys)"
                )
        if self.production and self.stripe_secret_key is not None and self.stripe_webhook_secret is None:
            problems.append("PAYQL_ENV=production needs STRIPE_WEBHOOK_SECRET with STRIPE_SECRET_KEY")
        if self.payql_faults and self.payql_env != "test":
            problems.append("PAYQL_FAULTS is honoured only with PAYQL_ENV=test")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _not_a_sandbox(self) -> list[str]:
        """Why this is not the laptop sandbox (both providers mocked, SQLite) the development secret is for."""
        reasons = [f"{name} is set" for name, value in self._provider_credentials().items() if value is not None]
        if not self.database_url.startswith("sqlite"):
            reasons.append("DATABASE_URL is not SQLite")
        if self.production:
            reasons.append("PAYQL_ENV is production")
        return reasons

    def _provider_credentials(self) -> dict[str, object]:
        # Any of them set, even one without its pair, means someone meant real money.
        return {
            "STRIPE_SECRET_KEY": self.stripe_secret_key,
            "STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
            "YOOKASSA_SHOP_ID": self.yookassa_shop_id,
            "YOOKASSA_SECRET_KEY": self.yookassa_secret_key,
            "YOOKASSA_PAYOUT_AGENT_ID": self.yookassa_payout_agent_id,
            "YOOKASSA_PAYOUT_SECRET_KEY": self.yookassa_payout_secret_key,
        }

    @property
    def queries_inline(self) -> bool:
        """GraphQL queries run on the event loop, not on a thread: QUERY_THREADS=0 (auto) on SQLite."""
        return self.query_threads == 0 and self.database_url.startswith("sqlite")

    @property
    def query_thread_count(self) -> int:
        if self.query_threads:
            return self.query_threads
        return 1 if self.database_url.startswith("sqlite") else 4

    @property
    def base_url(self) -> str:
        """PUBLIC_URL, or http://HOST:PORT (a wildcard HOST is reached as localhost)."""
        if self.public_url is not None:
            return self.public_url
        host = "localhost" if self.host in {"", "0.0.0.0", "::"} else self.host  # noqa: S104 - compared, not bound
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def production(self) -> bool:
        return self.payql_env == "production"


class ConfigError(ValueError):
    """A configuration that cannot start. `problems` are one line each, naming variables, never their values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_SOURCE_ERROR = re.compile(r'field "(\w+)"')


def _problem_lines(error: ErrorDetails) -> list[str]:
    """One pydantic error as lines built from its location and message only: its `input` may be a secret (for a
    model-level check it is every variable at once)."""
    loc = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return message.splitlines()
    variable = loc[0].upper()
    where = f" ({'.'.join(loc[1:])})" if len(loc) > 1 else ""
    return [f"{variable}{where}: {line}" for line in message.splitlines()]


def load_settings(**values: Any) -> Settings:
    """`Settings(**values)` (the environment and `.env` for the rest), or a `ConfigError` safe to print or log."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = [
            line for error in exc.errors(include_url=False, include_input=False) for line in _problem_lines(error)
        ]
        raise ConfigError(problems) from None  # no chained ValidationError: its text carries the input
    except SettingsError as exc:
        # pydantic-settings could not decode a complex variable (JSON); its message names the field only.
        found = _SOURCE_ERROR.search(str(exc))
        variable = found.group(1).upper() if found else "a variable"
        raise ConfigError([f"{variable}: not valid JSON"]) from None
