"""A queryset whose ``update()`` is heard: Django sends ``post_save`` for ``save()`` but nothing for
``QuerySet.update()``, so whoever keeps something derived from these rows (an in-memory copy, say)
would miss bulk changes without it."""

from __future__ import annotations

from django.db import models
from django.dispatch import Signal

# Sent after an update() that changed rows: sender is the model, ``fields`` the names it set.
rows_updated = Signal()


class UpdateSignallingQuerySet(models.QuerySet):
    def update(self, **kwargs) -> int:
        rows = super().update(**kwargs)
        if rows:
            rows_updated.send(sender=self.model, fields=frozenset(kwargs))
        return rows

    update.alters_data = True
