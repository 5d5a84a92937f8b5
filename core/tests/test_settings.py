"""Production settings refuse development secrets; env parsing gives clear errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import EnvError, database_from_url, env_bool

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k3y-" + "x7Gq9!pLm2#vR8sT4wZ1@bN6cY0dF5hJ" + "Qe3Ua8Io2Pl5Kj7Hg"
STRONG_FIELD_KEY = "1:Q2FyZG1lc2gtcHJvZHVjdGlvbi1rZXktMjAyNi0xMSE="


def _load_production(**env) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "CODE_HMAC_PEPPER"}
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings.production")
    code = "import django; django.setup(); print('loaded')"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True)


def test_production_refuses_the_default_secret_key():
    result = _load_production()
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_short_secret_key():
    result = _load_production(SECRET_KEY="short-but-set")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_production_refuses_the_development_encryption_key():
    result = _load_production(SECRET_KEY=STRONG_KEY)
    assert result.returncode != 0
    assert "development key" in result.stderr


def test_production_refuses_a_weak_pepper():
    result = _load_production(SECRET_KEY=STRONG_KEY, FIELD_ENCRYPTION_KEYS=STRONG_FIELD_KEY, CODE_HMAC_PEPPER="pepper")
    assert result.returncode != 0 and "CODE_HMAC_PEPPER" in result.stderr


def test_production_starts_with_strong_secrets():
    result = _load_production(
        SECRET_KEY=STRONG_KEY,
        FIELD_ENCRYPTION_KEYS=STRONG_FIELD_KEY,
        CODE_HMAC_PEPPER="p" * 8 + "Zx81-Lm20-Qp55-Vb77-Rt09-Ws",
    )
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout


def test_database_url_with_socket_host_parses():
    config = database_from_url("postgresql://postgres:@/cardmesh?host=/tmp/pg")
    assert (config["NAME"], config["HOST"], config["USER"]) == ("cardmesh", "/tmp/pg", "postgres")


def test_database_url_with_tcp_host_parses():
    config = database_from_url("postgres://app:s%40cret@db.internal:6432/shop?sslmode=require")
    assert (config["HOST"], config["PORT"], config["PASSWORD"]) == ("db.internal", "6432", "s@cret")
    assert config["OPTIONS"] == {"sslmode": "require"}


def test_bad_database_url_scheme_is_a_clear_error():
    with pytest.raises(EnvError, match="postgresql://"):
        database_from_url("mysql://x/y")


def test_bad_boolean_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(EnvError, match="SOME_FLAG must be a boolean"):
        env_bool("SOME_FLAG", False)


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits non-zero on a missing one
