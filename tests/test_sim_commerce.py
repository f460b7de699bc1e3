"""Catalogs and coupons as Klaviyo serves them (catalog items, variants, categories, coupons, coupon codes):
the seeded account, schemas, paging, filters, sorts, includes, sparse fieldsets, the required coupon-code filter,
scopes, rate tiers and the mutation hooks. Over real HTTP, as tests/test_simulator.py."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

import pytest
import requests

from klaviyo_sim import Account
from klaviyo_sim.commerce import CATEGORY, CODE, COUPON, ITEM, PREFIX, VARIANT, store
from klaviyo_sim.data import parse_time
from klaviyo_sim.spec import operations
from tests.test_simulator import HEADERS, KEY, _validator, get

UTC = dt.UTC
ANCHOR = dt.datetime(2026, 6, 1, tzinfo=UTC)  # a history wholly in the past: edited records stand out
MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


def pages(sim, path: str, operation_id: str, validate: bool = True) -> list[dict]:
    """Every page of a list, each validated against the operation's response schema."""
    url, out = sim.url + path, []
    while url:
        assert len(out) < 200, "paging does not end"
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


def q(value: str) -> str:
    """A compound id as a path segment, percent-encoded as a careful client sends it."""
    return quote(value, safe="")


@pytest.fixture
def shop(make_sim):
    return make_sim(Account(seed=7, anchor=ANCHOR))


# -- the seeded account -------------------------------------------------------------------------------------
def test_the_account_holds_catalogs_and_coupons():
    acct = Account(seed=7, anchor=ANCHOR)
    shop = store(acct)
    items, variants = shop.all(ITEM), shop.all(VARIANT)
    categories, coupons, codes = shop.all(CATEGORY), shop.all(COUPON), shop.all(CODE)
    assert (len(items), len(categories), len(coupons)) == (30, 6, 5)

    # Compound ids of the spec's form, 1-3 variants an item, each variant naming its item.
    for r in items + variants + categories:
        assert r.id == PREFIX + r.attributes["external_id"]
    by_item = {i.id: [vid for _, vid in i.relationships["variants"]] for i in items}
    assert {len(v) for v in by_item.values()} == {1, 2, 3}
    assert sum(map(len, by_item.values())) == len(variants)
    for v in variants:
        assert v.id in by_item[v.relationships["item"][0][1]]
        assert v.attributes["sku"] and v.attributes["inventory_policy"] in (0, 1, 2)

    # Many to many: an item in several categories, a category with several items, an item in none.
    of_item = shop.item_categories()
    assert max(len(c) for c in of_item.values()) >= 2 and len(of_item) < len(items)
    assert all(len(c.relationships["items"]) >= 2 for c in categories)

    # Timestamps with microseconds, created <= updated < anchor; a variant is created after its item.
    for r in items + variants:
        created, updated = r.attributes["created"], r.attributes["updated"]
        assert MICROS.match(created) and MICROS.match(updated)
        assert acct.history_start <= parse_time(created) <= parse_time(updated) < acct.anchor
    for v in variants:
        item = shop.get(ITEM, v.relationships["item"][0][1])
        assert parse_time(v.attributes["created"]) >= parse_time(item.attributes["created"])
    assert all(set(c.attributes) == {"external_id", "name", "updated"} for c in categories)
    assert any(i.attributes["published"] is False for i in items)
    assert any(i.attributes["price"] is None for i in items)

    # Coupons: id = external id; 8-12 codes each; id = coupon id + unique code.
    assert [c.id for c in coupons] == sorted(["WELCOME10", "SPRING20", "FREESHIP", "VIP25", "BDAY15"])
    assert all(c.attributes["external_id"] == c.id for c in coupons)
    per_coupon = {c.id: shop.children(COUPON, c.id, CODE) for c in coupons}
    assert all(8 <= len(v) <= 12 for v in per_coupon.values())
    assert sum(map(len, per_coupon.values())) == len(codes)
    statuses = {}
    for code in codes:
        coupon_id = code.relationships["coupon"][0][1]
        assert code.id == f"{coupon_id}-{code.attributes['unique_code']}"
        statuses.setdefault(code.attributes["status"], []).append(code)
    assert {"ASSIGNED_TO_PROFILE", "USED", "UNASSIGNED"} <= set(statuses)
    # Assigned and used codes name one of the account's seeded profiles; unassigned ones none.
    for code in statuses["ASSIGNED_TO_PROFILE"] + statuses["USED"]:
        [(kind, pid)] = code.relationships["profile"]
        assert kind == "profile" and acct.profile_index(pid) is not None
    assert all(not c.relationships["profile"] for c in statuses["UNASSIGNED"])
    expiries = [c.attributes["expires_at"] for c in codes]
    assert None in expiries
    assert any(e and parse_time(e) < acct.anchor for e in expiries)  # expired
    assert any(e and parse_time(e) > acct.anchor for e in expiries)

    # Deterministic by seed; another seed has other catalog ids; scales size them.
    again = store(Account(seed=7, anchor=ANCHOR))
    for kind in (ITEM, VARIANT, CATEGORY, COUPON, CODE):
        assert [(r.id, r.attributes, r.relationships) for r in again.all(kind)] == [
            (r.id, r.attributes, r.relationships) for r in shop.all(kind)
        ]
    other = store(Account(seed=8, anchor=ANCHOR))
    assert {i.id for i in other.all(ITEM)}.isdisjoint(by_item)
    medium = store(Account(seed=7, scale="medium", profiles=50, events=10))
    assert len(medium.all(ITEM)) == 400 and len(medium.all(CATEGORY)) == 25 and len(medium.all(COUPON)) == 15


