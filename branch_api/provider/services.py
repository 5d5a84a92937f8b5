"""Site A's branch API: credentials, request authentication, idempotency, catalog views, purchases."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from branch_api import signing
from branch_api.provider import errors
from branch_api.provider.callers import caller_copy, caller_record
from branch_api.provider.models import (
    ApiAuditLog,
    ApiCredential,
    BalanceTopUp,
    BranchPurchase,
    BranchTerms,
    IdempotencyRecord,
    WebhookEndpoint,
)
from cardvault.errors import OutOfStock as VaultOutOfStock
from catalog.models import Category, PriceList, Product, Variant, WholesaleTier
from catalog.pricing import TIER_LIST, PriceBook, money
from core.crypto import decrypt, encrypt
from core.redis import get_redis, platform_key
from core.sql import fetch_together, from_row, insert_one, insert_values, prepared_cursor, select_list
from ledger.errors import InsufficientFunds
from ledger.models import Account
from ledger.services import Line, account_get_or_create, ledger_post
from orders.models import Order
from tenants.models import Branch

# --- Credentials ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCredential:
    credential: ApiCredential
    api_key: str  # "<prefix>.<secret>", shown once
    signing_secret: str


def credential_issue(*, branch: Branch, label: str = "") -> IssuedCredential:
    """A new API key and signing secret for ``branch``. The secret is returned once, kept hashed."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    signing_secret = secrets.token_urlsafe(32)
    credential = ApiCredential.objects.create(
        branch=branch,
        prefix=prefix,
        secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
        signing_secret_encrypted=encrypt(signing_secret, aad=f"api-credential|{prefix}"),
        label=label,
    )
    return IssuedCredential(credential=credential, api_key=f"{prefix}.{secret}", signing_secret=signing_secret)


def credential_revoke(*, credential: ApiCredential) -> None:
    ApiCredential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def terms_ensure(branch: Branch) -> BranchTerms:
    terms, _ = BranchTerms.objects.get_or_create(branch=branch)
    return terms


def balance_account_code(branch_id: int) -> str:
    return f"branch:{branch_id}:balance"


def branch_balance_account(branch: Branch) -> Account:
    """Site A owes each branch its prepaid balance: a liability that may not go below zero."""
    return account_get_or_create(
        balance_account_code(branch.pk),
        name=f"Balance of {branch.name}",
        kind=Account.Kind.LIABILITY,
        may_go_negative=False,
        owner_type="branch",
        owner_id=str(branch.pk),
    )


def branch_top_up(*, branch: Branch, amount: Decimal, reference: str, idempotency_key: str) -> Account:
    """Credit a branch's balance (money received through one of Site A's payment channels)."""
    branch_balance_account(branch)
    ledger_post(
        kind="top_up",
        idempotency_key=idempotency_key,
        reference=reference,
        memo=f"top-up of {branch.slug}",
        lines=[Line("payment_clearing", money(amount)), Line(balance_account_code(branch.pk), -money(amount))],
    )
    return Account.objects.get(code=balance_account_code(branch.pk))


def top_up_start(
    *, branch: Branch, amount: Decimal, return_url: str = "", provider_code: str | None = None, request=None
) -> tuple[BalanceTopUp, str]:
    """A top-up the branch owner pays through Site A's payment page; returns it and the page's path.

    Paid through ``provider_code``, or else Site A's first channel that takes the amount."""
    from payments.models import PaymentAttempt
    from payments.selectors import checkout_channels
    from payments.services import payment_start_for
    from payments.wallet import PROVIDER_CODE as WALLET

    amount = money(amount)
    if amount <= 0 or amount > Decimal("100000"):
        raise errors.Invalid("amount must be between 0.01 and 100000.", field="amount")
    if provider_code is None:
        offered = checkout_channels(amount=amount, currency=settings.PLATFORM_CURRENCY, for_order=False)
        provider_code = next((code for code, _label in offered if code != WALLET), None)
        if provider_code is None:
            raise errors.PaymentUnavailable()
    top_up = BalanceTopUp.objects.create(
        branch=branch, amount=amount, currency=settings.PLATFORM_CURRENCY, return_url=_own_url(branch, return_url)
    )
    _attempt, url = payment_start_for(
        purpose=PaymentAttempt.Purpose.BRANCH_TOP_UP,
        subject_id=top_up.pk,
        amount=amount,
        currency=top_up.currency,
        provider_code=provider_code,
        request=request,
    )
    return top_up, url


