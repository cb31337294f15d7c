"""Extract Stripe's own example objects for the object types the fake serves from `openapi/fixtures3.json` of
github.com/stripe/openapi into stripe_fixtures.json beside this file (the whole file is ~190 kB of 170 objects):

    python tests/fakes/spec/extract_fixtures.py path/to/openapi/fixtures3.json <openapi commit>

tests/fakes/test_fake_shapes.py holds them against the shape checks: what Stripe itself sends must pass them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

OBJECTS = (
    "balance_transaction",
    "charge",
    "checkout.session",
    "customer",
    "dispute",
    "payment_intent",
    "payment_method",
    "payout",
    "refund",
    "transfer",
    "transfer_reversal",
)


def main(argv: list[str]) -> int:
    source, commit = Path(argv[1]), argv[2]
    resources = json.loads(source.read_text(encoding="utf-8"))["resources"]
    extract = {
        "source": f"https://github.com/stripe/openapi/blob/{commit}/openapi/fixtures3.json",
        "resources": {name: resources[name] for name in OBJECTS},
    }
    target = Path(__file__).with_name("stripe_fixtures.json")
    target.write_text(json.dumps(extract, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
