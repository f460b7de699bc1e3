"""Migration runner against real Postgres: fresh apply, no-op re-apply, edited file, concurrent runners."""

from __future__ import annotations

import shutil
import threading

import pytest
from sqlalchemy import text

from resources.warehouse import make_engine
from resources.warehouse.migrations import (
    MIGRATIONS_DIR,
    VIEWS_DIR,
    MigrationError,
    apply_migrations,
    discover,
)


@pytest.fixture
def engine(test_database_url, schema_name):
    eng = make_engine(test_database_url, schema_name)
    yield eng
    eng.dispose()


def _tables(engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
            ).scalars()
        )


def test_fresh_apply_creates_every_table_and_records_checksums(engine):
    applied = apply_migrations(engine)
    views = sorted(f"views/{p.name}" for p in VIEWS_DIR.glob("*.sql"))
    assert applied == [m.path.name for m in discover()] + views
    assert {
        "klaviyo_campaigns",
        "klaviyo_flows",
        "klaviyo_forms",
        "klaviyo_segments",
        "klaviyo_lists",
        "klaviyo_metrics",
        "klaviyo_tags",
        "klaviyo_sync_status",
        "klaviyo_sync_runs",
        "klaviyo_flow_stats_daily",
        "klaviyo_form_stats_daily",
        "klaviyo_segment_stats_daily",
        "klaviyo_campaign_stats",
        "klaviyo_report_quota",
        "klaviyo_report_calls",
        "klaviyo_report_coverage",
        "klaviyo_segments_report",
        "klaviyo_daily_kpis",
        "klaviyo_segment_growth",
        "schema_migrations",
        "schema_views",
    } <= _tables(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version, checksum FROM schema_migrations ORDER BY version")).all()
    assert [r.version for r in rows] == [m.version for m in discover()]
    assert [r.checksum for r in rows] == [m.checksum for m in discover()]


def test_every_column_is_documented(engine):
    apply_migrations(engine)
    with engine.connect() as conn:
        undocumented = (
            conn.execute(
                text(
                    """SELECT c.table_name || '.' || c.column_name FROM information_schema.columns c
                   JOIN pg_class t ON t.relname = c.table_name
                   JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = c.table_schema
                   WHERE c.table_schema = current_schema() AND c.table_name LIKE 'klaviyo_%' AND NOT t.relispartition
                     AND col_description(t.oid, c.ordinal_position) IS NULL"""
                )
            )
            .scalars()
            .all()
        )
    assert undocumented == []


def test_reapply_is_a_noop(engine):
    apply_migrations(engine)
    assert apply_migrations(engine) == []


def test_an_upgrade_that_drops_views_gets_them_back(engine, tmp_path):
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql"))[:6]:  # up to the BI role, views applied
        shutil.copy(path, older / path.name)
    older_views = tmp_path / "views"  # the views of that time (later ones read tables it did not have)
    older_views.mkdir()
    for name in ("010_entity_reports.sql", "020_daily_kpis.sql", "030_segment_growth.sql"):
        shutil.copy(VIEWS_DIR / name, older_views / name)
    apply_migrations(engine, older, views_directory=older_views)
    applied = apply_migrations(engine)  # 007 drops the views to change their columns' collation
    assert "007_id_collation.sql" in applied and "views/010_entity_reports.sql" in applied
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM klaviyo_segments_report")).scalar_one() == 0
        collation = conn.execute(
            text(
                """SELECT collation_name FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'klaviyo_events' AND column_name = 'id'"""
            )
        ).scalar_one()
    assert collation == "C"


def test_edited_file_is_refused_naming_it(engine, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    apply_migrations(engine, directory)
    edited = sorted(directory.glob("*.sql"))[0]
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match=edited.name):
        apply_migrations(engine, directory)


def test_failed_migration_rolls_back_alone(engine, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "900_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n"
    )
    with pytest.raises(MigrationError, match="900_broken.sql"):
        apply_migrations(engine, directory)
    assert "half_done" not in _tables(engine)
    assert "klaviyo_campaigns" in _tables(engine)
    (directory / "900_broken.sql").unlink()
    assert apply_migrations(engine, directory) == []


def test_concurrent_runners_apply_each_file_once(test_database_url, schema_name):
    engines = [make_engine(test_database_url, schema_name) for _ in range(4)]
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def run(eng):
        try:
            barrier.wait()
            results.append(apply_migrations(eng))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = [name for r in results for name in r]
    views = [f"views/{p.name}" for p in VIEWS_DIR.glob("*.sql")]
    assert sorted(applied) == sorted([m.path.name for m in discover()] + views)
    with engines[0].connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM schema_migrations")).scalar_one() == len(discover())
    for e in engines:
        e.dispose()