def _own_url(branch: Branch, url: str) -> str:
    """Only a URL on one of the branch's own domains may be the page Site A sends the owner back to."""
    from urllib.parse import urlsplit

    if not url:
        return ""
    host = (urlsplit(url).hostname or "").lower()
    if urlsplit(url).scheme not in ("http", "https") or not branch.domains.filter(domain=host).exists():
        raise errors.Invalid("return_url must be on the branch's own domain.", field="return_url")
    return url


@transaction.atomic
def top_up_mark_paid(*, top_up_id: int, amount: Decimal, currency: str, payment_reference: str) -> BalanceTopUp:
    """Credit a paid top-up once (a repeated confirmation changes nothing)."""
    top_up = BalanceTopUp.objects.select_for_update().select_related("branch").get(pk=top_up_id)
    if top_up.status == BalanceTopUp.Status.PAID:
        return top_up
    if money(amount) != top_up.amount or currency != top_up.currency:
        from orders.errors import OrderStateError

        raise OrderStateError("The paid amount does not match the top-up.", code="amount_mismatch")
    branch_top_up(
        branch=top_up.branch,
        amount=top_up.amount,
        reference=payment_reference[:64],
        idempotency_key=f"top-up:{top_up.pk}",
    )
    top_up.status, top_up.paid_at = BalanceTopUp.Status.PAID, timezone.now()
    top_up.save(update_fields=["status", "paid_at"])
    return top_up


# --- Authentication -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCaller:
    branch: Branch
    credential: ApiCredential
    terms: BranchTerms
    book: PriceBook | None = None  # the branch's cost rules (``branch_price_book`` when None)
    endpoints: list[WebhookEndpoint] | None = None  # its active webhook endpoints (read when None)
    calls_this_minute: int = 0
    # POST only: whether this request claimed its Idempotency-Key (otherwise the fingerprint of the
    # request holding it), and whether an earlier request with the key was already answered.
    idempotency_claimed: bool = False
    idempotency_held_by: str = ""
    idempotency_answered: bool = False


_HEX = re.compile(r"[0-9a-f]+")
IDEMPOTENCY_CLAIM_SECONDS = 120  # longer than any request runs; the database record outlives it


