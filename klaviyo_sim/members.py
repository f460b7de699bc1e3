"""List and segment members: who is in each list and segment, and since when, computed rather than held.

A group's seeded members are an arithmetic progression of profile indices (every `stride`-th profile from
`offset`; some groups are empty, the account's first segment holds every profile), and a member's
`joined_group_at` rises with its index from the group's creation to the account's anchor, never before the
profile was created. So a segment of a million members costs no memory: a page finds its window by bisection
and walks the progression, a count is arithmetic, and membership of one profile is a modulo.

The mutation hooks (`add`, `remove`) hold only what changed: profiles added (or re-added) with the time they
joined, and seeded members removed. A profile deleted from the account leaves every group.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from klaviyo_sim.common import hash_str, mix64, parse_time

if TYPE_CHECKING:
    from klaviyo_sim.data import Account

UTC = dt.UTC
GROUP_KINDS = ("list", "segment")
MAX_STRIDE = 40  # a seeded group holds at least 1/40 of the profiles (unless it is empty)
Key = tuple[int, int, int]  # (joined_group_at as Unix seconds, 0 seeded | 1 added by a hook, profile index)


@dataclass(frozen=True)
class Rule:
    """A group's seeded members: profile indices offset, offset + stride, ... below `n`; none when stride is 0."""

    stride: int
    offset: int
    start: dt.datetime  # joined_group_at of index 0 (the group's creation)
    end: dt.datetime  # the account's anchor: every seeded member joined before it
    n: int  # the account's profiles

    def count(self) -> int:
        if not self.stride or self.offset >= self.n:
            return 0
        return (self.n - 1 - self.offset) // self.stride + 1

    def index(self, j: int) -> int:
        return self.offset + j * self.stride

    def holds(self, i: int) -> bool:
        return (
            bool(self.stride)
            and 0 <= i < self.n
            and i >= self.offset
            and (i - self.offset) % self.stride == 0
        )

    def joined(self, i: int) -> int:
        """Unix seconds: rises with the index from `start` to just before `end`. It never precedes the
        profile's creation (Account.profile_created: history start + 0.9 x history x i / n, with the group
        created in the history's first 80 %): both are linear in i, and this one is above at 0 and at n."""
        span = int((self.end - self.start).total_seconds())
        return int(self.start.timestamp()) + span * i // max(self.n, 1)


@dataclass
class GroupChanges:
    """What the hooks changed in one group: profiles added with the time they joined, seeded members removed."""

    added: dict[int, int] = field(default_factory=dict)  # profile index -> joined_group_at (Unix seconds)
    removed: set[int] = field(default_factory=set)


