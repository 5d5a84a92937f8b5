"""Encryption of secrets at rest: AES-256-GCM with versioned keys from the environment.

Tokens look like ``v<key id>:<base64url(nonce || ciphertext)>``; the key id lets old rows be
decrypted after a rotation while new rows use the first configured key.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class KeyRing:
    current_id: str
    keys: dict[str, bytes]


def parse_keys(entries: list[str]) -> KeyRing:
    """Parse ``id:base64key`` entries; the first one is the key new data is encrypted with."""
    keys: dict[str, bytes] = {}
    for entry in entries:
        key_id, sep, encoded = entry.partition(":")
        if not sep or not key_id.isalnum():
            raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS entries must look like '<id>:<base64 key>'.")
        try:
            raw = base64.urlsafe_b64decode(encoded.encode())
        except ValueError as exc:
            raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS key {key_id!r} is not valid base64.") from exc
        if len(raw) != 32:
            raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS key {key_id!r} must decode to 32 bytes.")
        if key_id in keys:
            raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS has key id {key_id!r} twice.")
        keys[key_id] = raw
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must hold at least one key.")
    return KeyRing(current_id=next(iter(keys)), keys=keys)


def validate_key_material(entries: list[str], pepper: str) -> None:
    """Refuse development or weak key material (used by production settings)."""
    from config.settings.base import DEV_FIELD_ENCRYPTION_KEY

    ring = parse_keys(entries)
    if DEV_FIELD_ENCRYPTION_KEY in entries:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS still holds the development key.")
    if any(len(set(key)) < 16 for key in ring.keys.values()):
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds a key with too little entropy.")
    if len(pepper) < 32 or "dev-only" in pepper:
        raise ImproperlyConfigured("CODE_HMAC_PEPPER must be a random value of at least 32 characters.")


@lru_cache(maxsize=4)
def _ring(entries: tuple[str, ...]) -> KeyRing:
    return parse_keys(list(entries))


def keyring() -> KeyRing:
    return _ring(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str, *, aad: str = "") -> str:
    """Encrypt ``plaintext`` with the current key; ``aad`` binds the token to its context."""
    ring = keyring()
    nonce = os.urandom(12)
    sealed = AESGCM(ring.keys[ring.current_id]).encrypt(nonce, plaintext.encode(), aad.encode())
    return f"v{ring.current_id}:" + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt(token: str, *, aad: str = "") -> str:
    """Decrypt a token made by :func:`encrypt` with any configured key version."""
    version, sep, body = token.partition(":")
    if not sep or not version.startswith("v"):
        raise ValueError("not an encrypted token")
    key = keyring().keys.get(version[1:])
    if key is None:
        raise ValueError(f"encryption key {version[1:]!r} is not configured")
    raw = base64.urlsafe_b64decode(body.encode())
    return AESGCM(key).decrypt(raw[:12], raw[12:], aad.encode()).decode()
