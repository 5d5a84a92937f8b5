"""Branch lifecycle: sign-up, provisioning by template clone, suspension."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tenants.clone import CloneSchema
from django_tenants.utils import schema_context, schema_exists

from tenants.errors import (
    BranchNotFound,
    BranchNotProvisionable,
    SlugInvalid,
    SlugReserved,
    SlugTaken,
)
from tenants.models import Branch, Domain
from tenants.template_schema import template_schema_check, template_schema_name

logger = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
RESERVED_SLUGS = frozenset(
    """
    www admin administrator api app apps assets auth billing blog cdn dashboard dev docs e-mail email
    ftp help imap info information-schema mail mailer media mx news noreply ns ns1 ns2 pop pop3 public
    root secure shop site site-a smtp stage staging static status store support system template test
    webhook webhooks webmail
    """.split()
)


@dataclass(frozen=True)
class ProvisionResult:
    branch_id: int
    slug: str
    schema: str
    domain: str
    owner_email: str
    created: bool
    seconds: float

    def as_dict(self) -> dict:
        return {**self.__dict__, "seconds": round(self.seconds, 3)}


def slug_validate(slug: str) -> str:
    """Normalise and check a subdomain; raises ``SlugInvalid`` or ``SlugReserved``."""
    slug = (slug or "").strip().lower()
    if not SLUG_RE.match(slug) or "--" in slug:
        raise SlugInvalid(field="slug")
    if slug in RESERVED_SLUGS or slug.startswith(("pg-", "xn--")):
        raise SlugReserved(field="slug")
    return slug


def schema_for_slug(slug: str) -> str:
    return slug.replace("-", "_")


def branch_domain(slug: str) -> str:
    return f"{slug}.{settings.PLATFORM_DOMAIN}"


def branch_url(domain: str, path: str = "/") -> str:
    port = f":{settings.PUBLIC_PORT}" if settings.PUBLIC_PORT else ""
    return f"{settings.PUBLIC_SCHEME}://{domain}{port}{path}"


def platform_tenant_ensure() -> Branch:
    """Create (or return) Site A's own tenant row on the public schema and its domain."""
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        branch, _ = Branch.objects.get_or_create(
            schema_name=settings.PUBLIC_SCHEMA_NAME,
            defaults={
                "name": settings.PLATFORM_NAME,
                "slug": "public",
                "currency": settings.PLATFORM_CURRENCY,
                "status": Branch.Status.ACTIVE,
                "activated_at": timezone.now(),
            },
        )
        Domain.objects.get_or_create(domain=settings.PLATFORM_DOMAIN, defaults={"tenant": branch, "is_primary": True})
    return branch


def branch_signup(*, name: str, slug: str, owner_email: str, password: str) -> Branch:
    """Register a branch from the public sign-up form and queue its provisioning.

    Only a password hash is stored, and only until the owner account exists in the new schema.
    """
    from tenants.tasks import branch_provision_task

    slug = slug_validate(slug)
    connection.set_schema_to_public()
    try:
        with transaction.atomic():
            branch = Branch.objects.create(
                name=name.strip(),
                slug=slug,
                schema_name=schema_for_slug(slug),
                currency=settings.PLATFORM_CURRENCY,
                owner_email=owner_email.strip().lower(),
                pending_owner_password=make_password(password),
                status=Branch.Status.PROVISIONING,
            )
    except (IntegrityError, ValidationError) as exc:
        raise SlugTaken(field="slug") from exc
    transaction.on_commit(lambda: branch_provision_task.delay(branch.pk))
    return branch


