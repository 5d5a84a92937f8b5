"""A branch top-up through a gateway that is called over the network holds no transaction open meanwhile
(real commits: a test transaction would hide exactly that)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from django.db import connection
from django.test import override_settings
from django_tenants.utils import schema_context

from branch_api.provider.tests.conftest import signed_client_for
from payments.channels import payment_channel_save
from payments.models import PaymentChannel

TOP_UPS = "/api/branch/v1/top-ups"


def test_no_transaction_is_held_open_while_the_gateway_creates_a_top_up(live_db):
    """Stripe creates a Checkout Session over the network: meanwhile no connection of ours may sit in
    an open transaction (holding the rows it wrote, and a connection, for as long as the gateway takes)."""

    dsn = {k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "dbname")}
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with psycopg.connect(**dsn, autocommit=True) as db:
                open_ones = db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%%'"
                ).fetchone()[0]
            seen.append(open_ones)
            body = json.dumps(
                {"id": "cs_test_1", "object": "checkout.session", "url": "https://checkout.stripe.test/c/pay/cs_1"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with schema_context("public"):
            payment_channel_save(
                channel=PaymentChannel(),
                provider="stripe",
                name="Card",
                config={"api_base": f"http://127.0.0.1:{server.server_address[1]}"},
                secret=json.dumps({"secret_key": "sk_test_" + "s" * 24, "webhook_secret": "whsec_" + "w" * 32}),
            )
        with override_settings(PAYMENTS_SANDBOX_ENABLED=False):
            started = signed_client_for("alpha").post(TOP_UPS, {"amount": "30.00"}, idempotency_key="top-up-stripe-1")
        assert started.status_code == 201, started.content
        assert started.json()["pay_url"] == "https://checkout.stripe.test/c/pay/cs_1"
        assert seen == [0]
    finally:
        server.shutdown()
        server.server_close()
        with schema_context("public"):
            PaymentChannel.objects.filter(provider="stripe").delete()
