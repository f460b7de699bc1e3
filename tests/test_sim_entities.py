"""Templates and tag groups as Klaviyo serves them (GET /api/templates, /api/tag-groups and their single GETs):
the seeded account, schemas, paging, filters, sorts, sparse fieldsets, scopes, rate tiers and the mutation
hooks. Over real HTTP, as tests/test_simulator.py."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
import requests

from klaviyo_sim import Account
from klaviyo_sim.data import EDITOR_TYPES, ODD_NAMES, parse_time
from klaviyo_sim.spec import operations
from tests.test_simulator import HEADERS, KEY, _validator, all_pages, get

UTC = dt.UTC
ANCHOR = dt.datetime(2026, 6, 1, tzinfo=UTC)  # a history wholly in the past: touched records stand out


def z(value: str) -> str:
    """A resource's datetime as a filter value (UTC, `Z`: no `+` to encode)."""
    return parse_time(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pages(sim, path: str, operation_id: str, validate: bool = True) -> list[dict]:
    """Every page of a list, each validated against the operation's response schema (a sparse fieldset can
    leave out attributes the schema requires: `validate=False` then)."""
    url, out = sim.url + path, []
    while url:
        assert len(out) < 500, "paging does not end"
        r = requests.get(url, headers=HEADERS, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        errors = sorted(_validator(operation_id).iter_errors(body), key=str) if validate else []
        assert not errors, errors[0]
        out.append(body)
        url = body["links"].get("next")
    return out


def ids_of(sim, path: str, operation_id: str) -> list[str]:
    return [d["id"] for p in pages(sim, path, operation_id) for d in p["data"]]


def expected_order(items, sort: str) -> list[str]:
    key = sort.lstrip("-")

    def sort_key(r) -> tuple:
        value = r.id if key == "id" else r.attributes[key]
        return (parse_time(value) if key in ("created", "updated") else value, r.id)

    return [r.id for r in sorted(items, key=sort_key, reverse=sort.startswith("-"))]


# -- the seeded account -------------------------------------------------------------------------------------
def test_the_account_holds_templates_and_tag_groups():
    acct = Account(seed=7, anchor=ANCHOR)
    assert len(acct.templates) == 30 and len(acct.tag_groups) == 4
    medium = Account(seed=7, scale="medium", profiles=10, events=10)
    assert len(medium.templates) > 30 and len(medium.tag_groups) > 4
    assert acct.collections["template"] is acct.templates and acct.collections["tag-group"] is acct.tag_groups

    # Templates: 6-character ids, every editor, a definition exactly for drag-and-drop ones.
    ids = [t.id for t in acct.templates]
    assert len(set(ids)) == len(ids) and all(len(i) == 6 and i.isalnum() for i in ids)
    assert {t.attributes["editor_type"] for t in acct.templates} == set(EDITOR_TYPES)
    for t in acct.templates:
        assert set(t.attributes) == {"name", "editor_type", "html", "text", "amp", "created", "updated"}
        assert t.attributes["html"].startswith("<!DOCTYPE html>")
        has_definition = t.internal["definition"] is not None
        assert has_definition == (t.attributes["editor_type"] == "SYSTEM_DRAGGABLE")
        assert parse_time(t.attributes["created"]) <= parse_time(t.attributes["updated"]) < acct.anchor
    names = [t.attributes["name"] for t in acct.templates]
    assert set(names) & set(ODD_NAMES) and len(set(names)) < len(names)  # odd names, and a shared one
    assert any(t.attributes["text"] is None for t in acct.templates)
    assert any(t.attributes["amp"] for t in acct.templates)
    # `updated` spread over the history, some never edited after creation.
    updated = sorted(parse_time(t.attributes["updated"]) for t in acct.templates)
    assert updated[0] < acct.history_start + (acct.anchor - acct.history_start) / 2
    assert updated[-1] > acct.anchor - (acct.anchor - acct.history_start) / 5
    assert any(t.attributes["created"] == t.attributes["updated"] for t in acct.templates)

    # Tag groups: UUIDs, exactly one default, an exclusive one; every tag in one of them.
    groups = {g.id: g for g in acct.tag_groups}
    assert all(uuid.UUID(g) for g in groups)
    assert [g.attributes["default"] for g in acct.tag_groups].count(True) == 1
    assert any(g.attributes["exclusive"] for g in acct.tag_groups)
    for tag in acct.tags:
        [(kind, gid)] = tag.relationships["tag-group"]
        assert kind == "tag-group" and gid in groups and gid == tag.internal["tag_group"]
    assert {t.internal["tag_group"] for t in acct.tags} == set(groups)
    # A resource carries at most one tag of an exclusive group.
    tag_group = {t.id: t.internal["tag_group"] for t in acct.tags}
    exclusive = {g for g, r in groups.items() if r.attributes["exclusive"]}
    for r in acct.campaigns + acct.flows + acct.lists + acct.segments:
        linked = [tag_group[tid] for _, tid in r.relationships.get("tags", [])]
        assert all(linked.count(g) <= 1 for g in exclusive)

    # Every email message's template is one of the account's; SMS and push messages have none.
    used = set()
    for message in acct.campaign_messages:
        channel = message.attributes["definition"]["channel"]
        linked = message.relationships.get("template")
        assert bool(linked) == (channel == "email")
        if linked:
            assert linked[0][0] == "template" and linked[0][1] in set(ids)
            used.add(linked[0][1])
    assert len(used) > 5

    # Deterministic by seed.
    again = Account(seed=7, anchor=ANCHOR)
    assert [(t.id, t.attributes) for t in again.templates] == [(t.id, t.attributes) for t in acct.templates]
    assert [g.id for g in again.tag_groups] == list(groups)
    other = Account(seed=8, anchor=ANCHOR)
    assert {t.id for t in other.templates}.isdisjoint(ids)


# -- schemas ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "operation_id,path",
    [
        ("get_templates", "/api/templates"),
        ("get_templates", "/api/templates?additional-fields[template]=definition&sort=-updated"),
        ("get_templates", "/api/templates?page[size]=7&sort=name"),
        ("get_tag_groups", "/api/tag-groups"),
        ("get_tag_groups", "/api/tag-groups?page[size]=1&sort=-name"),
        ("get_tags", "/api/tags?include=tag-group"),
    ],
)
def test_every_page_validates_against_the_openapi_schema(sim, operation_id, path):
    got = pages(sim, path, operation_id)
    assert got[0]["data"]
    for page in got:
        assert page["links"]["self"].startswith(sim.url)


def test_single_gets_validate_and_match_the_account(sim):
    acct = sim.account
    for template in acct.templates:
        r = get(sim, f"/api/templates/{template.id}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert not list(_validator("get_template").iter_errors(body))
        attrs = body["data"]["attributes"]
        assert {k: attrs[k] for k in template.attributes} == template.attributes
        # The drag-and-drop definition comes with a GET by id; other editors have none.
        assert ("definition" in attrs) == (template.attributes["editor_type"] == "SYSTEM_DRAGGABLE")
        assert body["data"]["links"]["self"] == f"{sim.url}/api/templates/{template.id}/"
        assert "relationships" not in body["data"]
    for group in acct.tag_groups:
        body = get(sim, f"/api/tag-groups/{group.id}/").json()
        assert not list(_validator("get_tag_group").iter_errors(body))
        assert body["data"]["attributes"] == group.attributes
        assert set(body["data"]["relationships"]["tags"]["links"]) == {"self", "related"}
    for path in ("/api/templates/NOPE00", f"/api/tag-groups/{uuid.uuid4()}"):
        r = get(sim, path)
        assert r.status_code == 404 and r.json()["errors"][0]["status"] == 404


def test_definitions_and_sparse_fieldsets(sim):
    acct = sim.account
    draggable = {t.id for t in acct.templates if t.attributes["editor_type"] == "SYSTEM_DRAGGABLE"}
    plain = ids_of(sim, "/api/templates", "get_templates")
    listed = [d for p in pages(sim, "/api/templates", "get_templates") for d in p["data"]]
    assert len(plain) == 30 and not any("definition" in d["attributes"] for d in listed)
    asked = [
        d
        for p in pages(sim, "/api/templates?additional-fields[template]=definition", "get_templates")
        for d in p["data"]
    ]
    assert {d["id"] for d in asked if "definition" in d["attributes"]} == draggable
    one = next(d for d in asked if d["id"] in draggable)
    assert one["attributes"]["definition"]["template_id"] == one["id"]
    styles = [s["style_type"] for s in one["attributes"]["definition"]["styles"]]
    assert len(styles) == len(set(styles)) == 8  # one of each style type

    body = get(sim, "/api/templates?fields[template]=name,updated&page[size]=3").json()
    assert all(set(d["attributes"]) == {"name", "updated"} for d in body["data"])
    body = get(sim, "/api/tag-groups?fields[tag-group]=default").json()
    assert [d["attributes"] for d in body["data"]] == [
        {"default": g.attributes["default"]} for g in sorted(acct.tag_groups, key=lambda g: g.id)
    ]


def test_tags_include_their_real_tag_group(sim):
    acct = sim.account
    groups = {g.id: g for g in acct.tag_groups}
    got = pages(sim, "/api/tags?include=tag-group&fields[tag-group]=name,default", "get_tags", validate=False)
    seen = 0
    for page in got:
        included = {(i["type"], i["id"]): i for i in page["included"]}
        for tag in page["data"]:
            linkage = tag["relationships"]["tag-group"]["data"]
            assert linkage["id"] == acct.by_id[("tag", tag["id"])].internal["tag_group"]
            group = included[("tag-group", linkage["id"])]
            want = groups[linkage["id"]].attributes
            assert group["attributes"] == {"name": want["name"], "default": want["default"]}
            seen += 1
    assert seen == len(acct.tags)
    # Without include, the relationship carries only links (its linkage is optional in the spec).
    plain = get(sim, "/api/tags").json()["data"][0]["relationships"]["tag-group"]
    assert set(plain) == {"links"}


def test_campaign_messages_include_their_template(sim):
    acct = sim.account
    campaign = next(c for c in acct.campaigns if c.internal["messages.channel"] == "email")
    body = get(sim, f"/api/campaigns/{campaign.id}/campaign-messages?include=template,campaign").json()
    assert not list(_validator("get_messages_for_campaign").iter_errors(body))
    [message] = body["data"]
    linkage = message["relationships"]["template"]["data"]
    included = {(i["type"], i["id"]): i for i in body["included"]}
    template = included[("template", linkage["id"])]
    assert template["attributes"] == acct.by_id[("template", linkage["id"])].attributes
    assert ("campaign", campaign.id) in included
    plain = get(sim, f"/api/campaigns/{campaign.id}/campaign-messages").json()
    assert "included" not in plain


# -- paging, sorts, filters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,path,operation_id,default,sizes",
    [
        ("template", "/api/templates", "get_templates", 10, [1, 3, 7, 10]),
        ("tag-group", "/api/tag-groups", "get_tag_groups", 25, [1, 3, 25]),
    ],
)
def test_paging_returns_every_record_exactly_once(sim, kind, path, operation_id, default, sizes):
    expected = sorted(r.id for r in sim.account.collections[kind])
    seen, count = all_pages(sim, path)
    assert seen == expected and count == -(-len(expected) // default)
    for size in sizes:
        seen, count = all_pages(sim, f"{path}?page[size]={size}")
        assert seen == expected and count == -(-len(expected) // size)
        for sort in ("name", "-id"):
            assert all_pages(sim, f"{path}?page[size]={size}&sort={sort}")[0] == expected_order(
                sim.account.collections[kind], sort
            )
    first = get(sim, f"{path}?page[size]=1").json()
    assert first["links"]["prev"] is None and first["links"]["next"]
    second = requests.get(first["links"]["next"], headers=HEADERS, timeout=10).json()
    assert second["links"]["prev"] and second["data"][0]["id"] == expected[1]
    r = get(sim, f"{path}?page[cursor]=garbage")
    assert r.status_code == 400 and r.json()["errors"][0]["source"] == {"parameter": "page[cursor]"}


@pytest.mark.parametrize("sort", ["created", "-created", "id", "-id", "name", "-name", "updated", "-updated"])
def test_templates_sort(sim, sort):
    assert all_pages(sim, f"/api/templates?sort={sort}&page[size]=4")[0] == expected_order(
        sim.account.templates, sort
    )


@pytest.mark.parametrize("sort", ["id", "-id", "name", "-name"])
def test_tag_groups_sort(sim, sort):
    assert all_pages(sim, f"/api/tag-groups?sort={sort}&page[size]=2")[0] == expected_order(
        sim.account.tag_groups, sort
    )


def test_template_filters(sim):
    acct = sim.account
    templates = acct.templates

    def want(keep) -> list[str]:
        return sorted(t.id for t in templates if keep(t))

    def listed(expr: str) -> list[str]:
        return sorted(all_pages(sim, f"/api/templates?filter={expr}")[0])

    some = [t.id for t in templates[3:6]]
    quoted = ",".join(f"'{i}'" for i in some)
    assert listed(f"any(id,[{quoted}])") == sorted(some)
    assert listed(f"equals(id,[{quoted}])") == sorted(some)
    assert listed("equals(name,'Untitled template')") == want(
        lambda t: t.attributes["name"] == "Untitled template"
    )
    assert len(listed("equals(name,'Untitled template')")) >= 2
    assert listed("contains(name,'Template 1')") == want(lambda t: "Template 1" in t.attributes["name"])
    assert listed("any(name,['Email Template 2','Email Template 3'])") == want(
        lambda t: t.attributes["name"] in ("Email Template 2", "Email Template 3")
    )
    for field in ("created", "updated"):
        pivot = sorted(templates, key=lambda t: t.attributes[field])[len(templates) // 2].attributes[field]
        at = parse_time(pivot)
        for op, keep in {
            "equals": lambda v, at=at: v == at,
            "greater-than": lambda v, at=at: v > at,
            "greater-or-equal": lambda v, at=at: v >= at,
            "less-than": lambda v, at=at: v < at,
            "less-or-equal": lambda v, at=at: v <= at,
        }.items():
            got = listed(f"{op}({field},{z(pivot)})")
            assert got == want(lambda t: keep(parse_time(t.attributes[field]))), (field, op)  # noqa: B023
            assert got or op in ("greater-than", "less-than")
    lo, hi = z(templates[0].attributes["created"]), z(templates[1].attributes["updated"])
    both = f"and(greater-or-equal(updated,{lo}),less-than(updated,{hi}),contains(name,'Template'))"
    assert listed(both) == want(
        lambda t: (
            parse_time(lo) <= parse_time(t.attributes["updated"]) < parse_time(hi)
            and "Template" in t.attributes["name"]
        )
    )


def test_tag_group_filters(sim):
    groups = sim.account.tag_groups
    names = [g.attributes["name"] for g in groups]
    assert names == ["Default", "Season", "Channel", "Promotion type"]

    def listed(expr: str) -> list[str]:
        found = all_pages(sim, f"/api/tag-groups?filter={expr}&sort=name")[0]
        return [sim.account.by_id[("tag-group", i)].attributes["name"] for i in found]

    assert listed("equals(default,true)") == ["Default"]
    assert listed("equals(default,false)") == ["Channel", "Promotion type", "Season"]
    assert listed("equals(exclusive,true)") == ["Channel"]
    assert listed("equals(name,'Season')") == ["Season"]
    assert listed("equals(name,['Season','Default','Nope'])") == ["Default", "Season"]
    assert listed("contains(name,'a')") == ["Channel", "Default", "Season"]
    assert listed("starts-with(name,'Pro')") == ["Promotion type"]
    assert listed("ends-with(name,'el')") == ["Channel"]
    assert listed("and(equals(exclusive,false),contains(name,'e'))") == [
        "Default",
        "Promotion type",
        "Season",
    ]


@pytest.mark.parametrize(
    "path,detail,parameter",
    [
        (
            "/api/templates?filter=starts-with(name,'Email')",
            "'starts-with' is not an allowed operator",
            "filter",
        ),
        ("/api/templates?filter=equals(id,'abc123')", "'equals' is not an allowed operator", "filter"),
        (
            "/api/templates?filter=greater-than(updated,'2026-01-01T00:00:00Z')",
            "must not be quoted",
            "filter",
        ),
        ("/api/templates?filter=equals(editor_type,'CODE')", "'editor_type' is not a valid field", "filter"),
        ("/api/templates?filter=contains(name,Email)", "must be quoted", "filter"),
        ("/api/templates?page[size]=11", "between 1 and 10", "page[size]"),
        ("/api/templates?sort=editor_type", "not a valid sort", "sort"),
        ("/api/templates?include=tags", "'include' is not a valid parameter", "include"),
        (
            "/api/templates?additional-fields[template]=html",
            "not a valid value",
            "additional-fields[template]",
        ),
        ("/api/templates?fields[template]=bogus", "not a valid field", "fields[template]"),
        ("/api/tag-groups?filter=any(name,['Default'])", "'any' is not an allowed operator", "filter"),
        ("/api/tag-groups?filter=greater-than(name,'A')", "not an allowed operator", "filter"),
        ("/api/tag-groups?filter=equals(exclusive,'true')", "must be true or false", "filter"),
        ("/api/tag-groups?filter=equals(id,'x')", "'id' is not a valid field", "filter"),
        ("/api/tag-groups?page[size]=26", "between 1 and 25", "page[size]"),
        ("/api/tag-groups?sort=created", "not a valid sort", "sort"),
        ("/api/tag-groups?include=tags", "'include' is not a valid parameter", "include"),
    ],
)
def test_refused_requests_get_klaviyos_400(sim, path, detail, parameter):
    r = get(sim, path)
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "invalid" and err["title"] == "Invalid input."
    assert detail in err["detail"] and err["source"] == {"parameter": parameter}


# -- scopes and rate tiers ----------------------------------------------------------------------------------
def test_scopes_templates_read_and_tags_read(make_sim):
    acct = Account(seed=7)
    sim = make_sim(acct, key_scopes={KEY: {"tags:read"}})
    for path in ("/api/templates", f"/api/templates/{acct.templates[0].id}"):
        r = get(sim, path)
        assert r.status_code == 403, path
        err = r.json()["errors"][0]
        assert err["code"] == "permission_denied" and "templates:read" in err["detail"]
    assert get(sim, "/api/tag-groups").status_code == 200
    assert get(sim, f"/api/tag-groups/{acct.tag_groups[0].id}").status_code == 200
    sim.set_scopes(KEY, {"templates:read"})
    assert get(sim, "/api/templates").status_code == 200
    r = get(sim, "/api/tag-groups")
    assert r.status_code == 403 and "tags:read" in r.json()["errors"][0]["detail"]
    ops = operations()
    assert ops["get_templates"].scopes == ops["get_template"].scopes == ("templates:read",)
    assert ops["get_tag_groups"].scopes == ops["get_tag_group"].scopes == ("tags:read",)


def test_rate_tiers_l_for_templates_and_s_for_tag_groups(make_sim):
    ops = operations()
    assert (ops["get_templates"].burst, ops["get_templates"].steady) == (75, 750)
    assert (ops["get_tag_groups"].burst, ops["get_tag_groups"].steady) == (3, 60)
    assert (ops["get_templates"].page_default, ops["get_templates"].page_max) == (10, 10)
    assert (ops["get_tag_groups"].page_default, ops["get_tag_groups"].page_max) == (25, 25)
    sim = make_sim(rate_limits=True)
    time.sleep(1 - time.time() % 1 + 0.01)  # the top of a 1-second window
    groups = [get(sim, "/api/tag-groups") for _ in range(4)]
    templates = [get(sim, "/api/templates") for _ in range(12)]
    assert [r.status_code for r in groups] == [200, 200, 200, 429]
    assert int(groups[3].headers["Retry-After"]) >= 1
    assert groups[0].headers["RateLimit-Limit"] == "60"
    assert [r.status_code for r in templates] == [200] * 12
    assert templates[0].headers["RateLimit-Limit"] == "750"


# -- mutation hooks -----------------------------------------------------------------------------------------
def test_touched_templates_show_in_updated_windows(make_sim):
    acct = Account(seed=7, anchor=ANCHOR)
    sim = make_sim(acct)
    since = (dt.datetime.now(UTC) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = f"/api/templates?filter=greater-than(updated,{since})"
    assert all_pages(sim, window)[0] == []
    touched = acct.touch("template", 3)
    assert touched == [t.id for t in acct.templates[:3]]
    assert sorted(all_pages(sim, window)[0]) == sorted(touched)
    assert (
        all_pages(sim, "/api/templates?sort=-updated")[0][:3]
        == expected_order(acct.templates, "-updated")[:3]
    )
    attrs = get(sim, f"/api/templates/{touched[0]}").json()["data"]["attributes"]
    assert "(edited" in attrs["name"] and parse_time(attrs["updated"]) > parse_time(since)
    # Over HTTP, for a simulator run as its own process.
    r = requests.post(sim.url + "/_sim/touch?type=template&n=4", timeout=10)
    assert r.status_code == 200 and r.json()["ids"] == [t.id for t in acct.templates[:4]]
    assert len(all_pages(sim, window)[0]) == 4


def test_deleted_templates_vanish(make_sim):
    acct = Account(seed=7, anchor=ANCHOR)
    sim = make_sim(acct)
    last = [t.id for t in acct.templates[-2:]]
    assert acct.delete("template", 2) == last
    for tid in last:
        assert get(sim, f"/api/templates/{tid}").status_code == 404
    listed = all_pages(sim, "/api/templates")[0]
    assert len(listed) == 28 and not set(listed) & set(last)
    r = requests.post(sim.url + "/_sim/delete?type=template&n=1", timeout=10)
    assert r.status_code == 200 and len(all_pages(sim, "/api/templates")[0]) == 27


def test_tag_groups_are_touched_and_deleted_with_their_tags(make_sim):
    acct = Account(seed=7, anchor=ANCHOR)
    sim = make_sim(acct)
    default = acct.tag_groups[0]
    assert acct.touch("tag-group", 1) == [default.id]
    assert "(edited" in get(sim, f"/api/tag-groups/{default.id}").json()["data"]["attributes"]["name"]
    assert default.attributes["default"] is True  # a rename only

    last = acct.tag_groups[-1]
    its_tags = {t.id for t in acct.tags if t.internal["tag_group"] == last.id}
    assert its_tags
    assert acct.delete("tag-group", 1) == [last.id]
    assert get(sim, f"/api/tag-groups/{last.id}").status_code == 404
    assert last.id not in all_pages(sim, "/api/tag-groups")[0]
    # Its tags went with it, and their links to campaigns, flows, lists and segments.
    assert not its_tags & set(all_pages(sim, "/api/tags")[0])
    for r in acct.campaigns + acct.flows + acct.lists + acct.segments:
        assert not its_tags & {tid for _, tid in r.relationships.get("tags", [])}
    body = get(sim, "/api/flows?include=tags&filter=equals(archived,false)").json()
    linked = {d["id"] for f in body["data"] for d in f["relationships"]["tags"]["data"]}
    assert linked <= {t.id for t in acct.tags}
    # The default group cannot be deleted: asking for more deletes the others only.
    left = [g.id for g in acct.tag_groups[1:]]
    assert acct.delete("tag-group", 10) == left
    assert all_pages(sim, "/api/tag-groups")[0] == [default.id]
    r = requests.post(sim.url + "/_sim/delete?type=tag-group&n=1", timeout=10)
    assert r.status_code == 200 and r.json()["ids"] == []
    assert {t.internal["tag_group"] for t in acct.tags} == {default.id}


def test_a_deleted_tag_leaves_no_links_behind(make_sim):
    acct = Account(seed=7)
    sim = make_sim(acct)
    tagged = {tid for r in acct.campaigns + acct.flows for _, tid in r.relationships.get("tags", [])}
    victim = acct.tags[-1].id
    if victim not in tagged:  # make sure the deleted tag was linked somewhere
        acct.flows[0].relationships["tags"].append(("tag", victim))
    assert acct.delete("tag", 1) == [victim]
    assert all(
        victim not in {tid for _, tid in r.relationships.get("tags", [])}
        for r in acct.campaigns + acct.flows + acct.lists + acct.segments
    )
    assert get(sim, "/api/tags").status_code == 200


def test_hooks_refuse_an_unknown_kind(sim):
    with pytest.raises(ValueError, match="not a held entity"):
        Account(seed=7).touch("widget", 1)
    r = requests.post(sim.url + "/_sim/delete?type=widget&n=1", timeout=10)
    assert r.status_code == 400 and "not a held entity" in r.json()["errors"][0]["detail"]
