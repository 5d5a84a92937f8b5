"""Baseline middleware for the routing benchmark."""


class FixedBranchMiddleware:
    """Baseline: what a single-tenant deployment does: the schema is known, no Host lookup."""

    branch = None

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.db import connection

        request.tenant = self.branch
        connection.set_tenant(self.branch)
        return self.get_response(request)