# -- schemas ------------------------------------------------------------------------------------------------
LISTS = [
    ("get_catalog_items", "/api/catalog-items"),
    ("get_catalog_items", "/api/catalog-items?include=variants&page[size]=7&sort=-created"),
    ("get_catalog_variants", "/api/catalog-variants?page[size]=9&sort=created"),
    ("get_catalog_categories", "/api/catalog-categories?page[size]=4"),
    ("get_coupons", "/api/coupons?page[size]=2"),
    ("get_coupon_codes", "/api/coupon-codes?filter=any(coupon.id,['WELCOME10','VIP25'])&include=coupon"),
    ("get_coupon_codes", "/api/coupon-codes?filter=equals(coupon.id,'SPRING20')&page[size]=3"),
]


@pytest.mark.parametrize("operation_id,path", LISTS)
def test_every_list_page_validates_against_the_openapi_schema(shop, operation_id, path):
    got = pages(shop, path, operation_id)
    assert got[0]["data"] and got[0]["links"]["prev"] is None and got[-1]["links"]["next"] is None
    if "page[size]" in path:
        assert len(got) > 1


def test_every_single_and_nested_get_validates(shop):
    s = store(shop.account)
    item = s.all(ITEM)[0]
    category = s.all(CATEGORY)[0]
    code = next(c for c in s.all(CODE) if c.relationships["profile"])
    variant = s.get(VARIANT, item.relationships["variants"][0][1])
    cases = {
        "get_catalog_item": f"/api/catalog-items/{q(item.id)}?include=variants",
        "get_catalog_variant": f"/api/catalog-variants/{q(variant.id)}",
        "get_catalog_category": f"/api/catalog-categories/{q(category.id)}",
        "get_coupon": "/api/coupons/WELCOME10",
        "get_coupon_code": f"/api/coupon-codes/{code.id}?include=coupon",
        "get_coupon_for_coupon_code": f"/api/coupon-codes/{code.id}/coupon",
        "get_coupon_id_for_coupon_code": f"/api/coupon-codes/{code.id}/relationships/coupon",
        "get_items_for_catalog_category": f"/api/catalog-categories/{q(category.id)}/items?include=variants",
        "get_item_ids_for_catalog_category": f"/api/catalog-categories/{q(category.id)}/relationships/items",
        "get_variants_for_catalog_item": f"/api/catalog-items/{q(item.id)}/variants",
        "get_variant_ids_for_catalog_item": f"/api/catalog-items/{q(item.id)}/relationships/variants",
        "get_categories_for_catalog_item": f"/api/catalog-items/{q(item.id)}/categories",
        "get_category_ids_for_catalog_item": f"/api/catalog-items/{q(item.id)}/relationships/categories",
        "get_coupon_codes_for_coupon": "/api/coupons/VIP25/coupon-codes",
        "get_coupon_code_ids_for_coupon": "/api/coupons/VIP25/relationships/coupon-codes",
    }
    served = {op for op in operations() if op in cases or op in {o for o, _ in LISTS}}
    assert len(served) == 20  # every catalog and coupon GET of the spec but the bulk jobs'
    for op_id, path in cases.items():
        r = get(shop, path)
        assert r.status_code == 200, (op_id, r.text)
        errors = sorted(_validator(op_id).iter_errors(r.json()), key=str)
        assert not errors, (op_id, errors[0])

    # What they hold is the account's.
    body = get(shop, cases["get_catalog_item"]).json()
    assert body["data"]["attributes"] == item.attributes
    want_variants = [vid for _, vid in item.relationships["variants"]]
    assert [d["id"] for d in body["data"]["relationships"]["variants"]["data"]] == want_variants
    assert sorted(i["id"] for i in body["included"]) == sorted(want_variants)
    assert body["data"]["links"]["self"] == f"{shop.url}/api/catalog-items/{item.id}/"
    body = get(shop, cases["get_catalog_variant"]).json()
    assert body["data"]["relationships"]["item"]["data"] == {"type": "catalog-item", "id": item.id}
    body = get(shop, cases["get_coupon_code"]).json()
    assert body["data"]["attributes"] == code.attributes
    assert body["data"]["relationships"]["profile"]["data"]["id"] == code.relationships["profile"][0][1]
    coupon_id = code.relationships["coupon"][0][1]
    assert [i["id"] for i in body["included"]] == [coupon_id]
    assert get(shop, cases["get_coupon_for_coupon_code"]).json()["data"]["id"] == coupon_id
    assert get(shop, cases["get_coupon_id_for_coupon_code"]).json()["data"] == {
        "type": "coupon",
        "id": coupon_id,
    }
    # The bare compound id (as the links write it) reads the same record.
    assert get(shop, f"/api/catalog-items/{item.id}").json()["data"]["id"] == item.id

    for path in (
        f"/api/catalog-items/{q(PREFIX + 'NOPE')}",
        "/api/coupons/NOPE",
        "/api/coupon-codes/NOPE-123/coupon",
        f"/api/catalog-categories/{q(PREFIX + 'NOPE')}/items",
        "/api/coupons/NOPE/coupon-codes",
    ):
        r = get(shop, path)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "not_found", path


