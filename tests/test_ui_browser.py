"""The Dagster UI in a real browser: `klaviyo-pipeline ui` on fresh databases, driven with Playwright and
Debian's chromium (`.ci/run` installs it). The asset graph shows every group, and klaviyo/flows with the
assets downstream of it; a 3-day range of klaviyo/flows launched from its asset page runs as a backfill of one
run and loads what the simulator holds for those days."""

from __future__ import annotations

import datetime as dt
import re
import time

import dagster as dg
import psycopg
import pytest

from tests.conftest import ui_env
from tests.dagster_ui import CHROMIUM, browser_page, launch_range, running_ui

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)"
)


def _flows_by_day() -> dict[dt.date, set[str]]:
    """The flows the UI's simulator serves (seed 7, as `prepared()` starts it), by the UTC day of `updated`."""
    from klaviyo_sim import Account

    days: dict[dt.date, set[str]] = {}
    for flow in Account(seed=7, scale="small").flows:
        day = dt.datetime.fromisoformat(flow.attributes["updated"]).astimezone(dt.UTC).date()
        days.setdefault(day, set()).add(flow.id)
    return days


def _busiest_window(
    by_day: dict[dt.date, set[str]], first: dt.date, last: dt.date
) -> tuple[dt.date, dt.date]:
    """The 3 days from `first` to `last` holding the most flows (the latest of equals)."""

    def flows_from(start: dt.date) -> int:
        return sum(len(by_day.get(start + dt.timedelta(days=k), ())) for k in range(3))

    starts = [first + dt.timedelta(days=k) for k in range((last - first).days - 1)]
    start = max(reversed(starts), key=flows_from)
    return start, start + dt.timedelta(days=2)


def node_label(name: str) -> re.Pattern:
    """A node's label in Dagster's graph: the name, or a long one cut in the middle (flow_…_performance)."""
    return re.compile(rf"^(?:{re.escape(name)}|{re.escape(name[:4])}.*….*{re.escape(name[-4:])})$")


@pytest.mark.long
def test_a_range_launched_from_the_asset_page_loads_the_warehouse(tmp_path, new_database):
    env = ui_env(tmp_path, new_database)
    # Neither the first partition (it also takes everything older) nor today's (live).
    today = dt.datetime.now(dt.UTC).date()
    by_day = _flows_by_day()
    first, last = _busiest_window(
        by_day,
        dt.date.fromisoformat(env["KLAVIYO_START_DATE"]) + dt.timedelta(days=1),
        today - dt.timedelta(days=1),
    )
    expected = set().union(*(by_day.get(first + dt.timedelta(days=k), set()) for k in range(3)))
    assert expected, "the simulator has no flow updated in the window"

    from pipelines.definitions import defs

    assets = defs.resolve_asset_graph()
    groups = {assets.get(key).group_name for key in assets.get_all_asset_keys()}
    flows = dg.AssetKey(["klaviyo", "flows"])
    neighbours = ["flows", *(key.path[-1] for key in assets.get(flows).child_keys)]

    began = time.monotonic()
    with running_ui(env, tmp_path / "ui.log") as ui, browser_page() as page:
        try:
            from playwright.sync_api import expect

            # The asset graph: every group of the definitions; then klaviyo/flows and the assets downstream of it.
            page.goto(f"{ui.url}/asset-groups")
            graph = page.locator("svg:has(foreignObject)").first
            for group in groups:
                expect(graph.get_by_text(node_label(group))).to_be_visible()
            page.goto(f"{ui.url}/assets/klaviyo/flows?view=lineage")
            graph = page.locator("svg:has(foreignObject)").first
            for name in neighbours:
                expect(graph.get_by_text(node_label(name))).to_be_visible()

            # The asset page: Materialize… → 3 partitions → Launch backfill (one run: single-run policy).
            backfill_id = launch_range(page, ui.url, "klaviyo/flows", first.isoformat(), last.isoformat())
            backfill = ui.wait_for_backfill_runs(backfill_id, timeout=150)
            assert backfill["numPartitions"] == 3
            assert [r["status"] for r in backfill["runs"]] == ["SUCCESS"], backfill  # one run for the range
            run_ids = {r["id"] for r in backfill["runs"]}

            # The asset's Partitions tab shows the 3 partitions materialized.
            page.goto(f"{ui.url}/assets/klaviyo/flows?view=partitions")
            expect(page.get_by_text("Materialized (3)")).to_be_visible()
        except BaseException:
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}; UI log: {ui.log}")
            raise
    print(f"browser test: {time.monotonic() - began:.1f} s with the UI up")

    with psycopg.connect(env["WAREHOUSE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        loaded = conn.execute(
            "SELECT id, (updated_date AT TIME ZONE 'UTC')::date FROM klaviyo_flows WHERE deleted_at IS NULL"
        ).fetchall()
        status = conn.execute(
            "SELECT status, run_id, rows_inserted FROM klaviyo_sync_status WHERE entity = 'flows'"
        ).fetchone()
        ranges = conn.execute(
            "SELECT DISTINCT partition_key FROM klaviyo_sync_runs WHERE entity = 'flows'"
        ).fetchall()
    assert {row[0] for row in loaded} == expected
    assert all(first <= day <= last for _, day in loaded)
    assert status[0] == "success" and status[1] in run_ids and status[2] == len(expected), status
    assert ranges == [(f"{first}...{last}",)]  # the range as one window, not a run per day
