"""Shape checks: every JSON object the fakes send is held against the providers' own SDK types, so the fakes cannot
drift from what the real APIs send (issue #13: "a test that validates the fake's objects against the SDK's types").

Stripe: the installed `stripe` SDK is generated from Stripe's OpenAPI spec for the API version it pins
(`stripe.api_version`), and carries that spec as typed classes: every resource (`stripe.Refund`, …) and every nested
object (`Refund.DestinationDetails`) annotates each field with its type (`Optional[...]` where the spec says
`nullable` or the field may be absent, `ExpandableField[X]` = an id or the expanded object, `Literal[...]` for the
spec's enums), and every service method (`RefundService.list`) names its HTTP method, path and return type.
So the checks need no vendored copy of the spec that could fall behind the SDK:
- an answer's (method, path) must be an endpoint of the SDK's services, and its body the type that endpoint returns
  (`ListObject[Refund]`, `Refund`, …); an error answer is `{"error": ErrorObject}`;
- an object is a dict whose every key is a field of its class (unknown fields fail), each value of the field's type;
  an `Optional` field may be null; an expandable field may be an id or the object; enums must hold a listed value
  (the SDK types many enums open, `Literal[...] | str`, so that values Stripe adds later do not break old clients:
  the fake is held to the listed ones);
- an event is a `stripe.Event`, its `data.object` checked as the class its `object` field names (an `object` the SDK
  does not know fails), its `type` naming that object (`charge.refund.updated` carries a refund), and
  `data.previous_attributes` may only name fields of that class;
- a field the SDK types without `Optional` (required and not nullable in the spec) must be there: the SDK's
  attribute access would raise without it. Optional fields may be left out (the fakes render the ones payql and
  the SDK read, not all ~50 of a PaymentIntent). Not checked: string formats and lengths.

YooKassa: its SDK's response models (`PaymentResponse`, `RefundResponse`, `PayoutResponse`, the list responses,
`WebhookNotificationFactory`) are built from each body as the SDK builds them (their setters raise on many wrong
types); every key the fake sends must be a property of the model it lands in (the models' setters: a key without one
would be dropped by the SDK), recursively; statuses and `cancellation_details` hold the values the SDK lists for
that kind of object; the fields the SDK stores unchecked (booleans, timestamps, money, metadata) have the types of
YooKassa's API reference; errors and 202 answers have its error fields and an ErrorCode the SDK knows; an answer on
a path missing from YOOKASSA_ENDPOINTS fails.

The fixture `shapes_match_the_sdks` (autouse through tests/conftest.py) runs the checks after every test on all a
fake sent during it: the answers FakeServer records (tests/fakes/_http.py) and the events or notifications it made.
tests/fakes/test_fake_shapes.py tests the checks (and Stripe's published example objects, spec/, pass them).
"""

from __future__ import annotations

import ast
import decimal
import importlib
import inspect
import json
import pkgutil
import re
import types
import typing
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import stripe
from stripe._error_object import ErrorObject
from stripe._list_object import ListObject
from stripe._object_classes import OBJECT_CLASSES
from stripe._stripe_object import StripeObject, UntypedStripeObject

Obj = dict[str, Any]
Problems = list[str]

# ------------------------------------------------------------------------------------------------------ Stripe


def _module_names(module: types.ModuleType) -> dict[str, Any]:
    """The names a module's annotations use: its globals plus what it imports under `if TYPE_CHECKING:` (the SDK
    annotates with forward references to classes it imports only for type checkers)."""
    names = dict(vars(module))
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module and statement.module.startswith("stripe"):
                    if ".params" in statement.module:
                        continue
                    imported = importlib.import_module(statement.module)
                    for alias in statement.names:
                        if hasattr(imported, alias.name):
                            names[alias.asname or alias.name] = getattr(imported, alias.name)
    return names


@cache
def _names_of(module_name: str) -> dict[str, Any]:
    return _module_names(importlib.import_module(module_name))


@cache
def stripe_fields(cls: type[StripeObject]) -> dict[str, Any]:
    """Wire name → resolved type of every field the SDK declares on `cls`."""
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("stripe.") or klass.__module__ == "stripe._stripe_object":
            continue
        own = {
            name: annotation
            for name, annotation in inspect.get_annotations(klass).items()
            if not name.startswith("_") and name != "OBJECT_NAME"
        }
        if not own:
            continue
        holder = type("Fields", (), {"__annotations__": own, "__module__": klass.__module__})
        localns = {name: value for name, value in vars(klass).items() if isinstance(value, type)}
        hints = typing.get_type_hints(holder, globalns=_names_of(klass.__module__), localns=localns)
        remapped = getattr(klass, "_field_remappings", {})
        fields |= {remapped.get(name, name): hint for name, hint in hints.items()}
    return fields


