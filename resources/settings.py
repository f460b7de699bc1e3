"""Environment-driven settings, read when definitions load (never secrets: those stay dg.EnvVar)."""

from __future__ import annotations

import datetime as dt
import os

DEFAULT_START_DATE = "2026-01-01"
DEFAULT_BASE_URL = "https://a.klaviyo.com"
DEFAULT_REVISION = "2026-07-15"


def start_date() -> str:
    """First day of the daily partitions (KLAVIYO_START_DATE, YYYY-MM-DD)."""
    value = os.environ.get("KLAVIYO_START_DATE", DEFAULT_START_DATE)
    dt.date.fromisoformat(value)  # fail loudly on a malformed date
    return value


def base_url() -> str:
    """The API host (KLAVIYO_BASE_URL): Klaviyo's, or the simulator's."""
    return os.environ.get("KLAVIYO_BASE_URL", DEFAULT_BASE_URL)


def revision() -> str:
    """The pinned API revision (KLAVIYO_REVISION); one the client's endpoint table does not know is refused."""
    from resources.klaviyo_api import check_revision

    return check_revision(os.environ.get("KLAVIYO_REVISION", DEFAULT_REVISION))


def step_retry_delay() -> float:
    """Seconds before an entity step is retried (KLAVIYO_STEP_RETRY_DELAY; default 15, growing exponentially)."""
    return float(os.environ.get("KLAVIYO_STEP_RETRY_DELAY", "15"))


def stats_cron() -> str:
    """When the statistics follow their upstream (KLAVIYO_STATS_CRON; default every 4 hours: with a 7-day
    lookback that is 4 report calls a tick, 24 a day of the 225 Klaviyo allows)."""
    return os.environ.get("KLAVIYO_STATS_CRON", "0 */4 * * *")


def rate_time_scale() -> float:
    """Shrinks the client's rate windows (KLAVIYO_RATE_TIME_SCALE); only for a time-scaled simulator."""
    value = float(os.environ.get("KLAVIYO_RATE_TIME_SCALE", "1"))
    if value <= 0:
        raise ValueError("KLAVIYO_RATE_TIME_SCALE must be positive")
    return value


def events_reread_cron() -> str:
    """When events are re-read deeply (KLAVIYO_EVENTS_REREAD_CRON; default Sundays 04:00 UTC)."""
    return os.environ.get("KLAVIYO_EVENTS_REREAD_CRON", "0 4 * * 0")


def profiles_reconcile_cron() -> str:
    """When profiles are reconciled against a full id listing (KLAVIYO_PROFILES_RECONCILE_CRON; default Sundays
    03:45 UTC: a million profiles take about 14 minutes of Klaviyo's L tier)."""
    return os.environ.get("KLAVIYO_PROFILES_RECONCILE_CRON", "45 3 * * 0")


def events_reread_days() -> int:
    """How far back the deep re-read reaches (KLAVIYO_EVENTS_REREAD_DAYS; default 30 days)."""
    value = int(os.environ.get("KLAVIYO_EVENTS_REREAD_DAYS", "30"))
    if value < 1:
        raise ValueError("KLAVIYO_EVENTS_REREAD_DAYS must be at least 1")
    return value


def asset_owners() -> list[str]:
    """Who owns the assets in Dagster's UI: emails or `team:` names, comma-separated (KLAVIYO_ASSET_OWNERS)."""
    raw = os.environ.get("KLAVIYO_ASSET_OWNERS", "team:data-engineering")
    return [o.strip() for o in raw.split(",") if o.strip()]
