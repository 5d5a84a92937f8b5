from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from core.errors import DomainError
from tenants.models import Branch
from tenants.services import slug_validate


class BranchSignupForm(forms.Form):
    name = forms.CharField(label=_("Shop name"), max_length=80, min_length=2)
    slug = forms.CharField(
        label=_("Subdomain"),
        max_length=30,
        help_text=_("3–30 lowercase letters, digits and hyphens; your shop lives at <subdomain>.{domain}"),
    )
    email = forms.EmailField(label=_("E-mail"))
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput(render_value=False), strip=False)

    def __init__(self, *args, platform_domain: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["slug"].help_text = str(self.fields["slug"].help_text).format(domain=platform_domain)

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if len(name) < 2:
            raise ValidationError(_("Please enter a shop name."), code="name_required")
        return name

    def clean_slug(self):
        try:
            slug = slug_validate(self.cleaned_data["slug"])
        except DomainError as exc:
            raise ValidationError(exc.message, code=exc.code) from exc
        if Branch.objects.filter(slug=slug).exists():
            raise ValidationError(_("This subdomain is already taken. Please choose another."), code="slug_taken")
        return slug

    def clean_email(self):
        return self.cleaned_data["email"].strip().lower()

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            probe = get_user_model()(username=cleaned.get("email", ""), email=cleaned.get("email", ""))
            probe.first_name = cleaned.get("name", "")
            try:
                validate_password(password, user=probe)
            except ValidationError as exc:
                self.add_error("password", exc)
        return cleaned
