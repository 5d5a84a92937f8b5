"""Payment reconciliation (DESIGN §6): one channel's day (shop time), our payments against the gateway's.

Our side is every ``PaymentAttempt`` of the channel that succeeded that day. The gateway's side comes
from one source per run:

- Stripe: the day's balance transactions (``BalanceTransaction.list`` with ``created[gte/lt]``,
  auto-paginated, charges expanded), matched on the PaymentIntent kept at payment time;
- epay: the gateway's order query for each of the day's attempts, including those still ``created``
  (a payment whose notification never arrived: suggest 补单);
- any channel: a CSV statement uploaded by staff.

Gateway I/O happens before any transaction; the comparison is stored in one transaction under a lock
on the run row, replacing that run's items (a re-run is idempotent, and resolutions of mismatches that
are still there are kept).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import urljoin

import httpx
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from payments.errors import ProviderUnavailable, ReconciliationFailed
from payments.models import PaymentAttempt, PaymentChannel, ReconciliationItem, ReconciliationRun

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
# Gateway records this close outside the day still match our payments of the day (a charge made at
# 23:59 whose notification arrived at 00:01), without counting as the gateway's payments of the day.
GRACE = timedelta(hours=2)
STRIPE_PAGE_SIZE = 100
EPAY_QUERY_TIMEOUT_SECONDS = 5.0
Kind = ReconciliationItem.Kind
Source = ReconciliationRun.Source
SUCCEEDED = PaymentAttempt.Status.SUCCEEDED


@dataclass(frozen=True)
class GatewayRecord:
    """One payment as the gateway reports it."""

    reference: str  # the gateway's id for it
    amount: Decimal
    currency: str
    paid: bool
    status: str  # the gateway's own word for it, shown to staff
    occurred_at: datetime | None = None
    in_day: bool = True  # False: fetched only to match our payments near midnight
    other_references: tuple[str, ...] = ()  # further ids our attempt may know it by (PaymentIntent, our token)

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(ref for ref in (self.reference, *self.other_references) if ref)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[day 00:00, next day 00:00) in the shop's time zone, as aware datetimes."""
    zone = timezone.get_current_timezone()
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)


def automatic_source(provider: str) -> str | None:
    """The source a channel is reconciled from without an upload; None when only CSV works."""
    return {"stripe": Source.STRIPE_API, "epay": Source.EPAY_QUERY}.get(provider)


# --- Services ------------------------------------------------------------------------------------------


def reconciliation_run(*, provider: str, day: date, actor=None) -> ReconciliationRun:
    """Reconcile ``provider``'s ``day`` from its automatic source and return the stored run.

    A gateway that cannot be asked (not configured, unreachable, refusing the key) gives a run with
    status ``failed`` and the reason; the previous comparison, if any, stays. Raises
    ``ReconciliationFailed`` (code ``no_automatic_source``) for a channel reconciled by CSV only.
    """
    source = automatic_source(provider)
    if source is None:
        raise ReconciliationFailed(
            _("This channel has no automatic source: upload the gateway's statement as CSV."),
            field="provider",
            code="no_automatic_source",
        )
    if day > timezone.localdate():
        raise ReconciliationFailed(_("That day has not happened yet."), field="day", code="day_in_future")
    since, until = day_bounds(day)
    started_at = timezone.now()
    _run_mark_running(provider=provider, day=day, source=source, actor=actor, started_at=started_at)
    try:
        if source == Source.STRIPE_API:
            records = stripe_records(since=since, until=until)
            stripe_payment_intents_fill(attempts=_ours(provider=provider, since=since, until=until))
        else:
            extra = _created_attempts(provider=provider, since=since, until=until)
            records = epay_records(attempts=[*_ours(provider=provider, since=since, until=until), *extra])
    except ReconciliationFailed as exc:
        return _run_fail(provider=provider, day=day, error=exc)
    return _run_store(provider=provider, day=day, source=source, records=records, actor=actor, started_at=started_at)