@cache
def stripe_class(object_name: str) -> type[StripeObject] | None:
    """The SDK class for an `object` value (`refund` → `stripe.Refund`), None when the SDK knows no such object."""
    found = OBJECT_CLASSES.get(object_name)
    if found is None:
        return None
    cls: type[StripeObject] = getattr(importlib.import_module(found[0]), found[1])
    return cls


def _is_stripe_class(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, StripeObject)


def check_stripe(value: Any, hint: Any, where: str, problems: Problems) -> None:
    """Append to `problems` every way `value` (decoded JSON) breaks the SDK type `hint`."""
    origin = get_origin(hint)
    if hint is Any:
        return
    if origin is Union or origin is types.UnionType:
        _check_union(value, get_args(hint), where, problems)
    elif value is None:
        problems.append(f"{where}: null, but the field is not nullable ({_name(hint)})")
    elif origin is Literal:
        if value not in get_args(hint):
            problems.append(f"{where}: {value!r} is not one of {list(get_args(hint))}")
    elif (container := _container_check(hint, origin)) is not None:
        container(value, get_args(hint)[-1] if get_args(hint) else Any, where, problems)
    elif _is_stripe_class(hint):
        _check_object(value, hint, where, problems)
    elif hint in _SCALARS:
        accepts, label = _SCALARS[hint]
        if not accepts(value):
            problems.append(f"{where}: {_kind(value)}, not {label}")
    else:
        problems.append(f"{where}: the checks know no SDK type {hint!r}")


_MAPS: tuple[Any, ...] = (dict, typing.Dict, UntypedStripeObject)  # noqa: UP006
_SCALARS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda value: isinstance(value, bool), "a boolean"),
    int: (lambda value: isinstance(value, int) and not isinstance(value, bool), "an integer"),
    float: (lambda value: isinstance(value, int | float) and not isinstance(value, bool), "a number"),
    str: (lambda value: isinstance(value, str), "a string"),
    decimal.Decimal: (lambda value: isinstance(value, str) and _is_decimal(value), "a decimal string"),
}


def _is_decimal(text: str) -> bool:
    """The spec's `format: decimal` fields (the SDK types them Decimal) travel as strings, e.g. "0.5"."""
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


def _container_check(hint: Any, origin: Any) -> Callable[[Any, Any, str, Problems], None] | None:
    """The check of a list, a map or a Stripe list object: each takes the type of its items."""
    if origin in {list, typing.List}:  # noqa: UP006
        return _check_array
    if origin in _MAPS or hint in _MAPS:
        return _check_map
    if origin is ListObject or hint is ListObject:
        return _check_list
    return None


def _check_union(value: Any, options: tuple[Any, ...], where: str, problems: Problems) -> None:
    """`Optional[X]` (nullable, or a field that may be absent), `ExpandableField[X]` (an id or the expanded object),
    polymorphic fields: the value must fit one option."""
    if value is None:
        if type(None) not in options:
            problems.append(f"{where}: null, but the field is not nullable")
        return
    if str in options and any(get_origin(option) is Literal for option in options):
        options = tuple(option for option in options if option is not str)  # an open enum: see the docstring
    attempts = []
    for option in (option for option in options if option is not type(None)):
        found: Problems = []
        check_stripe(value, option, where, found)
        if not found:
            return
        attempts.append((not _same_kind(value, option), len(found), found))
    problems.extend(min(attempts, key=lambda attempt: attempt[:2])[2])


def _check_array(value: Any, item_hint: Any, where: str, problems: Problems) -> None:
    if not isinstance(value, list):
        problems.append(f"{where}: {_kind(value)}, not a list")
        return
    for index, item in enumerate(value):
        check_stripe(item, item_hint, f"{where}[{index}]", problems)


def _check_map(value: Any, item_hint: Any, where: str, problems: Problems) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where}: {_kind(value)}, not an object")
        return
    for key, item in value.items():
        check_stripe(item, item_hint, f"{where}.{key}", problems)


