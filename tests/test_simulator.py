"""The simulator over real HTTP: schemas, paging, filters, errors, rate limits, determinism."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from functools import cache

import jsonschema
import pytest
import requests

from klaviyo_sim import Account
from klaviyo_sim.spec import SPEC_DIR, operations

KEY = "pk_" + "s" * 34
HEADERS = {
    "Authorization": f"Klaviyo-API-Key {KEY}",
    "revision": "2026-07-15",
    "Accept": "application/vnd.api+json",
}

LIST_ENDPOINTS = {
    "get_campaigns": "/api/campaigns?filter=equals(messages.channel,'email')",
    "get_flows": "/api/flows",
    "get_forms": "/api/forms",
    "get_segments": "/api/segments",
    "get_lists": "/api/lists",
    "get_metrics": "/api/metrics",
    "get_tags": "/api/tags",
    "get_profiles": "/api/profiles",
    "get_events": "/api/events",
}


def _openapi_to_jsonschema(node):
    """OpenAPI 3.0 -> JSON Schema: `nullable` becomes a null branch, overlapping `oneOf` becomes `anyOf`."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _openapi_to_jsonschema(v)
        for k, v in node.items()
        if k not in ("nullable", "example", "discriminator")
    }
    if "oneOf" in out:
        out["anyOf"] = out.pop("oneOf")
    if node.get("nullable"):
        if "type" in out and not any(k in out for k in ("$ref", "anyOf", "allOf")):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _validator(operation_id: str, status: str = "200"):
    op = operations()[operation_id]
    doc = json.loads((SPEC_DIR / f"{operation_id}.json").read_text())
    schema = doc["paths"][op.path][op.method]["responses"][status]["content"]["application/vnd.api+json"][
        "schema"
    ]
    components = copy.deepcopy(doc["components"])
    # Real responses send `next`/`prev` as null on the last/first page although the spec does not mark them
    # nullable (../shared/KLAVIYO_API.md, decisions): allow exactly that, nothing else.
    for name in ("next", "prev") if "CollectionLinks" in components["schemas"] else ():
        components["schemas"]["CollectionLinks"]["properties"][name]["nullable"] = True
    root = {"components": _openapi_to_jsonschema(components), **_openapi_to_jsonschema(schema)}
    return jsonschema.Draft7Validator(root)


def get(sim, path, headers=HEADERS, **kw):
    return requests.get(sim.url + path, headers=headers, timeout=30, **kw)


