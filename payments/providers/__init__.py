"""The provider registry: a Protocol and a dict (DESIGN §6), not a plugin manager.

Adding a provider (Stripe, epay, wallet, configurable gateway) means writing one class with these
methods and adding it to ``PROVIDERS``; orders never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.http import HttpResponse


@dataclass(frozen=True)
class CallbackData:
    """What a verified notification says. Providers fill it only after checking the signature."""

    token: str  # our PaymentAttempt.token
    external_id: str  # the gateway's trade number
    amount: Decimal
    currency: str
    merchant: str
    succeeded: bool
    reference: str = ""  # a second gateway id to keep, where reconciliation needs it (Stripe: PaymentIntent)


@dataclass(frozen=True)
class RefundNotice:
    """What a verified notification says about one refund at the gateway: one we made, or one staff
    made in the gateway's dashboard. ``parse_callback`` returns a tuple of these for refund events."""

    payment_reference: str  # the refunded payment, as kept in PaymentAttempt.gateway_reference
    gateway_refund_id: str
    amount: Decimal
    currency: str
    status: str  # the gateway's own word: succeeded, pending, failed, canceled, ...
    refund_token: str = ""  # our Refund.token, when the refund was ours
    failure_reason: str = ""


class PaymentProvider(Protocol):
    code: str
    label: str

    def start_url(self, *, attempt, request) -> str:
        """Where to send the customer to pay ``attempt``."""

    def parse_callback(self, data: dict) -> CallbackData:
        """Verify a notification's signature and parse it; raise ``CallbackRejected`` otherwise."""

    def callback_response(self, *, accepted: bool) -> HttpResponse:
        """The body the gateway expects back (e.g. ``success``)."""

    def expected_merchant(self) -> str:
        """Our merchant id at this gateway, for the current shop."""


def get_provider(code: str) -> PaymentProvider:
    """A built-in provider, or the current shop's configured gateway ``gw-<slug>`` (read from its channel)."""
    from payments.errors import ProviderUnavailable

    if code in PROVIDERS:
        return PROVIDERS[code]
    from payments.providers.gateway import configured_gateway_get

    gateway = configured_gateway_get(code)
    if gateway is None:
        raise ProviderUnavailable()
    return gateway


def provider_code_known(code: str) -> bool:
    """Whether ``code`` names a built-in provider or a configurable gateway (``gw-<slug>``)."""
    from payments.providers.gateway_recipe import is_gateway_code

    return code in PROVIDERS or is_gateway_code(code)


from payments.providers.epay import EpayProvider  # noqa: E402
from payments.providers.sandbox import SandboxProvider  # noqa: E402
from payments.providers.stripe_provider import StripeProvider  # noqa: E402

PROVIDERS: dict[str, PaymentProvider] = {"sandbox": SandboxProvider(), "epay": EpayProvider()}
PROVIDERS["stripe"] = StripeProvider()
