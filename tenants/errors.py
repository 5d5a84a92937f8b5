from django.utils.translation import gettext_lazy as _

from core.errors import DomainError


class SlugInvalid(DomainError):
    code = "slug_invalid"
    default_message = _(
        "Use 3–30 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
    )


class SlugReserved(DomainError):
    code = "slug_reserved"
    default_message = _("This subdomain is reserved. Please choose another.")


class SlugTaken(DomainError):
    code = "slug_taken"
    default_message = _("This subdomain is already taken. Please choose another.")


class TemplateMissing(DomainError):
    code = "template_missing"
    default_message = "The branch template schema does not exist; run `python manage.py migrate` first."


class TemplateDrift(DomainError):
    code = "template_drift"
    default_message = "The branch template schema is behind the code; run `python manage.py migrate` first."


class BranchNotFound(DomainError):
    code = "branch_not_found"
    default_message = "No such branch."


class BranchNotProvisionable(DomainError):
    code = "branch_not_provisionable"
    default_message = "This branch cannot be provisioned in its current state."
