from django.conf import settings
from django.core import signing
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django_ratelimit.core import is_ratelimited

from core.errors import DomainError
from tenants.forms import BranchSignupForm
from tenants.models import Branch
from tenants.services import branch_domain, branch_signup, branch_url

SIGNUP_TOKEN_SALT = "tenants.signup"  # noqa: S105 (a signing namespace, not a secret)


def unknown_host(request):
    """Any Host that no branch owns: a friendly 404 that reveals nothing about other shops."""
    context = {"platform_url": branch_url(settings.PLATFORM_DOMAIN)}
    return render(request, "tenants/unknown_host.html", context, status=404)


def _limited(request, group: str, rate: str) -> bool:
    return is_ratelimited(request, group=group, key="ip", rate=rate, method="POST", increment=True)


def signup(request):
    form = BranchSignupForm(request.POST or None, platform_domain=settings.PLATFORM_DOMAIN)
    status = 200
    if request.method == "POST":
        if _limited(request, "branch-signup-attempt", settings.SIGNUP_ATTEMPT_RATE) or (
            form.is_valid() and _limited(request, "branch-signup", settings.SIGNUP_RATE)
        ):
            form.add_error(None, _("Too many sign-ups from your network. Please try again later."))
            status = 429
        elif form.is_valid():
            data = form.cleaned_data
            try:
                branch = branch_signup(
                    name=data["name"], slug=data["slug"], owner_email=data["email"], password=data["password"]
                )
            except DomainError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                token = signing.dumps({"branch": branch.pk}, salt=SIGNUP_TOKEN_SALT)
                return redirect("signup-progress", token=token)
        if status == 200:
            status = 400
    return render(request, "tenants/signup.html", {"form": form}, status=status)


def _branch_from_token(token: str) -> Branch:
    try:
        data = signing.loads(token, salt=SIGNUP_TOKEN_SALT, max_age=7 * 24 * 3600)
    except signing.BadSignature as exc:
        raise Http404("unknown sign-up") from exc
    branch = Branch.objects.filter(pk=data.get("branch")).first()
    if branch is None:
        raise Http404("unknown sign-up")
    return branch


def _progress_payload(branch: Branch) -> dict:
    domain = branch_domain(branch.slug)
    return {
        "status": branch.status,
        "ready": branch.status == Branch.Status.ACTIVE,
        "failed": branch.status == Branch.Status.FAILED,
        "message": branch.status_reason,
        "shop_url": branch_url(domain, "/"),
        "admin_url": branch_url(domain, "/admin/"),
        "seconds": round(branch.provision_seconds, 3) if branch.provision_seconds else None,
    }


@never_cache
def signup_progress(request, token: str):
    branch = _branch_from_token(token)
    context = {
        "shop": branch,
        "progress": _progress_payload(branch),
        "status_url": reverse("signup-status", kwargs={"token": token}),
    }
    return render(request, "tenants/signup_progress.html", context)


@never_cache
def signup_status(request, token: str):
    return JsonResponse(_progress_payload(_branch_from_token(token)))
