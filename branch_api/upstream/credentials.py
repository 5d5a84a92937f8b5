"""Reading and writing a connection's encrypted credentials (the only place that decrypts them)."""

from __future__ import annotations

from core.crypto import decrypt, encrypt


def connection_credentials(connection) -> tuple[str, str]:
    """(api_key, signing_secret) of an UpstreamConnection."""
    return (
        decrypt(connection.api_key_encrypted, aad="upstream|api_key"),
        decrypt(connection.signing_secret_encrypted, aad="upstream|signing_secret"),
    )


def connection_set_credentials(connection, *, api_key: str, signing_secret: str) -> None:
    connection.api_key_encrypted = encrypt(api_key, aad="upstream|api_key")
    connection.signing_secret_encrypted = encrypt(signing_secret, aad="upstream|signing_secret")
