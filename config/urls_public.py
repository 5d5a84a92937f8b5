"""Site A (public schema)."""

from django.conf import settings
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config.urls_common import urlpatterns as common
from tenants import views as tenant_views

urlpatterns = [
    path("signup/", tenant_views.signup, name="signup"),
    path("signup/<str:token>/", tenant_views.signup_progress, name="signup-progress"),
    path("signup/<str:token>/status", tenant_views.signup_status, name="signup-status"),
    path("api/branch/v1/", include("branch_api.provider.urls")),
    # Site A's schema documents its own routes (the branch API); a branch's documents its own.
    path("api/schema/", SpectacularAPIView.as_view(urlconf="config.urls_public"), name="api-schema"),
    *common,
    path("", include("shop.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