def _same_kind(value: Any, hint: Any) -> bool:
    """Whether a JSON value is of the kind a union's option describes (for the problem to report: an expanded
    object that is wrong is reported as that object's problem, not as "not an id")."""
    if isinstance(value, dict):
        return get_origin(hint) in {dict, ListObject, UntypedStripeObject} or _is_stripe_class(hint)
    return not (get_origin(hint) in {dict, ListObject, UntypedStripeObject} or _is_stripe_class(hint))


def _check_list(value: Any, item_hint: Any, where: str, problems: Problems) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where}: {_kind(value)}, not a list object")
        return
    for key in value.keys() - {"object", "data", "has_more", "url"}:
        problems.append(f"{where}.{key}: not a field of a Stripe list")
    check_stripe(value.get("object"), Literal["list"], f"{where}.object", problems)
    check_stripe(value.get("has_more"), bool, f"{where}.has_more", problems)
    check_stripe(value.get("url"), str, f"{where}.url", problems)
    check_stripe(value.get("data"), list[item_hint], f"{where}.data", problems)  # type: ignore[valid-type]


def _check_object(value: Any, cls: type[StripeObject], where: str, problems: Problems) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where}: {_kind(value)}, not a {cls.__qualname__} object")
        return
    fields = stripe_fields(cls)
    deleted = value.get("deleted") is True  # what DELETE answers: {"id", "object", "deleted": true} (deleted_<x>)
    for key, item in value.items():
        if deleted and key == "deleted":
            continue
        if key not in fields:
            problems.append(f"{where}.{key}: not a field of {cls.__qualname__} in the SDK ({stripe.VERSION})")
        elif cls is stripe.Event.Data and key == "object":
            check_stripe_object(item, f"{where}.object", problems)
        elif cls is stripe.Event.Data and key == "previous_attributes":
            _check_previous(item, value.get("object"), f"{where}.previous_attributes", problems)
        else:
            check_stripe(item, fields[key], f"{where}.{key}", problems)
    problems.extend(
        f"{where}.{key}: missing (the SDK types it as always present in a {cls.__qualname__})"
        for key in sorted(always_present(cls) - value.keys())
        if not deleted
    )


@cache
def always_present(cls: type[StripeObject]) -> frozenset[str]:
    """The fields the SDK types without `Optional`: required and not nullable in the spec, so in every answer."""
    return frozenset(
        name
        for name, hint in stripe_fields(cls).items()
        if not (get_origin(hint) in {Union, types.UnionType} and type(None) in get_args(hint))
    )


def _check_previous(previous: Any, current: Any, where: str, problems: Problems) -> None:
    """`previous_attributes` holds old values of fields of the event's object: the same names and types."""
    cls = stripe_class(current.get("object", "")) if isinstance(current, dict) else None
    if not isinstance(previous, dict) or cls is None:
        check_stripe(previous, Union[dict[str, Any], None], where, problems)  # noqa: UP007
        return
    fields = stripe_fields(cls)
    for key, item in previous.items():
        if key not in fields:
            problems.append(f"{where}.{key}: not a field of {cls.__qualname__}")
        else:
            check_stripe(item, fields[key], f"{where}.{key}", problems)


def check_stripe_object(value: Any, where: str, problems: Problems) -> None:
    """Check a top-level object by the class its `object` field names."""
    name = value.get("object") if isinstance(value, dict) else None
    cls = stripe_class(name) if isinstance(name, str) else None
    if cls is None:
        problems.append(f"{where}: object {name!r} is no object type of the SDK ({stripe.VERSION})")
        return
    if cls is ListObject:
        _check_list(value, Any, where, problems)
        for index, item in enumerate(value.get("data") or []):
            check_stripe_object(item, f"{where}.data[{index}]", problems)
        return
    _check_object(value, cls, where, problems)


def check_stripe_event(event: Any, where: str = "event") -> Problems:
    """An event as the SDK types it, whose `type` names the object it carries: `refund.updated` and
    `charge.refund.updated` carry a refund, `charge.dispute.created` a dispute, `checkout.session.completed` a
    checkout.session."""
    problems: Problems = []
    check_stripe(event, stripe.Event, where, problems)
    event_type = event.get("type") if isinstance(event, dict) else None
    carried = event.get("data", {}).get("object") if isinstance(event, dict) else None
    if isinstance(event_type, str) and isinstance(carried, dict):
        stem = event_type.rpartition(".")[0]
        if carried.get("object") not in {stem, stem.rpartition(".")[2]}:
            problems.append(f"{where}: a {event_type} event carries a {carried.get('object')!r} object")
    return problems


