"""Platform keys read once per request travel with the host lookup, and are forgotten with the request."""

import pytest

from core.redis import get_redis, platform_key, request_get, request_key_register, request_scope, request_value

pytestmark = pytest.mark.django_db

EXTRA = "test-request-extra"


def _extra_key() -> str:
    return platform_key(EXTRA)


def test_registered_keys_come_with_the_first_read_and_are_gone_after_the_request(monkeypatch):
    from core import redis as core_redis

    monkeypatch.setattr(core_redis, "_request_keys", list(core_redis._request_keys))  # registered for this test
    request_key_register(_extra_key)
    request_key_register(_extra_key)  # registering twice reads it once
    get_redis().set(_extra_key(), "42")
    get_redis().set(platform_key("host-like"), "branch")
    assert request_value(_extra_key()) == (False, None)  # outside a request: nothing remembered
    with request_scope():
        assert request_get(platform_key("host-like")) == b"branch"
        get_redis().set(_extra_key(), "43")  # changed after the request read it
        assert request_value(_extra_key()) == (True, b"42")
        assert request_value(platform_key("never-read")) == (False, None)
    assert request_value(_extra_key()) == (False, None)
    assert request_get(_extra_key()) == b"43"  # outside a request: a plain GET


def test_a_request_through_the_middleware_leaves_nothing_behind(alpha_client):
    from branch_api.provider.callers import _version_key

    assert alpha_client.get("/").status_code == 200
    assert request_value(_version_key()) == (False, None)
