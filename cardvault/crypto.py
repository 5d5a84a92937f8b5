"""Code secrecy: AES-256-GCM at rest (bound to card id and variant), HMAC digests for dedupe."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

from core.crypto import decrypt, encrypt, keyring


def code_normalize(code: str) -> str:
    """Codes compare without surrounding whitespace; internal characters and case are significant."""
    return code.strip()


def code_digest(code: str) -> str:
    """HMAC-SHA256 under a pepper kept apart from the encryption keys: deduplicates without revealing."""
    return hmac.new(settings.CODE_HMAC_PEPPER.encode(), code_normalize(code).encode(), hashlib.sha256).hexdigest()


def card_aad(card_id: int, variant_id: int) -> str:
    return f"{card_id}|{variant_id}"


def card_encrypt(plaintext: str, *, card_id: int, variant_id: int) -> str:
    return encrypt(plaintext, aad=card_aad(card_id, variant_id))


def card_decrypt(token: str, *, card_id: int, variant_id: int) -> str:
    return decrypt(token, aad=card_aad(card_id, variant_id))


def current_key_version() -> str:
    return keyring().current_id
