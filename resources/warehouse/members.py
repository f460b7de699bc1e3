"""List and segment members' bookkeeping: which lists and segments to read and where each one's sync stands
(`klaviyo_member_sync`), Klaviyo's profile_count into `member_count`, and the members of deleted groups.
The members themselves load through the guarded merge (core) and the listings (listing)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, text

from resources.textsafe import escape_text, unescape_text


@dataclass(frozen=True)
class GroupState:
    """One live list or segment, and where its member sync stands."""

    group_id: str
    watermark: dt.datetime | None  # the latest joined_group_at loaded
    last_read_at: dt.datetime | None  # when its last complete read began (None: never read)
    last_listed_at: dt.datetime | None  # when its last complete full listing began
    member_count_at: dt.datetime | None  # when its profile_count was last read


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"not an identifier: {name!r}")
    return name


def live_groups(conn: Connection, entity: str, group_table: str, account_id: str) -> list[GroupState]:
    """The account's lists (or segments) not soft-deleted, by id, each with its member sync state."""
    rows = conn.execute(
        text(
            f"""SELECT p.id, s.watermark, s.last_read_at, s.last_listed_at, p.member_count_at
                FROM {_ident(group_table)} p
                LEFT JOIN klaviyo_member_sync s
                  ON s.account_id = p.account_id AND s.entity = :e AND s.group_id = p.id
                WHERE p.account_id = :a AND p.deleted_at IS NULL ORDER BY p.id"""
        ),
        {"a": account_id, "e": entity},
    ).all()
    return [GroupState(unescape_text(r[0]), *r[1:]) for r in rows]


def has_members(conn: Connection, table: str, group_column: str, account_id: str, group_id: str) -> bool:
    """Whether the table holds any row (present or past member) of this list or segment."""
    return conn.execute(
        text(
            f"""SELECT EXISTS (SELECT 1 FROM {_ident(table)}
                WHERE account_id = :a AND {_ident(group_column)} = :g)"""
        ),
        {"a": account_id, "g": escape_text(group_id)},
    ).scalar_one()


def save_read(
    conn: Connection,
    account_id: str,
    entity: str,
    group_id: str,
    watermark: dt.datetime | None,
    read_at: dt.datetime,
) -> None:
    """A complete read of a group's members: its watermark (only ever rises) and when the read began."""
    conn.execute(
        text(
            """INSERT INTO klaviyo_member_sync AS s (account_id, entity, group_id, watermark, last_read_at)
               VALUES (:a, :e, :g, :w, :r)
               ON CONFLICT (account_id, entity, group_id) DO UPDATE SET
                 watermark = GREATEST(s.watermark, excluded.watermark), last_read_at = excluded.last_read_at,
                 updated_at = now()"""
        ),
        {"a": account_id, "e": entity, "g": escape_text(group_id), "w": watermark, "r": read_at},
    )


def save_listing(
    conn: Connection, account_id: str, entity: str, group_id: str, listed_at: dt.datetime, listed: int
) -> None:
    """A complete full listing of a group's members: when it began and how many it found."""
    conn.execute(
        text(
            """INSERT INTO klaviyo_member_sync AS s (account_id, entity, group_id, last_listed_at, listed_members)
               VALUES (:a, :e, :g, :t, :n)
               ON CONFLICT (account_id, entity, group_id) DO UPDATE SET
                 last_listed_at = excluded.last_listed_at, listed_members = excluded.listed_members,
                 updated_at = now()"""
        ),
        {"a": account_id, "e": entity, "g": escape_text(group_id), "t": listed_at, "n": listed},
    )


def save_member_count(
    conn: Connection, group_table: str, account_id: str, group_id: str, count: int, read_at: dt.datetime
) -> bool:
    """Klaviyo's profile_count of a list or segment into its `member_count`, with when it was read (for
    segments, the summaries' report figure replaces it only when that is newer). Whether the row exists."""
    return bool(
        conn.execute(
            text(
                f"""UPDATE {_ident(group_table)} SET member_count = :c, member_count_at = :t, updated_at = now()
                    WHERE account_id = :a AND id = :g"""
            ),
            {"a": account_id, "g": escape_text(group_id), "c": count, "t": read_at},
        ).rowcount
    )


def leave_deleted_groups(
    conn: Connection, table: str, group_column: str, group_table: str, account_id: str
) -> int:
    """Members of lists or segments found deleted (soft-deleted rows of `group_table`) leave them, when the
    group was found deleted; how many rows changed."""
    return conn.execute(
        text(
            f"""UPDATE {_ident(table)} m SET left_at = p.deleted_at, updated_at = now()
                FROM {_ident(group_table)} p
                WHERE m.account_id = :a AND m.left_at IS NULL AND p.account_id = m.account_id
                  AND p.id = m.{_ident(group_column)} AND p.deleted_at IS NOT NULL"""
        ),
        {"a": account_id},
    ).rowcount


def member_counts(conn: Connection, table: str, group_column: str, account_id: str) -> dict[str, int]:
    """Current members (left_at NULL) per list or segment."""
    rows = conn.execute(
        text(
            f"""SELECT {_ident(group_column)}, count(*) FROM {_ident(table)}
                WHERE account_id = :a AND left_at IS NULL GROUP BY 1"""
        ),
        {"a": account_id},
    ).all()
    return {unescape_text(g): n for g, n in rows}