def test_nested_lists_hold_the_parents_records(shop):
    s = store(shop.account)
    of_item = s.item_categories()
    for category in s.all(CATEGORY):
        want = sorted(iid for _, iid in category.relationships["items"])
        path = f"/api/catalog-categories/{q(category.id)}"
        assert ids_of(shop, f"{path}/items?page[size]=2", "get_items_for_catalog_category") == want
        got = ids_of(shop, f"{path}/relationships/items?page[size]=3", "get_item_ids_for_catalog_category")
        assert got == want
    for item in s.all(ITEM)[:10]:
        path = f"/api/catalog-items/{q(item.id)}"
        want = sorted(vid for _, vid in item.relationships["variants"])
        assert ids_of(shop, f"{path}/variants", "get_variants_for_catalog_item") == want
        assert ids_of(shop, f"{path}/relationships/variants", "get_variant_ids_for_catalog_item") == want
        want = sorted(of_item.get(item.id, []))
        assert ids_of(shop, f"{path}/categories", "get_categories_for_catalog_item") == want
        assert ids_of(shop, f"{path}/relationships/categories", "get_category_ids_for_catalog_item") == want
    for coupon in s.all(COUPON):
        want = sorted(c.id for c in s.all(CODE) if c.relationships["coupon"][0][1] == coupon.id)
        assert ids_of(shop, f"/api/coupons/{coupon.id}/coupon-codes", "get_coupon_codes_for_coupon") == want
        got = ids_of(
            shop, f"/api/coupons/{coupon.id}/relationships/coupon-codes", "get_coupon_code_ids_for_coupon"
        )
        assert got == want
    # A nested list's filters narrow it further.
    coupon = "SPRING20"
    used = sorted(
        c.id
        for c in s.all(CODE)
        if c.relationships["coupon"][0][1] == coupon and c.attributes["status"] == "UNASSIGNED"
    )
    got = ids_of(
        shop,
        f"/api/coupons/{coupon}/coupon-codes?filter=equals(status,'UNASSIGNED')",
        "get_coupon_codes_for_coupon",
    )
    assert got == used and used


