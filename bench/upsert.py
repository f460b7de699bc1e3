"""COPY + guarded upsert of 200,000 rows into a table holding 200,000 (half new, half updates), against a
plain COPY of the same rows into an empty unindexed table, in the same run. Each figure is the median of
ROUNDS rounds (this kind of machine's timings vary by a fifth from one run to the next); every round is
printed.

`--breakdown` adds a round that times the upsert's parts one after the other: Python's formatting of the COPY
data, Postgres's parsing of it into the stage, and Postgres's merge. The upsert overlaps the first with the
other two; the last two run on one connection, one after the other, so their sum bounds the upsert from below.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import pandas as pd
from _common import copy_frame, scratch_warehouse
from sqlalchemy import text

from resources import warehouse as warehouse_module

N = 200_000
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def frame(ids: range, version: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"SEG{i:08d}" for i in ids],
            "account_id": "bench",
            "name": [f"Segment {i} v{version}" for i in ids],
            "status": ["active" if i % 3 else "inactive" for i in ids],
            "is_active": [bool(i % 3) for i in ids],
            "created_date": pd.to_datetime([T0 + dt.timedelta(minutes=i) for i in ids], utc=True),
            "updated_date": pd.to_datetime(
                [T0 + dt.timedelta(minutes=i, days=version) for i in ids], utc=True
            ),
            "metadata": [
                {"attributes": {"name": f"Segment {i}", "is_active": bool(i % 3), "v": version}} for i in ids
            ],
        }
    )


ROUNDS = 3


def fresh_tables(existing: pd.DataFrame):
    """A scratch warehouse whose klaviyo_segments holds `existing`, and an empty plain_copy table (no indexes,
    no key)."""
    wh = scratch_warehouse("bench_upsert")
    with wh.transaction() as conn:
        wh.upsert_frame(conn, "klaviyo_segments", existing)
    with wh.engine.begin() as conn:
        conn.execute(text("ANALYZE klaviyo_segments"))
        conn.execute(text("CREATE TABLE plain_copy (LIKE klaviyo_segments INCLUDING DEFAULTS)"))
    return wh


def one_round(existing: pd.DataFrame, incoming: pd.DataFrame) -> tuple[float, float]:
    """A fresh table of 200,000 rows; the plain COPY, then the upsert; their seconds."""
    wh = fresh_tables(existing)

    began = time.perf_counter()
    with wh.transaction() as conn:
        copy_frame(wh, conn, "plain_copy", incoming)
    copy_s = time.perf_counter() - began

    began = time.perf_counter()
    with wh.transaction() as conn:
        counts = wh.upsert_frame(conn, "klaviyo_segments", incoming)
    upsert_s = time.perf_counter() - began
    assert (counts.inserted, counts.updated, counts.skipped) == (N // 2, N // 2, 0), counts
    with wh.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM klaviyo_segments")).scalar_one() == N + N // 2
    wh.engine.dispose()
    return copy_s, upsert_s


def breakdown(existing: pd.DataFrame, incoming: pd.DataFrame) -> None:
    """The upsert's parts, timed one by one on a fresh table (one merge statement for all rows)."""
    wh = fresh_tables(existing)
    columns = ", ".join(incoming.columns)
    began = time.perf_counter()
    with wh.transaction() as conn:
        copy_frame(wh, conn, "plain_copy", incoming)
    plain_s = time.perf_counter() - began
    with wh.transaction() as conn:
        target = wh.table("klaviyo_segments", conn)
        adapt_conn = wh.engine.raw_connection()
        began = time.perf_counter()
        data = warehouse_module._format_copy(adapt_conn, target, incoming)
        format_s = time.perf_counter() - began
        adapt_conn.close()
        stage = warehouse_module._temp_stage(conn, "klaviyo_segments")
        began = time.perf_counter()
        warehouse_module._copy_data(conn, f"{stage} ({columns})", data)
        stage_s = time.perf_counter() - began
        began = time.perf_counter()
        counts = wh._merge(
            conn,
            "klaviyo_segments",
            stage,
            incoming,
            warehouse_module.ENTITY_KEY,
            "updated_date",
            False,
            repeated=False,
        )
        merge_s = time.perf_counter() - began
    assert (counts.inserted, counts.updated) == (N // 2, N // 2), counts
    wh.engine.dispose()
    floor = stage_s + merge_s
    print("breakdown (one more fresh table; parts timed one after the other):")
    print(f"  plain COPY, formatting and COPY streamed together:  {plain_s:.2f} s")
    print(
        f"  upsert: Python formats the COPY data                 {format_s:.2f} s (overlapped with the next two)"
    )
    print(f"          Postgres parses it into the stage            {stage_s:.2f} s")
    print(f"          Postgres merges the stage into the table     {merge_s:.2f} s")
    print(
        f"  Postgres's part alone: {floor:.2f} s, so the upsert can reach at most {plain_s / floor:.2f}x here"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--breakdown", action="store_true", help="also time the upsert's parts one by one")
    args = parser.parse_args()
    existing = frame(range(0, N), 1)
    incoming = frame(range(N // 2, N // 2 + N), 2)  # 100,000 updates of existing rows + 100,000 new
    print(
        f"rows: {N:,} into a table of {N:,} (half new, half updates); {ROUNDS} rounds, each on a fresh table"
    )
    rounds = []
    for i in range(ROUNDS):
        copy_s, upsert_s = one_round(existing, incoming)
        rounds.append((copy_s, upsert_s))
        print(
            f"  round {i + 1}: plain COPY {N / copy_s:>9,.0f} rows/s ({copy_s:.2f} s); "
            f"COPY + guarded upsert {N / upsert_s:>9,.0f} rows/s ({upsert_s:.2f} s); {copy_s / upsert_s:.2f}x"
        )
    copy_s = statistics.median(r[0] for r in rounds)
    upsert_s = statistics.median(r[1] for r in rounds)
    print(f"plain COPY (empty, unindexed table):  {N / copy_s:>10,.0f} rows/s  (median {copy_s:.2f} s)")
    print(f"COPY + guarded upsert:                {N / upsert_s:>10,.0f} rows/s  (median {upsert_s:.2f} s)")
    print(f"ratio upsert/COPY: {copy_s / upsert_s:.2f}x (target >= 0.4x)")
    if args.breakdown:
        breakdown(existing, incoming)


if __name__ == "__main__":
    main()
