"""Absolute links to the current shop, for e-mails and tasks (which have no request)."""

from django.conf import settings
from django.db import connection


def shop_base_url() -> str:
    from tenants.models import Domain
    from tenants.services import branch_url

    if connection.schema_name == settings.PUBLIC_SCHEMA_NAME:
        return branch_url(settings.PLATFORM_DOMAIN).rstrip("/")
    domain = (
        Domain.objects.filter(tenant__schema_name=connection.schema_name)
        .order_by("-is_primary", "pk")
        .values_list("domain", flat=True)
        .first()
    )
    return branch_url(domain or settings.PLATFORM_DOMAIN).rstrip("/")
