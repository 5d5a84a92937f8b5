"""The storefront in Simplified Chinese: the header's switcher, templates, form and domain error messages."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from shop.tests.builders import V, category_create, product_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def steam(alpha):
    with schema_context("alpha"):
        cards = category_create("Gift cards")
        return product_create(
            cards, "Steam Wallet Code", (V("US $10", "10.50", codes=3), V("US $50", "51.00", codes=0))
        ).product


def _switch(client, language: str, next_url: str) -> None:
    response = client.post("/i18n/setlang/", {"language": language, "next": next_url})
    assert response.status_code == 302 and response["Location"] == next_url


def test_the_language_switcher_offers_both_languages(steam, alpha_client):
    page = alpha_client.get("/").content.decode()
    assert 'action="/i18n/setlang/"' in page
    assert 'name="language" value="en"' in page and 'name="language" value="zh-hans"' in page


def test_switching_to_chinese_renders_the_product_page_in_chinese(steam, alpha_client):
    _switch(alpha_client, "zh-hans", f"/p/{steam.slug}/")
    page = alpha_client.get(f"/p/{steam.slug}/").content.decode()
    assert '<html lang="zh-hans"' in page
    assert "立即购买" in page  # Buy now
    assert "剩余 3 件" in page  # 3 left
    assert "已售罄" in page  # Sold out
    assert "接收卡密的邮箱" in page  # the form's e-mail label (shop/forms.py)
    assert "查询订单" in page  # Find my order, in the header
    assert "Buy now" not in page

    _switch(alpha_client, "en", f"/p/{steam.slug}/")
    page = alpha_client.get(f"/p/{steam.slug}/").content.decode()
    assert '<html lang="en"' in page and "Buy now" in page and "立即购买" not in page


def test_checkout_errors_are_shown_in_chinese(steam, alpha_client):
    _switch(alpha_client, "zh-hans", "/")
    with schema_context("alpha"):
        variant = steam.variants.get(name="US $10")
    data = {"variant": variant.pk, "email": "guest@example.test", "lookup_password": "lookup-123", "payment": "sandbox"}

    stale_price = alpha_client.post(f"/p/{steam.slug}/buy/", {**data, "quantity": 1, "expected_price": "0.01"})
    assert stale_price.status_code == 400
    assert "打开页面后价格已发生变化，请确认新的总价。" in stale_price.content.decode()  # orders.errors.PriceChanged

    too_many = alpha_client.post(f"/p/{steam.slug}/buy/", {**data, "quantity": 99})
    assert "请选择 1 到 20 之间的数量。" in too_many.content.decode()

    no_password = alpha_client.post(f"/p/{steam.slug}/buy/", {**data, "quantity": 1, "lookup_password": ""})
    assert "请设置一个密码，以便日后查询此订单。" in no_password.content.decode()


def test_order_lookup_and_its_errors_are_in_chinese(alpha, alpha_client):
    _switch(alpha_client, "zh-hans", "/orders/lookup/")
    page = alpha_client.get("/orders/lookup/").content.decode()
    assert "查询您的订单" in page and "订单号" in page and "查询密码" in page
    response = alpha_client.post("/orders/lookup/", {"number": "NOPE", "email": "a@b.test", "password": "x"})
    assert "没有与这些信息匹配的订单。" in response.content.decode()


def test_a_subdomain_error_from_the_domain_layer_is_translated(public_client):
    public_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/signup/"})
    response = public_client.post(
        "/signup/", {"name": "Shop", "slug": "admin", "email": "o@example.test", "password": "pw-1234567890-x"}
    )
    assert "此子域名为保留地址，请另选一个。" in response.content.decode()  # tenants.errors.SlugReserved


def test_every_storefront_template_string_has_a_chinese_translation():
    """A string added to a customer-facing template without a catalog entry shows up in English in the
    middle of a Chinese page."""
    import re
    from pathlib import Path

    from django.conf import settings
    from django.utils.translation import trans_real

    catalog = trans_real.translation("zh-hans")._catalog
    templates = Path(settings.BASE_DIR) / "templates"
    missing = []
    for path in sorted(templates.rglob("*.html")):
        if path.relative_to(templates).parts[0] == "admin":  # staff pages
            continue
        text = path.read_text()
        strings = [m.group(1) for m in re.finditer(r'{%\s*trans\s+"((?:[^"\\]|\\.)*)"\s*%}', text)]
        for m in re.finditer(r"{%\s*blocktrans\b([^%]*)%}(.*?){%\s*endblocktrans\s*%}", text, re.S):
            if "{% plural" not in m.group(2):
                body = re.sub(r"{{\s*(\w+)\s*}}", r"%(\1)s", m.group(2))
                if "trimmed" in m.group(1):
                    body = " ".join(line.strip() for line in body.strip().splitlines())
                strings.append(body)
        missing += [f"{path.relative_to(templates)}: {s}" for s in strings if s not in catalog]
    assert not missing, missing
