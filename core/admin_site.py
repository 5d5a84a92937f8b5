"""Admin helpers shared by every app's admin."""

from django.conf import settings
from django.db import connection


def environment_badge(request):
    """The badge unfold shows in the admin header: which shop this admin manages."""
    if connection.schema_name == settings.PUBLIC_SCHEMA_NAME:
        return ["Site A", "primary"]
    tenant = getattr(request, "tenant", None)
    return [f"Shop: {getattr(tenant, 'name', connection.schema_name)}", "info"]


def on_public_schema() -> bool:
    return connection.schema_name == settings.PUBLIC_SCHEMA_NAME


class PublicSchemaOnlyAdmin:
    """Mixin for ModelAdmins of public-only models.

    A branch schema's search_path still includes ``public``, so without this a branch admin could
    read Site A's tables (other branches, schedules). The admin hides such models off the public
    domain and refuses every permission there.
    """

    def has_module_permission(self, request):
        return on_public_schema() and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return on_public_schema() and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args, **kwargs):
        return on_public_schema() and super().has_add_permission(request, *args, **kwargs)

    def has_change_permission(self, request, obj=None):
        return on_public_schema() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return on_public_schema() and super().has_delete_permission(request, obj)


class TenantSchemaOnlyAdmin:
    """Mixin for ModelAdmins of tenant-only models (the opposite of ``PublicSchemaOnlyAdmin``): their
    tables do not exist in the public schema, so Site A's admin neither lists nor serves them."""

    def has_module_permission(self, request):
        return not on_public_schema() and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return not on_public_schema() and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args, **kwargs):
        return not on_public_schema() and super().has_add_permission(request, *args, **kwargs)

    def has_change_permission(self, request, obj=None):
        return not on_public_schema() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not on_public_schema() and super().has_delete_permission(request, obj)


class ReadOnlyAdminMixin:
    """Records written only by services (audit trails, logs, money movements): staff may look, never
    add, change or delete them from the admin."""

    def has_add_permission(self, request, *args, **kwargs):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
