from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin

from core.querysets import UpdateSignallingQuerySet


class Branch(TenantMixin):
    """A shop with its own PostgreSQL schema. The row with schema ``public`` is Site A itself."""

    class Status(models.TextChoices):
        PROVISIONING = "provisioning", _("Provisioning")
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")
        FAILED = "failed", _("Provisioning failed")

    name = models.CharField(_("name"), max_length=80)
    slug = models.SlugField(_("subdomain"), max_length=30, unique=True)
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PROVISIONING)
    owner_email = models.EmailField(_("owner e-mail"), blank=True)
    # Hash of the password chosen at sign-up, kept only until the owner account exists in the
    # branch schema (the provisioning task must not carry a password through the broker).
    pending_owner_password = models.CharField(max_length=255, blank=True, editable=False)
    status_reason = models.CharField(_("status reason"), max_length=255, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    activated_at = models.DateTimeField(_("activated at"), null=True, blank=True)
    provision_seconds = models.FloatField(_("provisioning time (s)"), null=True, blank=True, editable=False)

    # Provisioning is done by tenants.services.branch_provision (template clone, owner, domain),
    # not by TenantMixin.save(); schemas are never dropped implicitly.
    auto_create_schema = False
    auto_drop_schema = False

    objects = UpdateSignallingQuerySet.as_manager()

    class Meta:
        verbose_name = _("branch")
        verbose_name_plural = _("branches")
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_platform(self) -> bool:
        return self.schema_name == settings.PUBLIC_SCHEMA_NAME

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Domain(DomainMixin):
    """A host name routed to a branch (``<slug>.PLATFORM_DOMAIN`` or a custom domain)."""

    class Meta:
        verbose_name = _("domain")
        verbose_name_plural = _("domains")
        ordering = ["domain"]
