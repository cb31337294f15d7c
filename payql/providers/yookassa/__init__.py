"""YooKassa behind the `PaymentProvider` protocol (the only package that imports `yookassa`)."""

from payql.providers.yookassa.adapter import YooKassaProvider

__all__ = ["YooKassaProvider"]
