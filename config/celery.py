"""The Celery app. Tasks carry the schema they were queued from (tenant-schemas-celery)."""

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = CeleryApp("cardmesh")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Imported for its signal handlers: the worker heartbeat that /healthz reads.
import core.worker  # noqa: E402,F401
