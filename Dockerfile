# Production image: gunicorn for web, the same image runs the Celery worker and beat.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

WORKDIR /app
RUN groupadd --system app && useradd --system --gid app --home /app app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# collectstatic needs settings to import; throwaway build-time secrets never reach the runtime.
RUN SECRET_KEY=build-only-$(head -c 48 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9' | head -c 60) \
    FIELD_ENCRYPTION_KEYS="1:$(head -c 32 /dev/urandom | base64 | tr '+/' '-_')" \
    CODE_HMAC_PEPPER=$(head -c 48 /dev/urandom | base64) \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    python manage.py collectstatic --noinput -v 0 \
 && mkdir -p /app/.data/media && chown -R app:app /app/.data

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD python -c "import urllib.request,sys; r=urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': __import__('os').environ.get('PLATFORM_DOMAIN','localhost')}); sys.exit(0 if urllib.request.urlopen(r, timeout=4).status == 200 else 1)"
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", "--access-logfile", "-"]
