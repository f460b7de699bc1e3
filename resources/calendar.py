"""The account's calendar: Klaviyo counts report days (and, we take it, the report quota's day) in the account's
time zone (`GET /api/accounts` → `attributes.timezone`), not in UTC.

Daily partition keys stay UTC days for extraction windows; a statistics "day" is always a day of this calendar.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.UTC


class UnknownTimezone(ValueError):
    """The account's time zone is not a name this machine's time zone database knows."""


@dataclass(frozen=True)
class AccountCalendar:
    """Calendar days in one IANA time zone (e.g. America/New_York)."""

    timezone: str = "UTC"

    @cached_property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UnknownTimezone(f"unknown account time zone {self.timezone!r}") from None

    def today(self, now: dt.datetime) -> dt.date:
        """The account's calendar day at the instant `now`."""
        return now.astimezone(self.zone).date()

    def start_of(self, day: dt.date) -> dt.datetime:
        """The first instant of the account's `day` (its local midnight; 23 or 25 hours long across DST), in
        UTC, so that arithmetic on it is absolute (Python adds to an aware local time on its wall clock)."""
        return dt.datetime.combine(day, dt.time(), self.zone).astimezone(UTC)

    def end_of(self, day: dt.date) -> dt.datetime:
        """The first instant after the account's `day` (the next local midnight)."""
        return self.start_of(day + dt.timedelta(days=1))

    def day_of(self, value: Any) -> dt.date:
        """The account's day of a timestamp: an aware one converted to the account's zone, a naive one taken
        as the account's wall-clock time (Klaviyo reports days in the account's zone)."""
        if isinstance(value, dt.datetime):
            stamp = value
        else:
            text = str(value).strip()
            if len(text) > 10 and text[10] == " ":
                text = text[:10] + "T" + text[11:]
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            stamp = dt.datetime.fromisoformat(text)  # a bare date reads as midnight
        if stamp.tzinfo is None:
            return stamp.date()
        return stamp.astimezone(self.zone).date()

    def wall_clock(self, instant: dt.datetime) -> str:
        """An instant as the account's local time with its offset (e.g. 2026-03-08T00:00:00-05:00)."""
        return instant.astimezone(self.zone).replace(microsecond=0).isoformat()


UTC_CALENDAR = AccountCalendar("UTC")
