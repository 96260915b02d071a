"""Settings: every malformed variable is one clear line naming it."""

import pytest

from models.config import ConfigError, load_settings


@pytest.mark.parametrize(
    "name,value",
    [
        ("DATABASE_URL", "nonsense://x"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("STUDIO_TIMEZONE", "Mars/Olympus_Mons"),
        ("JWT_TTL_SECONDS", "soon"),
        ("JWT_TTL_SECONDS", "5"),
        ("PROVISIONAL_HOLD_MINUTES", "0"),
        ("MAX_HOLDS_PER_PAYEE", "-2"),
        ("DUNNING_GRACE_DAYS", "many"),
        ("CURRENCY", "dollars"),
        ("EMAIL_BACKEND", "pigeon"),
        ("JWT_SECRET", "short"),
        ("CORS_ORIGINS", "app.studio.test"),
        ("ADMIN_EMAIL_ALLOWLIST", "not-an-email"),
        ("STRIPE_API_BASE", "127.0.0.1:12111"),
        ("SUPABASE_JWKS_URL", "ftp://keys"),
        ("HUEY_NAME", "has spaces"),
        ("WORKER_TASK_RETRIES", "-1"),
        ("WORKER_RETRY_DELAY", "soon"),
        ("WORKER_RETRY_BACKOFF", "0.5"),
        ("RECONCILE_STALE_SECONDS", "ten"),
        ("EMAIL_STUCK_SECONDS", "-5"),
        ("MAILJET_TIMEOUT_SECONDS", "0"),
    ],
)
def test_malformed_variable_names_itself(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message and "\n" not in message


def test_secret_values_are_not_echoed(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", "tiny-secret")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "tiny-secret" not in str(caught.value)


def test_defaults_and_derived_values(monkeypatch):
    monkeypatch.delenv("EMAIL_BACKEND")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    settings = load_settings()
    assert settings.DATABASE_URL == "postgresql+psycopg://u@h/db"
    assert settings.email_backend == "file"
    assert settings.JWT_TTL_SECONDS == 7200
    assert settings.admin_emails == ["admin@studio.test"]
    monkeypatch.setenv("MAILJET_API_KEY", "k")
    monkeypatch.setenv("MAILJET_API_SECRET", "s")
    assert load_settings().email_backend == "mailjet"


def test_mailjet_backend_needs_keys(monkeypatch):
    monkeypatch.setenv("EMAIL_BACKEND", "mailjet")
    with pytest.raises(ConfigError, match="MAILJET_API_KEY"):
        load_settings()
