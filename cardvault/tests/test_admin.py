"""The vault admin on a branch: import wizard, exports and reveals (all logged), no plaintext in lists."""

from __future__ import annotations

import base64
import csv
import io
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import override_settings
from django_tenants.utils import schema_context
from openpyxl import Workbook, load_workbook

from cardvault.crypto import card_decrypt
from cardvault.models import Card, CardReveal, ImportBatch
from cardvault.services import codes_parse_text, import_commit
from catalog.models import Category, Product, Variant
from conftest import DEMO

pytestmark = pytest.mark.django_db

IMPORT_URL = "/admin/cardvault/importbatch/import/"
CARDS_URL = "/admin/cardvault/card/"


@pytest.fixture
def variant():
    with schema_context("alpha"):
        category = Category.objects.create(name="Gift cards", slug="gift-cards")
        product = Product.objects.create(category=category, name="Steam card", slug="steam-card")
        return Variant.objects.create(product=product, sku="STEAM-25", name="$25", price=Decimal("27.00"))


def _import(variant: Variant, text: str, cost: str = "20.00") -> ImportBatch:
    with schema_context("alpha"):
        return import_commit(variant=variant, parsed=codes_parse_text(text), unit_cost=Decimal(cost), source="paste")


def _settings(variant: Variant, **extra) -> dict:
    return {"variant": variant.pk, "unit_cost": "20.00", "note": "from supplier X", "max_uses": "", **extra}


def _confirm_data(preview_response) -> dict:
    """What the browser posts back from the preview page: the hidden confirm form, as rendered."""
    form = preview_response.context["confirm_form"]
    data = {name: form[name].value() for name in form.fields}
    return {**{k: "" if v is None else v for k, v in data.items()}, "step": "confirm"}


def _alpha_counts() -> tuple[int, int, int]:
    with schema_context("alpha"):
        return Card.objects.count(), ImportBatch.objects.count(), CardReveal.objects.count()


# --- Import -------------------------------------------------------------------------------------------


def test_import_preview_counts_new_duplicate_and_invalid_lines_and_writes_nothing(staff_client, variant):
    _import(variant, "ALREADY-IN-VAULT")
    before = _alpha_counts()
    pasted = "NEW-CODE-1\nNEW-CODE-2|PIN-2\nALREADY-IN-VAULT\nNEW-CODE-1\n|no-code\n"

    response = staff_client.post(IMPORT_URL, {**_settings(variant), "step": "preview", "text": pasted})

    assert response.status_code == 200
    preview = response.context["preview"]
    assert (preview.total_lines, preview.new, preview.duplicates, preview.invalid) == (5, 2, 2, 1)
    assert preview.invalid_examples == [(5, "empty code before '|'")]
    body = response.content.decode()
    assert 'id="preview-new">2<' in body and 'id="preview-invalid">1<' in body and "Line 5" in body
    assert _alpha_counts() == before
    assert "no-store" in response["Cache-Control"]


def test_confirming_the_preview_imports_the_codes_as_one_batch(staff_client, variant):
    _import(variant, "ALREADY-IN-VAULT")
    pasted = "NEW-CODE-1\nNEW-CODE-2|PIN-2\nALREADY-IN-VAULT\nNEW-CODE-1\n|no-code\n"
    preview = staff_client.post(IMPORT_URL, {**_settings(variant), "step": "preview", "text": pasted})

    response = staff_client.post(IMPORT_URL, _confirm_data(preview))

    assert response.status_code == 302
    with schema_context("alpha"):
        batch = ImportBatch.objects.latest("pk")
        assert (batch.lines_total, batch.imported, batch.duplicates, batch.invalid) == (5, 2, 2, 1)
        assert batch.source == ImportBatch.Source.PASTE
        assert batch.unit_cost == Decimal("20.00") and batch.note == "from supplier X"
        assert batch.created_by.email == DEMO["alpha"][1]
        cards = {
            card_decrypt(c.code_encrypted, card_id=c.pk, variant_id=c.variant_id): (
                card_decrypt(c.secret_encrypted, card_id=c.pk, variant_id=c.variant_id) if c.secret_encrypted else ""
            )
            for c in batch.cards.all()
        }
    assert cards == {"NEW-CODE-1": "", "NEW-CODE-2": "PIN-2"}
    assert "2 code(s) imported" in staff_client.get(response["Location"]).content.decode()