def reconciliation_run_csv(
    *, provider: str, day: date, content: bytes, file_name: str = "", actor=None
) -> ReconciliationRun:
    """Reconcile ``provider``'s ``day`` against an uploaded CSV statement (any channel).

    Raises ``ReconciliationFileInvalid`` (see ``payments.reconciliation_csv``) with every problem found,
    by row, and stores nothing when the file cannot be read completely.
    """
    if day > timezone.localdate():
        raise ReconciliationFailed(_("That day has not happened yet."), field="day", code="day_in_future")
    from payments.reconciliation_csv import csv_records

    started_at = timezone.now()
    records = csv_records(content, day=day)
    return _run_store(
        provider=provider,
        day=day,
        source=Source.CSV,
        records=records,
        actor=actor,
        started_at=started_at,
        file_name=file_name[:200],
    )


def reconciliation_item_resolve(*, item_id: int, actor, note: str) -> ReconciliationItem:
    """Mark a mismatch as looked into, with the staff member's note (required)."""
    note = (note or "").strip()
    if not note:
        raise ReconciliationFailed(_("Please say how this was resolved."), field="note", code="note_required")
    with transaction.atomic():
        item = ReconciliationItem.objects.select_for_update().get(pk=item_id)
        item.resolved_at = timezone.now()
        item.resolved_by = actor
        item.resolution_note = note
        item.save(update_fields=["resolved_at", "resolved_by", "resolution_note"])
    return item


def reconciliation_run_yesterday() -> list[ReconciliationRun]:
    """The daily job in the current schema: yesterday (shop time) for every channel with an automatic
    source that is enabled or took payments that day. Safe to run twice."""
    day = timezone.localdate() - timedelta(days=1)
    since, until = day_bounds(day)
    runs = []
    for channel in PaymentChannel.objects.order_by("pk"):
        if automatic_source(channel.provider) is None:
            continue
        if (
            not channel.is_enabled
            and not PaymentAttempt.objects.filter(
                Q(created__gte=since, created__lt=until) | Q(succeeded_at__gte=since, succeeded_at__lt=until),
                provider=channel.provider,
            ).exists()
        ):
            continue
        runs.append(reconciliation_run(provider=channel.provider, day=day))
    return runs


# --- Our side and the comparison --------------------------------------------------------------------


def _ours(*, provider: str, since: datetime, until: datetime) -> list[PaymentAttempt]:
    return list(
        PaymentAttempt.objects.filter(
            provider=provider, status=SUCCEEDED, succeeded_at__gte=since, succeeded_at__lt=until
        ).order_by("pk")
    )


def _created_attempts(*, provider: str, since: datetime, until: datetime) -> list[PaymentAttempt]:
    """Attempts of the day still waiting for their notification."""
    return list(
        PaymentAttempt.objects.filter(
            provider=provider, status=PaymentAttempt.Status.CREATED, created__gte=since, created__lt=until
        ).order_by("pk")
    )


def _attempt_references(attempt: PaymentAttempt) -> tuple[str, ...]:
    return tuple(ref for ref in (attempt.external_id, attempt.gateway_reference, attempt.token) if ref)


@dataclass
class Comparison:
    items: list[ReconciliationItem]
    ours_count: int
    ours_total: Decimal
    theirs_count: int
    theirs_total: Decimal
    matched_count: int


