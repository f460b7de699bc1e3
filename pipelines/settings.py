"""Environment-driven settings, read when definitions load (never secrets: those stay dg.EnvVar)."""

from __future__ import annotations

import datetime as dt
import os

DEFAULT_START_DATE = "2026-01-01"


def start_date() -> str:
    """First day of the daily partitions (KLAVIYO_START_DATE, YYYY-MM-DD)."""
    value = os.environ.get("KLAVIYO_START_DATE", DEFAULT_START_DATE)
    dt.date.fromisoformat(value)  # fail loudly on a malformed date
    return value


def base_url() -> str:
    return os.environ.get("KLAVIYO_BASE_URL", "https://a.klaviyo.com")


def revision() -> str:
    return os.environ.get("KLAVIYO_REVISION", "2026-07-15")


def step_retry_delay() -> float:
    """Seconds before an entity step is retried (KLAVIYO_STEP_RETRY_DELAY; default 15, growing exponentially)."""
    return float(os.environ.get("KLAVIYO_STEP_RETRY_DELAY", "15"))
