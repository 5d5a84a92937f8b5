"""TWO SEPARATE SERVER PROCESSES TALKING OVER REAL HTTP: a branch (alpha) and Site A.

Unlike ``branch_api/upstream/tests`` (Site A served in-process through ``httpx.WSGITransport``), this
test starts Site A and the branch as two gunicorn processes, each its own OS process with its own
Django, database connections and URL routing, on two free ports of 127.0.0.1, against the test run's
TEST database (the same DATABASE_URL, REDIS_URL, SECRET_KEY, encryption keys and code pepper as this
process). Everything the branch and Site A say to each other crosses a real TCP socket:

1. alpha's connection is pointed at the Site A process (``http://127.0.0.1:<port>``, Host ``localhost``);
2. alpha's staff signs in on the branch process and presses "Full resync": the branch process pulls
   Site A's catalog from the Site A process;
3. a customer buys the copied product on the branch process (CSRF cookie + token, sandbox "Pay");
   the order waits in ``awaiting_upstream`` (no Celery worker runs here);
4. fulfilment runs in this process (``upstream_fulfil``) with the real network transport: it buys the
   code from the Site A process, which debits alpha's prepaid balance and assigns one of its codes;
5. the order page served by the branch process shows exactly the code Site A assigned, and Site A's
   ledger moved alpha's balance by the cost (10), the customer having paid the branch's price (15).

Data is committed (``live_db``); both processes are stopped in a ``finally`` block.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django_tenants.utils import schema_context

from branch_api.provider.models import BranchPurchase
from branch_api.provider.tests.conftest import site_a_product, top_up
from branch_api.upstream import client as upstream_client
from branch_api.upstream.models import UpstreamConnection, UpstreamPurchase, UpstreamSelection
from branch_api.upstream.services import FulfilOutcome, branch_markup_set, selection_add, upstream_fulfil
from cardvault.models import CardAssignment
from cardvault.services import cards_reveal
from catalog.models import Variant
from conftest import DEMO
from ledger.services import ledger_check
from orders.models import Order

pytestmark = pytest.mark.timeout(120)

D = Decimal
ROOT = Path(__file__).resolve().parent.parent
BRANCH_HOST = f"alpha.{settings.PLATFORM_DOMAIN}"
SITE_A_HOST = settings.PLATFORM_DOMAIN
READY_SECONDS = 30


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_database_url() -> str:
    """The test run's database as a DATABASE_URL (``config.env.database_from_url`` reads it back)."""
    db = connection.settings_dict
    assert db["NAME"].startswith("test_"), "the server processes must use the test database"
    auth = ""
    if db["USER"]:
        auth = quote(db["USER"], safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "") + "@"
    port = f":{db['PORT']}" if db["PORT"] else ""
    host = db["HOST"] or ""
    query = []
    if host.startswith("/"):  # the embedded server listens on a Unix socket directory
        query.append(f"host={quote(host, safe='')}")
        host = ""
    if (db.get("OPTIONS") or {}).get("sslmode"):
        query.append(f"sslmode={db['OPTIONS']['sslmode']}")
    return f"postgresql://{auth}{host}{port}/{quote(db['NAME'], safe='')}" + (f"?{'&'.join(query)}" if query else "")


def _server_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "CODE_HMAC_PEPPER": settings.CODE_HMAC_PEPPER,
        "PLATFORM_DOMAIN": settings.PLATFORM_DOMAIN,
        # No connection outlives its request: the session's cleanup truncates tables, then drops the database.
        "DB_CONN_MAX_AGE": "0",
        "PYTHONUNBUFFERED": "1",
    }


