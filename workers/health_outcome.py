"""What a `studioctl doctor` check says: its outcome (`Check`), the statuses, the checks'
titles in check order, and `ago` (a duration as people say it). The checks are `workers/health.py`
(settings, database, Redis, Stripe, Mailjet) and `workers/health_operations.py` (the workers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

OK, FAIL, SKIPPED = "ok", "fail", "skipped"
# In check order: name → title.
TITLES = {
    "settings": "Settings",
    "database": "Database",
    "redis": "Redis",
    "stripe_key": "Stripe key",
    "stripe_webhook_secret": "Stripe webhook secret",
    "stripe_prices": "Stripe prices",
    "mailjet": "Mailjet",
    "consumer": "Consumer",
    "periodic_jobs": "Periodic jobs",
    "dead_letters": "Dead letters",
    "expired_holds": "Holds past expiry",
}


@dataclass
class Check:
    """One check's outcome: `status` ok, fail or skipped; `detail` what was found; `fix` what
    to do (failures only); `facts` the figures behind it, for `--json`."""

    name: str
    status: str
    detail: str
    fix: str | None = None
    facts: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES[self.name]

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "status": self.status, "detail": self.detail, "fix": self.fix} | (
            {"facts": self.facts} if self.facts else {}
        )


def ago(delta: timedelta) -> str:
    """A duration as people say it: 40 s, 12 min, 5 h, 3 days."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"
