"""E-mails render from file templates unless the shop's admin saved an override."""

import pytest
from django.core import mail
from django_tenants.utils import schema_context

from notifications.models import EmailLog, MessageTemplate
from notifications.services import email_send, message_render

pytestmark = pytest.mark.django_db


class _Order:
    number = "ABCD2345EFGH6789"


def test_file_template_is_the_default():
    with schema_context("alpha"):
        subject, text, html = message_render("order_delivered", {"order": _Order(), "lines": [], "order_url": "u"})
    assert "ABCD2345EFGH6789" in subject and "ABCD2345EFGH6789" in text and "<html>" in html


def test_an_admin_override_wins_only_in_its_own_shop():
    with schema_context("alpha"):
        MessageTemplate.objects.create(
            key="order_delivered",
            language="en",
            subject="Alpha: {{ order.number }}",
            body_text="Here you go: {{ order_url }}",
        )
        email_send(
            key="order_delivered",
            to="c@example.test",
            context={"order": _Order(), "order_url": "http://x/o/"},
            reference="ABCD2345EFGH6789",
        )
        assert EmailLog.objects.get(reference="ABCD2345EFGH6789").ok
    assert mail.outbox[0].subject == "Alpha: ABCD2345EFGH6789"
    assert mail.outbox[0].body == "Here you go: http://x/o/"
    with schema_context("beta"):
        subject, _text, _html = message_render("order_delivered", {"order": _Order(), "lines": []})
    assert not subject.startswith("Alpha")


def test_an_inactive_override_is_ignored():
    with schema_context("alpha"):
        MessageTemplate.objects.create(
            key="order_delivered", language="en", subject="Off", body_text="x", is_active=False
        )
        subject, _text, _html = message_render("order_delivered", {"order": _Order(), "lines": []})
    assert subject != "Off"
