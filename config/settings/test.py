"""Settings for the test suite: real PostgreSQL and Redis, fast password hashing."""

from config.env import env_str
from config.settings.base import *  # noqa: F403

DEBUG = False
PUBLIC_SCHEME = "http"
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CACHE_KEY_PREFIX = "cardmesh-test"
CACHES["default"]["KEY_PREFIX"] = CACHE_KEY_PREFIX  # noqa: F405
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "global_keyprefix": "cardmesh-test:celery:"}
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_cardmesh")}  # noqa: F405
