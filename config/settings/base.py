"""Settings shared by every environment. Environment values are read via ``config.env``."""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab
from django.utils.translation import gettext_lazy as _

from config.env import (
    BASE_DIR,
    celery_broker_from_redis_url,
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_str,
)

SECRET_KEY = env_str("SECRET_KEY", "insecure-dev-key-change-me-insecure-dev-key-change-me")
# Keys for encrypting secrets and card codes at rest: comma separated `id:base64(32 bytes)`, the
# first one encrypts, all of them decrypt (rotation). The HMAC pepper that deduplicates codes is
# deliberately a separate secret. The defaults are for development only; production refuses them.
DEV_FIELD_ENCRYPTION_KEY = "1:ZGV2ZWxvcG1lbnQtb25seS1rZXktZG8tbm90LXVzZSE="
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [DEV_FIELD_ENCRYPTION_KEY])
CODE_HMAC_PEPPER = env_str("CODE_HMAC_PEPPER", "dev-only-pepper-do-not-use-in-production")

DEBUG = env_bool("DEBUG", False)

# The platform's own domain: Site A lives on it, branch `slug` on `slug.PLATFORM_DOMAIN`.
PLATFORM_DOMAIN = env_str("PLATFORM_DOMAIN", "localhost").lower().strip(".")
PLATFORM_NAME = env_str("PLATFORM_NAME", "Cardmesh")
PLATFORM_CURRENCY = env_str("PLATFORM_CURRENCY", "USD")
# Scheme and port used when the platform prints links to itself (e-mails, sign-up page, CLI).
PUBLIC_SCHEME = env_str("PUBLIC_SCHEME", "https")
PUBLIC_PORT = env_str("PUBLIC_PORT", "")

# Hosts are validated by the tenant middleware against the Domain table, which is the real allowlist
# (branches may add custom domains at run time); Django's check only has to reject malformed hosts.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- Applications -------------------------------------------------------------------------------
# Apps whose tables live in the public schema only (Site A) or in both lists. Every commerce app
# is in both lists so each branch has its own users, products, codes, orders and ledger.
_BOTH = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "guardian",
    "django.contrib.postgres",
    "core",
    "notifications",
    "catalog",
    "cardvault",
    "ledger",
    "orders",
    "payments",
    "shop",
]

SHARED_APPS = [
    # Order matters for overrides: unfold's admin templates must win over django_tenants' (which
    # restyles the app list), and `tenants` must precede django_tenants so its `migrate` (which
    # also migrates the template schema) is the one Django runs.
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.import_export",
    "unfold.contrib.guardian",
    "tenants",
    "django_tenants",
    "branch_api.provider",
    *_BOTH,
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
]
TENANT_APPS = [*_BOTH, "branch_api.upstream"]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Branch"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# New branches are cloned from this template schema, which `migrate` keeps current.
TENANT_BASE_SCHEMA = "_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
DEFAULT_NOT_FOUND_TENANT_VIEW = "tenants.views.unknown_host"
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# Issue `SET search_path` once per schema switch instead of before every query (the backend
# forgets it on close, rollback and savepoint rollback, when PostgreSQL forgets it too).
TENANT_LIMIT_SET_CALLS = True
# How long a Host -> tenant lookup is cached (seconds). Changes invalidate it at once.
TENANT_DOMAIN_CACHE_SECONDS = env_int("TENANT_DOMAIN_CACHE_SECONDS", 300)

