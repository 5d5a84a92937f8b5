"""A branch shop (its own schema)."""

from django.conf import settings
from django.urls import include, path

from config.urls_common import urlpatterns as common

urlpatterns = [
    *common,
    path("", include("shop.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
