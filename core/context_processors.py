from django.conf import settings


def platform(request):
    """Names the platform and the current shop for every template."""
    tenant = getattr(request, "tenant", None)
    return {
        "PLATFORM_NAME": settings.PLATFORM_NAME,
        "PLATFORM_DOMAIN": settings.PLATFORM_DOMAIN,
        "current_shop": tenant,
        "is_platform_site": tenant is not None and tenant.schema_name == settings.PUBLIC_SCHEMA_NAME,
    }
