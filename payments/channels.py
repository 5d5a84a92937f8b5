"""Reading and writing payment channels (the only place that decrypts a channel's secret)."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from django.core.exceptions import ValidationError

from core.crypto import decrypt, encrypt
from core.errors import DomainError
from payments.models import PaymentChannel

FEE_AND_LIMIT_FIELDS = ("fee_percent", "fee_fixed", "fee_payer", "min_amount", "max_amount", "currencies")


def _aad(channel: PaymentChannel) -> str:
    # Bound to the provider code, not the pk: it is known before the first save and unique per schema.
    return f"payment-channel|{channel.provider}"


def channel_secret(channel: PaymentChannel) -> str:
    """The channel's decrypted secret; empty when none is stored."""
    if not channel.secret_encrypted:
        return ""
    return decrypt(channel.secret_encrypted, aad=_aad(channel))


def channel_secret_fields(channel: PaymentChannel) -> dict[str, str]:
    """The channel's secret read as a JSON object of strings (e.g. Stripe's two keys); {} when not one."""
    import json

    try:
        fields = json.loads(channel_secret(channel) or "{}")
    except ValueError:
        return {}
    if not isinstance(fields, dict):
        return {}
    return {str(name): str(value) for name, value in fields.items() if isinstance(value, str)}


def channel_set_secret(channel: PaymentChannel, *, secret: str) -> None:
    channel.secret_encrypted = encrypt(secret, aad=_aad(channel)) if secret else ""


def payment_channel_get(provider_code: str, *, enabled_only: bool = False) -> PaymentChannel | None:
    """The current shop's channel for ``provider_code`` (None when not configured)."""
    channels = PaymentChannel.objects.filter(provider=provider_code)
    if enabled_only:
        channels = channels.filter(is_enabled=True)
    return channels.first()


def payment_channel_save(
    *,
    channel: PaymentChannel,
    provider: str,
    name: str,
    is_enabled: bool = True,
    sort_order: int = 0,
    config: dict | None = None,
    secret: str = "",
    fees_and_limits: dict | None = None,
) -> PaymentChannel:
    """Create or update a channel. An empty ``secret`` keeps the stored one (unless the provider changed).

    ``fees_and_limits``: any of ``FEE_AND_LIMIT_FIELDS`` (validated by the model's ``clean``)."""
    stored = ""
    if channel.pk is not None:
        try:
            stored = channel_secret(PaymentChannel.objects.get(pk=channel.pk))
        except (ValueError, InvalidTag):  # encrypted with a key that was rotated away: must be pasted again
            stored = ""
    channel.provider = provider
    channel.name = name
    channel.is_enabled = is_enabled
    channel.sort_order = sort_order
    channel.config = config or {}
    for field, value in (fees_and_limits or {}).items():
        if field in FEE_AND_LIMIT_FIELDS:
            setattr(channel, field, value)
    try:
        channel.clean()
    except ValidationError as exc:
        raise DomainError("; ".join(exc.messages), code="channel_invalid") from None
    channel_set_secret(channel, secret=secret.strip() or stored)
    channel.save()
    return channel
