"""The one daily partitioning shared by every time-windowed asset (UTC; today is a live partition)."""

from __future__ import annotations

import dagster as dg

from resources.settings import start_date

daily_partitions = dg.DailyPartitionsDefinition(start_date=start_date(), timezone="UTC", end_offset=1)