MIDDLEWARE = [
    "core.middleware.RefuseNulMiddleware",
    "tenants.middleware.BranchRoutingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.platform",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

# --- Data stores ----------------------------------------------------------------------------------
DATABASES = {"default": database_from_url(env_str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cardmesh"))}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Prepared statements for the hot paths' hand-written SQL (core.sql.prepared_cursor): a statement run
# DB_PREPARE_THRESHOLD times on a connection is planned once and then only executed. The sale and API
# paths run the same few statements over and over; planning them was most of their database time. The
# ORM keeps client-side binding. 0 turns it off (e.g. behind PgBouncer older than 1.21 in transaction
# mode, which cannot keep prepared statements).
if env_int("DB_PREPARE_THRESHOLD", 5) > 0:
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = env_int("DB_PREPARE_THRESHOLD", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "cardmesh")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        # Every cache key is prefixed with the current schema: no key can cross tenants.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

# Staff paste or re-post (import preview -> confirm) up to ~100,000 codes in one form.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 32 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024

# --- Files ----------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = env_str("MEDIA_ROOT", str(BASE_DIR / ".data" / "media"))
# Uploaded files go under MEDIA_ROOT/<schema>/: one branch can never address another's files.
MULTITENANT_RELATIVE_MEDIA_ROOT = "%s"
STORAGES = {
    "default": {"BACKEND": "django_tenants.files.storage.TenantFileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Auth and accounts ----------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "optional")
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_DEFAULT_HTTP_PROTOCOL = PUBLIC_SCHEME
# allauth's limits use the (tenant-prefixed) cache: per schema, per IP / per account.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "10/h/ip",
    "reset_password": "10/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/3m/key",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = PLATFORM_NAME
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Never set SESSION_COOKIE_DOMAIN: host-only cookies keep a branch's session on its own domain.

GUARDIAN_RAISE_403 = True
ANONYMOUS_USER_NAME = None

# --- E-mail ---------------------------------------------------------------------------------------
EMAIL_URL = env_str("EMAIL_URL", "console://")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"{PLATFORM_NAME} <noreply@{PLATFORM_DOMAIN}>")
if EMAIL_URL.startswith("console://"):
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)

# --- i18n -----------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = celery_broker_from_redis_url(env_str("CELERY_BROKER_URL", REDIS_URL))
CELERY_RESULT_BACKEND = celery_broker_from_redis_url(env_str("CELERY_RESULT_BACKEND", REDIS_URL))
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = timedelta(hours=1)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "global_keyprefix": f"{CACHE_KEY_PREFIX}:celery:"}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_TENANT_CACHE_SECONDS = 30
# Static entries are synced into django-celery-beat's tables (editable in Site A's admin).
# Per-shop jobs go through the dispatcher: one beat entry, one task per shop.
CELERY_BEAT_SCHEDULE = {
    "orders-expire-unpaid": {
        "task": "core.tasks.branches_dispatch",
        "schedule": 60.0,
        "args": ["orders.tasks.orders_expire_task"],
        "kwargs": {"include_platform": True},
    },
    # Site A's outbound webhooks: retries due beyond the in-broker horizon, and lost attempts.
    "branch-webhooks-sweep": {
        "task": "branch_api.provider.tasks.webhook_deliveries_sweep_task",
        "schedule": 60.0,
    },
    # Branches: pull Site A's catalog changes (the backstop to webhooks), and retry the purchases of
    # paid orders still waiting for Site A (refused for balance or stock, or whose own retry was lost).
    "upstream-sync": {
        "task": "core.tasks.branches_dispatch",
        "schedule": 300.0,
        "args": ["branch_api.upstream.tasks.upstream_sync_task"],
    },
    "upstream-retry-waiting": {
        "task": "core.tasks.branches_dispatch",
        "schedule": 120.0,
        "args": ["branch_api.upstream.tasks.upstream_retry_waiting_task"],
    },
    # Every shop: compare yesterday's payments with the gateways' records (Stripe, epay).
    "payments-reconcile-yesterday": {
        "task": "core.tasks.branches_dispatch",
        "schedule": crontab(hour=2, minute=30),
        "args": ["payments.tasks.reconciliation_daily_task"],
        "kwargs": {"include_platform": True},
    },
    # Platform-collect: branch orders Site A was paid for but whose settle task was lost.
    "branch-sales-settle": {
        "task": "branch_api.provider.tasks.branch_sales_settle_due_task",
        "schedule": 120.0,
    },
}
# The worker writes a heartbeat key this often; /healthz calls the worker down when it is older
# than WORKER_HEARTBEAT_TTL.
WORKER_HEARTBEAT_INTERVAL = env_int("WORKER_HEARTBEAT_INTERVAL", 10)
WORKER_HEARTBEAT_TTL = env_int("WORKER_HEARTBEAT_TTL", 35)

# --- Commerce -------------------------------------------------------------------------------------
# Minutes a customer has to pay before the order expires and its reserved codes return to stock.
ORDER_PAYMENT_MINUTES = env_int("ORDER_PAYMENT_MINUTES", 15)
# Guest order lookups per IP.
ORDER_LOOKUP_RATE = env_str("ORDER_LOOKUP_RATE", "10/m")

# The offline sandbox gateway at checkout (the demo and the tests use it; turn it off in production).
PAYMENTS_SANDBOX_ENABLED = env_bool("PAYMENTS_SANDBOX_ENABLED", True)

# --- Branch API ---------------------------------------------------------------------------------
# Reverse proxies whose X-Forwarded-For hop is trusted when deciding a client's IP (CIDRs): audit
# rows, reveal logs, rate limits and the branch API's IP allowlist all use core.http.client_ip.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", ["127.0.0.1/32", "::1/128"])
# Where branches on this deployment reach Site A's API (sent with Host: PLATFORM_DOMAIN).
BRANCH_UPSTREAM_URL = env_str(
    "BRANCH_UPSTREAM_URL",
    f"http://127.0.0.1:{PUBLIC_PORT or 8000}"
    if PLATFORM_DOMAIN == "localhost"
    else f"{PUBLIC_SCHEME}://{PLATFORM_DOMAIN}",
)

# Outbound webhooks may target private, loopback or link-local addresses only when this is on (or
# DEBUG): otherwise a branch could make Site A call its internal services (SSRF).
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
# Narrower: loopback only (127.0.0.0/8, ::1, localhost and *.localhost), so the branches of a local
# deployment receive Site A's webhooks. On in local and test settings; production forces it off.
WEBHOOK_ALLOW_LOOPBACK = env_bool("WEBHOOK_ALLOW_LOOPBACK", False)

WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 15)

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": f"{PLATFORM_NAME} API",
    "DESCRIPTION": "REST API of the Cardmesh platform (Site A and branch shops).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Rate limits ----------------------------------------------------------------------------------
RATELIMIT_USE_CACHE = "default"
# Branch-owner sign-ups per client IP: shops created, and form submissions (typos included).
SIGNUP_RATE = env_str("SIGNUP_RATE", "5/h")
SIGNUP_ATTEMPT_RATE = env_str("SIGNUP_ATTEMPT_RATE", "30/h")
RATELIMIT_IP_META_KEY = "core.http.ratelimit_ip"

# --- Admin theme ----------------------------------------------------------------------------------
UNFOLD = {
    "SITE_TITLE": PLATFORM_NAME,
    "SITE_HEADER": PLATFORM_NAME,
    "SITE_SYMBOL": "storefront",
    "THEME": None,  # follow the OS; the user can switch light/dark in the header
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": True,
    "ENVIRONMENT": "core.admin_site.environment_badge",
}

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"schema": {"()": "core.logging.SchemaFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(schema)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["schema"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