# -- filters, sorts, paging, sparse fieldsets -----------------------------------------------------------------
def test_each_filter_the_spec_allows(shop):
    s = store(shop.account)
    items, variants, categories, codes = s.all(ITEM), s.all(VARIANT), s.all(CATEGORY), s.all(CODE)
    of_item = s.item_categories()
    picked = [items[3].id, items[11].id]
    assert ids_of(shop, f"/api/catalog-items?filter=any(ids,{_list(picked)})", "get_catalog_items") == sorted(
        picked
    )
    category = categories[2]
    want = sorted(iid for _, iid in category.relationships["items"])
    got = ids_of(shop, f"/api/catalog-items?filter=equals(category.id,'{category.id}')", "get_catalog_items")
    assert got == want
    want = sorted(i.id for i in items if "Shirt" in (i.attributes["title"] or ""))
    assert (
        want
        and ids_of(shop, "/api/catalog-items?filter=contains(title,'Shirt')", "get_catalog_items") == want
    )
    hidden = sorted(i.id for i in items if i.attributes["published"] is False)
    got = ids_of(shop, "/api/catalog-items?filter=equals(published,false)", "get_catalog_items")
    assert hidden and got == hidden
    both = ids_of(
        shop,
        f"/api/catalog-items?filter=equals(published,true),equals(category.id,'{category.id}')",
        "get_catalog_items",
    )
    assert both == sorted(iid for _, iid in category.relationships["items"] if iid not in hidden)

    item = items[0]
    want = sorted(vid for _, vid in item.relationships["variants"])
    assert (
        ids_of(shop, f"/api/catalog-variants?filter=equals(item.id,'{item.id}')", "get_catalog_variants")
        == want
    )
    v = variants[5]
    assert ids_of(
        shop, f"/api/catalog-variants?filter=equals(sku,'{v.attributes['sku']}')", "get_catalog_variants"
    ) == [v.id]
    want = sorted(x.id for x in variants if " / M" in x.attributes["title"])
    assert ids_of(shop, "/api/catalog-variants?filter=contains(title,' / M')", "get_catalog_variants") == want

    want = sorted(of_item[items[1].id]) if items[1].id in of_item else []
    got = ids_of(
        shop, f"/api/catalog-categories?filter=equals(item.id,'{items[1].id}')", "get_catalog_categories"
    )
    assert got == want
    assert ids_of(shop, "/api/catalog-categories?filter=contains(name,'Sale')", "get_catalog_categories") == [
        c.id for c in categories if c.attributes["name"] == "Sale"
    ]

    # Coupon codes: by coupon (equals, any), profile, status and expiry, ANDed.
    profile = next(c for c in codes if c.relationships["profile"]).relationships["profile"][0][1]
    want = sorted(
        c.id for c in codes if c.relationships["profile"] and c.relationships["profile"][0][1] == profile
    )
    assert (
        ids_of(shop, f"/api/coupon-codes?filter=equals(profile.id,'{profile}')", "get_coupon_codes") == want
    )
    assert ids_of(shop, f"/api/coupon-codes?filter=any(profile.id,['{profile}'])", "get_coupon_codes") == want
    cut = "2026-06-01T00:00:00Z"
    expired = sorted(
        c.id
        for c in codes
        if c.relationships["coupon"][0][1] in ("WELCOME10", "FREESHIP")
        and c.attributes["expires_at"]
        and parse_time(c.attributes["expires_at"]) < ANCHOR
    )
    got = ids_of(
        shop,
        f"/api/coupon-codes?filter=any(coupon.id,['WELCOME10','FREESHIP']),less-than(expires_at,{cut})",
        "get_coupon_codes",
    )
    assert expired and got == expired
    used = sorted(
        c.id for c in codes if c.attributes["status"] == "USED" and c.relationships["coupon"][0][1] == "VIP25"
    )
    got = ids_of(
        shop, "/api/coupon-codes?filter=equals(coupon.id,'VIP25'),equals(status,'USED')", "get_coupon_codes"
    )
    assert got == used