def compare(*, provider: str, ours: list[PaymentAttempt], records: list[GatewayRecord], currency: str) -> Comparison:
    """Pair the gateway's records with our attempts and list what differs (unsaved items).

    A record is matched by any of its references against any of an attempt's (gateway trade number,
    PaymentIntent, our token); records not among the day's payments are looked up among all of the
    channel's attempts (one query), so a payment we have as ``created`` or on the neighbouring day
    is recognised.
    """
    index = {ref: attempt for attempt in ours for ref in _attempt_references(attempt)}
    unknown = {ref for record in records for ref in record.references if ref not in index}
    if unknown:
        others = PaymentAttempt.objects.filter(provider=provider).filter(
            Q(token__in=unknown) | Q(external_id__in=unknown) | Q(gateway_reference__in=unknown)
        )
        for attempt in others:
            for ref in _attempt_references(attempt):
                index.setdefault(ref, attempt)
    ours_ids = {attempt.pk for attempt in ours}
    seen: set[int] = set()
    matched = 0
    items: list[ReconciliationItem] = []
    listed: set[tuple[str, str]] = set()

    def item(kind: str, record: GatewayRecord | None, attempt: PaymentAttempt | None) -> None:
        ours_reference = (attempt.external_id or attempt.token) if attempt else ""
        reference = ((record.reference if record else "") or ours_reference)[:128]
        if (kind, reference) in listed:
            return  # the gateway listed the same payment twice: one mismatch is enough
        listed.add((kind, reference))
        items.append(
            ReconciliationItem(
                kind=kind,
                reference=reference,
                attempt=attempt,
                ours_amount=attempt.amount if attempt else None,
                ours_currency=attempt.currency if attempt else "",
                ours_status=attempt.status if attempt else "",
                theirs_amount=record.amount if record else None,
                theirs_currency=record.currency if record else "",
                theirs_status=record.status[:32] if record else "",
                occurred_at=(record.occurred_at if record else None) or (attempt.succeeded_at if attempt else None),
            )
        )

    for record in records:
        attempt = next((index[ref] for ref in record.references if ref in index), None)
        if attempt is None:
            if record.paid and record.in_day:
                item(Kind.MISSING_OURS, record, None)
            continue
        ours_of_day = attempt.pk in ours_ids
        if not (record.in_day or ours_of_day) or attempt.pk in seen:
            continue
        seen.add(attempt.pk)
        ours_paid = attempt.status == SUCCEEDED
        if record.paid and not ours_paid:
            item(Kind.GATEWAY_PAID_OURS_NOT, record, attempt)
        elif ours_paid and not record.paid:
            item(Kind.OURS_PAID_GATEWAY_NOT, record, attempt)
        elif not ours_paid:
            continue  # neither side paid: nothing to reconcile
        elif record.currency != attempt.currency:
            item(Kind.CURRENCY, record, attempt)
        elif record.amount != attempt.amount:
            item(Kind.AMOUNT, record, attempt)
        elif ours_of_day:
            matched += 1
    for attempt in ours:
        if attempt.pk not in seen:
            item(Kind.MISSING_AT_GATEWAY, None, attempt)
    theirs = [record for record in records if record.paid and record.in_day]
    return Comparison(
        items=items,
        ours_count=len(ours),
        ours_total=sum((a.amount for a in ours if a.currency == currency), ZERO),
        theirs_count=len(theirs),
        theirs_total=sum((r.amount for r in theirs if r.currency == currency), ZERO),
        matched_count=matched,
    )


# --- Storing runs -------------------------------------------------------------------------------------


def _run_locked(*, provider: str, day: date, source: str) -> ReconciliationRun:
    """The channel's run for ``day``, created if needed and locked (inside the caller's transaction)."""
    run = ReconciliationRun.objects.select_for_update().filter(provider=provider, day=day).first()
    if run is not None:
        return run
    try:
        with transaction.atomic():
            ReconciliationRun.objects.create(provider=provider, day=day, source=source)
    except IntegrityError:
        pass  # created concurrently: lock that one
    return ReconciliationRun.objects.select_for_update().get(provider=provider, day=day)


def _run_mark_running(*, provider: str, day: date, source: str, actor, started_at: datetime) -> None:
    with transaction.atomic():
        run = _run_locked(provider=provider, day=day, source=source)
        run.source, run.status = source, ReconciliationRun.Status.RUNNING
        run.started_at, run.finished_at = started_at, None
        run.error_code = run.error_message = ""
        run.started_by = actor
        run.save()


def _run_fail(*, provider: str, day: date, error: ReconciliationFailed) -> ReconciliationRun:
    with transaction.atomic():
        run = _run_locked(provider=provider, day=day, source=automatic_source(provider) or Source.CSV)
        run.status = ReconciliationRun.Status.FAILED
        run.error_code, run.error_message = error.code, str(error.message)[:255]
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error_code", "error_message", "finished_at"])
    return run