def branch_provision(
    *,
    slug: str,
    name: str,
    owner_email: str,
    password: str | None = None,
    currency: str | None = None,
) -> ProvisionResult:
    """Create a branch: row, schema cloned from the template, owner superuser, domain.

    Safe to retry: every step is idempotent and the whole run is one database transaction, so a
    crash part-way leaves nothing behind and the next call completes the branch. Re-running for a
    live branch with the same owner returns it unchanged; another owner gets ``SlugTaken``.
    """
    slug = slug_validate(slug)
    owner_email = owner_email.strip().lower()
    connection.set_schema_to_public()
    branch, created = Branch.objects.filter(slug=slug).first(), False
    if branch is None:
        try:
            with transaction.atomic():
                branch = Branch.objects.create(
                    name=name.strip(),
                    slug=slug,
                    schema_name=schema_for_slug(slug),
                    currency=currency or settings.PLATFORM_CURRENCY,
                    owner_email=owner_email,
                    status=Branch.Status.PROVISIONING,
                )
                created = True
        except (IntegrityError, ValidationError):
            # A concurrent caller registered the slug first (unique index, or django-tenants'
            # case-insensitive schema check); carry on with its row.
            branch = Branch.objects.filter(slug=slug).first()
            if branch is None:
                raise SlugTaken(field="slug") from None
    if branch.owner_email != owner_email:
        raise SlugTaken(field="slug")
    password_hash = make_password(password) if password else ""
    result = _provision(branch_id=branch.pk, password_hash=password_hash)
    return ProvisionResult(**{**result.__dict__, "created": created})


def branch_provision_pending(*, branch_id: int) -> ProvisionResult:
    """Finish provisioning a branch registered by :func:`branch_signup` (the Celery task's body)."""
    return _provision(branch_id=branch_id, password_hash=None)


def _provision(*, branch_id: int, password_hash: str | None) -> ProvisionResult:
    started = time.perf_counter()
    connection.set_schema_to_public()
    with transaction.atomic():
        branch = Branch.objects.select_for_update().filter(pk=branch_id).first()
        if branch is None:
            raise BranchNotFound()
        if branch.is_platform:
            raise BranchNotProvisionable("Site A is not provisioned as a branch.")
        if password_hash is None:
            password_hash = branch.pending_owner_password
        _schema_ensure(branch.schema_name)
        domain = _domain_ensure(branch)
        _owner_ensure(branch, password_hash=password_hash)
        _upstream_ensure(branch)
        if branch.status in (Branch.Status.PROVISIONING, Branch.Status.FAILED):
            branch.status = Branch.Status.ACTIVE
            branch.status_reason = ""
            branch.activated_at = timezone.now()
        branch.pending_owner_password = ""
        branch.provision_seconds = time.perf_counter() - started
        branch.save()
    connection.set_schema_to_public()
    return ProvisionResult(
        branch_id=branch.pk,
        slug=branch.slug,
        schema=branch.schema_name,
        domain=domain,
        owner_email=branch.owner_email,
        created=False,
        seconds=time.perf_counter() - started,
    )


def _schema_ensure(schema: str) -> None:
    if schema_exists(schema):
        return
    template_schema_check()
    CloneSchema().clone_schema(template_schema_name(), schema, "DATA")
    _constraint_names_align(template_schema_name(), schema)


# The clone function recreates tables with LIKE ... INCLUDING ALL, which gives multi-column UNIQUE
# constraints new, PostgreSQL-generated names. Django's later migrations address constraints by the
# names *they* generated, so a clone must carry the template's names or a future AlterUniqueTogether
# would fail on every cloned branch.
_MISNAMED_CONSTRAINTS = """
SELECT c.relname, cc.conname, tc.conname
FROM pg_constraint tc
JOIN pg_class t ON t.oid = tc.conrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace AND tn.nspname = %(template)s
JOIN pg_namespace cn ON cn.nspname = %(clone)s
JOIN pg_class c ON c.relnamespace = cn.oid AND c.relname = t.relname
JOIN pg_constraint cc ON cc.conrelid = c.oid AND cc.contype = tc.contype
     AND pg_get_constraintdef(cc.oid) = pg_get_constraintdef(tc.oid)
WHERE tc.contype IN ('u', 'p', 'c', 'x') AND cc.conname <> tc.conname
  AND NOT EXISTS (SELECT 1 FROM pg_constraint same WHERE same.conrelid = c.oid AND same.conname = tc.conname)
"""


def _constraint_names_align(template: str, schema: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_MISNAMED_CONSTRAINTS, {"template": template, "clone": schema})
        for table, clone_name, template_name in cursor.fetchall():
            cursor.execute(f'ALTER TABLE "{schema}"."{table}" RENAME CONSTRAINT "{clone_name}" TO "{template_name}"')


