"""`plain()`: any value as JSON-safe data, the one conversion the layers share (the audit
trail's snapshots, the CLI's `--json` and tables, the Stripe gateway's answers).

Standard library only: `studioctl --help` imports it without SQLAlchemy or SQLModel.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any


def plain(value: Any) -> Any:
    """`value` as plain data: an object with `to_dict()` (a Stripe object) as that dict, dates
    and times in ISO 8601, decimals as strings, dicts, lists and tuples item by item."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value