# -------------------------------------------------------------------------------- Stripe endpoints (services)


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: re.Pattern[str]
    returns: Any  # a StripeObject class, or ListObject[...] of one
    source: str  # e.g. RefundService.list


def _stripe_modules() -> Iterable[types.ModuleType]:
    package = importlib.import_module("stripe")
    for info in pkgutil.walk_packages(package.__path__, "stripe."):
        leaf = info.name.rpartition(".")[2]
        if leaf.endswith("_service") and ".v2." not in info.name and ".params" not in info.name:
            yield importlib.import_module(info.name)


def _template(node: ast.expr) -> str | None:
    """The path template of `self._request("get", "/v1/x/{id}".format(...))`'s second argument."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _template(node.func.value)
    return None


@cache
def stripe_endpoints() -> tuple[Endpoint, ...]:
    """Every v1 endpoint the SDK's services call, with the type it returns."""
    found: list[Endpoint] = []
    for module in _stripe_modules():
        names = _names_of(module.__name__)
        tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
        for klass in (node for node in tree.body if isinstance(node, ast.ClassDef)):
            for function in (node for node in klass.body if isinstance(node, ast.FunctionDef)):
                returns = function.returns
                if not (isinstance(returns, ast.Constant) and isinstance(returns.value, str)):
                    continue
                for call in ast.walk(function):
                    if not (
                        isinstance(call, ast.Call)
                        and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "_request"
                        and len(call.args) >= 2
                        and isinstance(call.args[0], ast.Constant)
                    ):
                        continue
                    template = _template(call.args[1])
                    if template is None or not template.startswith("/v1/"):
                        continue
                    try:
                        hint = eval(returns.value, names)  # noqa: S307 (the SDK's own annotation text)
                    except NameError:
                        continue
                    pattern = re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)))
                    source = f"{klass.name}.{function.name}"
                    found.append(Endpoint(str(call.args[0].value).upper(), pattern, hint, source))
    # literal paths first: GET /v1/refunds/{refund} must not take GET /v1/refunds/search
    found.sort(key=lambda endpoint: endpoint.pattern.pattern.count("[^/]+"))
    return tuple(found)


def stripe_endpoint(method: str, path: str) -> Endpoint | None:
    for endpoint in stripe_endpoints():
        if endpoint.method == method and endpoint.pattern.fullmatch(path):
            return endpoint
    return None


def check_stripe_answer(method: str, target: str, status: int, body: bytes) -> Problems:
    """One answer of the Stripe fake to an API request (`/v1/…`)."""
    path = target.partition("?")[0]
    where = f"{method} {path} → {status}"
    try:
        value = json.loads(body)
    except ValueError:
        return [f"{where}: the body is not JSON"]
    problems: Problems = []
    if status >= 400:
        if not isinstance(value, dict) or set(value) != {"error"}:
            return [f"{where}: an error answer must be {{'error': …}}, not {_kind(value)}"]
        check_stripe(value["error"], ErrorObject, f"{where} error", problems)
        return problems
    endpoint = stripe_endpoint(method, path)
    if endpoint is None:
        return [f"{where}: the SDK ({stripe.VERSION}) has no endpoint {method} {path}: an answer no client can read"]
    check_stripe(value, endpoint.returns, f"{where} ({endpoint.source})", problems)
    return problems


# ----------------------------------------------------------------------------------------------------- YooKassa


def _yookassa_models() -> dict[str, Callable[[Obj], Any]]:
    from yookassa.domain.response import (  # noqa: PLC0415
        PaymentListResponse,
        PaymentResponse,
        PayoutResponse,
        RefundListResponse,
        RefundResponse,
    )

    return {
        "payment": PaymentResponse,
        "payment_list": PaymentListResponse,
        "refund": RefundResponse,
        "refund_list": RefundListResponse,
        "payout": PayoutResponse,
    }


