import pytest
from cryptography.exceptions import InvalidTag
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from core.crypto import decrypt, encrypt, parse_keys

OLD = "1:ZGV2ZWxvcG1lbnQtb25seS1rZXktZG8tbm90LXVzZSE="
NEW = "2:Q2FyZG1lc2gtcHJvZHVjdGlvbi1rZXktMjAyNi0xMSE="


def test_round_trip_and_ciphertext_hides_plaintext():
    token = encrypt("GIFT-1234-5678", aad="card:1")
    assert "GIFT" not in token and token.startswith("v1:")
    assert decrypt(token, aad="card:1") == "GIFT-1234-5678"


def test_same_plaintext_encrypts_differently_each_time():
    assert encrypt("x") != encrypt("x")


def test_wrong_context_fails_authentication():
    token = encrypt("secret", aad="card:1")
    with pytest.raises(InvalidTag):
        decrypt(token, aad="card:2")


def test_rotation_new_key_encrypts_old_key_still_decrypts():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        old_token = encrypt("legacy")
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        assert encrypt("fresh").startswith("v2:")
        assert decrypt(old_token) == "legacy"


@pytest.mark.parametrize("entries", [[], ["nokeyid"], ["1:not-base64!!"], ["1:c2hvcnQ="], [OLD, OLD]])
def test_bad_key_configuration_is_refused(entries):
    with pytest.raises(ImproperlyConfigured):
        parse_keys(entries)
