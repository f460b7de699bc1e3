"""The Klaviyo client against the simulator over real HTTP."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import pytest

from klaviyo_sim import Account
from resources.catalogue import ENDPOINTS
from resources.klaviyo import KlaviyoApiError, KlaviyoClient, KlaviyoError, QuotaExhausted
from resources.klaviyo_api import parse_timestamp
from resources.ratelimit import RateBudget, Tier
from tests.conftest import TEST_KEY

UTC = dt.UTC


def ids_of(pages) -> list[str]:
    return [r["id"] for page in pages for r in page.records]


@pytest.mark.parametrize(
    "entity,kind",
    [
        ("campaigns", "campaign"),
        ("flows", "flow"),
        ("forms", "form"),
        ("segments", "segment"),
        ("lists", "list"),
        ("metrics", "metric"),
        ("tags", "tag"),
        ("profiles", "profile"),
        ("events", "event"),
    ],
)
def test_every_entity_pages_completely_and_exactly_once(sim, client_for, entity, kind):
    client = client_for(sim)
    seen = ids_of(client.list_window(entity))
    acct = sim.account
    if kind == "event":
        want = [acct.event_id(i) for i in range(acct.total_events)]
    elif kind == "profile":
        want = [acct.profile_id(i) for i in range(acct.counts["profiles"])]
    else:
        want = [r.id for r in acct.collections[kind]]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(want)
    assert sim.client_errors == []  # strict: nothing the API would reject was sent
    sizes = {
        int(q.split("page%5Bsize%5D=")[1].split("&")[0])
        for q in (r.query for r in sim.calls())
        if "page%5Bsize%5D" in q
    }
    if ENDPOINTS[entity].page_size:
        assert sizes == {ENDPOINTS[entity].page_size}
    else:
        assert sizes == set()


def test_campaign_passes_cover_channels_and_archived(sim, client_for):
    pages = list(client_for(sim).list_window("campaigns"))
    contexts = {(p.context["channel"], p.context["archived"]) for p in pages}
    assert contexts == {(c, a) for c in ("email", "sms", "mobile_push") for a in (False, True)}
    by_id = {r["id"]: p.context for p in pages for r in p.records}
    for c in sim.account.campaigns:
        assert by_id[c.id]["channel"] == c.internal["messages.channel"]
        assert by_id[c.id]["archived"] == c.attributes["archived"]


@pytest.mark.parametrize(
    "entity,kind",
    [
        ("flows", "flow"),
        ("segments", "segment"),
        ("forms", "form"),
        ("metrics", "metric"),
        ("campaigns", "campaign"),
    ],
)
def test_windows_select_exactly_the_records_updated_in_them(sim, client_for, entity, kind):
    acct = sim.account
    client = client_for(sim)
    field = ENDPOINTS[entity].updated_field
    stamps = sorted(parse_timestamp(r.attributes[field]) for r in acct.collections[kind])
    start, end = stamps[len(stamps) // 4], stamps[3 * len(stamps) // 4]  # bounds sit exactly on records
    seen = ids_of(client.list_window(entity, start, end))
    want = [r.id for r in acct.collections[kind] if start <= parse_timestamp(r.attributes[field]) < end]
    assert sorted(seen) == sorted(want) and want
    assert sim.client_errors == []


def test_events_window_bounds_are_exact(sim, client_for):
    acct = sim.account
    i, j = 1000, 1500
    start = dt.datetime.fromtimestamp(acct.event_timestamp(i), UTC)
    end = dt.datetime.fromtimestamp(acct.event_timestamp(j), UTC)
    seen = ids_of(client_for(sim).list_window("events", start, end))
    want = [
        acct.event_id(k)
        for k in range(acct.total_events)
        if start.timestamp() <= acct.event_timestamp(k) < end.timestamp()
    ]
    assert seen == want


def test_bounds_later_than_now_are_never_sent(sim, client_for):
    client = client_for(sim)
    future = dt.datetime.now(UTC) + dt.timedelta(days=2)
    list(client.list_window("flows", dt.datetime(2020, 1, 1, tzinfo=UTC), future))
    for call in sim.calls("get_flows"):
        assert future.strftime("%Y-%m-%d") not in call.query


class FakeClock:
    """time.time for a RateBudget: sleeping moves it on at once, nothing waits."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_429_storm_is_ridden_out_without_early_requests(sim, client_for, tmp_path):
    sim.faults.retry_after = 1
    sim.faults.queue("429", "429", "429")
    # The budget waits out Retry-After on a fake clock; each response is stamped with that clock's time.
    clock = FakeClock()
    client = client_for(sim, budget=RateBudget("storm", tmp_path / "rate", clock=clock, sleep=clock.sleep))
    sent: list[tuple[float, int]] = []
    client._session.hooks["response"].append(lambda r, *args, **kwargs: sent.append((clock(), r.status_code)))
    seen = ids_of(client.list_window("segments"))
    assert sorted(seen) == sorted(r.id for r in sim.account.segments)
    assert [status for _, status in sent] == [c.status for c in sim.calls()] and len(sent) > 4
    for (at, status), (next_at, _) in zip(sent, sent[1:], strict=False):
        if status == 429:
            assert next_at - at >= 1.0  # nothing was sent before Retry-After had passed
    stats = client.stats.totals()
    assert stats.throttled == 3 and stats.retries == 3 and stats.throttled_seconds >= 2.5