# The endpoints the SDK calls (yookassa.payment.Payment, refund.Refund, payout.Payout) and the model each answer is
# read into. An answer on a path missing here fails: add the endpoint with the model its SDK method returns.
YOOKASSA_ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    ("POST", r"/v3/payments", "payment"),
    ("GET", r"/v3/payments", "payment_list"),
    ("GET", r"/v3/payments/[^/]+", "payment"),
    ("POST", r"/v3/payments/[^/]+/capture", "payment"),
    ("POST", r"/v3/payments/[^/]+/cancel", "payment"),
    ("POST", r"/v3/refunds", "refund"),
    ("GET", r"/v3/refunds", "refund_list"),
    ("GET", r"/v3/refunds/[^/]+", "refund"),
    ("POST", r"/v3/payouts", "payout"),
    ("GET", r"/v3/payouts/[^/]+", "payout"),
)


def _sdk_values(*holders: type) -> frozenset[str]:
    return frozenset(
        value for holder in holders for name, value in vars(holder).items() if name.isupper() and isinstance(value, str)
    )


@cache
def yookassa_enums() -> dict[tuple[str, str], frozenset[str]]:
    """(object kind, field) → the values the SDK (or, where it has no constants, the API reference) lists."""
    from yookassa.domain.models.cancellation_details import (  # noqa: PLC0415
        CancellationDetailsPartyCode,
        CancellationDetailsReasonCode,
        PayoutCancellationDetailsReasonCode,
        RefundCancellationDetailsReasonCode,
    )
    from yookassa.domain.models.payout import PayoutStatus  # noqa: PLC0415

    parties = _sdk_values(CancellationDetailsPartyCode)
    return {
        # the SDK has no constants for these: https://yookassa.ru/developers/api#payment_object_status, #refund_object
        ("payment", "status"): frozenset({"pending", "waiting_for_capture", "succeeded", "canceled"}),
        ("refund", "status"): frozenset({"pending", "succeeded", "canceled"}),
        ("payout", "status"): _sdk_values(PayoutStatus) - {"unknown"},
        ("payment", "cancellation_details.party"): frozenset({"merchant", "yoo_money", "payment_network"}) & parties,
        ("payment", "cancellation_details.reason"): _sdk_values(CancellationDetailsReasonCode) - {"unknown"},
        ("refund", "cancellation_details.party"): frozenset({"merchant", "yoo_money", "refund_network"}) & parties,
        ("refund", "cancellation_details.reason"): _sdk_values(RefundCancellationDetailsReasonCode) - {"unknown"},
        ("payout", "cancellation_details.party"): frozenset({"yoo_money", "payout_network"}) & parties,
        ("payout", "cancellation_details.reason"): _sdk_values(PayoutCancellationDetailsReasonCode) - {"unknown"},
    }


_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")
_MONEY_VALUE = re.compile(r"\d+\.\d{2}")  # YooKassa's amounts: decimal strings with two decimals ("100.00")


def _money(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("value"), str)
        and _MONEY_VALUE.fullmatch(value["value"]) is not None
        and isinstance(value.get("currency"), str)
        and re.fullmatch(r"[A-Z]{3}", value["currency"]) is not None
    )


# What the API reference (https://yookassa.ru/developers/api) says of fields any of its objects may carry, where the
# SDK's models take anything: its setters store booleans, timestamps and metadata unchecked.
_YOOKASSA_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "id": (lambda value: isinstance(value, str), "a string"),
    "payment_id": (lambda value: isinstance(value, str), "a string"),
    "description": (lambda value: isinstance(value, str), "a string"),
    "paid": (lambda value: isinstance(value, bool), "a boolean"),
    "test": (lambda value: isinstance(value, bool), "a boolean"),
    "refundable": (lambda value: isinstance(value, bool), "a boolean"),
    "created_at": (lambda value: isinstance(value, str) and bool(_TIMESTAMP.fullmatch(value)), "an ISO 8601 UTC time"),
    "captured_at": (lambda value: isinstance(value, str) and bool(_TIMESTAMP.fullmatch(value)), "an ISO 8601 UTC time"),
    "expires_at": (lambda value: isinstance(value, str) and bool(_TIMESTAMP.fullmatch(value)), "an ISO 8601 UTC time"),
    "succeeded_at": (
        lambda value: isinstance(value, str) and bool(_TIMESTAMP.fullmatch(value)),
        "an ISO 8601 UTC time",
    ),
    "amount": (_money, 'money: {"value": "0.00", "currency": "RUB"}'),
    "income_amount": (_money, 'money: {"value": "0.00", "currency": "RUB"}'),
    "refunded_amount": (_money, 'money: {"value": "0.00", "currency": "RUB"}'),
    "metadata": (
        lambda value: isinstance(value, dict) and all(isinstance(item, str) for item in value.values()),
        "an object of strings",
    ),
}


