"""One rate budget for all machines: two worker processes with separate state directories (as if on two
machines) read one account against the simulator with its rate limits on. Through Redis (KLAVIYO_RATE_REDIS_URL)
they see no 429 and together use at least 0.8x of the allowed request rate; through their own local files
(the budget of one machine each) they exceed the limit together, which is what the shared budget prevents."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from klaviyo_sim import Account
from resources.klaviyo_api import ACCOUNTS_TIER as TIER
from resources.ratelimit import RedisRateBudget
from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("KLAVIYO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SCALE = 0.05  # a minute lasts 3 s on both sides; GET /api/accounts is in the XS tier: 1/s, 15/m
SECONDS = 10.0
# A worker: as many GET /api/accounts as its budget allows until the deadline.
WORKER = """
import sys, time
from resources.klaviyo import KlaviyoClient
from resources.klaviyo_api import ACCOUNTS_PATH, ACCOUNTS_TIER
client = KlaviyoClient(sys.argv[1], base_url=sys.argv[2], rate_time_scale=float(sys.argv[3]), max_attempts=1)
start, deadline = float(sys.argv[4]), float(sys.argv[5])
client._session.get(client.base_url + "/warm-up")  # a connection open before the start: sends go out at once
time.sleep(max(0.0, start - time.time()))
while time.time() < deadline:
    try:
        client.request("GET", client.base_url + ACCOUNTS_PATH, limits=[("accounts", ACCOUNTS_TIER)])
    except Exception:
        pass
"""


def _redis_up() -> bool:
    try:
        RedisRateBudget("probe", REDIS_URL)._redis.ping()
    except Exception:  # noqa: BLE001
        return False
    return True


def _two_workers(sim, tmp_path: Path, redis_url: str | None) -> list:
    start = time.time() + 2.0  # both processes up and connected
    deadline = start + SECONDS
    procs = []
    for k in range(2):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KLAVIYO_RATE")}
        env["KLAVIYO_RATE_STATE_DIR"] = str(tmp_path / f"machine-{k}")
        if redis_url:
            env["KLAVIYO_RATE_REDIS_URL"] = redis_url
        argv = [sys.executable, "-c", WORKER, TEST_KEY, sim.url, str(SCALE), str(start), str(deadline)]
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env))
    for p in procs:
        assert p.wait(timeout=60) == 0
    return sim.calls("get_accounts")


def _share_of_allowed(calls) -> float:
    """Requests answered 200 per steady window, after the first window (the budget starts full), against the
    tier's steady limit."""
    window = 60 * SCALE
    ok = sorted(c.at for c in calls if c.status == 200)
    start, end = ok[0] + window, ok[-1]
    windows = (end - start) / window
    return sum(1 for t in ok if start <= t < end) / (TIER.steady * windows)


@pytest.mark.skipif(not _redis_up(), reason=f"no Redis at {REDIS_URL}")
def test_two_machines_share_one_budget_through_redis(make_sim, tmp_path):
    sim = make_sim(Account(seed=7), rate_limits=True, time_scale=SCALE)
    calls = _two_workers(sim, tmp_path, REDIS_URL)
    throttled = [c for c in calls if c.status == 429]
    assert not throttled, f"{len(throttled)} of {len(calls)} requests got 429"
    share = _share_of_allowed(calls)
    assert share >= 0.8, f"the two workers used {share:.2f}x of the allowed rate"


def test_without_a_shared_budget_two_machines_exceed_the_limit(make_sim, tmp_path):
    sim = make_sim(Account(seed=7), rate_limits=True, time_scale=SCALE)
    calls = _two_workers(sim, tmp_path, None)
    assert any(c.status == 429 for c in calls)  # each machine kept to its own budget: together, too many


@pytest.mark.skipif(not _redis_up(), reason=f"no Redis at {REDIS_URL}")
def test_a_retry_after_closes_the_bucket_for_every_process():
    key = uuid.uuid4().hex  # a fresh account: its own keys
    first, second = RedisRateBudget(key, REDIS_URL), RedisRateBudget(key, REDIS_URL)
    first.block("accounts", 0.4)  # one process saw a 429 with Retry-After
    began = time.monotonic()
    waited = second.acquire("accounts", TIER)  # another waits it out, then takes a slot
    assert 0.3 <= waited <= 0.5 and 0.3 <= time.monotonic() - began < 1.0
    assert first.acquire("accounts", TIER) > 0  # the slot it took counts for everyone (burst: 1 a second)