def _list(ids: list[str]) -> str:
    return "[" + ",".join(f"'{i}'" for i in ids) + "]"


@pytest.mark.parametrize(
    "path,detail",
    [
        ("/api/coupon-codes", "coupon/coupons or a profile/profiles must be provided"),
        (
            "/api/coupon-codes?filter=equals(status,'USED')",
            "coupon/coupons or a profile/profiles must be provided",
        ),
        ("/api/coupon-codes?filter=equals(coupon.id,'VIP25'),equals(status,'EXPIRED')", "not a valid choice"),
        ("/api/coupon-codes?filter=equals(coupon.id,'VIP25')&sort=created", "not a valid parameter"),
        ("/api/coupon-codes?filter=equals(coupon.id,'VIP25')&include=profile", "not an allowed include"),
        ("/api/coupons?filter=equals(id,'VIP25')", "not a valid parameter"),
        ("/api/catalog-items?filter=equals(title,'Mug')", "not an allowed operator"),
        ("/api/catalog-items?filter=greater-than(updated,2026-01-01T00:00:00Z)", "not a valid field"),
        ("/api/catalog-items?filter=equals(ids,'x')", "not an allowed operator"),
        ("/api/catalog-items?sort=updated", "not a valid sort"),
        ("/api/catalog-items?page[size]=101", "between 1 and 100"),
        ("/api/catalog-items?include=categories", "not an allowed include"),
        ("/api/catalog-items?fields[catalog-item]=name", "not a valid field"),
        ("/api/catalog-variants?include=item", "not a valid parameter"),
        ("/api/catalog-categories?filter=equals(name,'Sale')", "not an allowed operator"),
    ],
)
def test_what_the_spec_does_not_allow_gets_a_400(shop, path, detail):
    r = get(shop, path)
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "invalid" and detail in err["detail"]


@pytest.mark.parametrize(
    "kind,path,op_id",
    [
        (ITEM, "/api/catalog-items", "get_catalog_items"),
        (VARIANT, "/api/catalog-variants", "get_catalog_variants"),
        (CATEGORY, "/api/catalog-categories", "get_catalog_categories"),
    ],
)
def test_sorts_by_created_and_pages_every_record_once(shop, kind, path, op_id):
    records = store(shop.account).all(kind)
    by_created = [r.id for r in sorted(records, key=lambda r: (r.internal["created"], r.id))]
    assert ids_of(shop, f"{path}?page[size]=4&sort=created", op_id) == by_created
    assert ids_of(shop, f"{path}?page[size]=5&sort=-created", op_id) == by_created[::-1]
    assert ids_of(shop, f"{path}?page[size]=3", op_id) == sorted(r.id for r in records)
    if kind != CATEGORY:  # categories carry no `created` attribute: the sort reads Klaviyo's own
        stamps = [
            parse_time(d["attributes"]["created"])
            for p in pages(shop, f"{path}?sort=created", op_id)
            for d in p["data"]
        ]
        assert stamps == sorted(stamps)
    # The cursor link carries the query; a page after the first has a prev link.
    first = get(shop, f"{path}?page[size]=4&sort=-created").json()
    assert "sort=-created" in first["links"]["next"] and first["links"]["prev"] is None
    second = requests.get(first["links"]["next"], headers=HEADERS, timeout=30).json()
    assert [d["id"] for d in second["data"]] == by_created[::-1][4:8] and second["links"]["prev"]


