"""Reconciliation: one channel's day, our payments against the gateway's records, mismatches for staff.

Stripe is a real HTTP server on 127.0.0.1 answering Checkout Sessions and paginated balance
transactions, read through the real ``stripe`` library; epay is the order-query server of
``test_epay``; statements are uploaded through the admin as files.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_tenants.utils import schema_context

from conftest import host_client
from payments.channels import payment_channel_save
from payments.errors import ReconciliationFailed
from payments.models import PaymentAttempt, PaymentChannel, ReconciliationItem, ReconciliationRun
from payments.reconciliation import day_bounds, reconciliation_item_resolve, reconciliation_run
from payments.services import payment_callback_handle, payment_start
from payments.tasks import reconciliation_daily_task
from payments.tests.test_epay import FakeEpay, _notify
from payments.tests.test_epay import _configure as epay_configure
from payments.tests.test_stripe import _configure as stripe_configure
from payments.tests.test_stripe import _event, _send
from tests.commerce import pay, place, product_with_codes
from tests.fake_http import JsonHandler, local_server

pytestmark = pytest.mark.django_db
Kind = ReconciliationItem.Kind
PAGE = 2  # the fake's page size: fewer than asked for, so the library has to follow has_more


class FakeStripeApi:
    """Checkout Sessions (POST) and balance transactions (GET, newest first, ``PAGE`` per page)."""

    def __init__(self) -> None:
        self.transactions: list[dict] = []  # balance transactions, each with its charge under "source"
        self.listings: list[dict] = []  # the query of every balance-transaction request
        self.sessions: dict[str, str] = {}  # Checkout Session id → its PaymentIntent, for GET of a session
        self.refuse_key = False
        api = self

        class Handler(JsonHandler):
            def do_POST(self):
                form = dict(parse_qsl(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
                session_id = f"cs_test_{form['client_reference_id'][:12]}"
                self._answer(200, {"id": session_id, "object": "checkout.session", "url": "https://stripe.test/"})

            def do_GET(self):
                url = urlsplit(self.path)
                query = dict(parse_qsl(url.query))
                if url.path.startswith("/v1/checkout/sessions/"):
                    session_id = url.path.rsplit("/", 1)[1]
                    if session_id not in api.sessions:
                        error = {"type": "invalid_request_error", "message": "No such checkout.session"}
                        return self._answer(404, {"error": error})
                    answer = {
                        "id": session_id,
                        "object": "checkout.session",
                        "payment_intent": api.sessions[session_id],
                    }
                    return self._answer(200, answer)
                if url.path != "/v1/balance_transactions":
                    return self._answer(404, {"error": {"type": "invalid_request_error", "message": "no such path"}})
                api.listings.append({"query": query, "authorization": self.headers.get("Authorization")})
                if api.refuse_key:
                    return self._answer(401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}})
                since, until = int(query["created[gte]"]), int(query["created[lt]"])
                rows = [t for t in api.transactions if since <= t["created"] < until]
                rows.sort(key=lambda t: (-t["created"], t["id"]))
                if "starting_after" in query:
                    position = [t["id"] for t in rows].index(query["starting_after"])
                    rows = rows[position + 1 :]
                page = [
                    {**t, "source": t["source"] if query.get("expand[0]") == "data.source" else t["source"]["id"]}
                    for t in rows[:PAGE]
                ]
                self._answer(
                    200,
                    {"object": "list", "url": "/v1/balance_transactions", "has_more": len(rows) > PAGE, "data": page},
                )

        self.server, self.url, self.thread = local_server(Handler)

    def charge(self, charge_id: str, *, amount: int, currency: str, created, payment_intent: str = "", **txn):
        """A charge as Stripe books it: ``amount`` in the customer's currency; the balance transaction
        itself may be in the settlement currency (``txn`` overrides)."""
        self.transactions.append(
            {
                "id": f"txn_{charge_id}",
                "object": "balance_transaction",
                "type": "charge",
                "amount": amount,
                "currency": currency.lower(),
                "created": int(created.timestamp()),
                "status": "available",
                "source": {
                    "id": charge_id,
                    "object": "charge",
                    "amount": amount,
                    "currency": currency.lower(),
                    "payment_intent": payment_intent or None,
                    "status": "succeeded",
                    "paid": True,
                },
                **txn,
            }
        )


@pytest.fixture
def stripe_api():
    fake = FakeStripeApi()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def epay():
    fake = FakeEpay()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _stripe_paid(number: int, schema: str = "alpha") -> PaymentAttempt:
    """A Stripe payment taken the real way: Checkout Session, then the signed webhook (with its PaymentIntent)."""
    with schema_context(schema):
        order = place(product_with_codes(codes=2), 1)
        attempt, _url = payment_start(order=order, provider_code="stripe")
        attempt.refresh_from_db()
    response = _send(_event(attempt, event_id=f"evt_{number}", payment_intent=f"pi_{number}"))
    assert response.status_code == 200, response.content
    with schema_context(schema):
        attempt.refresh_from_db()
    assert attempt.gateway_reference == f"pi_{number}"
    return attempt


def _stripe_day(stripe_api, django_capture_on_commit_callbacks):
    """Four paid orders; at Stripe: one matching, one missing, one with another amount, one unknown
    charge, one charge settled in another currency (matches on the charge's own amount), a refund, a
    payout, and two charges of the next day (one close enough to midnight to be fetched)."""
    stripe_configure(stripe_api.url)
    with django_capture_on_commit_callbacks(execute=False):
        matching, missing, other_amount, settled = (_stripe_paid(n) for n in range(1, 5))
    now = matching.succeeded_at
    currency = matching.currency
    stripe_api.charge("ch_1", amount=1500, currency=currency, created=now, payment_intent="pi_1")
    stripe_api.charge("ch_3", amount=1400, currency=currency, created=now, payment_intent="pi_3")
    stripe_api.charge("ch_4", amount=1500, currency=currency, created=now, payment_intent="pi_4")
    stripe_api.transactions[-1].update(amount=10700, currency="cny")  # settled in CNY: not the charge's amount
    stripe_api.charge("ch_unknown", amount=990, currency=currency, created=now, payment_intent="pi_unknown")
    day = timezone.localtime(now).date()
    _since, until = day_bounds(day)
    # Fetched (it could be one of our payments of 23:59), but not the day's: never "missing in ours".
    stripe_api.charge("ch_after_midnight", amount=500, currency=currency, created=until + timedelta(minutes=30))
    stripe_api.charge("ch_next_day", amount=700, currency=currency, created=until + timedelta(hours=5))
    stripe_api.transactions += [
        {"id": "txn_refund", "type": "refund", "amount": -500, "currency": "usd", "created": int(now.timestamp()),
         "source": {"id": "re_1", "object": "refund"}},
        {"id": "txn_payout", "type": "payout", "amount": -9000, "currency": "usd", "created": int(now.timestamp()),
         "source": {"id": "po_1", "object": "payout"}},
    ]  # fmt: skip
    return day, {"matching": matching, "missing": missing, "other_amount": other_amount, "settled": settled}


def _items(run: ReconciliationRun) -> set[tuple[str, str]]:
    return set(run.items.values_list("kind", "reference"))


def test_a_stripe_day_lists_each_kind_of_mismatch_from_every_page(stripe_api, django_capture_on_commit_callbacks):
    day, attempts = _stripe_day(stripe_api, django_capture_on_commit_callbacks)
    with schema_context("alpha"):
        # Paid before the PaymentIntent was kept: it is asked for (the session of "missing" is unknown).
        PaymentAttempt.objects.filter(pk__in=[attempts["matching"].pk, attempts["missing"].pk]).update(
            gateway_reference=""
        )
        stripe_api.sessions[attempts["matching"].external_id] = "pi_1"
        run = reconciliation_run(provider="stripe", day=day)
        assert PaymentAttempt.objects.get(pk=attempts["matching"].pk).gateway_reference == "pi_1"
        assert run.status == ReconciliationRun.Status.COMPLETED, (run.error_code, run.error_message)
        assert _items(run) == {
            (Kind.MISSING_AT_GATEWAY, attempts["missing"].external_id),
            (Kind.AMOUNT, "ch_3"),
            (Kind.MISSING_OURS, "ch_unknown"),
        }
        amount_item = run.items.get(kind=Kind.AMOUNT)
        assert (amount_item.attempt_id, amount_item.ours_amount, amount_item.theirs_amount) == (
            attempts["other_amount"].pk,
            Decimal("15.00"),
            Decimal("14.00"),
        )
        assert run.items.get(kind=Kind.MISSING_OURS).theirs_amount == Decimal("9.90")
    assert (run.ours_count, run.ours_total) == (4, Decimal("60.00"))
    assert (run.theirs_count, run.theirs_total) == (4, Decimal("53.90"))  # ch_1, ch_3, ch_4, ch_unknown
    assert (run.matched_count, run.mismatch_count) == (2, 3)  # ch_1 and ch_4
    # The library followed has_more: 7 transactions in the fetched window, 2 a page, with the same filters.
    assert len(stripe_api.listings) == 4
    first, *later = stripe_api.listings
    assert "starting_after" not in first["query"] and all("starting_after" in page["query"] for page in later)
    for page in stripe_api.listings:
        assert page["authorization"] == f"Bearer {'sk_test_' + 's' * 24}"
        assert page["query"]["expand[0]"] == "data.source"
        assert int(page["query"]["created[gte]"]) < int(run.started_at.timestamp()) < int(page["query"]["created[lt]"])


def test_running_a_day_again_replaces_its_items_and_keeps_resolutions(
    stripe_api, django_capture_on_commit_callbacks, alpha
):
    day, attempts = _stripe_day(stripe_api, django_capture_on_commit_callbacks)
    with schema_context("alpha"):
        first = reconciliation_run(provider="stripe", day=day)
        before = _items(first)
        unknown = first.items.get(kind=Kind.MISSING_OURS)
        reconciliation_item_resolve(item_id=unknown.pk, actor=None, note="Test charge made from the dashboard")
        again = reconciliation_run(provider="stripe", day=day)
        assert again.pk == first.pk and ReconciliationRun.objects.count() == 1
        assert _items(again) == before and ReconciliationItem.objects.count() == 3
        kept = again.items.get(kind=Kind.MISSING_OURS)
        assert kept.resolution_note == "Test charge made from the dashboard" and kept.resolved_at is not None
        assert not again.items.filter(resolved_at__isnull=False).exclude(pk=kept.pk).exists()

        # The missing payment turns up at Stripe: the next run no longer lists it.
        missing = attempts["missing"]
        stripe_api.charge("ch_2", amount=1500, currency=missing.currency, created=missing.succeeded_at,
                          payment_intent="pi_2")  # fmt: skip
        third = reconciliation_run(provider="stripe", day=day)
        assert _items(third) == before - {(Kind.MISSING_AT_GATEWAY, missing.external_id)}
        assert third.matched_count == 3


def test_a_refused_key_is_a_failed_run_shown_in_the_admin(stripe_api, staff_client):
    stripe_configure(stripe_api.url)
    stripe_api.refuse_key = True
    yesterday = timezone.localdate() - timedelta(days=1)
    response = staff_client.post(
        "/admin/payments/reconciliationrun/run/", {"provider": "stripe", "day": yesterday.isoformat()}
    )
    assert response.status_code == 302
    with schema_context("alpha"):
        run = ReconciliationRun.objects.get()
    assert (run.status, run.error_code, run.day) == (ReconciliationRun.Status.FAILED, "gateway_auth_failed", yesterday)
    page = staff_client.get(response["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert "Stripe refused the shop&#x27;s secret key." in text and "gateway_auth_failed" in text
    assert "sk_test_" not in text


def test_epay_reports_a_payment_the_gateway_took_that_we_still_have_as_created(epay, staff_client):
    epay_configure(epay.url)
    with schema_context("alpha"):
        variant = product_with_codes(codes=5)
        paid, lost, abandoned = (payment_start(order=place(variant, 1), provider_code="epay")[0] for _ in range(3))
    for attempt in (paid, lost):
        epay.paid(attempt)
    with schema_context("alpha"):
        assert payment_callback_handle(provider_code="epay", data=_notify(paid)) == (True, "ok")
        epay.queries.clear()
        run = reconciliation_run(provider="epay", day=timezone.localdate())
        assert _items(run) == {(Kind.GATEWAY_PAID_OURS_NOT, f"EP{lost.pk}")}
        item = run.items.get()
        assert (item.attempt_id, item.ours_status, item.theirs_amount) == (lost.pk, "created", lost.amount)
        assert (run.ours_count, run.theirs_count, run.matched_count) == (1, 2, 1)  # paid + lost
    # Each of the day's attempts asked once (paid, and the two still open); the key never shown.
    assert sorted(q["out_trade_no"] for q in epay.queries) == sorted([paid.token, lost.token, abandoned.token])
    page = staff_client.get(f"/admin/payments/reconciliationrun/{run.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"/admin/orders/order/{lost.order_id}/confirm-payment/" in text and "K" * 32 not in text


def test_a_run_in_alpha_never_sees_betas_payments(epay):
    epay_configure(epay.url, "alpha")
    epay_configure(epay.url, "beta")
    with schema_context("beta"):
        theirs = payment_start(order=place(product_with_codes(codes=2), 1), provider_code="epay")[0]
    epay.paid(theirs)
    with schema_context("beta"):
        assert payment_callback_handle(provider_code="epay", data=_notify(theirs))[0]
    with schema_context("alpha"):
        ours = payment_start(order=place(product_with_codes(codes=2), 1), provider_code="epay")[0]
        epay.queries.clear()
        run = reconciliation_run(provider="epay", day=timezone.localdate())
        assert (run.ours_count, run.theirs_count, run.mismatch_count) == (0, 0, 0)
    assert [q["out_trade_no"] for q in epay.queries] == [ours.token]
    with schema_context("beta"):
        assert not ReconciliationRun.objects.exists()
        beta_run = reconciliation_run(provider="epay", day=timezone.localdate())
        assert (beta_run.ours_count, beta_run.matched_count) == (1, 1)
    with schema_context("alpha"):
        assert ReconciliationRun.objects.get().ours_count == 0


def _sandbox_paid(count: int) -> list[PaymentAttempt]:
    with schema_context("alpha"):
        payment_channel_save(channel=PaymentChannel(), provider="sandbox", name="Bank transfer", secret="x")
        variant = product_with_codes(codes=count + 1)
        for _ in range(count):
            assert pay(place(variant, 1))[0]
        return list(PaymentAttempt.objects.filter(status="succeeded").order_by("pk"))


@pytest.mark.parametrize(
    ("encoding", "sep", "header", "statuses"),
    [
        ("utf-8", ",", "Trade No,Out_Trade_No,Money,Currency,Paid At,Status", ("SUCCESS", "paid", "成功")),
        ("gb18030", ";", "交易号;商户订单号;金额;币种;交易时间;交易状态", ("成功", "已支付", "TRADE_SUCCESS")),
    ],
)
def test_a_csv_statement_is_compared_with_the_days_payments(staff_client, encoding, sep, header, statuses):
    first, second, third = _sandbox_paid(3)
    now = timezone.localtime(first.succeeded_at)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    cur = first.currency
    rows = [
        header,
        sep.join(["G1", first.token, "15.00", cur, stamp, statuses[0]]),  # matches on our reference
        sep.join([second.external_id, "", "¥14.00", cur, stamp, statuses[1]]),  # matches on the trade number
        sep.join(["G9", "", "8.00", cur, stamp, statuses[2]]),  # not ours
    ]
    upload = SimpleUploadedFile("statement.csv", "\r\n".join(rows).encode(encoding), content_type="text/csv")
    response = staff_client.post(
        "/admin/payments/reconciliationrun/upload/",
        {"provider": "sandbox", "day": now.date().isoformat(), "file": upload},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with schema_context("alpha"):
        run = ReconciliationRun.objects.get()
        assert (run.source, run.file_name) == (ReconciliationRun.Source.CSV, "statement.csv")
        assert _items(run) == {
            (Kind.AMOUNT, second.external_id),
            (Kind.MISSING_OURS, "G9"),
            (Kind.MISSING_AT_GATEWAY, third.external_id),
        }
    assert (run.ours_total, run.theirs_total, run.matched_count) == (Decimal("45.00"), Decimal("37.00"), 1)
    report = staff_client.get(response["Location"])
    assert report.status_code == 200 and "G9" in report.content.decode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The submitted file is empty."),
        (b"reference,when\nT1,2026-01-01\n", "found no amount column"),
        (b"trade_no,amount\nT1,15.00\nT2,abc\nT3,-1\nT1,2.00\n", "row 3: abc is not a positive amount"),
        (b"trade_no,amount,status\nT1,15.00,maybe\n", "row 2: unknown status maybe"),
        (b"trade_no,amount,time\nT1,15.00,yesterday-ish\n", "row 2: yesterday-ish is not a date/time"),
        (b"trade_no,amount\n", "The file has a header but no rows."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "This is not a CSV text file."),
        (b'trade_no,amount\n"T1,15.00\n', "not valid CSV"),
    ],
)
def test_a_malformed_csv_is_a_form_error_and_stores_nothing(staff_client, content, message):
    _sandbox_paid(1)
    upload = SimpleUploadedFile("bad.csv", content, content_type="text/csv")
    response = staff_client.post(
        "/admin/payments/reconciliationrun/upload/",
        {"provider": "sandbox", "day": timezone.localdate().isoformat(), "file": upload},
    )
    assert response.status_code == 200
    assert message in response.content.decode().replace("&quot;", '"')
    with schema_context("alpha"):
        assert not ReconciliationRun.objects.exists()


def test_a_channel_without_an_automatic_source_cannot_be_run_without_a_file(staff_client):
    _sandbox_paid(1)
    with schema_context("alpha"):
        with pytest.raises(ReconciliationFailed) as refused:
            reconciliation_run(provider="sandbox", day=timezone.localdate())
    assert refused.value.code == "no_automatic_source"
    response = staff_client.post(
        "/admin/payments/reconciliationrun/run/", {"provider": "sandbox", "day": timezone.localdate().isoformat()}
    )
    assert response.status_code == 200  # sandbox is not offered for an automatic run
    with schema_context("alpha"):
        assert not ReconciliationRun.objects.exists()


def test_the_daily_task_reconciles_yesterday_per_shop_through_the_dispatcher(stripe_api, epay):
    entry = settings.CELERY_BEAT_SCHEDULE["payments-reconcile-yesterday"]
    assert entry["task"] == "core.tasks.branches_dispatch"
    assert entry["args"] == [reconciliation_daily_task.name] and entry["kwargs"] == {"include_platform": True}
    stripe_configure(stripe_api.url)
    with schema_context("alpha"):
        payment_channel_save(channel=PaymentChannel(), provider="sandbox", name="Bank transfer", secret="x")
        payment_channel_save(
            channel=PaymentChannel(), provider="epay", name="支付宝", is_enabled=False, config={}, secret="k"
        )  # disabled and no payments yesterday: skipped
        assert reconciliation_daily_task() == 1
        assert reconciliation_daily_task() == 1  # safe twice
        run = ReconciliationRun.objects.get()
    assert (run.provider, run.day, run.status) == ("stripe", timezone.localdate() - timedelta(days=1), "completed")
    assert len(stripe_api.listings) == 2


def _statement(count: int) -> bytes:
    return ("trade_no,amount\n" + "".join(f"G{n},1.00\n" for n in range(count))).encode()


def test_staff_resolve_a_mismatch_with_a_note_and_the_report_keeps_its_query_count(staff_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payments.reconciliation import reconciliation_run_csv

    _sandbox_paid(1)
    today = timezone.localdate()
    counts = []
    for rows in (2, 20):
        with schema_context("alpha"):
            run = reconciliation_run_csv(provider="sandbox", day=today, content=_statement(rows))
        assert run.mismatch_count == rows + 1  # our payment is not in the statement
        url = f"/admin/payments/reconciliationrun/{run.pk}/change/"
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        counts.append(len(queries))
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get("/admin/payments/reconciliationrun/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[2] and counts[1] == counts[3]

    with schema_context("alpha"):
        item = run.items.get(reference="G7")
    assert staff_client.post(url, {"item": item.pk, "note": "  "}).status_code == 200  # a note is required
    response = staff_client.post(url, {"item": item.pk, "note": "Refunded by the gateway on the 3rd"})
    assert response.status_code == 302
    with schema_context("alpha"):
        item.refresh_from_db()
        assert item.resolution_note == "Refunded by the gateway on the 3rd"
        assert item.resolved_by.email == "owner@alpha.test" and item.resolved_at is not None
        assert run.items.filter(resolved_at__isnull=False).count() == 1
    assert "Refunded by the gateway on the 3rd" in staff_client.get(url).content.decode()


def test_site_a_reconciles_its_own_channel_in_its_own_admin(epay):
    from core.management.commands.seed_demo import demo_admin_ensure
    from payments.services import payment_start_for

    demo_admin_ensure("root@site-a.test", "root-pass-12345")
    site_admin = host_client("localhost")
    assert site_admin.post("/accounts/login/", {"login": "root@site-a.test", "password": "root-pass-12345"}).status_code
    epay_configure(epay.url, "public")
    with schema_context("public"):
        order_attempt = payment_start(order=place(product_with_codes(codes=2), 1), provider_code="epay")[0]
        top_up_attempt = payment_start_for(
            purpose=PaymentAttempt.Purpose.BRANCH_TOP_UP,
            subject_id=4242,
            amount=Decimal("100.00"),
            currency=order_attempt.currency,
            provider_code="epay",
        )[0]
    epay.paid(order_attempt)
    epay.paid(top_up_attempt, money="90.00")
    response = site_admin.post(
        "/admin/payments/reconciliationrun/run/", {"provider": "epay", "day": timezone.localdate().isoformat()}
    )
    assert response.status_code == 302
    with schema_context("public"):
        run = ReconciliationRun.objects.get()
        assert _items(run) == {
            (Kind.GATEWAY_PAID_OURS_NOT, f"EP{order_attempt.pk}"),
            (Kind.GATEWAY_PAID_OURS_NOT, f"EP{top_up_attempt.pk}"),
        }
    page = site_admin.get(response["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert f"/admin/orders/order/{order_attempt.order_id}/confirm-payment/" in text and "#4242" in text
    with schema_context("alpha"):
        assert not ReconciliationRun.objects.exists()


def test_a_statement_saying_unpaid_or_in_another_currency_is_a_status_or_currency_mismatch():
    from payments.reconciliation import reconciliation_run_csv

    first, second, third = _sandbox_paid(3)
    other = "EUR" if first.currency != "EUR" else "USD"
    statement = (
        "out_trade_no\tamount\tcurrency\tstatus\n"
        f"{first.token}\t15.00\t{other}\tsuccess\n"
        f"{second.token}\t15.00\t\tclosed\n"
        f"{third.token}\t15.00\t{third.currency.lower()}\t\n"
    )
    with schema_context("alpha"):
        run = reconciliation_run_csv(provider="sandbox", day=timezone.localdate(), content=statement.encode())
        assert _items(run) == {(Kind.CURRENCY, first.token), (Kind.OURS_PAID_GATEWAY_NOT, second.token)}
        assert run.items.get(kind=Kind.CURRENCY).theirs_currency == other
    assert (run.matched_count, run.theirs_count, run.theirs_total) == (1, 2, Decimal("15.00"))
