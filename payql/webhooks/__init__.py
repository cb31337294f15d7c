"""The edge for providers: `routes.py` holds `POST /webhooks/stripe` and `POST /webhooks/yookassa`."""
