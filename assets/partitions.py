"""The partitioning every time-windowed asset shares, and which account and days a run covers.

- One account (no KLAVIYO_ACCOUNTS_FILE): daily partitions (UTC; today is a live partition), as always.
- Several accounts (resources/accounts.py): two dimensions, `account` (dynamic partitions, one per declared
  account, added by the bootstrap sensor or `klaviyo-pipeline accounts add`) and `day`. A run of a range of
  days for one account, or for all of them, is a backfill of that selection. Assets without days (snapshots,
  members, the deletion reconciliation, the summaries) stay unpartitioned, and read the accounts of the run
  they are part of (`run_accounts`), or every declared account in a run of their own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from resources.accounts import Account, accounts_named, multi_account, read_accounts
from resources.settings import start_date

ACCOUNT, DAY = "account", "day"
ACCOUNT_TAG = "klaviyo/account"  # on every run the pipeline requests for one account (the run queue's limits)

daily_partitions = dg.DailyPartitionsDefinition(start_date=start_date(), timezone="UTC", end_offset=1)
account_partitions = dg.DynamicPartitionsDefinition(name="klaviyo_accounts")
MULTI_ACCOUNT = multi_account()
entity_partitions: dg.PartitionsDefinition = (
    dg.MultiPartitionsDefinition({ACCOUNT: account_partitions, DAY: daily_partitions})
    if MULTI_ACCOUNT
    else daily_partitions
)
FIRST_DAY = daily_partitions.get_first_partition_key()


def partition_key(account: Account | None, day: str) -> str:
    """The partition key of one account's day (the day alone with one account)."""
    if not MULTI_ACCOUNT or account is None:
        return day
    return dg.MultiPartitionKey({ACCOUNT: account.name, DAY: day})


def account_tags(account: Account | None) -> dict[str, str]:
    """The tag naming the account of a run the pipeline requests (the run queue's per-account limits)."""
    return {ACCOUNT_TAG: account.name} if MULTI_ACCOUNT and account is not None else {}


def split_key(key: str) -> tuple[str | None, str]:
    """(account name or None, day) of a partition key (a MultiPartitionKey is its string, too)."""
    if not MULTI_ACCOUNT:
        return None, key
    account, day = str(key).split("|", 1)  # dimensions in name order: account, day
    return account, day


@dataclass(frozen=True)
class Scope:
    """One account's share of a run: the account (None: the one behind KLAVIYO_API_KEY) and, for a partitioned
    asset, its days: their partition keys in order and the UTC window they span."""

    account: Account | None
    keys: tuple[str, ...] = ()

    @property
    def days(self) -> tuple[str, ...]:
        return tuple(split_key(k)[1] for k in self.keys)

    @property
    def first_day(self) -> str | None:
        return self.days[0] if self.keys else None

    @property
    def last_day(self) -> str | None:
        return self.days[-1] if self.keys else None

    @property
    def label(self) -> str | None:
        """The partition (or range) the sync status records."""
        if not self.keys:
            return None
        days = self.first_day if self.first_day == self.last_day else f"{self.first_day}...{self.last_day}"
        return f"{self.account.name}:{days}" if MULTI_ACCOUNT and self.account else days

    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The UTC window of the days; the first day of the account's history also holds everything older
        (a full sync is complete), unless the account declares a start date of its own."""
        if not self.keys:
            return None, None
        start = daily_partitions.time_window_for_partition_key(self.first_day).start
        end = daily_partitions.time_window_for_partition_key(self.last_day).end
        own_start = self.account.start_date if self.account else None
        if self.first_day == FIRST_DAY and not own_start:
            return None, end
        if own_start and self.first_day <= own_start:
            start = max(start, dt.datetime.fromisoformat(own_start).replace(tzinfo=dt.UTC))
        return start, end

    @property
    def with_history(self) -> bool:
        return self.window()[0] is None and bool(self.keys)


def _keys(context: dg.AssetExecutionContext) -> list[str]:
    if not (context.has_partition_key or context.has_partition_key_range):
        return []
    return list(context.partition_keys)


def run_scopes(context: dg.AssetExecutionContext) -> list[Scope]:
    """The accounts a materialization covers, each with its days. A partitioned asset: the accounts of its
    partition keys. An unpartitioned one: the run's accounts (`run_accounts`)."""
    keys = _keys(context)
    if not keys:
        return [Scope(a) for a in run_accounts(context)]
    by_account: dict[str | None, list[str]] = {}
    for key in keys:
        by_account.setdefault(split_key(key)[0], []).append(key)
    names = list(by_account)
    accounts = accounts_named(names) if MULTI_ACCOUNT else [None]
    return [
        Scope(account, tuple(sorted(by_account[name], key=lambda k: split_key(k)[1])))
        for name, account in zip(names, accounts, strict=True)
    ]


def run_accounts(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[Account | None]:
    """The accounts a run is for: [None] with one account; else those its tags name (a partition, a range of
    partitions, or `klaviyo/account`), or every declared account."""
    if not MULTI_ACCOUNT:
        return [None]
    tags = context.run.tags
    names: list[str] = []
    if ACCOUNT_TAG in tags:
        names = [n.strip() for n in tags[ACCOUNT_TAG].split(",") if n.strip()]
    elif f"dagster/partition/{ACCOUNT}" in tags:
        names = [tags[f"dagster/partition/{ACCOUNT}"]]
    elif "dagster/asset_partition_range_start" in tags:
        lo = split_key(tags["dagster/asset_partition_range_start"])[0]
        hi = split_key(tags["dagster/asset_partition_range_end"])[0]
        ordered = context.instance.get_dynamic_partitions(account_partitions.name)  # the dimension's order
        names = ordered[ordered.index(lo) : ordered.index(hi) + 1] if lo != hi and lo in ordered else [lo]
    if not names:
        return list(read_accounts())
    return accounts_named(names)


def account_days(account: Account | None, today: str) -> tuple[str, str]:
    """The first and last day of an account's history, as partitions."""
    first = max(FIRST_DAY, account.start_date) if account and account.start_date else FIRST_DAY
    return first, today


def account_range_tags(account: Account | None, first: str, last: str) -> dict[str, str]:
    """The tags of a run over one account's days first..last (one run: the assets' single-run backfill)."""
    return {
        "dagster/asset_partition_range_start": partition_key(account, first),
        "dagster/asset_partition_range_end": partition_key(account, last),
    } | account_tags(account)