class Server:
    """One gunicorn process serving the whole platform (Site A and every branch, routed by Host)."""

    def __init__(self, name: str, log_dir: Path):
        self.name = name
        self.port = _free_port()
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--no-control-socket",
            "--log-level",
            "warning",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=_server_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, deadline: float) -> None:
        """Poll /healthz until the server answers anything (503 is fine: no Celery worker runs here)."""
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the {self.name} server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                httpx.get(f"{self.url}/healthz", headers={"Host": SITE_A_HOST}, timeout=2.0)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the {self.name} server did not answer in {READY_SECONDS}s:\n{self.log_tail()}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # gunicorn's master stops its worker gracefully
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)  # the session started for this server only
            self.process.wait(timeout=5)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Browser:
    """A cookie-keeping HTTP client for one host on one server, posting forms with Django's CSRF token."""

    def __init__(self, server: Server, host: str):
        self.http = httpx.Client(base_url=server.url, headers={"Host": host}, timeout=30.0, follow_redirects=False)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post_form(self, path: str, data: dict) -> httpx.Response:
        token = self.http.cookies.get("csrftoken")
        assert token, f"no csrftoken cookie before POST {path}"
        return self.http.post(path, data={**data, "csrfmiddlewaretoken": token})

    def close(self) -> None:
        self.http.close()


def _site_a_codes_sold_to(remote: Variant) -> list[str]:
    with schema_context("public"):
        assignments = CardAssignment.objects.filter(order_line__variant=remote).select_related("card")
        return sorted(c.code for c in cards_reveal(cards=[a.card for a in assignments], channel="admin"))


def _alpha_balance_at_site_a() -> Decimal:
    from branch_api.provider.services import branch_balance_account
    from tenants.models import Branch

    with schema_context("public"):
        return branch_balance_account(Branch.objects.get(slug="alpha")).natural_balance


