from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.health import health_run


@never_cache
@require_GET
def healthz(request):
    """Liveness and readiness: database, Redis and a Celery worker. 503 names what failed."""
    results = health_run()
    failing = [name for name, result in results.items() if not result.ok]
    body = {
        "status": "fail" if failing else "ok",
        "schema": connection.schema_name,
        "failing": failing,
        "checks": {name: vars(result) for name, result in results.items()},
    }
    return JsonResponse(body, status=503 if failing else 200)
