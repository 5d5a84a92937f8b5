from django.conf import settings
from django.core.management.base import BaseCommand

from tenants.services import platform_tenant_ensure


class Command(BaseCommand):
    help = "Create Site A's tenant row and its domain (PLATFORM_DOMAIN) if missing. Safe to re-run."

    def handle(self, *args, **options):
        branch = platform_tenant_ensure()
        self.stdout.write(f"Site A: schema {branch.schema_name} on {settings.PLATFORM_DOMAIN}")
