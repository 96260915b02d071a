"""Settings: one typed object read from the environment (and `.env`), validated once.

Every variable of the spec's Configuration section lives here. A missing or malformed
value raises `ConfigError` whose message is one line naming the variable; the CLI and
the API print that line and exit 1 instead of a traceback.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where `studioctl serve` listens unless told otherwise: the calendar URL of an unconfigured API.
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """A setting is missing or malformed; `str(error)` is one line naming the variable."""


def _split_csv(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class Settings(BaseSettings):
    """The studio's configuration; field names are the environment variable names."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True)

    DATABASE_URL: str = "sqlite:///studio.db"
    REDIS_URL: str | None = None

    STRIPE_SECRET_KEY: str | None = None
    STRIPE_WEBHOOK_SECRET: str | None = None
    STRIPE_API_BASE: str | None = None
    # Seconds to wait for Stripe's answer; a timeout is ambiguous (looked up before a re-create).
    STRIPE_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=300)

    MAILJET_API_KEY: str | None = None
    MAILJET_API_SECRET: str | None = None
    MAILJET_SENDER_EMAIL: str = "studio@example.com"
    MAILJET_API_URL: str | None = None
    EMAIL_BACKEND: str | None = None
    OUTBOX_DIR: str = "outbox"

    # Text messages (lesson reminders): Twilio's Messages API, or `file` (OUTBOX_DIR/sms, the
    # embedded default). Unset: twilio only when TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set.
    SMS_BACKEND: Literal["file", "twilio"] | None = None
    TWILIO_ACCOUNT_SID: str | None = None
    TWILIO_AUTH_TOKEN: str | None = None
    TWILIO_FROM: str | None = None  # the sending number, E.164
    TWILIO_API_BASE: str | None = None  # another host for api.twilio.com (tests: the local stand-in)
    # A timed-out send is ambiguous: looked up by the row's id before any resend.
    TWILIO_TIMEOUT_SECONDS: float = Field(default=15.0, gt=0, le=300)
    SMS_SENDING_STALE_SECONDS: int = Field(default=120, ge=1, le=7 * 24 * 3600)
    # Lesson reminders go this many hours before each lesson (the hourly send_lesson_reminders).
    REMINDER_HOURS_BEFORE: int = Field(default=24, ge=1, le=7 * 24)

    JWT_SECRET: str | None = None
    JWT_TTL_SECONDS: int = Field(default=7200, ge=60, le=7 * 24 * 3600)
    SUPABASE_JWT_SECRET: str | None = None
    SUPABASE_JWKS_URL: str | None = None
    SUPABASE_JWT_AUDIENCE: str = "authenticated"
    SUPABASE_JWT_ISSUER: str | None = None
    # `user_metadata.email_verified` counts as proof the sign-in owns its email (links an
    # admin-made payee). Supabase users can edit their user_metadata: turn it off when "Confirm
    # email" is off, and vouch with a top-level `email_verified` claim (an access-token hook).
    SUPABASE_TRUST_USER_METADATA: bool = True

    ADMIN_EMAIL_ALLOWLIST: str = ""
    CORS_ORIGINS: str = ""
    # The interactive API docs (flask-openapi3's /openapi/ pages); /openapi.json is always served.
    API_DOCS: bool = False
    # Reverse proxies in front of the API that set X-Forwarded-For/-Proto (compose's nginx: 1).
    # 0: clients reach the API directly and those headers are ignored (a client could forge them).
    TRUSTED_PROXIES: int = Field(default=0, ge=0, le=5)
    STUDIO_NAME: str = "Music Studio"
    STUDIO_TIMEZONE: str = "America/New_York"
    PROVISIONAL_HOLD_MINUTES: int = Field(default=30, ge=1, le=24 * 60)
    # How long a booking whose first payment waits for the parent's 3-D Secure check keeps its slot.
    ACTION_REQUIRED_HOURS: float = Field(default=24, gt=0, le=7 * 24)
    # The parent app's address; emails link to `<PARENT_APP_URL>/bookings/<id>` when set.
    PARENT_APP_URL: str | None = None
    # The API's address as parents' calendar apps reach it: calendar URLs are built from it,
    # never from the request's Host header. Unset: `DEFAULT_PUBLIC_BASE_URL` (`studioctl serve`'s bind).
    PUBLIC_BASE_URL: str | None = None
    MAX_HOLDS_PER_PAYEE: int = Field(default=3, ge=1, le=100)
    # How long a freed slot offered to the waiting list is held for the family (models.offers).
    OFFER_HOURS: float = Field(default=24, gt=0, le=7 * 24)
    # Non-archived students one family may add through the API (the admin's CLI is not capped).
    MAX_STUDENTS_PER_PAYEE: int = Field(default=12, ge=1, le=1000)
    # A family with no card on file: one hold at a time, this long; at most MAX_CARDLESS_HOLDS
    # such holds in the whole studio (throw-away accounts cannot hoard every free slot).
    CARDLESS_HOLD_MINUTES: int = Field(default=10, ge=1, le=24 * 60)
    CARDLESS_HOLDS_PER_PAYEE: int = Field(default=1, ge=1, le=100)
    MAX_CARDLESS_HOLDS: int = Field(default=10, ge=1, le=10_000)
    DUNNING_GRACE_DAYS: int = Field(default=7, ge=0, le=90)
    # Sibling discount (models/sibling_discount.py): percent off every live billed enrollment of a
    # family but its most expensive one, as a Stripe coupon; 0 = off (no coupon made or moved).
    SIBLING_DISCOUNT_PERCENT: int = Field(default=0, ge=0, le=99)
    # The make-up policy (models/absences.py): a lesson the family calls off at least this many
    # hours before it starts is excused and earns a make-up credit; later, `late_cancel`, none.
    MAKEUP_NOTICE_HOURS: int = Field(default=24, ge=0, le=30 * 24)
    # Make-up credits one student earns by excused absences in a semester's make-up window
    # (teacher cancellations and the admin's grants do not count); past it, excused, no credit.
    MAKEUP_CREDITS_PER_SEMESTER: int = Field(default=3, ge=0, le=100)
    # Payroll (models/payroll.py): a lesson the family called off late (`late_cancel`) is paid to
    # its teacher like one taught; `false`: not paid, like `excused`.
    PAY_LATE_CANCEL: bool = True
    CURRENCY: str = "usd"
    # flask-limiter strings for the parent API ("20/minute;200/hour"); raised by tests and benchmarks.
    # Workers: queue name, retry policy (stored in each task when it is enqueued, so the API and
    # the worker need the same values), and how long before the reconciliation jobs step in.
    HUEY_NAME: str = Field(default="studio", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    WORKER_TASK_RETRIES: int = Field(default=5, ge=0, le=50)
    WORKER_RETRY_DELAY: float = Field(default=30.0, ge=0, le=3600)
    WORKER_RETRY_BACKOFF: float = Field(default=2.0, ge=1, le=10)
    RECONCILE_STALE_SECONDS: int = Field(default=600, ge=0, le=7 * 24 * 3600)
    EMAIL_STUCK_SECONDS: int = Field(default=120, ge=0, le=7 * 24 * 3600)
    # A row `sending` this long was left by a dead worker: claimed again, looked up at Mailjet
    # before any resend. Keep it above MAILJET_TIMEOUT_SECONDS (a live send is never taken over).
    EMAIL_SENDING_STALE_SECONDS: int = Field(default=120, ge=1, le=7 * 24 * 3600)
    MAILJET_TIMEOUT_SECONDS: float = Field(default=15.0, gt=0, le=300)

    RATELIMIT_AUTH: str = "20/minute"
    RATELIMIT_BOOKINGS: str = "10/minute"
    RATELIMIT_PARENT_WRITES: str = "60/minute"

    # Operations: logs (models/logs.py) and Prometheus metrics (workers/metrics.py).
    LOG_FORMAT: Literal["text", "json"] = "text"
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `Authorization: Bearer <METRICS_TOKEN>` opens /metrics to other hosts (loopback needs none).
    METRICS_TOKEN: str | None = Field(default=None, min_length=16)
    # The consumer serves /metrics on this port (0: not at all), on WORKER_METRICS_HOST.
    WORKER_METRICS_PORT: int = Field(default=0, ge=0, le=65535)
    WORKER_METRICS_HOST: str = "127.0.0.1"

    @field_validator(
        "REDIS_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_API_BASE",
        "MAILJET_API_KEY",
        "MAILJET_API_SECRET",
        "MAILJET_API_URL",
        "EMAIL_BACKEND",
        "SMS_BACKEND",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_FROM",
        "TWILIO_API_BASE",
        "JWT_SECRET",
        "SUPABASE_JWT_SECRET",
        "SUPABASE_JWKS_URL",
        "SUPABASE_JWT_ISSUER",
        "PARENT_APP_URL",
        "PUBLIC_BASE_URL",
        "METRICS_TOKEN",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("LOG_FORMAT", "LOG_LEVEL", mode="before")
    @classmethod
    def _log_word(cls, value):
        if not isinstance(value, str):
            return value
        value = value.strip()
        return value.lower() if value.lower() in ("text", "json") else value.upper()

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        if not (value.startswith("sqlite:///") or value.startswith("postgresql+psycopg://")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        return value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("STRIPE_API_BASE", "MAILJET_API_URL", "SUPABASE_JWKS_URL", "PARENT_APP_URL")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("PUBLIC_BASE_URL")
    @classmethod
    def _public_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an http:// or https:// URL without a query, e.g. https://api.studio.example")
        return value.strip().rstrip("/")

    @field_validator("EMAIL_BACKEND")
    @classmethod
    def _email_backend(cls, value: str | None) -> str | None:
        if value is not None and value not in ("mailjet", "file"):
            raise ValueError("must be 'mailjet' or 'file'")
        return value

    @field_validator("JWT_SECRET")
    @classmethod
    def _jwt_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("STUDIO_TIMEZONE")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("CURRENCY")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) != 3 or not value.isalpha():
            raise ValueError("must be a three-letter ISO currency code")
        return value

    @field_validator("ADMIN_EMAIL_ALLOWLIST")
    @classmethod
    def _emails(cls, value: str) -> str:
        for email in _split_csv(value):
            if "@" not in email:
                raise ValueError(f"{email!r} is not an email address")
        return value

    @field_validator("CORS_ORIGINS")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in _split_csv(value):
            if not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an http(s) origin")
        return value

    @model_validator(mode="after")
    def _twilio_needs_keys(self) -> Settings:
        if self.sms_backend == "twilio" and not (self.TWILIO_ACCOUNT_SID and self.TWILIO_AUTH_TOKEN and self.TWILIO_FROM):
            raise ValueError("SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM")
        return self

    @model_validator(mode="after")
    def _mailjet_needs_keys(self) -> Settings:
        if self.EMAIL_BACKEND == "mailjet" and not (self.MAILJET_API_KEY and self.MAILJET_API_SECRET):
            raise ValueError("EMAIL_BACKEND=mailjet needs MAILJET_API_KEY and MAILJET_API_SECRET")
        return self

    # Derived values ---------------------------------------------------------------

    @property
    def email_backend(self) -> str:
        """The backend in use: explicit `EMAIL_BACKEND`, else mailjet only when keyed."""
        if self.EMAIL_BACKEND:
            return self.EMAIL_BACKEND
        return "mailjet" if self.MAILJET_API_KEY and self.MAILJET_API_SECRET else "file"

    @property
    def sms_backend(self) -> str:
        """The SMS backend in use: explicit `SMS_BACKEND`, else twilio only when keyed."""
        if self.SMS_BACKEND:
            return self.SMS_BACKEND
        return "twilio" if self.TWILIO_ACCOUNT_SID and self.TWILIO_AUTH_TOKEN else "file"

    @property
    def public_base_url(self) -> str:
        """Where the API is reached from outside (no trailing slash): `PUBLIC_BASE_URL` or the default."""
        return self.PUBLIC_BASE_URL or DEFAULT_PUBLIC_BASE_URL

    @property
    def tz(self) -> ZoneInfo:
        """The studio's time zone."""
        return ZoneInfo(self.STUDIO_TIMEZONE)

    @property
    def admin_emails(self) -> list[str]:
        """Lower-cased admin addresses (they receive alerts and get the admin role)."""
        return [email.lower() for email in _split_csv(self.ADMIN_EMAIL_ALLOWLIST)]

    @property
    def cors_origins(self) -> list[str]:
        """Origins allowed by CORS; nothing else is."""
        return _split_csv(self.CORS_ORIGINS)

    @property
    def is_sqlite(self) -> bool:
        """True on the embedded default database."""
        return self.DATABASE_URL.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None on PostgreSQL / in-memory."""
        if not self.is_sqlite:
            return None
        path = self.DATABASE_URL.removeprefix("sqlite:///")
        return None if path in ("", ":memory:") else Path(path)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    name = ".".join(str(part) for part in first.get("loc", ())) or "settings"
    message = first.get("msg", "invalid").removeprefix("Value error, ")
    value = first.get("input")
    if first.get("loc") and isinstance(value, (str, int)) and "SECRET" not in name and "KEY" not in name:
        return f"configuration error: {name}={value!r}: {message}"
    return f"configuration error: {name}: {message}"


def load_settings(**overrides) -> Settings:
    """Read and validate the settings; raise `ConfigError` with one line on failure."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, validated on first use."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
