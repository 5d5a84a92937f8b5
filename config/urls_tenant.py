"""A branch shop (its own schema)."""

from django.conf import settings
from django.urls import include, path

from branch_api.upstream import webhook as upstream_webhook
from config.urls_common import urlpatterns as common

urlpatterns = [
    path("api/upstream/webhook", upstream_webhook.receive, name="upstream-webhook"),
    *common,
    path("", include("shop.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
