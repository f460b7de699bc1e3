"""Paging: opaque cursors, the `links` of a collection, and the pages of each kind of list.

Small entities are held: a page filters and sorts them and resumes after the cursor's last id. Events and
profiles are computed from their index: a page finds its window by bisection and walks indices from there.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import heapq
import json
import math
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

from klaviyo_sim.common import parse_time
from klaviyo_sim.data import Account, Resource
from klaviyo_sim.errors import invalid
from klaviyo_sim.filters import Condition, matches
from klaviyo_sim.spec import Operation


# -- cursors and links ------------------------------------------------------------------------------------
def encode_cursor(pos: Any) -> str:
    return (
        base64.urlsafe_b64encode(("next::" + json.dumps(pos, separators=(",", ":"))).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        kind, _, body = text.partition("::")
        pos = json.loads(body)
        if kind != "next":
            raise ValueError(kind)
    except Exception:  # noqa: BLE001 - any malformed cursor is the client's error
        raise invalid("Invalid page cursor.", parameter="page[cursor]") from None
    if isinstance(pos, list) and pos and pos[0] == "prev":
        return pos[1]
    return pos


def link(base: str, path: str, query: list[tuple[str, str]], cursor: str | None) -> str:
    pairs = [(k, v) for k, v in query if k != "page[cursor]"]
    if cursor is not None:
        pairs.append(("page[cursor]", cursor))
    qs = urlencode(pairs, quote_via=quote, safe="")
    return f"{base}{path}" + (f"?{qs}" if qs else "")


def self_link(base: str, op: Operation, item_id: str, query: list) -> str:
    return link(base, op.path.replace("{id}", item_id), query, None)


def collection_links(base: str, op: Operation, query: list, cursor: Any, next_pos: Any) -> dict:
    """A page's `links`: `self`, and `next`/`prev` (null on the last/first page, as Klaviyo sends them)."""
    return {
        "self": link(base, op.path, query, None),
        "next": link(base, op.path, query, encode_cursor(next_pos)) if next_pos is not None else None,
        "prev": link(base, op.path, query, encode_cursor(("prev", cursor))) if cursor is not None else None,
    }


def page(
    account: Account, kind: str, conditions: list[Condition], sort: str | None, cursor: Any, size: int
) -> tuple[list[Any], Any]:
    """A page of a list: its items (event or profile indices, or held resources) and the next position."""
    if kind == "event":
        return events_page(account, conditions, sort, cursor, size)
    if kind == "profile":
        return profiles_page(account, conditions, sort, cursor, size)
    return small_page(account, kind, conditions, sort, cursor, size)


# -- pages ---------------------------------------------------------------------------------------------
def field_value(resource: Resource, name: str) -> Any:
    """The value a filter or sort reads: the id, an internal value, or a (dotted) attribute."""
    if name == "id":
        return resource.id
    if name in resource.internal:
        return resource.internal[name]
    value: Any = resource.attributes
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def small_page(
    account: Account, kind: str, conditions: list[Condition], sort: str | None, cursor: Any, size: int
) -> tuple[list[Resource], Any]:
    """A page of a held entity: filtered, sorted (by id unless asked), resumed after the cursor's id.
    Campaigns and flows omit archived ones unless the filter asks about `archived`."""
    with account.lock:
        items = list(account.collections[kind])
    if kind in ("campaign", "flow") and not any(c.field == "archived" for c in conditions):
        items = [r for r in items if not r.attributes.get("archived")]
    if kind == "campaign" and not any(c.field == "messages.channel" and c.op == "equals" for c in conditions):
        raise invalid(
            "A filter on 'messages.channel' (equals) is required for campaigns.", parameter="filter"
        )
    items = [r for r in items if all(matches(c, field_value(r, c.field)) for c in conditions)]
    if sort:
        key = sort.lstrip("-")

        def sort_key(r: Resource) -> tuple:
            v = field_value(r, key)
            if isinstance(v, str) and key in (
                "created",
                "updated",
                "created_at",
                "updated_at",
                "scheduled_at",
            ):
                v = parse_time(v).timestamp()
            return (v is None, v if v is not None else 0, r.id)

        items.sort(key=sort_key, reverse=sort.startswith("-"))
    else:
        items.sort(key=lambda r: r.id)
    return resume(items, cursor, size)


def resume(items: list, cursor: Any, size: int) -> tuple[list, Any]:
    """The page of `items` (held resources, in order) a cursor asks for, and the next page's position. A
    position is (the last id served, the offset after it): resume after that id, or at the offset once it is
    gone (so a record deleted between pages skips nothing)."""
    start = 0
    if cursor is not None:
        try:
            last_id, offset = cursor
            offset = int(offset)
        except (TypeError, ValueError):
            raise invalid("Invalid page cursor.", parameter="page[cursor]") from None
        ids = [r.id for r in items]
        start = ids.index(last_id) + 1 if last_id in ids else max(0, offset)
    chunk = items[start : start + size]
    next_pos = [chunk[-1].id, start + len(chunk)] if start + size < len(items) and chunk else None
    return chunk, next_pos