def all_pages(sim, path):
    url, seen, pages = sim.url + path, [], 0
    while url:
        r = requests.get(url, headers=HEADERS, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [d["id"] for d in body["data"]]
        url = body["links"].get("next")
        pages += 1
    return seen, pages


@pytest.mark.parametrize("operation_id", sorted(LIST_ENDPOINTS))
def test_list_responses_validate_against_the_openapi_schema(sim, operation_id):
    path = LIST_ENDPOINTS[operation_id]
    r = get(sim, path)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/vnd.api+json"
    body = r.json()
    assert body["data"]
    errors = sorted(_validator(operation_id).iter_errors(body), key=str)
    assert not errors, errors[0]


@pytest.mark.parametrize(
    "operation_id,path",
    [
        ("get_events", "/api/events?include=metric,profile&page[size]=50"),
        (
            "get_campaigns",
            "/api/campaigns?filter=equals(messages.channel,'sms')&include=tags,campaign-messages",
        ),
        ("get_campaigns", "/api/campaigns?filter=equals(messages.channel,'mobile_push')"),
        ("get_campaigns", "/api/campaigns?filter=equals(messages.channel,'email')&include=campaign-messages"),
        (
            "get_campaigns",
            "/api/campaigns?filter=equals(messages.channel,'mobile_push')&include=campaign-messages"
            "&fields[campaign-message]=definition,send_times",
        ),
        ("get_profiles", "/api/profiles?additional-fields[profile]=subscriptions,predictive_analytics"),
        ("get_flows", "/api/flows?include=tags"),
        ("get_tags", "/api/tags?include=tag-group"),
    ],
)
def test_included_and_additional_fields_validate(sim, operation_id, path):
    body = get(sim, path).json()
    errors = sorted(_validator(operation_id).iter_errors(body), key=str)
    assert not errors, errors[0]


def test_single_resources_validate(sim):
    acct = sim.account
    cases = {
        "get_flow": f"/api/flows/{acct.flows[0].id}",
        "get_segment": f"/api/segments/{acct.segments[0].id}?additional-fields[segment]=profile_count",
        "get_list": f"/api/lists/{acct.lists[0].id}?additional-fields[list]=profile_count",
        "get_campaign": f"/api/campaigns/{acct.campaigns[0].id}",
        "get_form": f"/api/forms/{acct.forms[0].id}",
        "get_metric": f"/api/metrics/{acct.metrics[0].id}",
        "get_event": f"/api/events/{acct.event_id(17)}",
        "get_profile": f"/api/profiles/{acct.profile_id(3)}",
    }
    for op_id, path in cases.items():
        r = get(sim, path)
        assert r.status_code == 200, (path, r.text)
        errors = list(_validator(op_id).iter_errors(r.json()))
        assert not errors, (op_id, errors[0])
    seg = get(sim, cases["get_segment"]).json()
    members = acct.memberships.count("segment", acct.segments[0].id)
    assert seg["data"]["attributes"]["profile_count"] == members


def test_campaign_messages_of_a_campaign(sim):
    for campaign in sim.account.campaigns[:5]:  # email, email, email, sms, mobile_push
        path = f"/api/campaigns/{campaign.id}/campaign-messages?include=campaign"
        r = get(sim, path)
        assert r.status_code == 200, r.text
        body = r.json()
        errors = sorted(_validator("get_messages_for_campaign").iter_errors(body), key=str)
        assert not errors, errors[0]
        [message] = body["data"]
        assert [("campaign-message", message["id"])] == campaign.relationships["campaign-messages"]
        assert message["relationships"]["campaign"]["data"] == {"type": "campaign", "id": campaign.id}
        definition = message["attributes"]["definition"]
        assert definition["channel"] == campaign.internal["messages.channel"]
        assert body["included"][0]["id"] == campaign.id
        send_times = message["attributes"]["send_times"]
        assert [t["datetime"] for t in send_times] == (
            [campaign.attributes["send_time"]] if campaign.attributes["send_time"] else []
        )
    listed = get(
        sim, "/api/campaigns?filter=equals(messages.channel,'email')&include=campaign-messages"
    ).json()
    subjects = {i["attributes"]["definition"]["content"]["subject"] for i in listed["included"]}
    assert len(subjects) > 3  # messages differ from campaign to campaign
    missing = get(sim, "/api/campaigns/NOPE/campaign-messages")
    assert missing.status_code == 404 and "NOPE" in missing.json()["errors"][0]["detail"]


def expected_ids(account: Account, kind: str) -> list[str]:
    if kind == "event":
        return [account.event_id(i) for i in range(account.total_events)]
    if kind == "profile":
        return [account.profile_id(i) for i in range(account.counts["profiles"])]
    return [r.id for r in account.collections[kind]]


@pytest.mark.parametrize(
    "kind,path,sizes",
    [
        ("flow", "/api/flows?filter=equals(archived,false)", [1, 7, 50]),
        ("form", "/api/forms", [1, 5, 100]),
        ("segment", "/api/segments", [1, 3, 10]),
        ("list", "/api/lists", [2, 10]),
        ("tag", "/api/tags", [3, 50]),
        ("profile", "/api/profiles", [7, 100]),
        ("event", "/api/events", [33, 1000]),
    ],
)
def test_pagination_returns_every_record_exactly_once(sim, kind, path, sizes):
    expected = expected_ids(sim.account, kind)
    if kind == "flow":
        expected = [r.id for r in sim.account.flows if not r.attributes["archived"]]
    for size in sizes:
        sep = "&" if "?" in path else "?"
        seen, pages = all_pages(sim, f"{path}{sep}page[size]={size}")
        assert len(seen) == len(set(seen)) == len(expected)
        assert set(seen) == set(expected)
        assert pages == max(1, -(-len(expected) // size))


def test_metrics_page_without_a_size_parameter(sim):
    seen, _ = all_pages(sim, "/api/metrics")
    assert sorted(seen) == sorted(expected_ids(sim.account, "metric"))


def test_campaigns_need_a_channel_and_hide_archived_unless_asked(sim):
    acct = sim.account
    total = []
    for channel in ("email", "sms", "mobile_push"):
        for archived in ("false", "true"):
            seen, _ = all_pages(
                sim,
                f"/api/campaigns?filter=and(equals(messages.channel,'{channel}'),equals(archived,{archived}))",
            )
            want = [
                c.id
                for c in acct.campaigns
                if c.internal["messages.channel"] == channel
                and str(c.attributes["archived"]).lower() == archived
            ]
            assert sorted(seen) == sorted(want)
            total += seen
        default, _ = all_pages(sim, f"/api/campaigns?filter=equals(messages.channel,'{channel}')")
        assert all(not acct.by_id[("campaign", i)].attributes["archived"] for i in default)
    assert sorted(total) == sorted(c.id for c in acct.campaigns)
    assert any(c.attributes["archived"] for c in acct.campaigns)


def test_time_filters_and_sorts(sim):
    acct = sim.account
    lo = acct.history_start + dt.timedelta(days=10)
    hi = lo + dt.timedelta(days=3)
    f = f"and(greater-or-equal(datetime,{lo:%Y-%m-%dT%H:%M:%SZ}),less-than(datetime,{hi:%Y-%m-%dT%H:%M:%SZ}))"
    seen, _ = all_pages(sim, f"/api/events?filter={f}&page[size]=100")
    want = [
        acct.event_id(i)
        for i in range(acct.total_events)
        if lo.timestamp() <= acct.event_timestamp(i) < hi.timestamp()
    ]
    assert seen == want and want
    desc, _ = all_pages(sim, f"/api/events?filter={f}&sort=-datetime&page[size]=100")
    assert desc == list(reversed(want))
    cutoff = acct.flows[3].attributes["updated"]
    seen, _ = all_pages(
        sim, f"/api/flows?filter=greater-than(updated,{cutoff.replace('+00:00', 'Z')})&sort=updated"
    )
    want = sorted(
        (f for f in acct.flows if not f.attributes["archived"] and f.attributes["updated"] > cutoff),
        key=lambda f: (f.attributes["updated"], f.id),
    )
    assert seen == [f.id for f in want]


def test_a_plus_offset_left_unencoded_is_rejected(sim):
    # A bare '+' arrives as a space: Klaviyo answers 400, and so does the simulator.
    r = requests.get(
        sim.url + "/api/flows?filter=greater-than(updated,2026-01-01T00:00:00+00:00)",
        headers=HEADERS,
        timeout=10,
    )
    assert r.status_code == 400
    ok = get(sim, "/api/flows", params={"filter": "greater-than(updated,2026-01-01T00:00:00+00:00)"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "path,detail",
    [
        (
            "/api/segments?filter=less-than(updated,2026-01-01T00:00:00Z)",
            "'less-than' is not an allowed operator",
        ),
        ("/api/profiles?filter=greater-or-equal(updated,2026-01-01T00:00:00Z)", "not an allowed operator"),
        ("/api/events?filter=any(metric_id,['a','b'])", "'any' is not an allowed operator"),
        ("/api/flows?filter=greater-than(updated,'2026-01-01T00:00:00Z')", "must not be quoted"),
        ("/api/flows?filter=equals(archived,true", "Verify your parentheses match"),
        ("/api/flows?filter=equals(nope,1)", "'nope' is not a valid field"),
        ("/api/flows?filter=equals(name,unquoted)", "must be quoted"),
        ("/api/flows?page[size]=51", "Page size must be between 1 and 50"),
        ("/api/segments?page[size]=11", "between 1 and 10"),
        ("/api/metrics?page[size]=5", "'page[size]' is not a valid parameter"),
        ("/api/flows?unknown=1", "'unknown' is not a valid parameter"),
        ("/api/flows?sort=-bogus", "not a valid sort"),
        ("/api/flows?include=profiless", "not an allowed include"),
        ("/api/campaigns", "filter"),
        ("/api/campaigns?filter=equals(archived,true)", "messages.channel"),
        ("/api/campaigns?filter=equals(messages.channel,'fax')", "not a valid choice"),
    ],
)
def test_invalid_requests_get_klaviyo_400s(sim, path, detail):
    r = get(sim, path)
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert set(err) >= {"id", "status", "code", "title", "detail", "source"}
    assert err["status"] == 400 and err["code"] == "invalid" and err["title"] == "Invalid input."
    assert detail in err["detail"]
    assert "parameter" in err["source"]


def test_auth_revision_and_not_found(sim):
    r = get(sim, "/api/flows", headers={"revision": "2026-07-15"})
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "authentication_failed"
    r = get(sim, "/api/flows", headers={**HEADERS, "Authorization": "Klaviyo-API-Key sk_wrong"})
    assert r.status_code == 401
    r = get(sim, "/api/flows", headers={k: v for k, v in HEADERS.items() if k != "revision"})
    assert r.status_code == 400 and r.json()["errors"][0]["source"] == {"parameter": "revision"}
    r = get(sim, "/api/flows/XXXXXX")
    assert r.status_code == 404 and r.json()["errors"][0]["status"] == 404
    assert get(sim, "/api/flows/").status_code == 200
    assert get(sim, "/api/flows", headers={**HEADERS, "Accept": "application/json"}).status_code == 200


def test_restricted_key_gets_403(make_sim):
    sim = make_sim(restricted_keys={KEY})
    r = get(sim, "/api/flows")
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "permission_denied"


def test_rate_limits_hold_and_429_carries_retry_after(make_sim):
    sim = make_sim(rate_limits=True)
    codes = [get(sim, "/api/flows").status_code for _ in range(5)]  # S tier: 3 per second
    assert codes.count(200) >= 3 and 429 in codes
    assert codes[:3] == [200, 200, 200]
    r = next(r for r in (get(sim, "/api/flows") for _ in range(3)) if r.status_code == 429)
    assert int(r.headers["Retry-After"]) >= 1
    assert "RateLimit-Remaining" not in r.headers
    err = r.json()["errors"][0]
    assert err["code"] == "throttled" and err["title"] == "Request was throttled."
    time.sleep(int(r.headers["Retry-After"]))  # the simulator's own windows run on real time
    ok = get(sim, "/api/flows")
    assert ok.status_code == 200
    assert int(ok.headers["RateLimit-Limit"]) == 60
    assert 0 <= int(ok.headers["RateLimit-Remaining"]) < 60


def test_steady_window_holds_at_its_configured_rate(make_sim):
    # time_scale 0.05: the 60 s window lasts 3 s, the burst window 50 ms; tags allow 60 per window.
    sim = make_sim(rate_limits=True, time_scale=0.05)
    ok = 0
    deadline = time.time() + 2.0
    while time.time() < deadline:
        if get(sim, "/api/tags").status_code == 200:
            ok += 1
    # At most 60 per 3-second window: a 2-second run can touch two windows.
    assert 3 <= ok <= 120


def test_report_daily_quota(make_sim):
    sim = make_sim(rate_limits=True, time_scale=0.0002)  # 12 ms steady windows
    body = {
        "data": {
            "type": "segment-values-report",
            "attributes": {"statistics": ["total_members"], "timeframe": {"key": "last_7_days"}},
        }
    }
    statuses = []
    for _ in range(5000):
        r = requests.post(sim.url + "/api/segment-values-reports", headers=HEADERS, json=body, timeout=10)
        statuses.append(r.status_code)
        if r.status_code == 429 and int(r.headers["Retry-After"]) > 60:
            break
        if r.status_code == 429:
            time.sleep(0.004)
    assert statuses.count(200) == 225
    assert int(r.headers["Retry-After"]) > 60


def test_same_seed_gives_byte_identical_responses(make_sim):
    anchor = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    a = make_sim(Account(seed=11, anchor=anchor))
    b = make_sim(Account(seed=11, anchor=anchor))
    c = make_sim(Account(seed=12, anchor=anchor))
    for path in ["/api/flows", "/api/events?page[size]=300", "/api/profiles?page[size]=100", "/api/segments"]:
        ra, rb, rc = get(a, path), get(b, path), get(c, path)
        strip = lambda r, s: r.content.replace(s.url.encode(), b"")  # noqa: E731 - the port differs
        assert strip(ra, a) == strip(rb, b)
        assert strip(ra, a) != strip(rc, c)


def test_faults_are_served_as_asked(sim):
    sim.faults.queue("503", "504html", "429", "403html")
    r = get(sim, "/api/flows")
    assert r.status_code == 503
    r = get(sim, "/api/flows")
    assert r.status_code == 504 and r.headers["Content-Type"].startswith("text/html")
    r = get(sim, "/api/flows")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    r = get(sim, "/api/flows")
    assert r.status_code == 403 and r.headers["Content-Type"].startswith("text/html")
    sim.faults.queue("cut")
    with pytest.raises(requests.exceptions.RequestException):
        get(sim, "/api/events").json()
    assert get(sim, "/api/flows").status_code == 200


def test_mutation_hooks(sim):
    acct = sim.account
    before = get(sim, f"/api/flows/{acct.flows[0].id}").json()["data"]["attributes"]["updated"]
    ids = acct.touch("flow", 2)
    after = get(sim, f"/api/flows/{ids[0]}").json()["data"]["attributes"]
    assert after["updated"] > before and "(edited" in after["name"]
    gone = acct.delete("segment", 1)
    assert get(sim, f"/api/segments/{gone[0]}").status_code == 404
    # Over HTTP too, for a simulator run as its own process.
    r = requests.post(sim.url + "/_sim/touch?type=tag&n=1", timeout=10)
    assert r.status_code == 200 and len(r.json()["ids"]) == 1


def test_profile_updates_show_in_updated_windows(sim):
    acct = sim.account
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    since = (now - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all_pages(sim, f"/api/profiles?filter=greater-than(updated,{since})")[0] == []
    ids = acct.touch_profiles([5, 250, 17])
    seen, _ = all_pages(sim, f"/api/profiles?filter=greater-than(updated,{since})")
    assert sorted(seen) == sorted(ids)
    acct.delete_profiles([5])
    assert get(sim, f"/api/profiles/{ids[0]}").status_code == 404


def test_reports_are_deterministic_and_validate(sim):
    from klaviyo_sim import reports

    acct = sim.account
    start = dt.date.today() - dt.timedelta(days=5)
    metric = next(m.id for m in acct.metrics if m.attributes["name"] == "Placed Order")
    cases = {
        "query_flow_series": ("flow-series-report", {"interval": "daily", "conversion_metric_id": metric}),
        "query_flow_values": ("flow-values-report", {"conversion_metric_id": metric}),
        "query_form_series": ("form-series-report", {"interval": "daily"}),
        "query_form_values": ("form-values-report", {}),
        "query_segment_series": ("segment-series-report", {"interval": "daily"}),
        "query_segment_values": ("segment-values-report", {}),
        "query_campaign_values": ("campaign-values-report", {"conversion_metric_id": metric}),
    }
    stats = {"flow": ["opens", "open_rate", "recipients"], "form": ["viewed_form", "submits", "submit_rate"]}
    stats |= {"segment": ["total_members", "members_added"], "campaign": ["recipients", "open_rate"]}
    for op_id, (rtype, extra) in cases.items():
        family = rtype.split("-")[0]
        attrs = {
            "statistics": stats[family],
            "timeframe": {
                "start": f"{start}T00:00:00+00:00",
                "end": f"{start + dt.timedelta(days=2)}T23:59:59+00:00",
            },
            **extra,
        }
        path = operations()[op_id].path
        r = requests.post(
            sim.url + path, headers=HEADERS, json={"data": {"type": rtype, "attributes": attrs}}, timeout=10
        )
        assert r.status_code == 200, r.text
        errors = list(_validator(op_id).iter_errors(r.json()))
        assert not errors, (op_id, errors[0])
    body = r.json()  # campaign values: only campaigns sent in the window
    r = requests.post(
        sim.url + "/api/flow-series-reports",
        headers=HEADERS,
        json={
            "data": {
                "type": "flow-series-report",
                "attributes": {**copy.deepcopy(attrs), "statistics": ["recipients"], "interval": "daily"},
            }
        },
        timeout=10,
    )
    first = r.json()["data"]["attributes"]["results"][0]
    flow_id = first["groupings"]["flow_id"]
    assert (
        first["statistics"]["recipients"][0]
        == reports.message_counts(acct, "flow", flow_id, start)["recipients"]
    )
    assert isinstance(body["data"]["attributes"]["results"], list)


def test_report_errors(sim):
    acct = sim.account
    refused = next(m.id for m in acct.metrics if m.attributes["name"] == "Active on Site")
    attrs = {"statistics": ["opens"], "timeframe": {"key": "last_30_days"}, "conversion_metric_id": refused}
    r = requests.post(
        sim.url + "/api/flow-values-reports",
        headers=HEADERS,
        json={"data": {"type": "flow-values-report", "attributes": attrs}},
        timeout=10,
    )
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["detail"] == "Passed in conversion metric does not support querying for values data"
    assert err["source"] == {"pointer": "/data/attributes/conversion_metric_id"}
    long_series = {
        "statistics": ["submits"],
        "interval": "daily",
        "timeframe": {"start": "2026-01-01T00:00:00+00:00", "end": "2026-04-01T00:00:00+00:00"},
    }
    r = requests.post(
        sim.url + "/api/form-series-reports",
        headers=HEADERS,
        json={"data": {"type": "form-series-report", "attributes": long_series}},
        timeout=10,
    )
    assert r.status_code == 400 and "too long" in r.json()["errors"][0]["detail"]


# -- the package's structure -------------------------------------------------------------------------------
def _sim_imports() -> dict[str, set[str]]:
    """klaviyo_sim's import graph, read with ast: module -> the klaviyo_sim modules it imports anywhere (at the
    top or inside a function), leaving out imports under `if TYPE_CHECKING:` (never run)."""
    import ast
    from pathlib import Path

    package = Path(SPEC_DIR).parent
    modules = {p.stem: p for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}

    def is_type_checking(node: ast.If) -> bool:
        test = node.test
        return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )

    def walk(node: ast.AST, found: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for sub in child.orelse:
                    walk(sub, found)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    parts = alias.name.split(".")
                    if parts[0] == "klaviyo_sim":
                        found.add(parts[1] if len(parts) > 1 else "__init__")
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, "relative imports: the graph test reads absolute ones"
                parts = (child.module or "").split(".")
                if parts[0] == "klaviyo_sim" and len(parts) > 1:
                    found.add(parts[1])
                elif parts[0] == "klaviyo_sim":  # the submodule x of `from klaviyo_sim import x`, or __init__
                    found.update(a.name if a.name in modules else "__init__" for a in child.names)
            walk(child, found)

    for name, path in modules.items():
        found: set[str] = set()
        walk(ast.parse(path.read_text()), found)
        found.discard(name)
        graph[name] = found
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_simulators_modules_import_each_other_without_a_cycle():
    graph = _sim_imports()
    assert {"errors", "faults", "limits", "paging", "render", "server", "reports", "data"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    # The server sits at the top: only the package and its runner import it; reports raise the errors module's
    # ApiError without reaching up to the server.
    assert {m for m, deps in graph.items() if "server" in deps} == {"__init__", "__main__"}
    assert "errors" in graph["reports"] and "server" not in graph["reports"]
    assert "reports" in graph["server"]
    assert not graph["common"] and graph["errors"] == set()
    # The checker finds a cycle when there is one, lazy imports included.
    assert _cycle({**graph, "errors": {"server"}}) is not None