@pytest.mark.parametrize(
    ("time_scale", "reset", "waited"),
    [(1.0, 30, 30.0), (1.0, 90, 60.05), (0.002, 1, 0.17)],
    ids=["klaviyo", "past-a-window", "time-scaled"],
)
def test_a_spent_steady_window_waits_for_its_reset_and_never_past_one_window(
    tmp_path, time_scale, reset, waited
):
    """RateLimit-Remaining 0 closes the bucket for RateLimit-Reset seconds (whole seconds, rounded up by the
    server), but never past one steady window (60 s on the budget's clock, plus its pad): with a time-scaled
    simulator the rounded second is longer than the whole window. Remaining above 0 closes nothing."""
    clock = FakeClock()
    budget = RateBudget("reset", tmp_path / "rate", clock=clock, sleep=clock.sleep, time_scale=time_scale)
    tier = Tier(burst=100, steady=100)
    budget.observe("b", remaining=3, reset_seconds=reset)
    assert budget.acquire("b", tier) == 0.0
    budget.observe("b", remaining=0, reset_seconds=reset)
    assert budget.acquire("b", tier) == pytest.approx(waited, abs=1e-6)


def test_server_errors_cut_connections_and_html_pages_are_retried(sim, client_for):
    sim.faults.queue("503", "cut", "504html", "badjson", "503")
    client = client_for(sim)
    seen = ids_of(client.list_window("events", page_size=500))
    assert len(seen) == sim.account.total_events == len(set(seen))
    assert client.stats.totals().retries == 5


def test_retries_are_bounded(sim, client_for):
    sim.faults.queue(*["503"] * 10)
    with pytest.raises(KlaviyoError, match="gave up after 3 attempts"):
        list(client_for(sim, max_attempts=3).list_window("tags"))


def test_report_daily_quota_stops_at_once(sim, client_for):
    sim.faults.retry_after = 73473
    sim.faults.queue("429")
    client = client_for(sim)
    with pytest.raises(QuotaExhausted, match=r"resets in 73473 s") as info:
        client.report_page(
            "segment-values", {"statistics": ["total_members"], "timeframe": {"key": "last_7_days"}}
        )
    assert info.value.resets_at > dt.datetime.now(UTC) + dt.timedelta(hours=20)
    assert len(sim.calls()) == 1


def test_401_fails_fast_with_klaviyo_detail(make_sim):
    sim = make_sim(api_keys={"pk_" + "z" * 34})
    client = KlaviyoClient(TEST_KEY, base_url=sim.url)
    with pytest.raises(KlaviyoApiError) as info:
        list(client.list_window("flows"))
    err = info.value
    assert err.status == 401 and err.code == "authentication_failed"
    assert "Missing or invalid private key" in str(err) and "/api/flows" in str(err)
    assert len(sim.calls()) == 1


def test_bad_filter_fails_fast_with_detail_and_source(sim, client_for):
    client = client_for(sim)
    with pytest.raises(KlaviyoApiError) as info:
        list(client.iter_pages(ENDPOINTS["events"], {"filter": "any(metric_id,['x'])"}))
    assert info.value.status == 400
    assert "'any' is not an allowed operator" in str(info.value)
    assert "filter" in str(info.value.source)


def test_html_403_says_so(sim, client_for):
    sim.faults.queue("403html")
    with pytest.raises(KlaviyoApiError, match="Cloudflare challenge"):
        list(client_for(sim).list_window("tags"))


def test_the_api_key_appears_nowhere(make_sim, caplog):
    secret = "pk_" + "SECRETKEY" * 3 + "1234567"
    caplog.set_level(logging.DEBUG)
    sim = make_sim(api_keys={secret})
    client = KlaviyoClient(secret, base_url=sim.url, backoff_base=0.01)
    sim.faults.queue("503")
    assert ids_of(client.list_window("tags"))  # succeeds after one retry, which is logged
    assert any("retrying" in r.getMessage() for r in caplog.records)
    messages = [repr(client), str(client.stats.as_metadata())]
    denied = make_sim(restricted_keys={secret})
    with pytest.raises(KlaviyoApiError) as info:
        list(KlaviyoClient(secret, base_url=denied.url).list_window("flows"))
    assert info.value.status == 403
    messages += [str(info.value), repr(info.value), repr(info.value.args)]
    messages += [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    assert not any(secret in m or "SECRETKEY" in m for m in messages)


def test_two_clients_sharing_one_budget_get_no_429(make_sim):
    sim = make_sim(Account(seed=3), rate_limits=True)  # real limits: tags are 3/s, 60/min
    clients = [KlaviyoClient(TEST_KEY, base_url=sim.url) for _ in range(2)]
    results: list[list[str]] = [[], []]

    def run(k: int) -> None:
        for _ in range(3):
            results[k] += ids_of(clients[k].list_window("tags", page_size=10))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.status for c in sim.calls()].count(429) == 0
    assert len(sim.calls()) == 12
    assert sorted(results[0]) == sorted(results[1]) == sorted(r.id for r in sim.account.tags * 3)


def test_newest_update_costs_one_request_per_pass(sim, client_for):
    client = client_for(sim)
    newest = client.newest_update("campaigns")
    want = max(parse_timestamp(c.attributes["updated_at"]) for c in sim.account.campaigns)
    assert newest == want
    assert len(sim.calls("get_campaigns")) == 6
    assert client.newest_update("segments") == max(
        parse_timestamp(s.attributes["updated"]) for s in sim.account.segments
    )
    assert len(sim.calls("get_segments")) == 1


def test_account_id_and_single_gets(sim, client_for):
    client = client_for(sim)
    assert client.account_id() == sim.account.account_id
    seg = client.get_resource("segments", sim.account.segments[0].id, ["profile_count"])
    members = sim.account.memberships.count("segment", sim.account.segments[0].id)
    assert seg["attributes"]["profile_count"] == members