def _time_bounds(conditions: list[Condition], field_name: str) -> tuple[float, float, bool, bool]:
    """[lo, hi] from comparisons on a time field, as timestamps, with strictness flags."""
    lo, hi, lo_strict, hi_strict = -math.inf, math.inf, False, False
    for c in conditions:
        if c.field != field_name or c.op not in (
            "greater-than",
            "greater-or-equal",
            "less-than",
            "less-or-equal",
        ):
            continue
        v = c.value.timestamp() if isinstance(c.value, dt.datetime) else float(c.value)
        if c.op.startswith("greater") and (v > lo or (v == lo and c.op == "greater-than")):
            lo, lo_strict = v, c.op == "greater-than"
        if c.op.startswith("less") and (v < hi or (v == hi and c.op == "less-than")):
            hi, hi_strict = v, c.op == "less-than"
    return lo, hi, lo_strict, hi_strict


def events_page(
    account: Account, conditions: list[Condition], sort: str | None, cursor: Any, size: int
) -> tuple[list[int], Any]:
    """A page of events in datetime order: the seeded ones (computed from their index, a window found by
    bisection) merged with the few imported late. Positions are (timestamp, 0 seeded | 1 imported, index)."""
    for c in conditions:
        if c.field == "metric_id" and not any(m.id == c.value for m in account.metrics):
            raise invalid(
                f"'{c.value}' is not a metric of this account: the metric_id filter takes the id of a metric "
                "from /api/metrics (custom metrics are not supported).",
                parameter="filter",
            )
    n = account.total_events
    lo_i, hi_i = 0, n
    bounds = []
    for name in ("datetime", "timestamp"):
        lo, hi, lo_strict, hi_strict = _time_bounds(conditions, name)
        bounds.append((lo, hi, lo_strict, hi_strict))
        if lo > -math.inf:
            lo_i = max(lo_i, account.event_index_at(math.floor(lo) + 1 if lo_strict else math.ceil(lo)))
        if hi < math.inf:
            hi_i = min(hi_i, account.event_index_at(math.ceil(hi) if hi_strict else math.floor(hi) + 1))

    def in_window(ts: int) -> bool:
        return all(
            (ts > lo if lo_s else ts >= lo) and (ts < hi if hi_s else ts <= hi)
            for lo, hi, lo_s, hi_s in bounds
        )

    imported = [k for k in account.imported_keys() if in_window(k[0])]
    others = [c for c in conditions if c.field not in ("datetime", "timestamp")]
    reverse = bool(sort and sort.startswith("-"))
    if cursor is not None:
        try:
            if isinstance(cursor, int):  # a position among the seeded events alone
                if not 0 <= cursor < n:
                    raise ValueError(cursor)
                cursor = (account.event_timestamp(cursor), 0, cursor)
            else:
                cursor = (int(cursor[0]), int(cursor[1]), int(cursor[2]))
        except (TypeError, ValueError, IndexError):
            raise invalid("Invalid page cursor.", parameter="page[cursor]") from None

    def keep(key: tuple[int, int, int]) -> bool:
        i = key[2]
        for c in others:
            if c.field == "metric_id" and not matches(c, account.event_metric_id(i)):
                return False
            if c.field == "profile_id" and not matches(c, account.profile_id(account.event_profile_index(i))):
                return False
        return True

    def seeded(indices: range) -> Iterator[tuple[int, int, int]]:
        return ((account.event_timestamp(i), 0, i) for i in indices)

    if reverse:
        start = hi_i - 1
        if cursor is not None:
            ts, src, idx = cursor
            start = min(start, idx - 1 if src == 0 else account.event_index_at(ts + 1) - 1)
            imported = [k for k in imported if k < cursor]
        keys: Iterator[tuple[int, int, int]] = seeded(range(start, lo_i - 1, -1))
        if imported:
            keys = heapq.merge(keys, reversed(imported), reverse=True)
    else:
        start = lo_i
        if cursor is not None:
            ts, src, idx = cursor
            start = max(start, idx + 1 if src == 0 else account.event_index_at(ts + 1))
            imported = [k for k in imported if k > cursor]
        keys = seeded(range(start, hi_i))
        if imported:
            keys = heapq.merge(keys, imported)
    taken = _take(keys, keep, size + 1)
    has_more = len(taken) > size
    taken = taken[:size]
    return [k[2] for k in taken], (list(taken[-1]) if has_more else None)


def _take(indices: Iterator[Any], keep: Callable[[Any], bool], k: int) -> list[Any]:
    out = []
    for i in indices:
        if keep(i):
            out.append(i)
            if len(out) == k:
                break
    return out


