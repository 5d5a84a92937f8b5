"""Staff edit e-mail templates in their shop's admin; broken templates are refused; the send log is read-only."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from notifications.models import EmailLog, MessageTemplate
from notifications.services import message_render

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/notifications/messagetemplate/add/"


class _Order:
    number = "ABCD2345EFGH6789"


def _template(**overrides) -> dict:
    return {
        "key": "order_delivered",
        "language": "en",
        "subject": "Your order {{ order.number }}",
        "body_text": "{% for item in lines %}{% for code, secret in item.codes %}{{ code }}{% endfor %}{% endfor %}",
        "body_html": "",
        "is_active": "on",
        **overrides,
    }


def test_add_page_documents_the_order_delivered_context(staff_client):
    body = staff_client.get(ADD_URL).content.decode()

    for variable in ("order_delivered", ".codes", ".notes", "shop_name", "order_url"):
        assert variable in body


def test_saved_template_is_used_for_the_shops_emails(staff_client):
    assert staff_client.post(ADD_URL, _template()).status_code == 302

    with schema_context("alpha"):
        subject, _text, _html = message_render("order_delivered", {"order": _Order(), "lines": [], "order_url": "u"})
    assert subject == "Your order ABCD2345EFGH6789"


def test_template_with_a_syntax_error_is_refused(staff_client):
    response = staff_client.post(ADD_URL, _template(body_text="{% for item in lines %}never closed"))

    assert response.status_code == 200
    assert "Template error" in response.content.decode()
    with schema_context("alpha"):
        assert not MessageTemplate.objects.exists()


def test_email_log_is_read_only(staff_client):
    with schema_context("alpha"):
        log = EmailLog.objects.create(key="order_delivered", to="c@example.test", subject="s", reference="R1")

    assert staff_client.get(f"/admin/notifications/emaillog/{log.pk}/change/").status_code == 200
    assert staff_client.get("/admin/notifications/emaillog/add/").status_code == 403
    assert staff_client.post(f"/admin/notifications/emaillog/{log.pk}/delete/", {"post": "yes"}).status_code == 403
