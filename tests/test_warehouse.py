"""Repository and guarded upsert against real Postgres."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import text

import resources.warehouse.core as warehouse_module
from resources.warehouse import Repository, UpsertCounts, WarehouseError

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


def seg(i: int, **over):
    base = {
        "id": f"SEG{i:03d}",
        "account_id": "acct",
        "name": f"Segment {i}",
        "status": "active" if i % 2 else "inactive",
        "created_date": T0 + dt.timedelta(days=i),
        "updated_date": T0 + dt.timedelta(days=i, hours=1),
        "metadata": {"attributes": {"name": f"Segment {i}"}},
    }
    base.update(over)
    return base


def test_repository_operations(warehouse):
    repo = Repository(warehouse, "klaviyo_segments", account_id="acct")
    created = repo.create_batch([seg(i) for i in range(1, 6)])
    assert [r["id"] for r in created] == [f"SEG{i:03d}" for i in range(1, 6)]
    assert repo.find_by_id("SEG001")["name"] == "Segment 1"
    assert repo.find_by_id("missing") is None
    assert [r["id"] for r in repo.find_by_name("Segment 2")] == ["SEG002"]
    assert [r["id"] for r in repo.find_by_status("active")] == ["SEG001", "SEG003", "SEG005"]
    in_range = repo.find_by_date_range(T0 + dt.timedelta(days=2), T0 + dt.timedelta(days=4))
    assert [r["id"] for r in in_range] == ["SEG002", "SEG003"]
    assert [r["id"] for r in repo.find_all(limit=2, offset=1)] == ["SEG002", "SEG003"]
    since = repo.find_updated_since(T0 + dt.timedelta(days=3, hours=1))
    assert [r["id"] for r in since] == ["SEG004", "SEG005"]
    assert repo.latest_update_timestamp() == T0 + dt.timedelta(days=5, hours=1)

    single = repo.create(seg(9))
    assert single["metadata"] == {"attributes": {"name": "Segment 9"}}
    with pytest.raises(WarehouseError, match="SEG009"):
        repo.create(seg(9))

    assert repo.delete("SEG002") is True
    assert repo.delete("SEG002") is False
    assert repo.find_by_id("SEG002") is None
    assert repo.find_by_id("SEG002", include_deleted=True)["deleted_at"] is not None
    assert repo.count() == 5


def test_other_accounts_are_invisible(warehouse):
    Repository(warehouse, "klaviyo_flows", account_id="a1").create({"id": "F1", "name": "one"})
    Repository(warehouse, "klaviyo_flows", account_id="a2").create({"id": "F1", "name": "two"})
    assert Repository(warehouse, "klaviyo_flows", account_id="a1").find_by_id("F1")["name"] == "one"
    assert Repository(warehouse, "klaviyo_flows").count() == 2


def test_create_or_update_never_lets_older_overwrite_newer(warehouse):
    repo = Repository(warehouse, "klaviyo_segments", account_id="acct")
    repo.create_or_update(seg(1, name="new", updated_date=T0 + dt.timedelta(days=10)))
    kept = repo.create_or_update(seg(1, name="old", updated_date=T0 + dt.timedelta(days=1)))
    assert kept["name"] == "new"
    newer = repo.create_or_update(seg(1, name="newer", updated_date=T0 + dt.timedelta(days=11)))
    assert newer["name"] == "newer"


def test_create_batch_rolls_back_entirely_naming_the_row(warehouse):
    repo = Repository(warehouse, "klaviyo_campaigns", account_id="acct")
    rows = [
        {"id": "C1", "name": "ok"},
        {"id": "C2", "name": "ok"},
        {"id": "C3", "name": "bad", "archived": None},
    ]
    with pytest.raises(WarehouseError, match="'C3'"):
        repo.create_batch(rows)
    assert repo.count() == 0


def test_create_batch_duplicate_in_batch_rolls_back(warehouse):
    repo = Repository(warehouse, "klaviyo_tags", account_id="acct")
    with pytest.raises(WarehouseError, match="'T1'"):
        repo.create_batch([{"id": "T1", "name": "a"}, {"id": "T2"}, {"id": "T1", "name": "again"}])
    assert repo.count() == 0


HOSTILE = [
    "nul\x00inside",
    'it\'s "quoted" \\ backslash',
    "'; DROP TABLE klaviyo_segments; --",
    "emoji 🎉👩‍👩‍👧 done",
    "RTL \u202e עברית العربية",
    "x" * 10_000,
    "tab\tnew\nline\rcr",
    "",
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_round_trips(warehouse, value):
    repo = Repository(warehouse, "klaviyo_segments", account_id="acct")
    record = seg(1, name=value, metadata={"attributes": {"name": value, value[:50]: [value]}})
    repo.create(record)
    back = repo.find_by_id("SEG001")
    assert back["name"] == value
    assert back["metadata"] == record["metadata"]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_round_trips_through_bulk_upsert(warehouse, value):
    frame = pd.DataFrame([seg(1, name=value, metadata={"v": value, "nested": {"k\x00": value}})])
    with warehouse.transaction() as conn:
        counts = warehouse.upsert_frame(conn, "klaviyo_segments", frame)
    assert counts == UpsertCounts(inserted=1)
    back = Repository(warehouse, "klaviyo_segments", "acct").find_by_id("SEG001")
    assert back["name"] == value
    assert back["metadata"] == {"v": value, "nested": {"k\x00": value}}


def test_nul_is_stored_escaped_not_dropped(warehouse):
    Repository(warehouse, "klaviyo_segments", account_id="acct").create(seg(1, name="a\x00b"))
    with warehouse.engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM klaviyo_segments")).scalar_one() == "a\\u0000b"


def frame_of(records):
    return pd.DataFrame(records)


def test_upsert_counts_and_guard(warehouse):
    table = "klaviyo_segments"
    first = frame_of([seg(i) for i in range(10)])
    with warehouse.transaction() as conn:
        assert warehouse.upsert_frame(conn, table, first) == UpsertCounts(inserted=10)
    # Same rows again: nothing changes.
    with warehouse.transaction() as conn:
        assert warehouse.upsert_frame(conn, table, first) == UpsertCounts(skipped=10)
    with warehouse.engine.connect() as conn:
        stamps = conn.execute(text("SELECT updated_at FROM klaviyo_segments ORDER BY id")).scalars().all()

    mixed = frame_of(
        [seg(0, name="older", updated_date=T0 - dt.timedelta(days=1))]  # older: skipped
        + [seg(1, name="newer", updated_date=T0 + dt.timedelta(days=30))]  # newer: updated
        + [seg(2, name="same time, new content")]  # equal time, content differs: updated
        + [seg(50), seg(51)]  # new: inserted
        + [seg(51, name="stale duplicate", updated_date=T0)]  # repeated in batch: newest copy wins
    )
    with warehouse.transaction() as conn:
        counts = warehouse.upsert_frame(conn, table, mixed)
    assert counts == UpsertCounts(inserted=2, updated=2, skipped=2)
    repo = Repository(warehouse, table, "acct")
    assert repo.find_by_id("SEG000")["name"] == "Segment 0"
    assert repo.find_by_id("SEG001")["name"] == "newer"
    assert repo.find_by_id("SEG002")["name"] == "same time, new content"
    assert repo.find_by_id("SEG051")["name"] == "Segment 51"
    with warehouse.engine.connect() as conn:
        after = conn.execute(text("SELECT updated_at FROM klaviyo_segments ORDER BY id")).scalars().all()
    assert after[3:10] == stamps[3:10]  # untouched rows keep their bookkeeping


def test_upsert_revives_soft_deleted_rows(warehouse):
    with warehouse.transaction() as conn:
        warehouse.upsert_frame(
            conn, "klaviyo_flows", frame_of([{"id": "F1", "account_id": "a", "name": "x"}])
        )
    Repository(warehouse, "klaviyo_flows", "a").delete("F1")
    with warehouse.transaction() as conn:
        counts = warehouse.upsert_frame(
            conn, "klaviyo_flows", frame_of([{"id": "F1", "account_id": "a", "name": "x"}])
        )
    assert counts == UpsertCounts(updated=1)
    assert Repository(warehouse, "klaviyo_flows", "a").find_by_id("F1")["deleted_at"] is None


def test_upsert_is_atomic_with_the_transaction(warehouse):
    with pytest.raises(RuntimeError), warehouse.transaction() as conn:
        warehouse.upsert_frame(conn, "klaviyo_segments", frame_of([seg(1)]))
        raise RuntimeError("crash after staging")
    assert Repository(warehouse, "klaviyo_segments").count() == 0


def test_a_large_upsert_merges_in_chunks_within_one_transaction(warehouse, monkeypatch):
    monkeypatch.setattr(warehouse_module, "UPSERT_CHUNK", 10)  # 45 rows: chunks of 2, 4, then 10 rows
    table = "klaviyo_segments"
    with warehouse.transaction() as conn:
        assert warehouse.upsert_frame(conn, table, frame_of([seg(i) for i in range(30)])) == UpsertCounts(
            inserted=30
        )
    incoming = frame_of(
        [seg(i, name=f"older {i}", updated_date=T0) for i in range(0, 10)]  # older: skipped
        + [seg(i, name=f"newer {i}", updated_date=T0 + dt.timedelta(days=90)) for i in range(10, 30)]
        + [seg(i) for i in range(100, 115)]  # new
    )
    with warehouse.transaction() as conn:
        assert warehouse.upsert_frame(conn, table, incoming) == UpsertCounts(
            inserted=15, updated=20, skipped=10
        )
    repo = Repository(warehouse, table, "acct")
    assert repo.count() == 45
    assert repo.find_by_id("SEG005")["name"] == "Segment 5"
    assert repo.find_by_id("SEG029")["name"] == "newer 29"
    assert repo.find_by_id("SEG114")["name"] == "Segment 114"

    # A chunk that fails (here the fifth: a NULL id) undoes the chunks merged before it.
    broken = frame_of([seg(i, name="lost", updated_date=T0 + dt.timedelta(days=200)) for i in range(45)])
    broken.loc[35, "id"] = None
    with pytest.raises(Exception, match="null value"), warehouse.transaction() as conn:
        warehouse.upsert_frame(conn, table, broken)
    assert repo.find_by_id("SEG000")["name"] == "Segment 0"
    assert not [r for r in repo.find_all(limit=100) if r["name"] == "lost"]


def test_large_upsert_chunks_cover_every_row_once():
    for rows in (1, 9_999, 10_000, 10_001, 100_000, 200_000, 1_234_567):
        bounds = warehouse_module._chunk_bounds(rows)
        assert bounds[0][0] == 0 and bounds[-1][1] == rows
        assert all(stop == start for (_, stop), (start, _) in zip(bounds, bounds[1:], strict=False))
        assert all(0 < stop - start <= warehouse_module.UPSERT_CHUNK for start, stop in bounds)
    assert [stop - start for start, stop in warehouse_module._chunk_bounds(200_000)] == [
        10_000,
        20_000,
        50_000,
        50_000,
        50_000,
        20_000,
    ]


def test_upsert_rejects_unknown_columns(warehouse):
    with pytest.raises(WarehouseError, match="no_such"), warehouse.transaction() as conn:
        warehouse.upsert_frame(conn, "klaviyo_tags", frame_of([{"id": "t", "account_id": "a", "no_such": 1}]))


def test_pipelined_upserts_copy_new_rows_then_merge_once_keys_repeat(warehouse):
    table = "klaviyo_segments"
    with warehouse.pipelined_upserts(table) as up:
        for k in range(4):  # a first load: straight COPY, no stage
            up.submit(frame_of([seg(i) for i in range(k * 10, k * 10 + 10)]))
    assert up.counts == UpsertCounts(inserted=40)
    with warehouse.engine.connect() as conn:
        synced = conn.execute(
            text("SELECT count(*) FROM klaviyo_segments WHERE last_synced_at IS NULL")
        ).scalar()
        leftovers = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE tablename LIKE '_stage_%'")
        ).scalar()
    assert synced == 0 and leftovers == 0

    with warehouse.pipelined_upserts(table) as up:
        up.submit(frame_of([seg(5, name="newer", updated_date=T0 + dt.timedelta(days=90)), seg(100)]))
        up.submit(frame_of([seg(6, name="older", updated_date=T0 - dt.timedelta(days=9)), seg(101)]))
        up.submit(frame_of([seg(102), seg(102, name="stale duplicate", updated_date=T0)]))
    assert up.counts == UpsertCounts(inserted=3, updated=1, skipped=2)
    repo = Repository(warehouse, table, "acct")
    assert repo.find_by_id("SEG005")["name"] == "newer" and repo.find_by_id("SEG006")["name"] == "Segment 6"
    assert repo.find_by_id("SEG102")["name"] == "Segment 102" and repo.count() == 43


def test_pipelined_upserts_raise_the_first_error_and_keep_earlier_batches(warehouse):
    table = "klaviyo_segments"
    with pytest.raises(Exception, match="null value|not-null"), warehouse.pipelined_upserts(table) as up:
        up.submit(frame_of([seg(1)]))
        up.submit(frame_of([seg(2, metadata=None)]))  # metadata is NOT NULL
        up.submit(frame_of([seg(3)]))
    ids = [r["id"] for r in Repository(warehouse, table, "acct").find_all()]
    assert ids[0] == "SEG001" and "SEG002" not in ids
