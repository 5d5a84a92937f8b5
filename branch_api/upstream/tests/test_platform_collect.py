"""Platform-collect mode: a branch's customer pays through Site A's channels, Site A books the sale to
the branch's balance and the branch buys the code at cost from it. THE worked example again: Site A
cost 10, branch price 15 → the branch's balance at Site A ends 5 higher, its ledger shows profit 5."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from django_tenants.utils import schema_context

from branch_api.provider import errors
from branch_api.provider.collect import branch_mode_set, branch_sale_payment_start, branch_sale_settle
from branch_api.provider.models import BranchSale, BranchTerms
from branch_api.provider.reports import branch_network_report
from branch_api.upstream.models import UpstreamPurchase, UpstreamSelection
from branch_api.upstream.services import branch_markup_set, selection_add, sync_full
from branch_api.upstream.tasks import upstream_fulfil_task
from catalog.models import Variant
from conftest import host_client
from ledger.models import Account, Transaction
from ledger.services import ledger_check
from orders.models import Order
from payments.models import PaymentAttempt, PaymentChannel
from payments.providers.sandbox import SandboxProvider
from payments.services import payment_callback_handle, payment_start
from tenants.models import Branch

from .conftest import alpha_balance_at_site_a, show_everything_to_alpha, site_a_variant

D = Decimal
S = Order.Status
SITE_A = "http://localhost"
ALPHA = "http://alpha.localhost"


@pytest.fixture
def collect_mode(site_a):
    """Alpha in platform-collect mode, with a channel of its own (which must then not be offered) and
    one of Site A's; both are removed and the mode is reset afterwards."""
    with schema_context("public"):
        branch_mode_set(branch=Branch.objects.get(slug="alpha"), mode=BranchTerms.Mode.PLATFORM_COLLECT)
        PaymentChannel.objects.create(provider="epay", name="Site A Alipay", config={"pid": "1"})
    with schema_context("alpha"):
        PaymentChannel.objects.create(provider="stripe", name="Alpha's own card channel")
    yield
    with schema_context("public"):
        BranchTerms.objects.filter(branch__slug="alpha").update(mode=BranchTerms.Mode.OWN_GATEWAY)
        PaymentChannel.objects.all().delete()
    with schema_context("alpha"):
        PaymentChannel.objects.all().delete()


def _alpha_sells_site_a_product(*, price: str = "10.00", codes: int = 1):
    remote = site_a_variant(price=price, codes=codes)
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=remote.product_id)
        branch_markup_set(percent=D("50"))
        sync_full()
        return remote, Variant.objects.select_related("product").get(upstream_id=remote.pk)


def _buy(local: Variant, payment: str = "sandbox"):
    data = {
        "variant": local.pk,
        "quantity": 1,
        "expected_price": "15.00",
        "email": "customer@example.test",
        "lookup_password": "lookup-123",
        "payment": payment,
    }
    return host_client("alpha.localhost").post(f"/p/{local.product.slug}/buy/", data)


def _wait_for(check, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)
    return check()


def _natural(code: str) -> Decimal:
    account = Account.objects.filter(code=code).first()
    return account.natural_balance if account else D("0.00")


def test_a_customer_pays_site_a_and_the_branch_keeps_its_profit_in_its_balance(
    collect_mode, celery_worker_thread, monkeypatch
):
    monkeypatch.delattr(upstream_fulfil_task, "delay")  # the real one: through Redis to the worker
    remote, local = _alpha_sells_site_a_product(price="10.00")
    assert alpha_balance_at_site_a() == D("0.00")  # nothing pre-paid: the sale itself funds the purchase

    page = host_client("alpha.localhost").get(f"/p/{local.product.slug}/").content.decode()
    assert "Site A Alipay" in page and "Alpha&#x27;s own card channel" not in page

    response = _buy(local)
    assert response.status_code == 302
    pay_url = response["Location"]
    assert pay_url.startswith(f"{SITE_A}/pay/sandbox/")  # Site A's payment page, on Site A's domain
    with schema_context("alpha"):
        order = Order.objects.get(email="customer@example.test")
        assert not PaymentAttempt.objects.exists()  # the branch opened nothing of its own
    with schema_context("public"):
        attempt = PaymentAttempt.objects.get(purpose=PaymentAttempt.Purpose.BRANCH_SALE)
        sale = BranchSale.objects.get(pk=attempt.subject_id)
    assert (sale.order_number, sale.amount, attempt.amount) == (order.number, D("15.00"), D("15.00"))

    payer = host_client("localhost")
    path = pay_url.removeprefix(SITE_A)
    assert order.number.encode() in payer.get(path).content
    # Declined first: back on the branch's order page, which says so (no charge, nothing credited).
    declined = payer.post(path, {"action": "decline"})
    assert declined["Location"] == f"{ALPHA}/orders/{order.number}/?payment=declined"
    assert alpha_balance_at_site_a() == D("0.00")
    paid = payer.post(path, {"action": "pay"})
    assert paid.status_code == 302 and paid["Location"] == f"{ALPHA}/orders/{order.number}/"

    with schema_context("alpha"):
        assert _wait_for(lambda: Order.objects.get(pk=order.pk).status == S.DELIVERED)
        order.refresh_from_db()
        revenue, cost = _natural("sales_revenue"), _natural("cost_of_goods")
        held_at_site_a = _natural("prepaid_upstream")
        clearing = _natural("payment_clearing")
        assert UpstreamPurchase.objects.get().status == UpstreamPurchase.Status.DONE
        assert ledger_check() == []
    assert (revenue, cost, revenue - cost) == (D("15.00"), D("10.00"), D("5.00"))
    assert order.payment_provider == "site_a"
    assert alpha_balance_at_site_a() == D("5.00")  # +15 collected, −10 bought at cost
    assert (held_at_site_a, clearing) == (D("5.00"), D("0.00"))  # the branch's ledger mirrors it

    with schema_context("public"):
        balance = Account.objects.get(code=f"branch:{Branch.objects.get(slug='alpha').pk}:balance")
        movements = sorted(balance.entries.values_list("transaction__kind", "amount"))
        assert movements == [("branch_sale", D("-15.00")), ("order_payment", D("10.00"))]
        assert BranchSale.objects.get().settled_at is not None
        assert ledger_check() == []
        today = timezone.localdate()
        row = next(r for r in branch_network_report(start=today, end=today) if r.branch.slug == "alpha")
    assert (row.opening_balance, row.top_ups, row.collected, row.purchases) == (D("0"), D("0"), D("15.00"), D("10.00"))
    assert row.closing_balance == row.opening_balance + row.collected - row.purchases + row.other == D("5.00")
    assert row.site_a_margin == row.purchases - row.site_a_cost

    from core.management.commands.seed_demo import demo_admin_ensure

    demo_admin_ensure("root@site-a.test", "root-pass-12345")
    admin = host_client("localhost")
    admin.post("/accounts/login/", {"login": "root@site-a.test", "password": "root-pass-12345"})
    sales = admin.get("/admin/branch_provider/branchsale/")
    assert sales.status_code == 200 and order.number.encode() in sales.content
    attempts = admin.get("/admin/payments/paymentattempt/")
    assert attempts.status_code == 200 and b"Branch sale collected by Site A" in attempts.content