def test_sparse_fieldsets_and_includes(shop):
    s = store(shop.account)
    body = get(
        shop,
        "/api/catalog-items?fields[catalog-item]=title,price&include=variants&fields[catalog-variant]=sku&page[size]=5",
    ).json()
    assert all(set(d["attributes"]) == {"title", "price"} for d in body["data"])
    linked = [x["id"] for d in body["data"] for x in d["relationships"]["variants"]["data"]]
    assert sorted(i["id"] for i in body["included"]) == sorted(linked)
    assert all(
        i["attributes"] == {"sku": s.get(VARIANT, i["id"]).attributes["sku"]} for i in body["included"]
    )
    # Without include=, a to-many relationship has links only; to-one linkage comes unasked.
    body = get(shop, "/api/catalog-items?page[size]=2").json()
    assert (
        all(set(d["relationships"]["variants"]) == {"links"} for d in body["data"]) and "included" not in body
    )
    body = get(
        shop, "/api/coupon-codes?filter=equals(coupon.id,'FREESHIP')&fields[coupon-code]=status"
    ).json()
    assert all(set(d["attributes"]) == {"status"} for d in body["data"])
    assert all(d["relationships"]["coupon"]["data"]["id"] == "FREESHIP" for d in body["data"])
    unassigned = [d for d in body["data"] if d["attributes"]["status"] == "UNASSIGNED"]
    assert unassigned and all("data" not in d["relationships"]["profile"] for d in unassigned)
    body = get(shop, "/api/coupons?fields[coupon]=description").json()
    assert [d["attributes"] for d in body["data"]] == [
        {"description": c.attributes["description"]} for c in s.all(COUPON)
    ]


# -- scopes and rate tiers ---------------------------------------------------------------------------------
def test_scopes_and_rate_tiers_come_from_the_spec(make_sim):
    ops = operations()
    for op_id in (
        "get_catalog_items",
        "get_catalog_variant",
        "get_items_for_catalog_category",
        "get_coupon_codes",
    ):
        assert (ops[op_id].burst, ops[op_id].steady) == (350, 3500), op_id
    for op_id in ("get_coupons", "get_coupon", "get_coupon_codes_for_coupon", "get_coupon_for_coupon_code"):
        assert (ops[op_id].burst, ops[op_id].steady) == (75, 750), op_id
    assert ops["get_catalog_items"].scopes == ("catalogs:read",)
    assert ops["get_coupons"].scopes == ("coupons:read",)
    assert ops["get_coupon_codes"].scopes == ("coupon-codes:read",)
    assert ops["get_coupon_codes"].filter_required and not ops["get_coupon_codes_for_coupon"].filter_required

    sim = make_sim(Account(seed=7, anchor=ANCHOR), key_scopes={KEY: {"coupons:read"}})
    assert get(sim, "/api/coupons").status_code == 200
    for path, scope in (
        ("/api/catalog-items", "catalogs:read"),
        ("/api/coupon-codes?filter=equals(coupon.id,'VIP25')", "coupon-codes:read"),
    ):
        r = get(sim, path)
        assert r.status_code == 403 and scope in r.json()["errors"][0]["detail"]

    # Windows 20x longer: the burst window is 20 s, so 75 requests surely fall in one.
    sim = make_sim(Account(seed=7, anchor=ANCHOR), rate_limits=True, time_scale=20)
    codes = [get(sim, "/api/coupons").status_code for _ in range(76)]
    assert codes == [200] * 75 + [429]
    r = get(sim, "/api/catalog-items?page[size]=1")
    assert r.status_code == 200 and r.headers["RateLimit-Limit"] == "3500"
    r = get(sim, "/api/coupon-codes?filter=equals(coupon.id,'VIP25')")
    assert r.status_code == 200 and r.headers["RateLimit-Limit"] == "3500"
    r = get(sim, "/api/coupons/VIP25/coupon-codes")
    assert r.status_code == 200 and r.headers["RateLimit-Limit"] == "750"


# -- mutation hooks ----------------------------------------------------------------------------------------
def hook(sim, name: str, body: dict | None = None, query: str = ""):
    return requests.post(f"{sim.url}/_sim/commerce/{name}{query}", json=body, timeout=10)