def _domain_ensure(branch: Branch) -> str:
    domain, _ = Domain.objects.get_or_create(
        domain=branch_domain(branch.slug), defaults={"tenant": branch, "is_primary": True}
    )
    if domain.tenant_id != branch.pk:
        raise SlugTaken(f"The domain {domain.domain} already belongs to another shop.", field="slug")
    return domain.domain


def _owner_ensure(branch: Branch, *, password_hash: str) -> None:
    from allauth.account.models import EmailAddress

    user_model = get_user_model()
    with schema_context(branch.schema_name):
        owner = user_model.objects.filter(email__iexact=branch.owner_email).first()
        if owner is None:
            owner = user_model(username=branch.owner_email[:150], email=branch.owner_email)
        owner.is_staff = owner.is_superuser = owner.is_active = True
        if password_hash:
            owner.password = password_hash
        elif not owner.password:
            owner.set_unusable_password()
        owner.save()
        EmailAddress.objects.update_or_create(
            user=owner, email=branch.owner_email, defaults={"verified": True, "primary": True}
        )


def _upstream_ensure(branch: Branch) -> None:
    """Connect a new branch to Site A on this deployment: terms, API credentials, and the branch's
    upstream connection holding them (no manual setup). Skipped if the branch already has one."""
    from branch_api.provider.services import credential_issue, terms_ensure
    from branch_api.upstream.credentials import connection_set_credentials
    from branch_api.upstream.models import UpstreamConnection
    from branch_api.upstream.webhook import connection_set_webhook_secret

    with schema_context(branch.schema_name):
        existing = UpstreamConnection.objects.first()
    if existing is not None:
        _webhook_ensure(branch, existing)
        return
    terms_ensure(branch)
    issued = credential_issue(branch=branch, label="installed at provisioning")
    secret = _webhook_register(branch)
    with schema_context(branch.schema_name):
        connection = UpstreamConnection(base_url=settings.BRANCH_UPSTREAM_URL, host_header=settings.PLATFORM_DOMAIN)
        connection_set_credentials(connection, api_key=issued.api_key, signing_secret=issued.signing_secret)
        if secret:
            connection_set_webhook_secret(connection, secret)
        connection.save()


def _webhook_ensure(branch: Branch, connection) -> None:
    """A branch connected while its receiver's URL was refused (e.g. before loopback webhooks were
    allowed in development) gets its endpoint when it is provisioned again (``seed_demo`` does)."""
    from branch_api.provider.models import WebhookEndpoint
    from branch_api.upstream.webhook import connection_set_webhook_secret

    if connection.webhook_secret_encrypted or WebhookEndpoint.objects.filter(branch=branch).exists():
        return
    secret = _webhook_register(branch)
    if secret:
        with schema_context(branch.schema_name):
            connection_set_webhook_secret(connection, secret)
            connection.save(update_fields=["webhook_secret_encrypted", "updated"])


def _webhook_register(branch: Branch) -> str:
    """Point Site A's webhooks at the branch's own receiver; returns the whsec_ secret ("" if the
    URL is refused, e.g. a private address in production: the periodic pull still syncs)."""
    from branch_api.provider.webhooks import webhook_endpoint_create
    from branch_api.upstream.webhook import WEBHOOK_PATH
    from core.errors import DomainError

    try:
        with transaction.atomic():
            _endpoint, secret = webhook_endpoint_create(
                branch=branch,
                url=branch_url(branch_domain(branch.slug), WEBHOOK_PATH),
                description="this deployment's branch receiver",
            )
    except DomainError:
        logger.warning("webhook endpoint for %s refused; relying on the periodic pull", branch.slug)
        return ""
    return secret


def branch_suspend(*, branch: Branch, reason: str = "") -> Branch:
    """Take a shop offline: its domains show "shop unavailable" at once."""
    if branch.is_platform:
        raise BranchNotProvisionable("Site A cannot be suspended.")
    branch.status = Branch.Status.SUSPENDED
    branch.status_reason = reason[:255]
    branch.save(update_fields=["status", "status_reason"])
    return branch


def branch_activate(*, branch: Branch) -> Branch:
    """Bring a suspended shop back online."""
    if branch.status != Branch.Status.SUSPENDED:
        raise BranchNotProvisionable("Only a suspended shop can be re-activated.")
    branch.status = Branch.Status.ACTIVE
    branch.status_reason = ""
    branch.save(update_fields=["status", "status_reason"])
    return branch
