"""Request checks that run before anything else."""

from django.http import HttpResponseBadRequest

# The branch API refuses a NUL in its own JSON error envelope, and audits the call.
_API_PREFIX = "/api/branch/"


class RefuseNulMiddleware:
    """A NUL character in the path or query string is refused with 400 before any view runs: no text
    column can hold one, so it would otherwise surface as a database error (a 500)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if ("\x00" in request.path or "%00" in request.META.get("QUERY_STRING", "")) and not request.path.startswith(
            _API_PREFIX
        ):
            return HttpResponseBadRequest(
                "Bad request: the address contains a NUL character.", content_type="text/plain; charset=utf-8"
            )
        return self.get_response(request)