def test_catalog_hooks_over_http(shop):
    s = store(shop.account)
    before = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
    item = s.all(ITEM)[4]
    old = item.attributes["updated"]

    r = hook(shop, "edit_item", {"id": item.id, "title": "Renamed Mug", "price": 12.5})
    assert r.status_code == 200 and r.json() == {"ids": [item.id]}
    attrs = get(shop, f"/api/catalog-items/{q(item.id)}").json()["data"]["attributes"]
    assert (attrs["title"], attrs["price"]) == ("Renamed Mug", 12.5)
    assert parse_time(attrs["updated"]) > before > parse_time(old) and MICROS.match(attrs["updated"])
    assert ids_of(shop, "/api/catalog-items?filter=contains(title,'Renamed')", "get_catalog_items") == [
        item.id
    ]

    # A variant added and one deleted; the item's own `updated` stays.
    stamp = s.get(ITEM, item.id).attributes["updated"]
    r = hook(shop, "add_variant", {"item_id": item.id, "size": "XL", "price": 19.99})
    [vid] = r.json()["ids"]
    assert vid == f"{item.id}-XL"
    listed = ids_of(shop, f"/api/catalog-items/{q(item.id)}/variants", "get_variants_for_catalog_item")
    assert vid in listed
    assert get(shop, f"/api/catalog-variants/{q(vid)}").json()["data"]["attributes"]["price"] == 19.99
    gone = listed[0]
    assert hook(shop, "delete_variant", query=f"?id={q(gone)}").json() == {"ids": [gone]}
    after = ids_of(shop, f"/api/catalog-items/{q(item.id)}/variants", "get_variants_for_catalog_item")
    assert after == sorted(set(listed) - {gone})
    assert get(shop, f"/api/catalog-variants/{q(gone)}").status_code == 404
    assert s.get(ITEM, item.id).attributes["updated"] == stamp

    # Moved from its categories into another: both sides' lists and `updated` change.
    categories = s.all(CATEGORY)
    target = next(c for c in categories if (ITEM, item.id) not in c.relationships["items"])
    was_in = [c.id for c in categories if (ITEM, item.id) in c.relationships["items"]]
    assert hook(shop, "move_item", {"id": item.id, "to": target.id}).status_code == 200
    got = ids_of(shop, f"/api/catalog-items/{q(item.id)}/categories", "get_categories_for_catalog_item")
    assert got == [target.id]
    assert item.id in ids_of(
        shop,
        f"/api/catalog-categories/{q(target.id)}/relationships/items",
        "get_item_ids_for_catalog_category",
    )
    for cid in was_in:
        assert item.id not in ids_of(
            shop, f"/api/catalog-items?filter=equals(category.id,'{cid}')", "get_catalog_items"
        )
        assert parse_time(s.get(CATEGORY, cid).attributes["updated"]) > before
    assert (
        parse_time(
            get(shop, f"/api/catalog-categories/{q(target.id)}").json()["data"]["attributes"]["updated"]
        )
        > before
    )

    # Deleted: gone with its variants, out of every category.
    doomed = s.all(ITEM)[7]
    variants = [v for _, v in doomed.relationships["variants"]]
    assert hook(shop, "delete_item", {"id": doomed.id}).json() == {"ids": [doomed.id, *variants]}
    assert get(shop, f"/api/catalog-items/{q(doomed.id)}").status_code == 404
    assert not set(variants) & set(ids_of(shop, "/api/catalog-variants", "get_catalog_variants"))
    assert len(ids_of(shop, "/api/catalog-items", "get_catalog_items")) == 29
    assert doomed.id not in s.item_categories()

    # Added, in a category, with variants.
    r = hook(shop, "add_item", {"title": "New Lamp", "price": 49, "categories": [target.id], "variants": 2})
    new_id, *new_variants = r.json()["ids"]
    assert new_id == f"{PREFIX}SKU-{s.tag}-0031" and len(new_variants) == 2
    got = ids_of(shop, "/api/catalog-items?sort=-created&page[size]=1", "get_catalog_items")[0]
    assert got == new_id
    assert new_id in ids_of(
        shop, f"/api/catalog-categories/{q(target.id)}/items", "get_items_for_catalog_category"
    )

    # Refused: an unknown record, an unknown hook, a missing argument.
    for name, body in (("edit_item", {"id": "nope"}), ("frobnicate", {}), ("move_item", {"id": item.id})):
        r = hook(shop, name, body)
        assert r.status_code == 400 and r.json()["errors"][0]["detail"], name