def _run_store(
    *,
    provider: str,
    day: date,
    source: str,
    records: list[GatewayRecord],
    actor,
    started_at: datetime,
    file_name: str = "",
) -> ReconciliationRun:
    from ledger.services import shop_currency

    since, until = day_bounds(day)
    currency = shop_currency()
    with transaction.atomic():
        run = _run_locked(provider=provider, day=day, source=source)
        ours = _ours(provider=provider, since=since, until=until)
        result = compare(provider=provider, ours=ours, records=records, currency=currency)
        kept = {
            (old.kind, old.reference): old
            for old in run.items.filter(resolved_at__isnull=False).only(
                "kind", "reference", "resolved_at", "resolved_by_id", "resolution_note"
            )
        }
        run.items.all().delete()
        for new in result.items:
            new.run = run
            old = kept.get((new.kind, new.reference))
            if old is not None:  # the same mismatch again: it stays resolved
                new.resolved_at, new.resolved_by_id, new.resolution_note = (
                    old.resolved_at,
                    old.resolved_by_id,
                    old.resolution_note,
                )
        ReconciliationItem.objects.bulk_create(result.items)
        run.source, run.status = source, ReconciliationRun.Status.COMPLETED
        run.error_code = run.error_message = ""
        run.file_name, run.currency = file_name, currency
        run.ours_count, run.ours_total = result.ours_count, result.ours_total
        run.theirs_count, run.theirs_total = result.theirs_count, result.theirs_total
        run.matched_count, run.mismatch_count = result.matched_count, len(result.items)
        run.started_by, run.started_at = actor, started_at
        run.finished_at = run.compared_at = timezone.now()
        run.save()
    return run


# --- Stripe -------------------------------------------------------------------------------------------


def stripe_records(*, since: datetime, until: datetime) -> list[GatewayRecord]:
    """The charges among Stripe's balance transactions around the day, with the shop's own key.

    Amounts come from the charge (the currency the customer paid in), not from the balance
    transaction, which is in the account's settlement currency.
    """
    import stripe

    from payments.providers.stripe_provider import StripeProvider, _exponent

    provider = StripeProvider()
    try:
        config, secret_key, _webhook_secret = provider._settings(enabled_only=False)
    except ProviderUnavailable:
        raise ReconciliationFailed(
            _("The Stripe channel is not configured (secret key and webhook secret)."), code="channel_unavailable"
        ) from None
    params = {
        "created": {"gte": int((since - GRACE).timestamp()), "lt": int((until + GRACE).timestamp())},
        "limit": STRIPE_PAGE_SIZE,
        "expand": ["data.source"],
    }
    records = []
    try:
        listing = provider._client(config, secret_key).v1.balance_transactions.list(params=params)
        for listed in listing.auto_paging_iter():
            txn = listed.to_dict()  # plain dicts all the way down (the library's objects are not dicts)
            if txn.get("type") not in {"charge", "payment"}:
                continue  # refunds, payouts, fees: not payments taken
            charge = txn.get("source")
            created = datetime.fromtimestamp(int(txn.get("created") or 0), tz=timezone.get_current_timezone())
            if isinstance(charge, str) or charge is None:
                charge_id, payment_intent, amount, currency, status = (
                    str(charge or txn.get("id")),
                    "",
                    txn.get("amount"),
                    txn.get("currency"),
                    "succeeded",
                )
            else:
                charge_id = str(charge.get("id") or txn.get("id"))
                payment_intent = charge.get("payment_intent") or ""
                if not isinstance(payment_intent, str):  # expanded further by a caller's settings
                    payment_intent = str(payment_intent.get("id") or "")
                amount, currency = charge.get("amount"), charge.get("currency")
                status = str(charge.get("status") or "succeeded")
            currency = str(currency or "").upper()
            records.append(
                GatewayRecord(
                    reference=charge_id,
                    other_references=(payment_intent,),
                    amount=Decimal(int(amount or 0)).scaleb(-_exponent(currency)).quantize(CENT),
                    currency=currency,
                    paid=status == "succeeded",
                    status=status,
                    occurred_at=created,
                    in_day=since <= created < until,
                )
            )
    except stripe.AuthenticationError:
        raise ReconciliationFailed(_("Stripe refused the shop's secret key."), code="gateway_auth_failed") from None
    except stripe.APIConnectionError:
        raise ReconciliationFailed(_("Stripe could not be reached."), code="gateway_unreachable") from None
    except stripe.StripeError as exc:
        raise ReconciliationFailed(
            _("Stripe answered with an error (HTTP %(status)s).") % {"status": exc.http_status or "?"},
            code="gateway_error",
        ) from None
    except (TypeError, ValueError, InvalidOperation, AttributeError):
        raise ReconciliationFailed(_("Stripe answered something unexpected."), code="gateway_bad_answer") from None
    return records


