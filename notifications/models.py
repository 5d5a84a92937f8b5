from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class MessageTemplate(models.Model):
    """An admin's override of a file template (``templates/emails/<key>.*``) for one language.

    Subject and body are Django templates rendered with the same context as the file default.
    """

    key = models.CharField(_("message"), max_length=64, help_text=_("e.g. order_delivered"))
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES, default="en")
    subject = models.CharField(_("subject"), max_length=200)
    body_text = models.TextField(_("plain-text body"))
    body_html = models.TextField(_("HTML body"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("e-mail template")
        verbose_name_plural = _("e-mail templates")
        constraints = [models.UniqueConstraint(fields=["key", "language"], name="message_template_unique")]

    def __str__(self) -> str:
        return f"{self.key} ({self.language})"


class EmailLog(models.Model):
    """What was sent (never the codes themselves): for support and for auditing delivery."""

    key = models.CharField(max_length=64)
    to = models.EmailField()
    subject = models.CharField(max_length=200)
    reference = models.CharField(max_length=64, blank=True, db_index=True)
    ok = models.BooleanField(default=True)
    error = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.key} → {self.to}"