def _index_bounds(
    n: int, conditions: list[Condition], field_name: str, stamp: Callable[[int], float]
) -> tuple[int, int]:
    """[lo, hi) of the indices whose `stamp` (rising with the index) meets the comparisons on a field."""
    lo, hi, lo_strict, hi_strict = _time_bounds(conditions, field_name)
    first = 0
    if lo > -math.inf:
        first = (bisect.bisect_right if lo_strict else bisect.bisect_left)(range(n), lo, key=stamp)
    last = n
    if hi < math.inf:
        last = (bisect.bisect_left if hi_strict else bisect.bisect_right)(range(n), hi, key=stamp)
    return first, last


def profiles_page(
    account: Account, conditions: list[Condition], sort: str | None, cursor: Any, size: int
) -> tuple[list[int], Any]:
    n = account.counts["profiles"]
    if cursor is not None and (isinstance(cursor, bool) or not isinstance(cursor, int)):
        raise invalid("Invalid page cursor.", parameter="page[cursor]")
    if sort and sort.lstrip("-") not in ("created", "id", "updated"):
        raise invalid(f"Sorting profiles by '{sort}' is not supported by the simulator.", parameter="sort")
    reverse = bool(sort and sort.startswith("-"))
    lo_i, hi_i = _index_bounds(n, conditions, "created", lambda i: account.profile_created(i).timestamp())
    # The base `updated` rises with the index; overridden profiles are checked one by one.
    base_lo, base_hi = _index_bounds(
        n, conditions, "updated", lambda i: account.profile_base_updated(i).timestamp()
    )
    with account.lock:
        overrides = sorted(account.profile_overrides)
    id_values = None
    for c in conditions:
        if c.field == "id":
            vals = c.value if isinstance(c.value, list) else [c.value]
            found = {account.profile_index(v) for v in vals}
            id_values = (
                sorted(i for i in found if i is not None)
                if id_values is None
                else sorted(set(id_values) & found)
            )
    attr_conditions = [c for c in conditions if c.field not in ("id",)]

    def keep(i: int) -> bool:
        if not account.profile_exists(i) or not (lo_i <= i < hi_i):
            return False
        if attr_conditions:
            attrs = None
            for c in attr_conditions:
                if c.field == "updated":
                    actual: Any = account.profile_updated(i)
                elif c.field == "created":
                    actual = account.profile_created(i)
                else:
                    attrs = attrs or account.profile(i)
                    actual = attrs
                    for part in c.field.split("."):
                        actual = actual.get(part) if isinstance(actual, dict) else None
                if not matches(c, actual):
                    return False
        return True

    if id_values is not None:
        candidates: list[int] | range = id_values
        merged: Iterator[int] = iter(candidates)
    else:
        base = range(max(base_lo, lo_i), min(base_hi, hi_i))
        merged = _unique(heapq.merge(base, overrides))
    if reverse:
        pool = [i for i in merged if cursor is None or i < cursor]
        pool.reverse()
        indices: Iterator[int] = iter(pool)
    else:
        indices = (i for i in merged if cursor is None or i > cursor)
    taken = _take(indices, keep, size + 1)
    has_more = len(taken) > size
    taken = taken[:size]
    return taken, (taken[-1] if has_more else None)


def members_page(
    account: Account,
    kind: str,
    group_id: str,
    conditions: list[Condition],
    sort: str | None,
    cursor: Any,
    size: int,
) -> tuple[list[tuple[int, int]], Any]:
    """A page of a list's or segment's members in joined_group_at order (the only sort the spec offers; also
    without one): (profile index, joined_group_at seconds) pairs and the next position, computed from the
    group's seeded rule and its hooks (klaviyo_sim/members.py). Positions are (joined, 0 seeded | 1 added, index)."""
    lo, hi, lo_strict, hi_strict = _time_bounds(conditions, "joined_group_at")
    lo = math.floor(lo) + 1 if lo_strict else math.ceil(lo) if lo > -math.inf else lo
    hi = math.ceil(hi) - 1 if hi_strict else math.floor(hi) if hi < math.inf else hi
    if cursor is not None:
        try:
            cursor = (int(cursor[0]), int(cursor[1]), int(cursor[2]))
        except (TypeError, ValueError, IndexError):
            raise invalid("Invalid page cursor.", parameter="page[cursor]") from None
    others = [c for c in conditions if c.field != "joined_group_at"]

    def keep(key: tuple[int, int, int]) -> bool:
        if not others:
            return True
        i = key[2]
        attrs = account.profile(i)
        for c in others:
            actual = account.profile_id(i) if c.field == "profile_id" else attrs.get(c.field)
            if not matches(c, actual):
                return False
        return True

    reverse = bool(sort and sort.startswith("-"))
    keys = account.memberships.keys(kind, group_id, lo, hi, cursor, reverse)
    taken = _take(keys, keep, size + 1)
    has_more = len(taken) > size
    taken = taken[:size]
    return [(k[2], k[0]) for k in taken], (list(taken[-1]) if has_more else None)


def _unique(it: Iterator[int]) -> Iterator[int]:
    last = None
    for i in it:
        if i != last:
            yield i
            last = i