def test_xlsx_upload_is_previewed_and_imported(staff_client, variant):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["code", "secret"])
    for row in (["XLSX-1", "PIN-1"], ["XLSX-2", None], ["XLSX-3", "PIN-3"], ["XLSX-1", "PIN-1"]):
        sheet.append(row)
    stream = io.BytesIO()
    workbook.save(stream)
    upload = SimpleUploadedFile("codes.xlsx", stream.getvalue())

    preview = staff_client.post(IMPORT_URL, {**_settings(variant), "step": "preview", "file": upload})
    assert preview.status_code == 200
    assert (preview.context["preview"].new, preview.context["preview"].duplicates) == (3, 1)
    assert _alpha_counts()[0] == 0

    assert staff_client.post(IMPORT_URL, _confirm_data(preview)).status_code == 302
    with schema_context("alpha"):
        batch = ImportBatch.objects.get()
        assert (batch.source, batch.imported, batch.duplicates) == (ImportBatch.Source.XLSX, 3, 1)
        secrets = sorted(
            card_decrypt(c.secret_encrypted, card_id=c.pk, variant_id=c.variant_id)
            for c in batch.cards.exclude(secret_encrypted="")
        )
    assert secrets == ["PIN-1", "PIN-3"]


def test_import_and_export_are_linked_from_the_changelists(staff_client, variant):
    assert IMPORT_URL in staff_client.get("/admin/cardvault/importbatch/").content.decode()
    assert CARDS_URL + "export/" in staff_client.get(CARDS_URL).content.decode()
    form = staff_client.get(IMPORT_URL)
    assert form.status_code == 200
    assert 'type="file"' in form.content.decode() and str(variant) in form.content.decode()


def test_import_without_codes_is_refused_with_a_form_error(staff_client, variant):
    response = staff_client.post(IMPORT_URL, {**_settings(variant), "step": "preview", "text": "  \n"})

    assert response.status_code == 200
    assert "Paste the codes or upload a file" in response.content.decode()
    assert _alpha_counts() == (0, 0, 0)


def test_staff_without_vault_permissions_cannot_import_or_export(alpha_client, variant):
    with schema_context("alpha"):
        clerk = get_user_model().objects.create_user(
            username="clerk", email="clerk@alpha.test", password="clerk-pass-123", is_staff=True
        )
        alpha_client.force_login(clerk)

    assert alpha_client.get(IMPORT_URL).status_code == 403
    assert alpha_client.get(CARDS_URL + "export/").status_code == 403


# --- Export and reveal ------------------------------------------------------------------------------------


def test_export_csv_action_contains_the_codes_and_logs_one_reveal_per_code(staff_client, variant):
    batch = _import(variant, "EXP-1|PIN-1\nEXP-2\nEXP-3")
    with schema_context("alpha"):
        ids = list(batch.cards.values_list("pk", flat=True))

    response = staff_client.post(CARDS_URL, {"action": "export_csv", "_selected_action": ids, "index": 0})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {(r["code"], r["secret"], r["variant_sku"], r["batch"]) for r in rows} == {
        ("EXP-1", "PIN-1", "STEAM-25", str(batch.pk)),
        ("EXP-2", "", "STEAM-25", str(batch.pk)),
        ("EXP-3", "", "STEAM-25", str(batch.pk)),
    }
    with schema_context("alpha"):
        reveals = list(CardReveal.objects.values_list("card_id", "channel", "user__email"))
    assert sorted(reveals) == sorted((pk, CardReveal.Channel.EXPORT, DEMO["alpha"][1]) for pk in ids)


def test_export_xlsx_keeps_codes_as_text(staff_client, variant):
    batch = _import(variant, "=1+1\nPLAIN-CODE")
    with schema_context("alpha"):
        ids = list(batch.cards.values_list("pk", flat=True))

    response = staff_client.post(CARDS_URL, {"action": "export_xlsx", "_selected_action": ids, "index": 0})

    sheet = load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("code", "secret", "variant_sku")
    assert sorted(row[0] for row in rows[1:]) == ["=1+1", "PLAIN-CODE"]
    with schema_context("alpha"):
        assert CardReveal.objects.filter(channel=CardReveal.Channel.EXPORT).count() == 2


def test_filtered_export_includes_only_matching_codes(staff_client, variant):
    _import(variant, "OLD-1\nOLD-2")
    wanted = _import(variant, "NEW-1\nNEW-2")
    with schema_context("alpha"):
        Card.objects.filter(batch=wanted, pk=wanted.cards.order_by("pk").first().pk).update(status=Card.Status.VOID)

    response = staff_client.post(
        CARDS_URL + "export/", {"status": "available", "batch": wanted.pk, "variant": "", "format": "csv"}
    )

    codes = [row["code"] for row in csv.DictReader(io.StringIO(response.content.decode()))]
    assert codes == ["NEW-2"]
    with schema_context("alpha"):
        assert CardReveal.objects.count() == 1


