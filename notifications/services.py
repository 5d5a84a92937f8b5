"""Rendering and sending templated e-mails; DB overrides win over file defaults."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import Context, Template
from django.template.loader import render_to_string
from django.utils import translation

from notifications.models import EmailLog, MessageTemplate


def message_render(key: str, context: dict, *, language: str | None = None) -> tuple[str, str, str]:
    """(subject, text, html) for ``key``: the admin's template if one is active, else the files."""
    language = language or translation.get_language() or settings.LANGUAGE_CODE
    override = (
        MessageTemplate.objects.filter(key=key, language=language, is_active=True).first()
        or MessageTemplate.objects.filter(key=key, language=settings.LANGUAGE_CODE, is_active=True).first()
    )
    with translation.override(language):
        if override:
            ctx = Context(context, autoescape=False)
            subject = Template(override.subject).render(ctx)
            text = Template(override.body_text).render(ctx)
            html = Template(override.body_html).render(Context(context)) if override.body_html else ""
        else:
            subject = render_to_string(f"emails/{key}.subject.txt", context)
            text = render_to_string(f"emails/{key}.txt", context)
            html = render_to_string(f"emails/{key}.html", context)
    return " ".join(subject.split()), text, html


def email_send(*, key: str, to: str, context: dict, reference: str = "", language: str | None = None) -> bool:
    """Send one templated e-mail and log it. Returns False (logged) when the mail server refuses."""
    subject, text, html = message_render(key, context, language=language)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to])
    if html:
        message.attach_alternative(html, "text/html")
    try:
        message.send()
    except Exception as exc:  # SMTP errors vary; the task retries on False
        EmailLog.objects.create(
            key=key, to=to, subject=subject[:200], reference=reference, ok=False, error=str(exc)[:255]
        )
        return False
    EmailLog.objects.create(key=key, to=to, subject=subject[:200], reference=reference)
    return True
