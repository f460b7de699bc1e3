"""Versioned SQL migrations: `sql/migrations/NNN_name.sql`, applied in order, recorded with checksums."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "sql" / "migrations"
VIEWS_DIR = Path(__file__).resolve().parents[2] / "sql" / "views"
_FILE_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """A migration could not be applied, or an applied file no longer matches its checksum."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of a directory, in version order; refuses odd names and duplicate versions."""
    migrations: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files must be named NNN_name.sql")
        version = match.group(1)
        if version in migrations:
            raise MigrationError(
                f"{path.name}: version {version} is used by {migrations[version].path.name} too"
            )
        migrations[version] = Migration(version, path)
    return [migrations[v] for v in sorted(migrations, key=int)]


def apply_migrations(
    engine: Engine, directory: Path = MIGRATIONS_DIR, views_directory: Path | None = None
) -> list[str]:
    """Apply pending migrations, each in its own transaction, then the views; return the file names applied.

    Serialized by a session advisory lock keyed on the current schema, so concurrent runners apply each
    file once. Refuses to run when an applied file was edited since. Views (`sql/views/*.sql`, written as
    `CREATE OR REPLACE VIEW`) are not versioned: a view file is applied again whenever its content changes.
    The project's views go with the project's migrations; pass `views_directory` for others.
    """
    if views_directory is None and directory == MIGRATIONS_DIR:
        views_directory = VIEWS_DIR
    migrations = discover(directory)
    applied_now: list[str] = []
    with engine.connect() as conn:
        lock_key = conn.execute(
            text("SELECT hashtext('klaviyo_pipeline.migrations.' || current_schema())")
        ).scalar_one()
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key})
        conn.commit()
        try:
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            conn.commit()
            recorded = dict(conn.execute(text("SELECT version, checksum FROM schema_migrations")).all())
            conn.commit()
            for migration in migrations:
                if migration.version in recorded and recorded[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"{migration.path.name} was edited after it was applied (checksum differs); "
                        "add a new migration instead of changing an applied one"
                    )
            for migration in migrations:
                if migration.version in recorded:
                    continue
                _run_file(
                    conn,
                    migration.path,
                    migration.path.name,
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)",
                    {"v": migration.version, "n": migration.path.name, "c": migration.checksum},
                )
                applied_now.append(migration.path.name)
            if views_directory is not None:
                # A migration may have dropped views to change what they read: re-create them all then.
                applied_now += _apply_views(conn, views_directory, force=bool(applied_now))
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key})
            conn.commit()
    return applied_now


def _run_file(conn, path: Path, label: str, record: str, params: dict) -> None:
    """Run a SQL file and record it, in one transaction; a failure names the file."""
    try:
        with conn.begin():
            # Raw driver cursor: a file holds several statements.
            with conn.connection.driver_connection.cursor() as cur:
                cur.execute(path.read_text(encoding="utf-8"))
            conn.execute(text(record), params)
    except Exception as exc:
        raise MigrationError(f"{label} failed: {exc}") from exc


def _apply_views(conn, directory: Path, force: bool = False) -> list[str]:
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_views ("
            " name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    )
    conn.commit()
    recorded = dict(conn.execute(text("SELECT name, checksum FROM schema_views")).all())
    conn.commit()
    applied = []
    for path in sorted(directory.glob("*.sql")):
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        if recorded.get(path.name) == checksum and not force:
            continue
        _run_file(
            conn,
            path,
            f"views/{path.name}",
            "INSERT INTO schema_views (name, checksum) VALUES (:n, :c) ON CONFLICT (name) DO UPDATE"
            " SET checksum = excluded.checksum, applied_at = now()",
            {"n": path.name, "c": checksum},
        )
        applied.append(f"views/{path.name}")
    return applied


def pending_migrations(engine: Engine, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """The migration files not applied yet (read-only: runs no DDL; every file when none ever ran)."""
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT to_regclass('schema_migrations') IS NOT NULL")).scalar_one()
        recorded = (
            set(conn.execute(text("SELECT version FROM schema_migrations")).scalars()) if exists else set()
        )
    return [m.path.name for m in discover(directory) if m.version not in recorded]