def test_coupon_hooks_over_http_and_in_python(shop):
    s = store(shop.account)
    acct = shop.account
    r = hook(shop, "add_coupon", {"id": "SUMMER30", "description": "30% off", "codes": 3})
    coupon, *codes = r.json()["ids"]
    assert coupon == "SUMMER30" and len(codes) == 3
    body = get(shop, "/api/coupons/SUMMER30").json()
    assert body["data"]["attributes"] == {
        "external_id": "SUMMER30",
        "description": "30% off",
        "monitor_configuration": None,
    }
    assert ids_of(shop, "/api/coupons/SUMMER30/coupon-codes", "get_coupon_codes_for_coupon") == sorted(codes)
    assert "SUMMER30" in ids_of(shop, "/api/coupons", "get_coupons")

    # Assigned, then used: the status and the profile relationship follow.
    profile = acct.profile_id(3)
    code = sorted(codes)[0]
    assert hook(shop, "assign_code", {"id": code, "profile_id": profile}).status_code == 200
    assert code in ids_of(
        shop, f"/api/coupon-codes?filter=equals(profile.id,'{profile}')", "get_coupon_codes"
    )
    assert hook(shop, "use_code", query=f"?id={code}").json() == {"ids": [code]}
    data = get(shop, f"/api/coupon-codes/{code}").json()["data"]
    assert data["attributes"]["status"] == "USED"
    assert data["relationships"]["profile"]["data"] == {"type": "profile", "id": profile}
    assert ids_of(
        shop,
        "/api/coupon-codes?filter=equals(coupon.id,'SUMMER30'),equals(status,'USED')",
        "get_coupon_codes",
    ) == [code]

    # Deleted: DELETING while pending, then gone.
    other = sorted(codes)[1]
    hook(shop, "delete_code", {"id": other, "pending": True})
    assert get(shop, f"/api/coupon-codes/{other}").json()["data"]["attributes"]["status"] == "DELETING"
    assert hook(shop, "delete_code", {"id": other}).json() == {"ids": [other]}
    assert get(shop, f"/api/coupon-codes/{other}").status_code == 404
    assert len(ids_of(shop, "/api/coupons/SUMMER30/coupon-codes", "get_coupon_codes_for_coupon")) == 2
    assert hook(shop, "add_coupon", {"id": "SUMMER30"}).status_code == 400  # ids are unique

    # A seeded unassigned code used in Python, and a coupon deleted with its codes.
    seeded = next(c for c in s.all(CODE) if c.attributes["status"] == "UNASSIGNED")
    s.use_code(seeded.id, profile_id=profile)
    assert get(shop, f"/api/coupon-codes/{seeded.id}").json()["data"]["attributes"]["status"] == "USED"
    gone = s.delete_coupon("BDAY15")
    assert gone[0] == "BDAY15" and len(gone) > 1
    assert get(shop, "/api/coupons/BDAY15").status_code == 404
    assert get(shop, f"/api/coupon-codes/{gone[1]}").status_code == 404
    assert ids_of(shop, "/api/coupon-codes?filter=equals(coupon.id,'BDAY15')", "get_coupon_codes") == []


def test_each_key_reads_its_own_catalog(make_sim):
    other_key = "pk_" + "o" * 34
    sim = make_sim(Account(seed=7, anchor=ANCHOR), accounts={other_key: Account(seed=9, anchor=ANCHOR)})
    mine = ids_of(sim, "/api/catalog-items", "get_catalog_items")
    r = requests.get(
        sim.url + "/api/catalog-items",
        headers={**HEADERS, "Authorization": f"Klaviyo-API-Key {other_key}"},
        timeout=10,
    )
    theirs = [d["id"] for d in r.json()["data"]]
    assert len(mine) == len(theirs) == 30 and set(mine).isdisjoint(theirs)
    # A hook acts on the account of its key only.
    target = theirs[0]
    r = requests.post(
        f"{sim.url}/_sim/commerce/edit_item?key={other_key}", json={"id": target, "price": 1}, timeout=10
    )
    assert r.status_code == 200
    assert store(sim.accounts[other_key]).get(ITEM, target).attributes["price"] == 1.0