class Memberships:
    """The members of every list and segment of an account (see the module's docstring)."""

    def __init__(self, account: Account):
        self.account = account
        self.changes: dict[tuple[str, str], GroupChanges] = {}
        self._rules: dict[tuple[str, str], Rule] = {}
        self._everyone = account._short_id("segment", 0)  # the seeded first segment: every profile

    # -- the seeded rule --------------------------------------------------------------------------------
    def group(self, kind: str, group_id: str):
        """The held list or segment, or None (unknown or deleted)."""
        if kind not in GROUP_KINDS:
            raise ValueError(f"{kind!r} has no members: one of {', '.join(GROUP_KINDS)}")
        with self.account.lock:
            return self.account.by_id.get((kind, group_id))

    def rule(self, kind: str, group_id: str) -> Rule:
        key = (kind, group_id)
        if key not in self._rules:
            resource = self.group(kind, group_id)
            if resource is None:
                raise KeyError(f"no {kind} {group_id}")
            h = mix64(hash_str(f"{self.account.seed}:{kind}-members:{group_id}"))
            if kind == "segment" and group_id == self._everyone:
                stride = 1
            else:
                stride = 0 if h % 9 == 7 else 1 + (h >> 8) % MAX_STRIDE
            acct = self.account
            start = max(parse_time(resource.attributes["created"]), acct.history_start).replace(microsecond=0)
            self._rules[key] = Rule(
                stride, (h >> 20) % stride if stride else 0, start, acct.anchor, acct.counts["profiles"]
            )
        return self._rules[key]

    # -- one profile ------------------------------------------------------------------------------------
    def joined(self, kind: str, group_id: str, i: int) -> int | None:
        """When profile `i` joined the group (Unix seconds), or None if it is not a member."""
        acct = self.account
        if not acct.profile_exists(i):
            return None
        with acct.lock:
            changes = self.changes.get((kind, group_id))
            if changes is not None:
                if i in changes.added:
                    return changes.added[i]
                if i in changes.removed:
                    return None
        rule = self.rule(kind, group_id)
        return rule.joined(i) if rule.holds(i) else None

    def count(self, kind: str, group_id: str) -> int:
        """The group's members now (Klaviyo's `profile_count`)."""
        rule = self.rule(kind, group_id)
        acct = self.account
        with acct.lock:
            changes = self.changes.get((kind, group_id)) or GroupChanges()
            deleted = {i for i, o in acct.profile_overrides.items() if o.deleted}
            seeded_gone = {i for i in changes.removed | deleted | set(changes.added) if rule.holds(i)}
            added = [i for i in changes.added if i not in deleted]
        return rule.count() - len(seeded_gone) + len(added)

    # -- a page, in joined_group_at order ---------------------------------------------------------------
    def keys(
        self, kind: str, group_id: str, lo: float, hi: float, after: Key | None, reverse: bool
    ) -> Iterator[Key]:
        """The members whose joined_group_at lies in [lo, hi] (seconds), as (joined, source, index) keys in
        that order (or the reverse), strictly after (before) `after`. Lazy: nothing is held per member."""
        rule = self.rule(kind, group_id)
        acct = self.account
        with acct.lock:
            changes = self.changes.get((kind, group_id)) or GroupChanges()
            added = sorted((t, 1, i) for i, t in changes.added.items() if lo <= t <= hi)
            hidden = changes.removed | set(changes.added)
        count = rule.count()

        def position(t: float, right: bool = False) -> int:
            """The first seeded position whose joined time is >= t (> t with `right`)."""
            find = bisect.bisect_right if right else bisect.bisect_left
            return find(range(count), t, key=lambda j: rule.joined(rule.index(j)))

        first, last = position(lo), position(hi, right=True)
        if after is not None:  # resume beside `after`'s time; keys of that very second are skipped below
            if reverse:
                last = min(last, position(after[0], right=True))
                added = [k for k in added if k < after]
            else:
                first = max(first, position(after[0]))
                added = [k for k in added if k > after]

        def seeded(js: range) -> Iterator[Key]:
            for j in js:
                i = rule.index(j)
                key = (rule.joined(i), 0, i)
                if after is not None and (key >= after if reverse else key <= after):
                    continue
                if i not in hidden and acct.profile_exists(i):
                    yield key

        live_added = (k for k in (reversed(added) if reverse else added) if acct.profile_exists(k[2]))
        if reverse:
            return heapq.merge(seeded(range(last - 1, first - 1, -1)), live_added, reverse=True)
        return heapq.merge(seeded(range(first, last)), live_added)

    # -- mutation hooks ---------------------------------------------------------------------------------
    def add(
        self,
        kind: str,
        group_id: str,
        indices: list[int] | None = None,
        n: int = 1,
        at: dt.datetime | None = None,
    ) -> list[str]:
        """Profiles join the group at `at` (default now): these indices, or the first `n` profiles that are not
        members. A member added again re-joins (a newer joined_group_at). Returns their profile ids."""
        stamp = int((at or dt.datetime.now(UTC)).timestamp())
        acct = self.account
        if indices is None:
            total = acct.counts["profiles"]
            indices = []
            for i in range(total):
                if len(indices) >= n:
                    break
                if acct.profile_exists(i) and self.joined(kind, group_id, i) is None:
                    indices.append(i)
        self.rule(kind, group_id)  # the group must exist
        with acct.lock:
            changes = self.changes.setdefault((kind, group_id), GroupChanges())
            for i in indices:
                if not 0 <= i < acct.counts["profiles"]:
                    raise ValueError(f"no profile {i}")
                changes.added[i] = stamp
                changes.removed.discard(i)
        return [acct.profile_id(i) for i in indices]

    def remove(self, kind: str, group_id: str, indices: list[int] | None = None, n: int = 1) -> list[str]:
        """Members leave the group: these indices, or its first `n` members (by joined_group_at). Returns the
        profile ids of those that were members."""
        if indices is None:
            indices = [
                k[2]
                for _, k in zip(
                    range(n), self.keys(kind, group_id, -math.inf, math.inf, None, False), strict=False
                )
            ]
        gone = [i for i in indices if self.joined(kind, group_id, i) is not None]
        with self.account.lock:
            changes = self.changes.setdefault((kind, group_id), GroupChanges())
            for i in gone:
                changes.added.pop(i, None)
                changes.removed.add(i)
        return [self.account.profile_id(i) for i in gone]

    def members(self, kind: str, group_id: str) -> dict[str, dt.datetime]:
        """Every member now: profile id -> joined_group_at (for tests; walks the whole group)."""
        return {
            self.account.profile_id(i): dt.datetime.fromtimestamp(t, UTC)
            for t, _, i in self.keys(kind, group_id, -math.inf, math.inf, None, False)
        }
