"""Production settings. Refuses to start with development secrets."""

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int
from config.settings.base import *  # noqa: F403
from config.settings.base import CODE_HMAC_PEPPER, FIELD_ENCRYPTION_KEYS, SECRET_KEY
from core.crypto import validate_key_material

DEBUG = False
# Not read from the environment: in production a branch's webhook URL may never reach this host's
# own services (SSRF); WEBHOOK_ALLOW_PRIVATE_URLS stays the explicit, documented escape hatch.
WEBHOOK_ALLOW_LOOPBACK = False

if len(SECRET_KEY) < 50 or "insecure" in SECRET_KEY or len(set(SECRET_KEY)) < 10:
    raise ImproperlyConfigured("SECRET_KEY must be set to a random value of at least 50 characters in production.")
validate_key_material(FIELD_ENCRYPTION_KEYS, CODE_HMAC_PEPPER)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
# Branches are subdomains of PLATFORM_DOMAIN, all served over TLS (wildcard certificate).
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}  # noqa: F405
