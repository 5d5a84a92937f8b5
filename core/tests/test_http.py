"""One notion of the client's address: trusted proxies' X-Forwarded-For, nobody else's."""

import pytest
from django.test import override_settings

from conftest import host_client
from core.http import client_ip_from


def test_direct_clients_are_their_remote_address():
    assert client_ip_from({"REMOTE_ADDR": "198.51.100.4"}) == "198.51.100.4"


def test_a_trusted_proxy_passes_the_client_address_on():
    meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client_ip_from(meta) == "203.0.113.9"


def test_an_untrusted_sender_cannot_claim_an_address():
    meta = {"REMOTE_ADDR": "198.51.100.4", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client_ip_from(meta) == "198.51.100.4"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8", "127.0.0.1/32"])
def test_a_chain_of_our_proxies_is_walked_back_to_the_client():
    meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9, 10.1.2.3"}
    assert client_ip_from(meta) == "203.0.113.9"  # the first hop our proxies did not add


@pytest.mark.django_db
@override_settings(SIGNUP_ATTEMPT_RATE="2/h")
def test_rate_limits_count_clients_behind_the_proxy_separately():
    client = host_client("localhost")
    bad = {"name": "X", "slug": "www", "email": "a@b.test", "password": "Sturdy-Passphrase-42"}
    for _ in range(2):
        client.post("/signup/", bad, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert client.post("/signup/", bad, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.1").status_code == 429
    other = client.post("/signup/", bad, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.2")
    assert other.status_code == 400  # another customer behind the same proxy is not blocked
