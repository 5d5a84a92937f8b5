from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import get_tenant_model, schema_context

from ledger.services import ledger_check


class Command(BaseCommand):
    help = "Recompute every ledger balance from its entries (in every schema) and report differences."

    def add_arguments(self, parser):
        parser.add_argument("--schema", help="check one schema only")

    def handle(self, *args, **options):
        schemas = (
            [options["schema"]]
            if options["schema"]
            else list(get_tenant_model().objects.order_by("pk").values_list("schema_name", flat=True))
        )
        failures = 0
        for schema in schemas:
            with schema_context(schema):
                problems = ledger_check()
            for account, cached, recomputed in problems:
                failures += 1
                self.stdout.write(f"{schema}: {account}: cached {cached} != entries {recomputed}")
            if not problems:
                self.stdout.write(f"{schema}: ok")
        if failures:
            raise CommandError(f"{failures} ledger difference(s) found")
