"""Who is calling the branch API: the credential behind an API key with its branch, terms, price book
and webhook endpoints, kept in this process between calls.

Reading and building them costs a query with three joins, the price list's rules and the endpoints on
every call; they change a few times a day. Each entry remembers the version of a Redis counter it was
read under, and every change to the rows it holds bumps the counter (``callers_changed``, wired in ``apps.py`` to the
models' ``post_save``/``post_delete`` and to ``rows_updated``, which their querysets send for ``update()``),
so a revoked key, a suspended branch or a new price rule applies to the very next call in every process.

The counter is read before the rows: a change that commits between the two leaves the entry under the
old version, which the next call finds stale. It is bumped at once and again when the change commits,
so a call that reads the rows before the commit does not keep them under the new version.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from dataclasses import dataclass

import redis
from django.db import connection, transaction
from django_tenants.utils import get_public_schema_name

from branch_api.provider.models import ApiCredential, WebhookEndpoint
from catalog.pricing import PriceBook
from core.redis import get_redis, platform_key, request_key_register, request_value

logger = logging.getLogger(__name__)

# Enough for every branch of a large network; an evicted entry is only read again.
MAX_ENTRIES = 10_000
# A backstop, not the mechanism: even a change that could not bump the counter (Redis was down) applies
# within this long.
MAX_AGE_SECONDS = 60.0


@dataclass(frozen=True)
class CallerRecord:
    """One API key's caller as read from the database (shared between calls: never change it; ``caller_get``
    hands out copies of the model instances)."""

    credential: ApiCredential  # with branch, branch.terms and terms.price_list loaded
    book: PriceBook
    endpoints: tuple[WebhookEndpoint, ...]  # the branch's active webhook endpoints


@dataclass(frozen=True)
class _Entry:
    version: int
    read_at: float
    record: CallerRecord


_entries: dict[str, _Entry] = {}
_lock = threading.Lock()


def _version_key() -> str:
    return platform_key("api-callers-version")


def callers_version() -> int:
    client, key = get_redis(), _version_key()
    known, version = request_value(key)  # read with the request's host lookup
    if not known:
        version = client.get(key)
    if version is None:
        # Started at random, so a counter lost with Redis's data cannot count back up to a version an
        # entry was read under.
        client.set(key, secrets.randbits(48), nx=True)
        version = client.get(key)
    return int(version)


def callers_changed() -> None:
    """Every process reads its callers again on their next call (now, and once the caller's transaction
    commits)."""
    _bump()
    transaction.on_commit(_bump)


def _bump() -> None:
    callers_forget()
    try:
        get_redis().incr(_version_key())
    except redis.RedisError:
        logger.warning("other processes see a changed API caller within %ss (Redis unreachable)", MAX_AGE_SECONDS)


def caller_record(prefix: str) -> CallerRecord | None:
    """The caller behind API key ``prefix`` (None for an unknown prefix), from memory when nothing
    changed since it was read."""
    try:
        version, now = callers_version(), time.monotonic()
    except redis.RedisError:
        return _record_read(prefix)  # the call fails at its nonce anyway, with the error for that
    entry = _entries.get(prefix)
    if entry is None or entry.version != version or now - entry.read_at > MAX_AGE_SECONDS:
        record = _record_read(prefix)
        if record is None:
            return None
        entry = _Entry(version=version, read_at=now, record=record)
        with _lock:
            if len(_entries) >= MAX_ENTRIES:
                _entries.clear()
            _entries[prefix] = entry
    return entry.record


def caller_copy(record: CallerRecord) -> tuple[ApiCredential, PriceBook, list[WebhookEndpoint]]:
    """Model instances a call may use and change without touching the shared record: the credential with
    its own branch, terms and price list."""
    credential = copy.copy(record.credential)
    branch = copy.copy(record.credential.branch)
    terms = getattr(record.credential.branch, "terms", None)
    credential._state = copy.copy(credential._state)
    credential._state.fields_cache = {"branch": branch}
    branch._state = copy.copy(branch._state)
    branch._state.fields_cache = {}
    if terms is not None:
        terms = copy.copy(terms)
        terms._state = copy.copy(terms._state)
        terms._state.fields_cache = {"branch": branch, "price_list": terms.price_list}
        branch._state.fields_cache["terms"] = terms
    return credential, record.book, [copy.copy(endpoint) for endpoint in record.endpoints]


def callers_forget() -> None:
    """Drop what this process remembers (tests and benchmarks that reset the database use it)."""
    with _lock:
        _entries.clear()


def _record_read(prefix: str) -> CallerRecord | None:
    credential = ApiCredential.objects.select_related("branch__terms__price_list").filter(prefix=prefix).first()
    if credential is None:
        return None
    terms = getattr(credential.branch, "terms", None)
    price_list = terms.price_list if terms is not None else None
    endpoints = tuple(WebhookEndpoint.objects.filter(branch_id=credential.branch_id, is_active=True).order_by("pk"))
    return CallerRecord(credential=credential, book=PriceBook(price_list), endpoints=endpoints)


# Written on the hot path or by webhook bookkeeping, and not part of a ``CallerRecord``'s meaning: a
# change of only these keeps what processes remember.
_IRRELEVANT_FIELDS = frozenset({"last_used_at", "updated", "consecutive_failures", "failing_since"})


# A new row of these cannot be part of a record read before it existed.
_NEW_ROWS_IRRELEVANT = ("tenants.Branch", "branch_provider.ApiCredential")


def _on_site_a() -> bool:
    # Categories and price lists exist in every branch's schema too (a branch's sync updates them all
    # the time); a record holds Site A's only.
    return connection.schema_name == get_public_schema_name()


def _saved(sender, created=False, update_fields=None, **kwargs) -> None:
    if created and sender._meta.label in _NEW_ROWS_IRRELEVANT:
        return
    if _on_site_a() and (update_fields is None or not set(update_fields) <= _IRRELEVANT_FIELDS):
        callers_changed()


def _deleted(sender, **kwargs) -> None:
    if _on_site_a():
        callers_changed()


def _updated(sender, fields: frozenset[str], **kwargs) -> None:
    if _on_site_a() and not fields <= _IRRELEVANT_FIELDS:
        callers_changed()


def callers_signals_connect() -> None:
    """Bump the version whenever a row a ``CallerRecord`` holds (or a price rule's category) is saved,
    updated in bulk or deleted; and read it with every request's host lookup."""
    request_key_register(_version_key)
    from django.db.models.signals import post_delete, post_save

    from branch_api.provider.models import BranchTerms
    from catalog.models import Category, PriceList, PriceRule
    from core.querysets import rows_updated
    from tenants.models import Branch

    for model in (ApiCredential, Branch, BranchTerms, PriceList, PriceRule, Category, WebhookEndpoint):
        uid = f"api-callers-{model._meta.label}"
        post_save.connect(_saved, sender=model, dispatch_uid=f"{uid}-save")
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"{uid}-delete")
        rows_updated.connect(_updated, sender=model, dispatch_uid=f"{uid}-update")
