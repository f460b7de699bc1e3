"""`klaviyo-pipeline ui` in the background, for the browser test and docs/screenshots.py: start it on a free
port, wait until its code location has loaded, ask its GraphQL API, and stop it (and `dagster dev` under it).

`klaviyo-pipeline ui` starts `dagster dev` in a process group of its own and, on SIGINT, stops that group. So
the command is started in its own group too, with SIGINT at its default (a background process inherits it
ignored), and stopped with SIGINT; whatever of either group is still alive after that is killed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# Headless chromium as root in a container: no sandbox, no /dev/shm-sized limits, no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe: Callable[[], object], timeout: float, every: float = 0.5):
    """Call `probe` until it returns something truthy (returned); fail naming `what` after `timeout` s."""
    deadline, last_error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (requests.RequestException, OSError) as exc:  # e.g. the server not listening yet
            last_error, value = exc, None
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(
        f"{what}: not within {timeout:.0f} s" + (f" (last error: {last_error})" if last_error else "")
    )


@dataclass
class DagsterUI:
    url: str
    process: subprocess.Popen
    log: Path

    def graphql(self, query: str, **variables) -> dict:
        """The `data` of a GraphQL answer; errors raise."""
        answer = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        answer.raise_for_status()
        body = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def backfill(self, backfill_id: str) -> dict:
        """A backfill: status, partitions, and its runs (id, status), newest first."""
        return self.graphql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]

    def wait_for_backfill_runs(self, backfill_id: str, timeout: float) -> dict:
        """Wait until the backfill has launched its runs and each has finished (a run retry included); the
        backfill. Its own status moves on the daemon's next tick (every 30 s): not waited for."""

        def finished() -> dict | None:
            if self.process.poll() is not None:
                raise RuntimeError(f"the UI exited with {self.process.returncode}; see {self.log}")
            backfill = self.backfill(backfill_id)
            runs = backfill["runs"]
            return backfill if runs and all(r["status"] in FINISHED for r in runs) else None

        try:
            return wait_for(f"the runs of backfill {backfill_id}", finished, timeout, every=1.0)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; now: {self.backfill(backfill_id)}") from None


FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { id status numPartitions runs(limit: 20) { id status } }
    ... on PythonError { message } } }"""
LOCATION = """{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _location_loaded(ui: DagsterUI) -> bool:
    if ui.process.poll() is not None:
        raise RuntimeError(
            f"the UI exited with {ui.process.returncode}; see {ui.log}:\n{ui.log.read_text()[-3000:]}"
        )
    entries = ui.graphql(LOCATION)["workspaceOrError"]["locationEntries"]
    for entry in entries:
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            raise RuntimeError(f"code location {entry['name']} failed to load: {loaded['message']}")
    return bool(entries) and all(
        e["loadStatus"] == "LOADED"
        and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
        for e in entries
    )


def _stop(process: subprocess.Popen) -> None:
    """SIGINT to the command's group (it stops `dagster dev`'s group), then kill what is left of both."""
    groups = {process.pid}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                groups.add(os.getpgid(child.pid))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=40)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def running_ui(env: dict[str, str], log: Path, timeout: float = 180) -> Iterator[DagsterUI]:
    """`python -m pipelines ui` on a free port with `env`, its output in `log`; yields once the code location
    has loaded, and always stops it."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "ui", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    ui = DagsterUI(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for("the Dagster UI's code location", lambda: _location_loaded(ui), timeout)
        # The welcome dialog ("Join the Dagster community") would cover the first page a browser opens.
        ui.graphql("mutation { setNuxSeen }")
        yield ui
    finally:
        _stop(process)


# -- the browser -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def browser_page(width: int = 1600, height: int = 1000, scale: float = 1) -> Iterator:
    """A page of headless Debian chromium driven by Playwright."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a loaded machine renders a page in seconds, not Playwright's 5 s
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": width, "height": height}, device_scale_factor=scale
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def launch_range(page, url: str, asset: str, first: str, last: str) -> str:
    """From the asset's page: Materialize… → a custom partition range → Launch backfill; the backfill's id
    (from the toast that says it was created)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/assets/{asset}")
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.get_by_role("dialog").filter(has_text="Partition selection")
    partitions = dialog.get_by_role("textbox").first
    partitions.fill(f"[{first}...{last}]")
    partitions.press("Enter")
    days = (dt.date.fromisoformat(last) - dt.date.fromisoformat(first)).days + 1
    expect(dialog.get_by_text(f"{days} partitions", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"Created backfill \w+"))
    expect(toast).to_be_visible()
    return re.search(r"Created backfill (\w+)", toast.inner_text()).group(1)