def test_a_branch_process_sells_a_code_bought_from_a_site_a_process_over_real_http(live_db, tmp_path):
    assert upstream_client.DEFAULT_TRANSPORT is None  # real network from this process too

    # Site A (committed): a product costing alpha 10, with three codes; alpha prepaid 100.
    remote = site_a_product(codes=3, cost="8.00", price="10.00", visible_to=("alpha",))
    top_up("alpha", "100.00")
    with schema_context("public"):
        site_a_stock = sorted(c.code for c in cards_reveal(cards=list(remote.cards.order_by("pk")), channel="admin"))

    site_a, branch = Server("site-a", tmp_path), Server("branch", tmp_path)
    with schema_context("alpha"):
        saved_connection = UpstreamConnection.objects.values().get()
    staff = customer = None
    try:
        site_a.start()
        branch.start()
        deadline = time.monotonic() + READY_SECONDS
        site_a.wait_ready(deadline)
        branch.wait_ready(deadline)

        with schema_context("alpha"):
            # The branch's connection points at the Site A *process*; it sells that product at +50 %.
            UpstreamConnection.objects.filter(pk=saved_connection["id"]).update(
                base_url=site_a.url, host_header=SITE_A_HOST, is_enabled=True, sync_cursor=""
            )
            selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=remote.product_id)
            branch_markup_set(percent=D("50"))
            assert not Variant.objects.filter(upstream_id=remote.pk).exists()

        # --- The branch's staff presses "Full resync" on the branch process. ---
        staff = Browser(branch, BRANCH_HOST)
        assert staff.get("/accounts/login/").status_code == 200
        email, password = DEMO["alpha"][1], DEMO["alpha"][2]
        login = staff.post_form("/accounts/login/", {"login": email, "password": password})
        assert login.status_code == 302, login.text[:2000]
        change_url = f"/admin/branch_upstream/upstreamconnection/{saved_connection['id']}/change/"
        assert staff.get(change_url).status_code == 200
        synced = staff.post_form(f"/admin/branch_upstream/upstreamconnection/{saved_connection['id']}/full-sync/", {})
        assert synced.status_code == 302 and synced.headers["location"].endswith(change_url), synced.text[:2000]
        page = staff.get(change_url).text
        assert "Sync done: full: 1 new" in page, page[-3000:]

        with schema_context("alpha"):
            local = Variant.objects.select_related("product").get(upstream_id=remote.pk)
            row = UpstreamConnection.objects.get()
        assert (local.cost, local.upstream_stock, local.product.is_active) == (D("10.00"), 3, True)
        assert row.status == UpstreamConnection.Status.OK and row.sync_cursor

        # --- A customer buys it on the branch process. ---
        customer = Browser(branch, BRANCH_HOST)
        product_page = customer.get(f"/p/{local.product.slug}/")
        assert product_page.status_code == 200
        shown = re.search(r'name="expected_price" id="expected_price" value="([^"]*)"', product_page.text)
        assert shown and D(shown.group(1)) == D("15.00")  # Site A's cost 10 + the branch's 50 %
        bought = customer.post_form(
            f"/p/{local.product.slug}/buy/",
            {
                "variant": str(local.pk),
                "quantity": "1",
                "expected_price": shown.group(1),
                "email": "buyer@example.test",
                "lookup_password": "lookup-pass",
                "payment": "sandbox",
            },
        )
        assert bought.status_code == 302, bought.text[:3000]
        gateway_path = bought.headers["location"]
        assert gateway_path.startswith("/pay/sandbox/")
        assert customer.get(gateway_path).status_code == 200
        paid = customer.post_form(gateway_path, {"action": "pay"})
        assert paid.status_code == 302
        order_path = paid.headers["location"]
        number = re.fullmatch(r"/orders/([A-Z0-9]+)/", order_path).group(1)

        status = customer.get(f"/orders/{number}/status").json()
        assert status["status"] == Order.Status.AWAITING_UPSTREAM and not status["final"]
        waiting_page = customer.get(order_path).text
        assert 'data-testid="code"' not in waiting_page
        with schema_context("alpha"):
            order = Order.objects.get(number=number)
            assert order.total == D("15.00") and order.paid_at is not None
        assert _alpha_balance_at_site_a() == D("100.00")  # nothing bought from Site A yet
        assert _site_a_codes_sold_to(remote) == []

        # --- Fulfilment: this process buys the code from the Site A process over HTTP. ---
        with schema_context("alpha"):
            # A Celery worker left running by an earlier test may be fulfilling the same order at this
            # moment (the payment queued it); Site A then answers our identical request "in flight".
            # Either way the order must end delivered, bought once.
            deadline = time.monotonic() + 30
            while upstream_fulfil(order_id=order.pk) != FulfilOutcome.DELIVERED:
                assert time.monotonic() < deadline, "the upstream purchase never completed"
                if Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED:
                    break
                time.sleep(0.5)
            purchase = UpstreamPurchase.objects.get(order_line__order=order)
            line_pk = order.lines.get().pk
            assert ledger_check() == []
        assert purchase.status == UpstreamPurchase.Status.DONE and purchase.reference == f"alpha:{line_pk}"

        sold = _site_a_codes_sold_to(remote)
        assert len(sold) == 1 and sold[0] in site_a_stock
        with schema_context("public"):
            site_a_purchase = BranchPurchase.objects.select_related("order").get(branch__slug="alpha")
            assert ledger_check() == []
        assert (site_a_purchase.reference, site_a_purchase.total) == (purchase.reference, D("10.00"))
        assert site_a_purchase.order.number == purchase.remote_number
        assert _alpha_balance_at_site_a() == D("90.00")  # moved by the cost, not the customer's price

        # --- The branch process shows the customer exactly the code Site A assigned. ---
        status = customer.get(f"/orders/{number}/status").json()
        assert status["status"] == Order.Status.DELIVERED and status["final"]
        delivered_page = customer.get(order_path).text
        shown_codes = re.findall(r'data-testid="code">([^<]+)</code>', delivered_page)
        assert shown_codes == sold
        codes_txt = customer.get(f"/orders/{number}/codes.txt")
        assert codes_txt.status_code == 200 and codes_txt.text.split() == sold
        # Someone else with the link sees the status but not the code.
        stranger = Browser(branch, BRANCH_HOST)
        try:
            other_view = stranger.get(order_path).text
            assert sold[0] not in other_view
        finally:
            stranger.close()
    finally:
        for browser in (staff, customer):
            if browser is not None:
                browser.close()
        branch.stop()
        site_a.stop()
        with schema_context("alpha"):
            values = {k: v for k, v in saved_connection.items() if k != "id"}
            UpstreamConnection.objects.filter(pk=saved_connection["id"]).update(**values)
        for server in (site_a, branch):
            print(f"--- {server.name} log ---\n{server.log_tail()}")
