from django.core.management.base import BaseCommand
from django_tenants.utils import get_tenant_model, schema_context, schema_exists

from cardvault.crypto import current_key_version
from cardvault.services import cards_rotate_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every code under the current key (the first of FIELD_ENCRYPTION_KEYS), in every schema. "
        "Safe to interrupt and run again; remove an old key only after this reports 0 everywhere."
    )

    def add_arguments(self, parser):
        parser.add_argument("--schema", help="rotate one schema only")
        parser.add_argument("--batch-size", type=int, default=1000, help="codes re-encrypted per transaction")

    def handle(self, *args, **options):
        schemas = (
            [options["schema"]]
            if options["schema"]
            else list(get_tenant_model().objects.order_by("pk").values_list("schema_name", flat=True))
        )
        version = current_key_version()
        total = 0
        for schema in schemas:
            if not schema_exists(schema):
                # A branch whose provisioning failed has no schema; its search path would fall back
                # to public's tables.
                self.stdout.write(f"{schema}: no such schema, skipped")
                continue
            with schema_context(schema):
                count = cards_rotate_keys(batch_size=options["batch_size"])
            total += count
            self.stdout.write(f"{schema}: {count} code(s) re-encrypted to key {version}")
        self.stdout.write(self.style.SUCCESS(f"{total} code(s) re-encrypted in {len(schemas)} schema(s)"))
