"""The settings every test runs with, and the benchmarks start their servers with.

`tests/conftest.py` applies them to each test (`_environment`); a child process started by a
test inherits them; a benchmark builds its servers' environment from them (`bench_env`).
"""

from __future__ import annotations

JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"
SUPABASE_SECRET = "test-supabase-secret-0123456789abcdef01234"

BASE_ENV = {
    "STUDIO_TIMEZONE": "America/New_York",
    "STUDIO_NAME": "Test Studio",
    "JWT_SECRET": JWT_SECRET,
    "SUPABASE_JWT_SECRET": SUPABASE_SECRET,
    "ADMIN_EMAIL_ALLOWLIST": "admin@studio.test",
    "CORS_ORIGINS": "https://app.studio.test",
    "EMAIL_BACKEND": "file",
    "PROVISIONAL_HOLD_MINUTES": "30",
    "MAX_HOLDS_PER_PAYEE": "3",
    # The card-less caps (1 hold of 10 minutes, 10 in the studio) came after most tests, whose
    # families book without a card: they keep the card holder's rules. tests/test_hardening_holds.py
    # runs the defaults.
    "CARDLESS_HOLDS_PER_PAYEE": "3",
    "CARDLESS_HOLD_MINUTES": "30",
    "MAX_CARDLESS_HOLDS": "1000",
    "DUNNING_GRACE_DAYS": "7",
    "SIBLING_DISCOUNT_PERCENT": "0",
    "CURRENCY": "usd",
}
# Outer services a developer's shell (or `.env`) may point at: never reached by a test.
CLEARED_ENV = (
    "REDIS_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "MAILJET_API_KEY",
    "MAILJET_API_SECRET",
    "MAILJET_API_URL",
    "SUPABASE_JWKS_URL",
    "SUPABASE_JWT_ISSUER",
    "JWT_TTL_SECONDS",
    "PUBLIC_BASE_URL",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "METRICS_TOKEN",
    "WORKER_METRICS_PORT",
    "WORKER_METRICS_HOST",
)