def _check_yookassa_fields(value: Any, where: str, problems: Problems) -> None:
    """The field table above, applied wherever the field occurs in the body."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_yookassa_fields(item, f"{where}[{index}]", problems)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        rule = _YOOKASSA_FIELDS.get(key)
        if rule is not None and not rule[0](item):
            problems.append(f"{where}.{key}: {item!r} is not {rule[1]}")
        elif isinstance(item, dict | list):
            _check_yookassa_fields(item, f"{where}.{key}", problems)


def _properties(model: Any) -> set[str]:
    return {name for name in dir(type(model)) if isinstance(getattr(type(model), name), property)}


def _check_keys(sent: Any, model: Any, where: str, problems: Problems) -> None:
    """Every key of `sent` must be a property of the SDK model it was read into, all the way down."""
    from yookassa.domain.common import BaseObject  # noqa: PLC0415

    if isinstance(sent, list) and isinstance(model, list):
        for index, (item, read) in enumerate(zip(sent, model, strict=False)):
            _check_keys(item, read, f"{where}[{index}]", problems)
        return
    if not (isinstance(sent, dict) and isinstance(model, BaseObject)):
        return
    known = _properties(model)
    for key, item in sent.items():
        if key not in known:
            problems.append(f"{where}.{key}: not a field of the SDK's {type(model).__name__}")
        else:
            _check_keys(item, getattr(model, key), f"{where}.{key}", problems)


def _check_enums(obj: Any, kind: str, where: str, problems: Problems) -> None:
    if not isinstance(obj, dict):
        return
    for (of, field), allowed in yookassa_enums().items():
        if of != kind:
            continue
        value: Any = obj
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and value not in allowed:
            problems.append(f"{where}.{field}: {value!r} is not one of {sorted(allowed)}")


def _read(model: Callable[[Obj], Any], value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, dict):
        problems.append(f"{where}: {_kind(value)}, not an object")
        return None
    try:
        return model(value)
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as error:
        problems.append(f"{where}: the SDK's {getattr(model, '__name__', model)} refuses it: {error!r}")
        return None


def check_yookassa_object(value: Any, kind: str, where: str) -> Problems:
    """A payment, refund or payout (`kind`), or a list of them (`payment_list`, …), as the SDK reads it."""
    problems: Problems = []
    read = _read(_yookassa_models()[kind], value, where, problems)
    if read is None:
        return problems
    _check_keys(value, read, where, problems)
    _check_yookassa_fields(value, where, problems)
    item_kind = kind.removesuffix("_list")
    if kind.endswith("_list"):
        for index, item in enumerate(value.get("items") or []):
            _check_enums(item, item_kind, f"{where}.items[{index}]", problems)
    else:
        _check_enums(value, kind, where, problems)
    return problems


def check_yookassa_answer(method: str, target: str, status: int, body: bytes) -> Problems:
    path = target.partition("?")[0]
    where = f"{method} {path} → {status}"
    try:
        value = json.loads(body)
    except ValueError:
        return [f"{where}: the body is not JSON"]
    if status >= 400 or status == 202:  # (202: "accepted, still processing": no object yet)
        return _check_yookassa_error(value, where, "processing" if status == 202 else "error")
    for endpoint_method, pattern, kind in YOOKASSA_ENDPOINTS:
        if endpoint_method == method and re.fullmatch(pattern, path):
            return check_yookassa_object(value, kind, where)
    return [f"{where}: no YooKassa endpoint {method} {path} is known to the shape checks (YOOKASSA_ENDPOINTS)"]


_ERROR_FIELDS = {"type", "id", "code", "description", "parameter", "retry_after"}


def _check_yookassa_error(value: Any, where: str, kind: str) -> Problems:
    """YooKassa's error body (https://yookassa.ru/developers/using-api/response-handling/response-format):
    `{"type": "error", "id", "code", "description", "parameter"?, "retry_after"?}`, the fields the SDK's
    ApiError reads; a 202 is `{"type": "processing", "id", "description", "retry_after"}` (no code)."""
    from yookassa.domain.errors.error_code import ErrorCode  # noqa: PLC0415

    if not isinstance(value, dict):
        return [f"{where}: {_kind(value)}, not an error object"]
    problems = [f"{where}.{key}: not a field of YooKassa's {kind} body" for key in value.keys() - _ERROR_FIELDS]
    if value.get("type") != kind:
        problems.append(f"{where}.type: {value.get('type')!r}, not {kind!r}")
    if kind == "processing":
        if not isinstance(value.get("retry_after"), int):
            problems.append(f"{where}.retry_after: {_kind(value.get('retry_after'))}, not milliseconds")
        return problems
    problems.extend(
        f"{where}.{key}: {_kind(value.get(key))}, not a string"
        for key in ("id", "code", "description")
        if not isinstance(value.get(key), str)
    )
    codes = _sdk_values(ErrorCode)
    if isinstance(value.get("code"), str) and value["code"] not in codes:
        problems.append(f"{where}.code: {value['code']!r} is not one of {sorted(codes)}")
    return problems


def check_yookassa_notification(body: bytes, where: str = "notification") -> Problems:
    """A notification body as the SDK's WebhookNotificationFactory reads it."""
    from yookassa.domain.notification import WebhookNotificationEventType, WebhookNotificationFactory  # noqa: PLC0415

    value = json.loads(body)
    problems: Problems = []
    event = value.get("event") if isinstance(value, dict) else None
    if event not in _sdk_values(WebhookNotificationEventType):
        return [f"{where}.event: {event!r} is no notification event of the SDK"]
    read = _read(WebhookNotificationFactory().create, value, where, problems)
    if read is None:
        return problems
    _check_keys(value, read, where, problems)
    _check_yookassa_fields(value, where, problems)
    kind = str(event).partition(".")[0]
    _check_enums(value.get("object"), kind, f"{where}.object", problems)
    if isinstance(value.get("object"), dict) and value["object"].get("status") != str(event).partition(".")[2]:
        problems.append(f"{where}: a {event} notification about an object in status {value['object'].get('status')}")
    return problems