def test_reveal_button_shows_the_code_only_after_confirming_and_logs_it(staff_client, variant):
    batch = _import(variant, "REVEAL-ME|SECRET-PIN")
    with schema_context("alpha"):
        card = batch.cards.get()
    url = f"{CARDS_URL}{card.pk}/reveal/"

    change_page = staff_client.get(f"{CARDS_URL}{card.pk}/change/").content.decode()
    assert url in change_page  # the button on the code's page
    confirm_page = staff_client.get(url).content.decode()
    assert "REVEAL-ME" not in confirm_page
    with schema_context("alpha"):
        assert not CardReveal.objects.exists()

    revealed = staff_client.post(url)

    body = revealed.content.decode()
    assert "REVEAL-ME" in body and "SECRET-PIN" in body
    assert "no-store" in revealed["Cache-Control"]
    with schema_context("alpha"):
        reveal = CardReveal.objects.get()
    assert (reveal.card_id, reveal.channel, reveal.user.email) == (card.pk, CardReveal.Channel.ADMIN, DEMO["alpha"][1])


def test_admin_pages_never_show_plaintext_codes(staff_client, variant):
    codes = ["SECRET-CODE-AAAA|PIN-AAAA", "SECRET-CODE-BBBB"]
    batch = _import(variant, "\n".join(codes))
    with schema_context("alpha"):
        card = batch.cards.order_by("pk").first()
    staff_client.post(f"{CARDS_URL}{card.pk}/reveal/")  # a reveal row exists for the log page

    pages = [
        CARDS_URL,
        f"{CARDS_URL}?batch={batch.pk}",
        f"{CARDS_URL}{card.pk}/change/",
        "/admin/cardvault/importbatch/",
        f"/admin/cardvault/importbatch/{batch.pk}/change/",
        "/admin/cardvault/cardreveal/",
    ]
    for page in pages:
        response = staff_client.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        for fragment in ("SECRET-CODE-AAAA", "PIN-AAAA", "SECRET-CODE-BBBB"):
            assert fragment not in body, (page, fragment)


def test_pasting_a_code_into_the_search_finds_it_by_digest(staff_client, variant):
    batch = _import(variant, "FIND-ME-1\nFIND-ME-2")
    with schema_context("alpha"):
        wanted = batch.cards.order_by("pk").last()

    response = staff_client.get(CARDS_URL, {"q": "FIND-ME-2"})

    assert [card.pk for card in response.context["cl"].result_list] == [wanted.pk]


def test_void_action_voids_only_available_codes(staff_client, variant):
    batch = _import(variant, "V-1\nV-2\nV-3")
    with schema_context("alpha"):
        first, second, third = batch.cards.order_by("pk")
        Card.objects.filter(pk=first.pk).update(status=Card.Status.SOLD)

    response = staff_client.post(
        CARDS_URL, {"action": "void_available", "_selected_action": [first.pk, second.pk], "index": 0}, follow=True
    )

    with schema_context("alpha"):
        statuses = dict(Card.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "sold", second.pk: "void", third.pk: "available"}
    assert "1 code(s) voided" in response.content.decode()


# --- Key rotation -------------------------------------------------------------------------------------------


def test_rotate_card_keys_reencrypts_every_code_to_the_new_key(variant):
    _import(variant, "ROTATE-1|PIN-1\nROTATE-2")
    new_key = "2:" + base64.urlsafe_b64encode(bytes(range(32))).decode()
    old_keys = list(settings.FIELD_ENCRYPTION_KEYS)
    out = io.StringIO()

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, *old_keys]):
        call_command("rotate_card_keys", stdout=out)

    assert "alpha: 2 code(s) re-encrypted to key 2" in out.getvalue()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]), schema_context("alpha"):  # the old key is gone
        cards = list(Card.objects.order_by("pk"))
        assert {card.key_version for card in cards} == {"2"}
        plain = [
            (
                card_decrypt(c.code_encrypted, card_id=c.pk, variant_id=c.variant_id),
                card_decrypt(c.secret_encrypted, card_id=c.pk, variant_id=c.variant_id) if c.secret_encrypted else "",
            )
            for c in cards
        ]
    assert plain == [("ROTATE-1", "PIN-1"), ("ROTATE-2", "")]
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, *old_keys]):
        again = io.StringIO()
        call_command("rotate_card_keys", stdout=again)
    assert "alpha: 0 code(s)" in again.getvalue()


def test_another_shops_admin_does_not_see_these_codes_or_batches(beta_client, variant):
    batch = _import(variant, "ALPHA-ONLY-1\nALPHA-ONLY-2")
    email, password = DEMO["beta"][1], DEMO["beta"][2]
    assert beta_client.post("/accounts/login/", {"login": email, "password": password}).status_code == 302

    assert beta_client.get(CARDS_URL).context["cl"].result_count == 0
    assert beta_client.get("/admin/cardvault/importbatch/").context["cl"].result_count == 0
    assert beta_client.get(f"/admin/cardvault/importbatch/{batch.pk}/change/").status_code == 302  # "not found"
