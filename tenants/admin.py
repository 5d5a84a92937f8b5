from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display

from core.admin_site import PublicSchemaOnlyAdmin
from core.errors import DomainError
from tenants.models import Branch, Domain
from tenants.services import branch_activate, branch_suspend, branch_url


class DomainInline(TabularInline):
    model = Domain
    extra = 0
    fields = ["domain", "is_primary"]


@admin.register(Branch)
class BranchAdmin(PublicSchemaOnlyAdmin, ModelAdmin):
    list_display = ["name", "slug", "domains_display", "status_display", "currency", "created"]
    list_filter = ["status", "currency"]
    search_fields = ["name", "slug", "owner_email", "domains__domain"]
    readonly_fields = ["schema_name", "created", "activated_at", "provision_seconds"]
    fields = [
        "name",
        "slug",
        "schema_name",
        "currency",
        "owner_email",
        "status",
        "status_reason",
        "created",
        "activated_at",
        "provision_seconds",
    ]
    inlines = [DomainInline]
    actions = ["suspend_branches", "activate_branches"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("domains")

    def get_readonly_fields(self, request, obj=None):
        # Slug and schema are fixed once a schema exists: renaming would orphan the schema.
        if obj is not None:
            return [*self.readonly_fields, "slug"]
        return self.readonly_fields

    def has_add_permission(self, request):
        # Branches are created by provisioning (sign-up page or `manage.py provision_branch`), which
        # clones the schema and creates the owner; a bare row would be a shop with no schema.
        return False

    @display(description=_("Domains"))
    def domains_display(self, obj: Branch):
        return (
            format_html_join(
                ", ",
                '<a href="{}" target="_blank" rel="noopener">{}</a>',
                ((branch_url(d.domain), d.domain) for d in obj.domains.all()),
            )
            or "—"
        )

    @display(
        description=_("Status"),
        label={
            Branch.Status.ACTIVE: "success",
            Branch.Status.SUSPENDED: "danger",
            Branch.Status.PROVISIONING: "info",
            Branch.Status.FAILED: "warning",
        },
    )
    def status_display(self, obj: Branch):
        return obj.status

    @action(description=_("Suspend selected shops"))
    def suspend_branches(self, request, queryset):
        self._apply(request, queryset, lambda b: branch_suspend(branch=b, reason="Suspended by an administrator"))

    @action(description=_("Re-activate selected shops"))
    def activate_branches(self, request, queryset):
        self._apply(request, queryset, lambda b: branch_activate(branch=b))

    def _apply(self, request, queryset, operation):
        done = 0
        for branch in queryset:
            try:
                operation(branch)
                done += 1
            except DomainError as exc:
                self.message_user(request, format_html("{}: {}", branch.slug, exc.message), messages.WARNING)
        if done:
            self.message_user(request, _("%(count)d shop(s) updated.") % {"count": done}, messages.SUCCESS)


@admin.register(Domain)
class DomainAdmin(PublicSchemaOnlyAdmin, ModelAdmin):
    list_display = ["domain", "tenant", "is_primary"]
    search_fields = ["domain", "tenant__slug", "tenant__name"]
    list_select_related = ["tenant"]
    autocomplete_fields = ["tenant"]