def stripe_payment_intents_fill(*, attempts: Iterable[PaymentAttempt]) -> int:
    """Ask Stripe for the PaymentIntent of paid attempts that lack it (paid before it was kept at
    payment time) and keep it; returns how many were filled. A session Stripe no longer knows is left."""
    import stripe

    from payments.providers.stripe_provider import StripeProvider

    missing = [a for a in attempts if not a.gateway_reference and a.external_id.startswith("cs_")]
    if not missing:
        return 0
    provider = StripeProvider()
    config, secret_key, _webhook_secret = provider._settings(enabled_only=False)  # checked by stripe_records
    sessions = provider._client(config, secret_key).v1.checkout.sessions
    filled = 0
    for attempt in missing:
        try:
            session = sessions.retrieve(attempt.external_id).to_dict()
        except stripe.InvalidRequestError:
            continue  # unknown to Stripe: stays "missing at the gateway"
        except stripe.StripeError:
            raise ReconciliationFailed(_("Stripe could not be asked for a payment."), code="gateway_error") from None
        payment_intent = session.get("payment_intent")
        if isinstance(payment_intent, dict):
            payment_intent = payment_intent.get("id")
        if isinstance(payment_intent, str) and payment_intent:
            filled += PaymentAttempt.objects.filter(pk=attempt.pk, gateway_reference="").update(
                gateway_reference=payment_intent[:128]
            )
    return filled


# --- epay ---------------------------------------------------------------------------------------------


def epay_records(*, attempts: Iterable[PaymentAttempt]) -> list[GatewayRecord]:
    """The gateway's order query (``api.php?act=order``) for each attempt; unknown trades give no record.

    The query URL carries the merchant key: nothing of a failed request is logged or kept.
    """
    from ledger.services import shop_currency
    from payments.providers.epay import EpayProvider

    try:
        gateway, pid, key, _pay_type = EpayProvider()._settings(enabled_only=False)
    except ProviderUnavailable:
        raise ReconciliationFailed(
            _("The epay channel is not configured (gateway URL, pid and key)."), code="channel_unavailable"
        ) from None
    currency = shop_currency()
    records = []
    with httpx.Client(timeout=EPAY_QUERY_TIMEOUT_SECONDS) as client:
        for attempt in attempts:
            try:
                response = client.get(
                    urljoin(gateway, "api.php"),
                    params={"act": "order", "pid": pid, "key": key, "out_trade_no": attempt.token},
                )
                response.raise_for_status()
                order = response.json()
            except (httpx.HTTPError, ValueError):
                raise ReconciliationFailed(
                    _("The epay gateway could not be queried."), code="gateway_unreachable"
                ) from None
            if not isinstance(order, dict):
                raise ReconciliationFailed(
                    _("The epay gateway answered something unexpected."), code="gateway_bad_answer"
                )
            if str(order.get("code")) != "1" or str(order.get("out_trade_no", attempt.token)) != attempt.token:
                continue  # the gateway does not know this trade
            try:
                amount = Decimal(str(order.get("money")))
            except InvalidOperation:
                amount = Decimal("NaN")
            if not amount.is_finite():
                raise ReconciliationFailed(
                    _("The epay gateway answered without an amount for %(token)s.") % {"token": attempt.token},
                    code="gateway_bad_answer",
                )
            paid = str(order.get("status")) == "1"
            records.append(
                GatewayRecord(
                    reference=str(order.get("trade_no") or attempt.token)[:128],
                    other_references=(attempt.token,),
                    amount=amount,
                    currency=currency,
                    paid=paid,
                    status="paid" if paid else f"status {order.get('status')}",
                    occurred_at=_epay_time(order.get("endtime") or order.get("addtime")),
                )
            )
    return records


def _epay_time(value) -> datetime | None:
    try:
        moment = datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 (shop time, made aware below)
    except ValueError:
        return None
    return timezone.make_aware(moment)
