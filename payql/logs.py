"""Log lines: plain text (`LOG_FORMAT=text`, the default) or one JSON object per line (`LOG_FORMAT=json`).

Every line says which request (or webhook delivery, or command) it belongs to. A JSON line has `time` (UTC, ISO
8601), `level`, `logger`, `message`, and always `request_id`, `user` (the principal's id or null), `operation`
(the GraphQL operation's name or null) and `outcome` (null while unknown; then `ok`, or an error code such as
`INVALID_INPUT`, `RATE_LIMITED`, `HTTP_413`), plus what a webhook delivery knows (`provider`, `event_id`,
`event_type`) and, in a command, `command`. A text line carries `[request <id>]` the same way.

How a line learns them: `EdgeMiddleware` opens a `RequestLog` for each request in a context variable (the id it
chose: the client's `X-Request-ID` when sane, else a fresh one, echoed on the answer). The record is one mutable
object, so what the authentication middleware, the GraphQL schema and the webhook route note on it (in a worker
thread, on a copy of the context) is seen by every later line of that request, uvicorn's access line included.

Nothing here adds secrets: the fields are ids and codes; a message is logged as the code wrote it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

FIELDS: Final = ("request_id", "user", "operation", "outcome")
_OPERATION = re.compile(r"^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)", re.MULTILINE)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s %(message)s"


@dataclass(slots=True)
class RequestLog:
    """What the lines of one request (or delivery) carry; filled in as the request goes."""

    request_id: str
    user: str | None = None
    operation: str | None = None
    outcome: str | None = None
    extra: dict[str, str | None] = field(default_factory=dict)


_CURRENT: ContextVar[RequestLog | None] = ContextVar("payql_request_log", default=None)
_command: str | None = None  # the console command this process runs (one per process: not a context variable)


def begin_request(request_id: str) -> RequestLog:
    """A fresh record for the request now starting, current for everything it runs (its worker threads too)."""
    record = RequestLog(request_id)
    _CURRENT.set(record)
    return record


def current() -> RequestLog | None:
    return _CURRENT.get()


def note(**values: str | None) -> None:
    """Add to the current request's record (`user=`, `operation=`, `outcome=`, or another field); no-op outside one."""
    record = _CURRENT.get()
    if record is None:
        return
    for name, value in values.items():
        if name in FIELDS:
            setattr(record, name, value)
        else:
            record.extra[name] = value


def printable(text: str, longest: int = 128) -> str:
    """A caller-chosen value (a token's `sub`) as it may appear in a text line: no control characters, bounded."""
    shown = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return shown[:longest]


def graphql_operation(query: str, operation_name: str | None) -> str | None:
    """The operation's name: the one asked for, else that of a document's first named operation."""
    if operation_name is not None:
        return printable(operation_name)
    found = _OPERATION.search(query)
    return found.group(1) if found else None


def graphql_outcome(errors: list[Any] | None, data: dict[str, Any] | None) -> str:
    """`ok`, or the code of the first error: a GraphQL error's `extensions.code`, else a payload's `UserError`."""
    for error in errors or ():
        code = (getattr(error, "extensions", None) or {}).get("code")
        return str(code) if code else "ERROR"
    for value in (data or {}).values():
        if isinstance(value, dict) and (user_errors := value.get("errors")):
            first = user_errors[0]
            return str(first.get("code") or "ERROR") if isinstance(first, dict) else "ERROR"
    return "ok"


def note_command(name: str | None) -> None:
    global _command  # noqa: PLW0603 - one command per process
    _command = name


class ContextFilter(logging.Filter):
    """Puts the request's fields on every record a handler emits (`record.request_id`, …, `record.context`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current_record = _CURRENT.get()
        extra: dict[str, str | None] = {}
        context = ""
        if current_record is None:
            record.request_id = record.user = record.operation = record.outcome = None
        else:
            record.request_id = current_record.request_id
            record.user = current_record.user
            record.operation = current_record.operation
            record.outcome = current_record.outcome
            extra = current_record.extra
            context = f" [request {current_record.request_id}]"
        if _command is not None:
            extra = {**extra, "command": _command}
            context += f" [{_command}]"
        record.log_extra = extra
        record.context = context
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            line[name] = getattr(record, name, None)
        line.update(getattr(record, "log_extra", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def make_formatter(fmt: str = "text") -> logging.Formatter:
    """The formatter for `LOG_FORMAT` (also uvicorn's, through `logging_config`)."""
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: one stderr handler on the root, uvicorn's loggers propagating to it (so
    its access line is formatted, and carries the request's fields, like ours)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"payql": {"()": make_formatter, "fmt": fmt}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "payql",
                "filters": ["context"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            **{name: {"handlers": [], "propagate": True, "level": level.upper()} for name in _UVICORN},
            **{name: {"level": "INFO"} for name in QUIET_AT_DEBUG if level.upper() == "DEBUG"},
        },
    }


# Libraries that log request or response bodies at DEBUG (the Stripe SDK logs a PaymentIntent's client secret):
# never below INFO, whatever LOG_LEVEL says.
QUIET_AT_DEBUG = ("stripe", "httpcore", "httpx", "yookassa", "urllib3")


def _quiet_libraries() -> None:
    for name in QUIET_AT_DEBUG:
        library = logging.getLogger(name)
        if library.getEffectiveLevel() < logging.INFO:
            library.setLevel(logging.INFO)


def configure(level: str, fmt: str) -> None:
    """One handler of ours (text or JSON) on stderr at `level`, unless the root logger has handlers already (as
    `logging.basicConfig`): uvicorn's, set up from `logging_config`, or a test runner's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    _quiet_libraries()