def request_authenticate(
    *,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    headers,
    client_ip: str | None,
    idempotency: tuple[str, str] | None = None,
) -> ApiCaller:
    """Check key, timestamp, signature, IP allowlist, branch status and nonce; raise the matching
    ``ApiError``. ``idempotency`` = (key, request fingerprint) claims the key for this request.

    One database query (credential, branch, terms and price list) and one Redis round trip (nonce,
    the branch's per-minute call counter and the idempotency claim, pipelined).
    """
    api_key = headers.get(signing.HEADER_KEY, "")
    stamp = headers.get(signing.HEADER_TIMESTAMP, "")
    nonce = headers.get(signing.HEADER_NONCE, "")
    given = headers.get(signing.HEADER_SIGNATURE, "")
    if not (api_key and stamp and nonce and given):
        raise errors.MissingCredentials()
    prefix, _, secret = api_key.partition(".")
    # Only a well-formed prefix is looked up (it is hex; a NUL byte, say, must not reach the database).
    record = caller_record(prefix) if prefix and len(prefix) <= 32 and _HEX.fullmatch(prefix) else None
    if record is None or not hmac.compare_digest(
        record.credential.secret_sha256, hashlib.sha256(secret.encode()).hexdigest()
    ):
        raise errors.InvalidKey()
    credential, book, endpoints = caller_copy(record)
    if credential.revoked_at:
        raise errors.KeyRevoked()
    try:
        skew = abs(time.time() - int(stamp))
    except (ValueError, OverflowError):  # not a number, or one past any float
        raise errors.TimestampSkew() from None
    if skew > signing.MAX_SKEW_SECONDS:
        raise errors.TimestampSkew()
    if len(nonce) < signing.MIN_NONCE_LENGTH or len(nonce) > 128:
        raise errors.InvalidNonce()
    signing_secret = decrypt(credential.signing_secret_encrypted, aad=f"api-credential|{credential.prefix}")
    expected = signing.signature(
        signing_secret,
        signing.canonical_request(method=method, path=path, query=query, timestamp=stamp, nonce=nonce, body=body),
    )
    if not hmac.compare_digest(expected, given):
        raise errors.BadSignature()
    branch = credential.branch
    terms = getattr(branch, "terms", None) or terms_ensure(branch)
    if not _ip_allowed(client_ip, terms.ip_allowlist):
        raise errors.IpNotAllowed()
    if branch.status == Branch.Status.SUSPENDED:
        raise errors.BranchSuspended()
    # The nonce is spent only by a correctly signed request: forged traffic cannot burn real nonces.
    redis = get_redis()
    with redis.pipeline(transaction=False) as pipe:
        pipe.set(platform_key("api-nonce", credential.prefix, nonce), "1", nx=True, ex=600)
        rate_key = platform_key("api-rate", str(branch.pk), str(int(time.time() // 60)))
        pipe.incr(rate_key)
        pipe.expire(rate_key, 70)
        if idempotency:
            claim_key = _idempotency_claim_key(branch, idempotency[0])
            pipe.set(claim_key, idempotency[1], nx=True, ex=IDEMPOTENCY_CLAIM_SECONDS)
            pipe.get(claim_key)
        fresh_nonce, calls, _, *claim = pipe.execute()
    claimed = bool(claim and claim[0])
    if not fresh_nonce:
        if claimed:
            idempotency_release(branch=branch, key=idempotency[0])
        raise errors.NonceReused()
    # "Last used" to the minute is enough, and spares a write on every request. Written after the
    # request's transaction: holding the credential's row lock through it would make concurrent calls
    # of the branch wait for each other.
    now = timezone.now()
    if record.credential.last_used_at is None or now - record.credential.last_used_at > timedelta(seconds=60):
        # The remembered credential too, or every call of the next minute would write it again.
        record.credential.last_used_at = now
        transaction.on_commit(lambda: ApiCredential.objects.filter(pk=credential.pk).update(last_used_at=now))
    return ApiCaller(
        branch=branch,
        credential=credential,
        terms=terms,
        book=book,
        endpoints=endpoints,
        calls_this_minute=calls,
        idempotency_claimed=claimed,
        idempotency_held_by="" if claimed or not claim else (claim[1] or b"").decode(),
        # Whether an earlier request with this key was answered (its claim may have lapsed since).
        idempotency_answered=bool(claimed) and _answered(branch.pk, idempotency[0]),
    )


def _answered(branch_id: int, key: str) -> bool:
    # Usually the call's first statement: its transaction's BEGIN and the SET search_path go along.
    sql = f"SELECT 1 FROM {IdempotencyRecord._meta.db_table} WHERE branch_id = %s AND key = %s LIMIT 1"
    return bool(fetch_together([(sql, [branch_id, key])])[0])


def _ip_allowed(client_ip: str | None, allowlist: str) -> bool:
    networks = [line.strip() for line in allowlist.splitlines() if line.strip()]
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


# --- Idempotency ----------------------------------------------------------------------------------


def _idempotency_claim_key(branch: Branch, key: str) -> str:
    return platform_key("api-idempotency", str(branch.pk), hashlib.sha256(key.encode()).hexdigest())


def idempotency_key_check(key: str) -> None:
    # Printable ASCII only: the key is stored and audited as text (a NUL byte cannot be).
    if not key or not 8 <= len(key) <= 128 or not (key.isascii() and key.isprintable()):
        raise errors.IdempotencyKeyRequired()


def idempotency_replay(*, caller: ApiCaller, key: str, fingerprint: str) -> IdempotencyRecord:
    """For a request whose ``key`` was claimed or answered before: the stored answer to replay.
    Raises 422 when the earlier request had another method, path or body, 409 while it still runs."""
    if caller.idempotency_held_by and caller.idempotency_held_by != fingerprint:
        raise errors.IdempotencyKeyReused()
    record = IdempotencyRecord.objects.filter(branch=caller.branch, key=key).first()
    if record is None:
        raise errors.RequestInFlight()
    if record.fingerprint != fingerprint:
        raise errors.IdempotencyKeyReused()
    return record


def call_record(*, audit: ApiAuditLog, answer: IdempotencyRecord | None = None, rows: Sequence[Model] = ()) -> None:
    """Write a call's audit row and, for a POST that claimed its key, the answer to replay (the claim
    lapses by itself), with any ``rows`` the call left to write (of one model or several), in the call's
    own transaction: one statement, one round trip."""
    groups: dict[type[Model], list[Model]] = {}
    for row in [answer, *rows] if answer is not None else rows:
        groups.setdefault(type(row), []).append(row)
    ctes, params = [], []
    for number, group in enumerate(groups.values()):
        sql, group_params = insert_values(group)
        ctes.append(f"w{number} AS ({sql})")
        params.extend(group_params)
    audit_sql, audit_params = insert_values([audit])
    sql = f"WITH {', '.join(ctes)} {audit_sql}" if ctes else audit_sql
    with prepared_cursor() as cursor:
        cursor.execute(sql, [*params, *audit_params])


def idempotency_release(*, branch: Branch, key: str) -> None:
    """Give up a claim whose request was refused before it ran or crashed, so a retry can run."""
    get_redis().delete(_idempotency_claim_key(branch, key))


def idempotency_expire(*, hours: int = 96) -> int:
    cutoff = timezone.now() - timezone.timedelta(hours=hours)
    return IdempotencyRecord.objects.filter(created__lt=cutoff).delete()[0]


# --- Catalog as the branch sees it -------------------------------------------------------------


def visible_products(terms: BranchTerms) -> QuerySet[Product]:
    products = Product.objects.filter(is_active=True, category__is_active=True).exclude(
        pk__in=terms.hidden_products.values("pk")
    )
    if terms.show_everything:
        return products
    paths = list(terms.visible_categories.values_list("path", flat=True))
    condition = Q(pk__in=terms.visible_products.values("pk"))
    for path in paths:
        condition |= Q(category__path__startswith=path)
    return products.filter(condition)


def _purchasable_query(terms: BranchTerms, variant_ids: list[int]) -> tuple[str, list]:
    """The active variants of ``variant_ids`` the branch may buy, with product, category and quantity
    breaks (``_purchasable_from_rows`` makes ``variant_tiers`` read nothing).

    ``visible_products`` as one SQL condition on the variant's own row (no read of the terms' category
    paths first, no query tree of one condition per path: a purchase's cost must not grow with the
    catalog or the selection), the tiers as JSON (money as text, never float)."""
    hidden = BranchTerms.hidden_products.through._meta.db_table
    shown = BranchTerms.visible_products.through._meta.db_table
    shown_categories = BranchTerms.visible_categories.through._meta.db_table
    variant, product, category = Variant._meta.db_table, Product._meta.db_table, Category._meta.db_table
    # Table names and fixed SQL only; every value is a parameter. The category paths ("1/4/") hold only
    # digits and slashes: starts_with needs no LIKE escaping.
    sql = f"""
        SELECT {select_list(Variant, "v")}, {select_list(Product, "p")}, {select_list(Category, "c")},
               (SELECT coalesce(json_agg(json_build_object(
                           'id', t.id, 'min_quantity', t.min_quantity, 'unit_price', t.unit_price::text,
                           'unit_cost', t.unit_cost::text) ORDER BY t.min_quantity), '[]')::text
                FROM {WholesaleTier._meta.db_table} t WHERE t.variant_id = v.id)
        FROM {variant} v JOIN {product} p ON p.id = v.product_id JOIN {category} c ON c.id = p.category_id
        WHERE v.id = ANY(%s) AND v.is_active AND p.is_active AND c.is_active
          AND NOT EXISTS (SELECT 1 FROM {hidden} h WHERE h.branchterms_id = %s AND h.product_id = p.id)
          AND (%s
               OR EXISTS (SELECT 1 FROM {shown} s WHERE s.branchterms_id = %s AND s.product_id = p.id)
               OR EXISTS (SELECT 1 FROM {shown_categories} vc JOIN {category} vcc ON vcc.id = vc.category_id
                          WHERE vc.branchterms_id = %s AND starts_with(c.path, vcc.path)))
        ORDER BY v.id
    """
    return sql, [list(variant_ids), terms.pk, terms.show_everything, terms.pk, terms.pk]


def _purchasable_from_rows(rows: list[tuple]) -> list[Variant]:
    widths = [len(model._meta.concrete_fields) for model in (Variant, Product, Category)]
    found = []
    for row in rows:
        v_end, p_end = widths[0], widths[0] + widths[1]
        found_variant = from_row(Variant, row[:v_end])
        found_product = from_row(Product, row[v_end:p_end])
        found_product.category = from_row(Category, row[p_end : p_end + widths[2]])
        found_variant.product = found_product
        tiers = [
            WholesaleTier(
                id=tier["id"],
                variant=found_variant,
                min_quantity=tier["min_quantity"],
                unit_price=None if tier["unit_price"] is None else Decimal(tier["unit_price"]),
                unit_cost=None if tier["unit_cost"] is None else Decimal(tier["unit_cost"]),
            )
            for tier in json.loads(row[-1])
        ]
        setattr(found_variant, TIER_LIST, tiers)  # what ``variant_tiers`` reads
        found.append(found_variant)
    return found


def visible_categories(terms: BranchTerms) -> QuerySet[Category]:
    """The categories of visible products and their ancestors (so a branch can rebuild the tree)."""
    paths = set(visible_products(terms).values_list("category__path", flat=True))
    ids = {int(part) for path in paths for part in path.strip("/").split("/") if part}
    if terms.show_everything or terms.visible_categories.exists():
        for path in terms.visible_categories.values_list("path", flat=True):
            ids |= set(Category.objects.filter(path__startswith=path).values_list("pk", flat=True))
    return Category.objects.filter(pk__in=ids, is_active=True).order_by("path")


def branch_price_book(terms: BranchTerms) -> PriceBook:
    return PriceBook(terms.price_list) if terms.price_list_id else PriceBook(None)


def price_list_for(branch: Branch) -> PriceList:
    """The price list holding a branch's cost rules on Site A (created on first use)."""
    terms = terms_ensure(branch)
    if terms.price_list_id is None:
        terms.price_list = PriceList.objects.create(name=f"Branch {branch.slug}", code=f"branch-{branch.slug}")
        terms.save(update_fields=["price_list"])
    return terms.price_list


# --- Purchases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurchaseItem:
    variant_id: int
    quantity: int


def branch_purchase(
    *, caller: ApiCaller, reference: str, items: list[PurchaseItem], expected_total: Decimal | None
) -> tuple[BranchPurchase, bool]:
    """Sell codes to a branch at its cost: debit its balance and assign codes in one transaction.

    Returns (purchase, created). A reference the branch already used returns the original purchase
    unchanged. Insufficient balance or stock raises and changes nothing. A new purchase of vault codes
    carries ``sale`` (its order lines and code assignments), so answering it reads nothing again.
    """
    from branch_api.provider.webhooks import webhook_emit_balance_low, webhook_emit_order_status_changed
    from orders.services import CartItem, order_mark_paid, order_place, order_sell

    # The balance, an earlier purchase of the reference and the requested variants the branch may see:
    # one round trip.
    balance_rows, variant_rows = fetch_together(
        [
            _balance_and_earlier_query(caller.branch, reference),
            _purchasable_query(caller.terms, [i.variant_id for i in items]),
        ]
    )
    account, earlier_id = _balance_and_earlier_from_rows(caller.branch, reference, balance_rows)
    if earlier_id:
        return BranchPurchase.objects.select_related("order").get(pk=earlier_id), False
    variants = {v.pk: v for v in _purchasable_from_rows(variant_rows)}
    if any(item.variant_id not in variants for item in items):
        raise errors.NotFound("Unknown or invisible variant.", field="items")
    book = caller.book or branch_price_book(caller.terms)
    costs = {i.variant_id: book.quote(variants[i.variant_id], quantity=i.quantity).unit_price for i in items}
    total = sum((costs[i.variant_id] * i.quantity for i in items), Decimal("0"))
    if expected_total is not None and money(expected_total) != total:
        raise errors.ExpectedTotalMismatch(f"The total at cost is {total}.", field="expected_total")
    if account.natural_balance < total:
        raise errors.InsufficientBalance(f"Balance {account.natural_balance}, order {total}.")
    funding_account = account.code
    cart = [CartItem(variant_id=i.variant_id, quantity=i.quantity) for i in items]
    email = caller.branch.owner_email or f"{caller.branch.slug}@{settings.PLATFORM_DOMAIN}"
    sale = None
    purchase = BranchPurchase(branch=caller.branch, reference=reference, total=total)
    try:
        with transaction.atomic():
            if all(v.product.delivery_mode == Product.DeliveryMode.AUTOMATIC for v in variants.values()):
                sale = order_sell(
                    items=cart,
                    variants=variants,
                    book=book,
                    unit_prices=costs,
                    email=email,
                    provider="branch_balance",
                    payment_reference=reference,
                    funding_account=funding_account,
                    source=Order.Source.BRANCH_API,
                    attached=purchase,  # inserted with the order: a reference used twice fails right there
                )
            else:  # goods delivered later (by staff, or bought upstream) take the storefront's path
                purchase.order = order_place(items=cart, email=email, unit_prices=costs, source=Order.Source.BRANCH_API)
                insert_one(purchase)
            order = purchase.order
            if sale is None:
                purchase.order = order_mark_paid(
                    order_id=order.pk,
                    amount=total,
                    currency=order.currency,
                    provider="branch_balance",
                    payment_reference=reference,
                    funding_account=funding_account,
                )
                _reusable_uses_taken(order)
            # Recorded with the purchase, sent after it commits.
            webhook_emit_order_status_changed(purchase=purchase, endpoints=caller.endpoints)
            webhook_emit_balance_low(
                branch=caller.branch,
                threshold=caller.terms.low_balance_threshold,
                spent=total,
                account=sale.accounts[funding_account] if sale else None,
                endpoints=caller.endpoints,
            )
    except VaultOutOfStock as exc:
        raise errors.OutOfStock(exc.message) from exc
    except InsufficientFunds as exc:
        raise errors.InsufficientBalance() from exc
    except IntegrityError:
        # The same reference was created concurrently: hand back that one.
        existing = (
            BranchPurchase.objects.select_related("order").filter(branch=caller.branch, reference=reference).first()
        )
        if existing is None:
            raise
        return existing, False
    purchase.sale = sale
    return purchase, True


def _balance_and_earlier_query(branch: Branch, reference: str) -> tuple[str, list]:
    """The branch's balance account and the id of the purchase it already made under ``reference``."""
    return (
        f"SELECT {select_list(Account, 'a')}, (SELECT bp.id FROM {BranchPurchase._meta.db_table} bp "
        "WHERE bp.branch_id = %s AND bp.reference = %s) "
        f"FROM {Account._meta.db_table} a WHERE a.code = %s",
        [branch.pk, reference, balance_account_code(branch.pk)],
    )


def _balance_and_earlier_from_rows(branch: Branch, reference: str, rows: list[tuple]) -> tuple[Account, int | None]:
    if not rows:  # the branch's first purchase: its account is created now
        earlier = BranchPurchase.objects.filter(branch=branch, reference=reference).values_list("pk", flat=True)
        return branch_balance_account(branch), earlier.first()
    return from_row(Account, rows[0][:-1]), rows[0][-1]


def _reusable_uses_taken(order: Order) -> None:
    """Reusable codes are counted when the order is paid, under each code's row lock: a use a
    concurrent buyer took leaves the order short of codes. A branch is never charged for codes it
    does not get, so that rolls the whole purchase back."""
    order.refresh_from_db(fields=["status"])
    if order.status == Order.Status.AWAITING_STOCK:
        raise VaultOutOfStock("Not enough uses left on the reusable codes.")
