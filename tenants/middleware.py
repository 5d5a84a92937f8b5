"""Routes each request to its branch schema by Host; gates suspended and unfinished shops."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.shortcuts import render
from django_tenants.middleware.main import TenantMainMiddleware

from core.redis import request_scope
from tenants.models import Branch
from tenants.routing import branch_for_host, normalize_host

logger = logging.getLogger(__name__)

# Paths a non-active shop still answers: load balancers must see the process is healthy.
ALWAYS_SERVED = ("/healthz",)


class BranchRoutingMiddleware(TenantMainMiddleware):
    def __call__(self, request):
        with request_scope():  # platform keys the request reads come with the host lookup
            return super().__call__(request)

    @staticmethod
    def hostname_from_request(request) -> str:
        return normalize_host(request.get_host())

    def get_tenant(self, domain_model, hostname):
        return branch_for_host(hostname)

    def process_request(self, request):
        try:
            response = super().process_request(request)
        except DatabaseError:
            logger.exception("tenant lookup failed")
            connection.close()
            return self._database_down(request)
        if response is not None:
            return response
        branch: Branch = request.tenant
        if branch.status == Branch.Status.ACTIVE or request.path in ALWAYS_SERVED:
            return None
        template = (
            "tenants/shop_unavailable.html"
            if branch.status == Branch.Status.SUSPENDED
            else "tenants/shop_not_ready.html"
        )
        response = render(request, template, {"shop": branch}, status=503)
        response["Retry-After"] = "5" if branch.status == Branch.Status.PROVISIONING else "3600"
        return response

    @staticmethod
    def _database_down(request):
        if request.path in ALWAYS_SERVED:
            from django.http import JsonResponse

            return JsonResponse({"status": "fail", "schema": None, "failing": ["database"], "checks": {}}, status=503)
        return render(request, "503.html", status=503)
