"""Keep the host -> branch cache coherent with the tables, whoever changes them (admin included).

This is cache bookkeeping, not business flow, so a signal is the right tool: it cannot be
forgotten by a code path that edits a Domain or Branch.
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from tenants.models import Branch, Domain
from tenants.routing import host_cache_forget


def _forget_after_commit(*hosts: str) -> None:
    host_cache_forget(*hosts)  # now, and again after commit so no reader re-caches the old row
    transaction.on_commit(lambda: host_cache_forget(*hosts))


@receiver(pre_save, sender=Domain)
def _domain_renamed(sender, instance: Domain, **kwargs):
    if instance.pk:
        old = Domain.objects.filter(pk=instance.pk).values_list("domain", flat=True).first()
        if old and old != instance.domain:
            _forget_after_commit(old)


@receiver(post_save, sender=Domain)
@receiver(post_delete, sender=Domain)
def _domain_changed(sender, instance: Domain, **kwargs):
    _forget_after_commit(instance.domain)


@receiver(post_save, sender=Branch)
@receiver(post_delete, sender=Branch)
def _branch_changed(sender, instance: Branch, **kwargs):
    hosts = list(Domain.objects.filter(tenant_id=instance.pk).values_list("domain", flat=True))
    if hosts:
        _forget_after_commit(*hosts)
