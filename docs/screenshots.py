"""Screenshots of the Dagster UI for the README (docs/ui-*.png), made the way a user gets there.

    uv run --frozen python docs/screenshots.py [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

On two fresh databases of that server (dropped at the end) and a fresh DAGSTER_HOME, with the simulator's
120 days of history as daily partitions:
1. `klaviyo-pipeline sync --end <8 days ago>` loads the history as one run;
2. `klaviyo-pipeline ui` starts, and from klaviyo/events' asset page Materialize… launches two ranges, each a
   backfill of one run: 3 days the sync loaded (nothing new), then the 7 days after it (new rows); the 7-day
   range's partitions are photographed;
3. `klaviyo-pipeline sync --start <7 days ago>` brings every other asset up to today, and the asset graph, an
   asset's columns and the metadata plots (by partition, and by run) are photographed.
Headless Debian chromium drives the UI (Playwright). Run it again to refresh the pictures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.dagster_ui import browser_page, launch_range, running_ui  # noqa: E402

DOCS = ROOT / "docs"
DAYS = (
    120  # partitions before today: the simulator's whole history, so the first day is a day like the others
)
SYNCED_TO = 8  # the sync loads up to this many days ago; the week after it comes from a range run in the UI


def environment(home: Path, admin_url: str, names: list[str]) -> dict[str, str]:
    """What `klaviyo-pipeline` reads: none of the caller's KLAVIYO_/WAREHOUSE_/DAGSTER_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "WAREHOUSE_", "DAGSTER_"))}
    server = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    env.update(
        KLAVIYO_PIPELINE_HOME=str(home / "state"),
        KLAVIYO_START_DATE=(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DAYS)).isoformat(),
        KLAVIYO_RATE_STATE_DIR=str(home / "rate"),
        WAREHOUSE_URL=f"postgresql+psycopg://{server}/{names[0]}",
        DAGSTER_PG_URL=f"postgresql+psycopg2://{server}/{names[1]}",
        DAGSTER_HOME=str(home / "dagster_home"),
    )
    return env


def say(message: str, began: float = time.monotonic()) -> None:
    print(f"[{time.monotonic() - began:5.1f} s] {message}", flush=True)


def prepare(ui, page) -> dict[str, str]:
    """Two ranges of klaviyo/events launched from its asset page, one after the other: 3 days the sync already
    loaded (nothing new), then the 7 days after it (new rows). The days of the 7-day range."""
    today = dt.datetime.now(dt.UTC).date()
    ranges = [(today - dt.timedelta(days=k), today - dt.timedelta(days=j)) for k, j in ((10, 8), (7, 1))]
    for first, last in ranges:
        backfill_id = launch_range(page, ui.url, "klaviyo/events", first.isoformat(), last.isoformat())
        backfill = ui.wait_for_backfill_runs(backfill_id, timeout=300)
        say(
            f"range {first} .. {last}: backfill {backfill_id}, runs {[r['status'] for r in backfill['runs']]}"
        )
        if any(r["status"] != "SUCCESS" for r in backfill["runs"]):
            raise RuntimeError(f"backfill {backfill_id} did not succeed: {backfill}; see {ui.log}")
    first, last = ranges[-1]
    return {"middle": (last - dt.timedelta(days=3)).isoformat(), "last": last.isoformat()}


def _plots(page, url: str, mode: str, key: str) -> None:
    """The asset's metadata plots (Overview → Metadata → Plots), by partition or by event, with `key`'s plot in
    the middle of the page."""
    from playwright.sync_api import expect

    page.goto(f"{url}/assets/klaviyo/events")
    page.get_by_role("button", name="Plots").click()
    page.get_by_role("button", name=re.compile(rf"\b{mode}$")).click()  # its name follows its icon's
    plot = page.get_by_text(key, exact=True).first
    expect(plot).to_be_visible()
    plot.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(1000)  # the charts draw in


def _save(page, name: str, **options) -> Path:
    page.screenshot(path=DOCS / name, **options)
    say(f"wrote docs/{name}")
    return DOCS / name


def shoot_range(url: str, facts: dict[str, str]) -> None:
    """The 7-day range run's partitions, while they are the latest materializations of their days."""
    from playwright.sync_api import expect

    with browser_page() as page:
        # A day inside the range: that day's own rows only.
        page.goto(f"{url}/assets/klaviyo/events?view=partitions&partition={facts['middle']}")
        expect(page.get_by_text("dagster/row_count").first).to_be_visible()
        _save(page, "ui-range-run-partition.png")

    # The range's newest day: its rows, and the run's figures for the whole window with figures_cover. A tall
    # page, cut below the metadata.
    with browser_page(height=2400) as page:
        page.goto(f"{url}/assets/klaviyo/events?view=partitions&partition={facts['last']}")
        cover = page.get_by_text("figures_cover", exact=True)
        expect(cover).to_be_visible()
        height = cover.bounding_box()["y"] + 48
        _save(
            page, "ui-range-run-newest-partition.png", clip={"x": 0, "y": 0, "width": 1600, "height": height}
        )


def shoot_overview(url: str) -> None:
    """The graph, an asset's columns, and the plots, once every asset is materialized up to today."""
    from playwright.sync_api import expect

    with browser_page() as page:
        # The asset graph: the groups, what runs between them, each group's materialized assets.
        page.goto(f"{url}/asset-groups")
        expect(page.get_by_text("klaviyo_analytics").last).to_be_visible()
        expect(page.get_by_text("fetching statuses")).to_have_count(0)
        page.wait_for_timeout(1000)
        _save(page, "ui-asset-graph.png")

        # One asset's neighbours in the graph: klaviyo/flows, the assets downstream of it and their groups.
        page.goto(f"{url}/assets/klaviyo/flows?view=lineage")
        expect(page.get_by_text("flow_stats_daily", exact=True).last).to_be_visible()
        page.wait_for_timeout(2000)  # the nodes' statuses
        _save(page, "ui-asset-lineage.png")

        # An asset's page: its columns (dagster/column_schema: types, nullability, the tables' comments).
        page.goto(f"{url}/assets/klaviyo/flows")
        expect(page.get_by_text("Column name")).to_be_visible()
        expect(page.get_by_text("updated_date", exact=True).first).to_be_visible()
        _save(page, "ui-asset-columns.png")

        # The metadata plots: each day's rows (dagster/row_count) by partition, and each run's figures by event.
        _plots(page, url, "Partitions", "dagster/row_count")
        _save(page, "ui-plot-partitions.png")
        _plots(page, url, "Events", "rows_inserted")
        _save(page, "ui-plot-runs.png")


def _sync(env: dict[str, str], *args: str) -> None:
    say(f"klaviyo-pipeline sync {' '.join(args)}")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "sync", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"sync {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where databases may be created (default: TEST_ADMIN_URL, else local 5432)",
    )
    args = parser.parse_args()
    names = [f"kp_docs_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="kp-screenshots-") as tmp:
            home = Path(tmp)
            env = environment(home, args.admin_url, names)
            today = dt.datetime.now(dt.UTC).date()
            _sync(env, "--end", (today - dt.timedelta(days=SYNCED_TO)).isoformat())
            say("klaviyo-pipeline ui")
            with running_ui(env, home / "ui.log") as ui:
                with browser_page() as page:
                    facts = prepare(ui, page)
                shoot_range(ui.url, facts)
                _sync(env, "--start", (today - dt.timedelta(days=SYNCED_TO - 1)).isoformat())
                shoot_overview(ui.url)
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