def test_duplicate_concurrent_callbacks_credit_the_balance_once(collect_mode, celery_worker_thread):
    _remote, local = _alpha_sells_site_a_product(price="10.00", codes=2)
    with schema_context("alpha"):
        order = Order.objects.get(pk=_order_placed(local))
        attempt, _url = payment_start(order=order, provider_code="sandbox")
    with schema_context("public"):
        notification = SandboxProvider().notification(attempt=attempt)

    barrier, results = threading.Barrier(4), []

    def deliver():
        try:
            with schema_context("public"):
                barrier.wait()
                results.append(payment_callback_handle(provider_code="sandbox", data=dict(notification)))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [(True, "ok")] * 4
    with schema_context("public"):
        assert Transaction.objects.filter(kind="branch_sale").count() == 1
        assert ledger_check() == []
    with schema_context("alpha"):
        assert _wait_for(lambda: Order.objects.get(pk=order.pk).paid_at is not None)
    with schema_context("public"):
        sale = BranchSale.objects.get()
        assert _wait_for(lambda: BranchSale.objects.get().settled_at is not None)
    assert branch_sale_settle(sale_id=sale.pk)  # settling again (a repeated task) changes nothing
    with schema_context("alpha"):
        assert Order.objects.get(pk=order.pk).events.filter(to_status=S.PAID).count() == 1
        assert Transaction.objects.filter(kind="order_payment").count() == 1
        assert _natural("prepaid_upstream") == D("15.00")
        assert ledger_check() == []
    assert alpha_balance_at_site_a() == D("15.00")  # credited once; the purchase at cost is still queued


def _order_placed(local: Variant) -> int:
    from tests.commerce import place

    return place(local, 1).pk


def test_switching_modes_switches_the_channels_the_branch_offers(collect_mode):
    _remote, local = _alpha_sells_site_a_product()
    client = host_client("alpha.localhost")
    collecting = client.get(f"/p/{local.product.slug}/").content.decode()
    assert "Site A Alipay" in collecting and "own card channel" not in collecting

    with schema_context("public"):
        branch_mode_set(branch=Branch.objects.get(slug="alpha"), mode=BranchTerms.Mode.OWN_GATEWAY)
    own = client.get(f"/p/{local.product.slug}/").content.decode()
    assert "Site A Alipay" not in own and "own card channel" in own

    with schema_context("public"):
        branch_mode_set(branch=Branch.objects.get(slug="alpha"), mode=BranchTerms.Mode.PLATFORM_COLLECT)
    assert "Site A Alipay" in client.get(f"/p/{local.product.slug}/").content.decode()


def test_own_gateway_branch_cannot_use_site_a_channels(collect_mode):
    _remote, local = _alpha_sells_site_a_product()
    alpha = Branch.objects.get(slug="alpha")
    with schema_context("public"):
        branch_mode_set(branch=alpha, mode=BranchTerms.Mode.OWN_GATEWAY)

    refused = _buy(local, payment="epay")  # only Site A has an epay channel
    assert refused.status_code == 400
    with schema_context("alpha"):
        order_id = _order_placed(local)
    with schema_context("public"), pytest.raises(errors.CollectNotEnabled) as direct:
        branch_sale_payment_start(
            branch=alpha,
            order_number="ANY",
            order_id=order_id,
            amount=D("15.00"),
            currency="USD",
            provider_code="sandbox",
        )
    assert direct.value.code == "collect_not_enabled"
    with schema_context("public"):
        assert not BranchSale.objects.exists()
        assert not PaymentAttempt.objects.filter(purpose=PaymentAttempt.Purpose.BRANCH_SALE).exists()


def test_collecting_needs_the_branch_in_site_a_currency(collect_mode):
    with schema_context("public"):
        alpha = Branch.objects.get(slug="alpha")
        Branch.objects.filter(pk=alpha.pk).update(currency="EUR")
        try:
            alpha.refresh_from_db()
            with pytest.raises(errors.Invalid) as refused:
                branch_mode_set(branch=alpha, mode=BranchTerms.Mode.PLATFORM_COLLECT)
            assert "USD" in refused.value.message
        finally:
            Branch.objects.filter(pk=alpha.pk).update(currency="USD")
