"""`GET /metrics` after real flows: payments by provider and outcome, Stripe webhook lag and processing time, and
the Grafana dashboard in deploy/grafana/ asks only for metrics payql exposes (issue #15 part 7 C)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import documents as doc
from conftest import stripe_api, stripe_deliver, stripe_fake
from fakes.stripe_api import FakeStripe
from flows import book, intent, paid_enroll, paid_package
from prometheus_client.parser import text_string_to_metric_families
from support import Api

from payql.db import Database

fake, api_stripe = stripe_fake, stripe_api
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "payql.json"


def scrape(api: Api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of `/metrics`: (name, labels) -> value."""
    answer = api.request("GET", "/metrics")
    assert answer.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def payments(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[tuple[str, str], float]:
    found = {}
    for (name, labels), count in samples.items():
        if name == "payql_payments_total":
            shown = dict(labels)
            found[shown["provider"], shown["outcome"]] = count
    return found


def test_mock_payments_are_counted_once_per_outcome_when_they_commit(api: Api) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")

    # given a paid Stripe enroll that its provider refunds, a YooKassa package bought, and an enroll canceled unpaid
    paid = paid_enroll(client, mentor, provider_name="STRIPE")
    mentor.ok(doc.REFUND, input={"paymentId": paid["id"]})
    paid_package(client)
    unpaid = book(client, mentor)
    intent(client, enrollId=unpaid, provider="YOOKASSA", captureMethod="AUTOMATIC")
    client.ok(doc.CANCEL_ENROLL, id=unpaid)
    admin.data("{ payments { totalCount } }")  # a query changes nothing

    # then each status change that committed is counted once, by provider and new status; pending is no outcome
    assert payments(scrape(api)) == {
        ("stripe", "succeeded"): 2,  # the enroll and the package (packages default to Stripe)
        ("stripe", "refunded"): 1,
        ("yookassa", "canceled"): 1,
    }


def test_a_stripe_webhook_counts_the_payment_its_lag_and_its_processing_once(
    api_stripe: Api, fake: FakeStripe, db: Database
) -> None:
    api = api_stripe
    client, mentor = api.user("client"), api.user("mentor", "provider")
    enroll_id = book(client, mentor)
    intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")
    (intent_id,) = fake.payment_intents
    fake.customer_pays(intent_id, "pm_card_visa")
    event = fake.events_of("payment_intent.succeeded")[-1]
    before = scrape(api)
    assert value(before, "payql_payments_total", provider="stripe", outcome="succeeded") == 0

    # when Stripe delivers the success, and then the same event again
    assert stripe_deliver(api, fake, event) == "processed"
    assert stripe_deliver(api, fake, event) == "duplicate"

    # then the payment succeeded once; the lag was observed for the processed delivery only; both were timed
    after = scrape(api)
    assert value(after, "payql_payments_total", provider="stripe", outcome="succeeded") == 1
    assert value(after, "payql_webhook_lag_seconds_count", provider="stripe") == 1
    assert 0 <= value(after, "payql_webhook_lag_seconds_sum", provider="stripe") < 600
    assert value(after, "payql_webhook_processing_seconds_count", provider="stripe", outcome="processed") == 1
    assert value(after, "payql_webhook_processing_seconds_count", provider="stripe", outcome="duplicate") == 1


def test_the_grafana_dashboard_parses_and_asks_only_for_metrics_payql_exposes(
    api_stripe: Api, fake: FakeStripe
) -> None:
    # given every metric observed once: a request, a payment that succeeds through a webhook
    api = api_stripe
    client, mentor = api.user("client"), api.user("mentor", "provider")
    intent(client, enrollId=book(client, mentor), provider="STRIPE", captureMethod="AUTOMATIC")
    (intent_id,) = fake.payment_intents
    fake.customer_pays(intent_id, "pm_card_visa")
    stripe_deliver(api, fake, fake.events_of("payment_intent.succeeded")[-1])
    exposed = {name for name, _ in scrape(api)}

    # then the dashboard is JSON whose every query names only those metrics
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 7
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Payment success rate", "Webhook lag p95", "Request rate", "Request errors"} <= titles
    for expr in expressions:
        named = set(re.findall(r"\bpayql_[a-z_]+", expr))
        assert named, expr
        assert named <= exposed, (expr, named - exposed)