# -------------------------------------------------------------------------------------------------------- shared


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _name(hint: Any) -> str:
    return getattr(hint, "__qualname__", repr(hint))


# ------------------------------------------------------------------------------------------------ a whole fake


@dataclass
class Cursor:
    """How much of a fake's output was checked already."""

    sent: int = 0
    events: int = 0


def check_fake_output(fake: Any, sent: list[Any], cursor: Cursor) -> Problems:
    """Check what a fake sent since `cursor` (and move it): every answer to an API request, and every event or
    notification the fake produced (what it delivers to webhooks). `fake` is a FakeStripe or a FakeYooKassa."""
    from fakes.stripe_api import FakeStripe  # noqa: PLC0415
    from fakes.yookassa_api import FakeYooKassa  # noqa: PLC0415

    problems: Problems = []
    answers, cursor.sent = sent[cursor.sent :], len(sent)
    with fake._lock:
        events, cursor.events = list(fake.events[cursor.events :]), len(fake.events)
    if isinstance(fake, FakeStripe):
        for answer in answers:
            if answer.target.startswith("/v1/"):
                problems += check_stripe_answer(answer.method, answer.target, answer.status, answer.body)
        for event in events:
            problems += check_stripe_event(event, f"event {event.get('type')}")
    elif isinstance(fake, FakeYooKassa):
        for answer in answers:
            if answer.target.startswith("/v3/"):
                problems += check_yookassa_answer(answer.method, answer.target, answer.status, answer.body)
        for event, obj in events:
            problems += check_yookassa_notification(fake.notification(event, obj), f"notification {event}")
    else:
        problems.append(f"no shape checks for {type(fake).__name__}")
    return problems


_cursors: weakref.WeakKeyDictionary[Any, Cursor] = weakref.WeakKeyDictionary()


@pytest.fixture(autouse=True)
def shapes_match_the_sdks() -> Iterator[None]:
    """After each test: every answer and event of every fake still alive must match the provider's SDK types.
    Imported by tests/conftest.py, so it runs after every test (a test without fakes costs nothing)."""
    from fakes._http import FakeServer  # noqa: PLC0415

    yield
    problems: Problems = []
    for server in list(FakeServer.live):
        problems += check_fake_output(server.fake, server.sent, _cursors.setdefault(server, Cursor()))
    assert problems == [], "a fake sent what the provider's SDK types do not allow:\n" + "\n".join(problems)
