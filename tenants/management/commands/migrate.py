"""`migrate` = django-tenants' migrate_schemas (public, then every branch) + the branch template.

Keeping the template current on every migrate is what lets provisioning clone it safely.
"""

from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand

from tenants.template_schema import template_schema_migrate


class Command(MigrateSchemasCommand):
    def handle(self, *args, **options):
        super().handle(*args, **options)
        if self.sync_tenant and not self.schema_name_given(options):
            template_schema_migrate(verbosity=options.get("verbosity", 1))

    @staticmethod
    def schema_name_given(options) -> bool:
        return bool(options.get("schema_name"))
