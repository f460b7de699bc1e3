"""Catalogs and coupons end to end: the catalogue's endpoint facts are the spec's (revision 2026-07-15), the
transforms type what Klaviyo sends, and the pipeline (simulator over HTTP, real Postgres, real Dagster) loads
items, variants, categories, their links, coupons and codes. A full sync, then another after edits through the
simulator's hooks (an item edited, a variant added and one deleted, an item moved to another category, a code
used, a code deleted, an item deleted, a coupon added), leaves every new table equal to the simulator's data,
with what went soft-deleted; every new check fails on a row broken on purpose."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import requests
from sqlalchemy import text

from assets.reconcile import reconcile_deletions
from assets.transform import transform, transform_ids, transform_included
from klaviyo_sim.commerce import store
from klaviyo_sim.spec import SPEC_DIR
from pipelines import checks
from resources.catalogue import CATALOGUE, NESTED, SNAPSHOT, nested_under, scope_for
from resources.klaviyo_api import parse_timestamp
from resources.ratelimit import XL, L
from tests.conftest import TEST_KEY
from tests.test_pipeline import defs_for, run, status

UTC = dt.UTC
NEW = ("catalog_items", "catalog_categories", "catalog_item_categories", "coupons", "coupon_codes")
# Each new entity's listing, as the spec names its operation.
OPERATIONS = {
    "catalog_items": "get_catalog_items",
    "catalog_categories": "get_catalog_categories",
    "catalog_item_categories": "get_item_ids_for_catalog_category",
    "coupons": "get_coupons",
    "coupon_codes": "get_coupon_codes_for_coupon",
}
JOBS = ("klaviyo_sync_catalog_items", "klaviyo_sync_catalog_categories", "klaviyo_sync_coupons")
TABLES = (
    "klaviyo_catalog_items",
    "klaviyo_catalog_variants",
    "klaviyo_catalog_categories",
    "klaviyo_catalog_item_categories",
    "klaviyo_coupons",
    "klaviyo_coupon_codes",
)
CHECKS = {(key.asset_key.path[-1], key.name): key for key in checks.CHECKS}


# -- the spec's facts -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spec_operations() -> dict[str, tuple[str, dict]]:
    """The GET operations of Klaviyo's spec (the slices vendored beside the simulator, cut verbatim)."""
    found = {}
    for operation in [*OPERATIONS.values(), "get_coupon_codes"]:
        spec = json.loads((SPEC_DIR / f"{operation}.json").read_text())
        for path, item in spec["paths"].items():
            op = item.get("get")
            if isinstance(op, dict) and op.get("operationId") == operation:
                found[operation] = (path, op)
    return found


def test_the_catalogue_states_the_spec_facts(spec_operations):
    """Path, page size, tier, filters and scope of each new listing are the spec's."""
    tiers = {("350/s", "3500/m"): XL, ("75/s", "750/m"): L}
    for entity, operation in OPERATIONS.items():
        path, op = spec_operations[operation]
        endpoint = CATALOGUE[entity].endpoint
        assert endpoint.path == path, entity
        params = {p["name"]: p for p in op["parameters"] if "name" in p}
        assert endpoint.page_size == params["page[size]"]["schema"]["maximum"], entity
        limit = op["x-klaviyo-ratelimit"]
        assert endpoint.tier == tiers[(limit["burst"], limit["steady"])], entity
        assert [endpoint.scope] == op["x-klaviyo-scopes"], entity
        filters = {
            name: frozenset(o for ops in rule["operators"].values() for o in ops)
            for name, rule in (
                params.get("filter", {}).get("x-klaviyo-filters") or op.get("x-klaviyo-filters", {})
            ).items()
        }
        assert endpoint.filters == filters, entity
        # No filter takes a change time: none of them is windowed.
        assert endpoint.updated_field is None and not CATALOGUE[entity].partitioned, entity
        if CATALOGUE[entity].include:
            assert set(CATALOGUE[entity].include) <= set(params["include"]["schema"]["items"]["enum"])
    # GET /api/coupon-codes cannot list without a coupon or profile filter: codes are read under each coupon.
    path, op = spec_operations["get_coupon_codes"]
    assert next(p for p in op["parameters"] if p.get("name") == "filter")["required"] is True
    assert {CATALOGUE[e].kind for e in NEW} == {SNAPSHOT, NESTED}
    assert nested_under("catalog_categories") == ("catalog_item_categories",)
    assert nested_under("coupons") == ("coupon_codes",)
    assert scope_for("/api/coupons/{id}/coupon-codes") == "coupon-codes:read"
    assert scope_for("/api/coupons") == "coupons:read"


def test_the_transforms_type_what_klaviyo_sends():
    item = {
        "type": "catalog-item",
        "id": "$custom:::$default:::A",
        "attributes": {"external_id": "A", "title": "Shirt", "price": 42, "images": ["u"], "published": True,
                       "custom_metadata": {"k": 1}, "created": "2026-01-01T00:00:00.5+00:00",
                       "updated": "2026-01-02 00:00:00+00:00"},
        "relationships": {"variants": {"data": [{"type": "catalog-variant", "id": "V1"}]}},
    }  # fmt: skip
    [row] = transform("catalog_items", [item], "ACC").frame.to_dict("records")
    assert (row["price"], row["images"], row["published"]) == (42.0, ["u"], True)
    assert row["updated_date"] == dt.datetime(2026, 1, 2, tzinfo=UTC)
    assert row["metadata"]["relationships"]["variants"]["data"][0]["id"] == "V1"
    variant = {"type": "catalog-variant", "id": "V1", "attributes": {"sku": "S-1", "inventory_policy": 1,
               "inventory_quantity": 2.5, "price": 9.99, "updated": "2026-01-02T00:00:00Z"}}  # fmt: skip
    stray = {"type": "catalog-variant", "id": "V9", "attributes": {}}  # listed by no item of the batch
    [v] = transform_included("catalog-variant", [item], [variant, stray], "ACC").frame.to_dict("records")
    assert (v["item_id"], v["sku"], v["inventory_policy"], v["inventory_quantity"]) == (
        item["id"],
        "S-1",
        1,
        2.5,
    )
    bad = {**variant, "attributes": {**variant["attributes"], "price": "cheap"}}
    assert [r.id for r in transform_included("catalog-variant", [item], [bad], "ACC").rejected] == ["V1"]

    code = {"type": "coupon-code", "id": "C-1", "attributes": {"unique_code": "1", "status": "USED",
            "expires_at": None}, "relationships": {"profile": {"data": {"type": "profile", "id": "P"}}}}  # fmt: skip
    [c] = transform("coupon_codes", [code], "ACC", {"_parent": "C"}).frame.to_dict("records")
    assert (c["coupon_id"], c["profile_id"], c["status"]) == ("C", "P", "USED")
    coupon = {"type": "coupon", "id": "C", "attributes": {"external_id": "C", "monitor_configuration": {
              "low_balance_threshold": 500}}}  # fmt: skip
    [k] = transform("coupons", [coupon], "ACC").frame.to_dict("records")
    assert k["low_balance_threshold"] == 500 and k["monitor_configuration"] == {"low_balance_threshold": 500}
    coupon["attributes"]["monitor_configuration"] = {"low_balance_threshold": "lots"}  # no schema in the spec
    [k] = transform("coupons", [coupon], "ACC").frame.to_dict("records")  # kept whole, not rejected
    assert k["low_balance_threshold"] is None and k["monitor_configuration"] == {
        "low_balance_threshold": "lots"
    }

    listed = [{"type": "catalog-item", "id": "I1"}, {"type": "catalog-item", "id": "I1"}, {"id": "I2"}]
    result = transform_ids("catalog_item_categories", listed, "ACC", {"_parent": "CAT"})
    assert result.frame[["category_id", "item_id"]].values.tolist() == [["CAT", "I1"]]
    assert [r.id for r in result.rejected] == ["I2"]  # not an item's identifier


# -- what the simulator holds, as the tables should hold it ---------------------------------------------------
CATALOG_FIELDS = ("external_id", "title", "description", "url", "image_full_url", "image_thumbnail_url", "images",
                  "custom_metadata", "published")  # fmt: skip


def _catalog(r) -> dict:
    a = r.attributes
    return {
        **{f: a.get(f) for f in CATALOG_FIELDS},
        "price": a.get("price"),
        "created_date": parse_timestamp(a.get("created")),
        "updated_date": parse_timestamp(a.get("updated")),
    }


def want(acct) -> dict[str, dict]:
    """Each new table's live rows, by key, as the simulator's data says they should be."""
    c = store(acct)
    variants = {}
    for v in c.all("catalog-variant"):
        a = v.attributes
        variants[v.id] = {
            **_catalog(v),
            "item_id": v.relationships["item"][0][1],
            "sku": a.get("sku"),
            "inventory_policy": a.get("inventory_policy"),
            "inventory_quantity": a.get("inventory_quantity"),
        }
    links = {
        (cat.id, item_id): {"category_id": cat.id, "item_id": item_id}
        for cat in c.all("catalog-category")
        for _, item_id in cat.relationships["items"]
    }
    codes = {}
    for code in c.all("coupon-code"):
        a = code.attributes
        profile = code.relationships.get("profile") or []
        codes[code.id] = {
            "coupon_id": code.relationships["coupon"][0][1],
            "unique_code": a.get("unique_code"),
            "status": a.get("status"),
            "expires_at": parse_timestamp(a.get("expires_at")),
            "profile_id": profile[0][1] if profile else None,
        }
    return {
        "klaviyo_catalog_items": {i.id: _catalog(i) for i in c.all("catalog-item")},
        "klaviyo_catalog_variants": variants,
        "klaviyo_catalog_categories": {
            k.id: {
                "external_id": k.attributes.get("external_id"),
                "name": k.attributes.get("name"),
                "updated_date": parse_timestamp(k.attributes.get("updated")),
            }
            for k in c.all("catalog-category")
        },
        "klaviyo_catalog_item_categories": links,
        "klaviyo_coupons": {
            k.id: {
                "external_id": k.attributes.get("external_id"),
                "description": k.attributes.get("description"),
                "monitor_configuration": k.attributes.get("monitor_configuration"),
                "low_balance_threshold": (k.attributes.get("monitor_configuration") or {}).get(
                    "low_balance_threshold"
                ),
            }
            for k in c.all("coupon")
        },
        "klaviyo_coupon_codes": codes,
    }


def table(warehouse, name: str, live: bool = True) -> dict:
    """A table's rows by key ((category, item) for the links, else the id)."""
    where = " WHERE deleted_at IS NULL" if live else ""
    with warehouse.engine.connect() as conn:
        found = [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {name}{where}"))]
    key = (
        (lambda r: (r["category_id"], r["item_id"]))
        if name.endswith("item_categories")
        else (lambda r: r["id"])
    )
    return {key(r): r for r in found}


def _comparable(value):
    return float(value) if isinstance(value, Decimal) else value


def assert_equal_to_the_simulator(sim, warehouse) -> None:
    for name, rows in want(sim.account).items():
        got = table(warehouse, name)
        assert set(got) == set(rows), name
        for key, expected in rows.items():
            actual = {column: _comparable(got[key][column]) for column in expected}
            assert actual == expected, (name, key)
        assert all(r["account_id"] == sim.account.account_id for r in got.values()), name
    # The raw resource is kept: the attributes as Klaviyo sent them.
    items = table(warehouse, "klaviyo_catalog_items")
    for item in store(sim.account).all("catalog-item"):
        assert items[item.id]["metadata"]["attributes"] == item.attributes


def hook(sim, name: str, **args) -> list[str]:
    """A simulator mutation hook over HTTP, as for a simulator run as its own process."""
    r = requests.post(f"{sim.url}/_sim/commerce/{name}", json=args, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["ids"]


def reads_under(sim, operation: str, since: int = 0) -> int:
    return len(sim.calls(operation)[since:])


# -- the pipeline end to end ------------------------------------------------------------------------------------
def test_full_then_incremental_sync_after_edits_matches_the_simulator(sim, warehouse, client_for):
    acct = sim.account
    defs = defs_for(sim, warehouse)
    for job in JOBS:
        result = run(defs, job)
        assert result.success, job
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks), [
            (c.asset_key, c.check_name) for c in checks if not c.passed
        ]
    assert_equal_to_the_simulator(sim, warehouse)
    c = store(acct)
    # Variants came with their items (no request of their own); links and codes one read per category, coupon.
    assert not sim.calls("get_catalog_variants") and not sim.calls("get_variants_for_catalog_item")
    assert reads_under(sim, "get_item_ids_for_catalog_category") == len(c.all("catalog-category"))
    assert reads_under(sim, "get_coupon_codes_for_coupon") == len(c.all("coupon"))
    assert sim.client_errors == []
    # Snapshots read whole: the watermark only reports the newest `updated` loaded (none without one).
    newest = {
        "catalog_items": max(parse_timestamp(i.attributes["updated"]) for i in c.all("catalog-item")),
        "catalog_categories": max(
            parse_timestamp(k.attributes["updated"]) for k in c.all("catalog-category")
        ),
    }
    for entity in NEW:
        s = status(warehouse, entity)
        assert s.status == "success" and s.watermark == newest.get(entity), entity

    # Edits in Klaviyo, through the simulator's hooks.
    items = c.all("catalog-item")
    edited = items[0].id
    hook(sim, "edit_item", id=edited, title="Edited shirt ✂", price=19.5)
    with_two = next(i for i in items if len(i.relationships["variants"]) >= 2)
    removed_variant = with_two.relationships["variants"][-1][1]
    hook(sim, "delete_variant", id=removed_variant)
    [added_variant] = hook(sim, "add_variant", item_id=items[1].id, size="XXXL", price=12)
    categories = c.all("catalog-category")
    moved_item, source = next(
        (iid, cat.id)
        for cat in categories
        for _, iid in cat.relationships["items"]
        if cat.id != categories[-1].id
    )
    target = categories[-1].id
    hook(sim, "move_item", id=moved_item, to=target, **{"from": source})
    codes = c.all("coupon-code")
    used = next(k for k in codes if k.attributes["status"] in ("UNASSIGNED", "ASSIGNED_TO_PROFILE"))
    hook(sim, "use_code", id=used.id)
    deleted_code = next(k for k in codes if k.id != used.id)
    hook(sim, "delete_code", id=deleted_code.id)
    deleted_item = next(i for i in items[2:] if i.id != moved_item)
    deleted_variants = hook(sim, "delete_item", id=deleted_item.id)[1:]
    coupon_ids = hook(sim, "add_coupon", id="AUTUMN30", description="30% off, autumn", codes=3)

    for job in JOBS:
        result = run(defs, job)
        assert result.success, job
    # The deleted item is still live here: only the reconciliation sees what Klaviyo no longer lists.
    assert table(warehouse, "klaviyo_catalog_items")[deleted_item.id]["deleted_at"] is None
    client = client_for(sim)
    gone = reconcile_deletions("catalog_items", client, warehouse)
    assert gone.marked_deleted == [deleted_item.id]
    assert_equal_to_the_simulator(sim, warehouse)

    # What changed landed; what went is soft-deleted, never removed.
    every = {name: table(warehouse, name, live=False) for name in TABLES}
    assert every["klaviyo_catalog_items"][edited]["title"] == "Edited shirt ✂"
    assert every["klaviyo_catalog_items"][edited]["price"] == Decimal("19.5")
    assert every["klaviyo_catalog_variants"][removed_variant]["deleted_at"] is not None
    assert every["klaviyo_catalog_variants"][added_variant]["item_id"] == items[1].id
    assert every["klaviyo_catalog_item_categories"][(source, moved_item)]["deleted_at"] is not None
    assert every["klaviyo_catalog_item_categories"][(target, moved_item)]["deleted_at"] is None
    assert every["klaviyo_coupon_codes"][used.id]["status"] == "USED"
    assert every["klaviyo_coupon_codes"][deleted_code.id]["deleted_at"] is not None
    assert every["klaviyo_catalog_items"][deleted_item.id]["deleted_at"] is not None
    assert deleted_variants and all(
        every["klaviyo_catalog_variants"][v]["deleted_at"] is not None for v in deleted_variants
    )  # with their item
    assert {k for k in every["klaviyo_coupon_codes"] if k.startswith("AUTUMN30")} == set(coupon_ids[1:])

    # A run that finds nothing new changes nothing.
    before = {name: table(warehouse, name, live=False) for name in TABLES}
    for job in JOBS:
        assert run(defs, job).success
    after = {name: table(warehouse, name, live=False) for name in TABLES}
    for name in TABLES:
        assert {k: r["updated_at"] for k, r in after[name].items()} == {
            k: r["updated_at"] for k, r in before[name].items()
        }, name


def test_an_older_copy_never_overwrites_a_newer_item(sim, warehouse):
    defs = defs_for(sim, warehouse)
    assert run(defs, "klaviyo_sync_catalog_items").success
    item = store(sim.account).all("catalog-item")[3]
    newer = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    with warehouse.engine.begin() as conn:  # a newer copy already stored (e.g. by a concurrent run)
        conn.execute(
            text("UPDATE klaviyo_catalog_items SET title = 'newer', updated_date = :u WHERE id = :i"),
            {"u": newer, "i": item.id},
        )
    assert run(defs, "klaviyo_sync_catalog_items").success
    row = table(warehouse, "klaviyo_catalog_items")[item.id]
    assert (row["title"], row["updated_date"]) == ("newer", newer)


# -- checks ---------------------------------------------------------------------------------------------------
def evaluate(warehouse, asset: str, name: str):
    return checks.evaluate(warehouse, CHECKS[(asset, name)])


def sql(warehouse, statement: str, **params) -> None:
    with warehouse.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_the_new_entities_get_the_checks_that_can_fail():
    names = {e: {n for a, n in CHECKS if a == e} for e in NEW}
    assert names == {
        "catalog_items": {"loaded_what_the_api_reported", "known_references"},  # variants' item
        "catalog_categories": {"loaded_what_the_api_reported"},
        "catalog_item_categories": {"loaded_what_the_api_reported", "known_references"},
        "coupons": {"loaded_what_the_api_reported"},
        "coupon_codes": {"loaded_what_the_api_reported", "known_references", "required_columns"},
    }


def test_each_new_check_fails_on_a_broken_row(warehouse):
    sql(warehouse, "INSERT INTO klaviyo_catalog_items (id, account_id) VALUES ('I1', 'A')")
    sql(warehouse, "INSERT INTO klaviyo_catalog_categories (id, account_id) VALUES ('K1', 'A')")
    sql(warehouse, "INSERT INTO klaviyo_coupons (id, account_id) VALUES ('C1', 'A')")
    variant = "INSERT INTO klaviyo_catalog_variants (id, account_id, item_id) VALUES (:i, 'A', :item)"
    link = (
        "INSERT INTO klaviyo_catalog_item_categories (account_id, category_id, item_id) VALUES ('A', :k, :i)"
    )
    code = "INSERT INTO klaviyo_coupon_codes (id, account_id, coupon_id) VALUES (:i, 'A', :c)"
    sql(warehouse, variant, i="V1", item="I1")
    sql(warehouse, link, k="K1", i="I1")
    sql(warehouse, code, i="C1-X", c="C1")
    for entity in NEW:
        for name in ("known_references", "required_columns"):
            if (entity, name) in CHECKS:
                assert evaluate(warehouse, entity, name).passed, (entity, name)

    sql(warehouse, variant, i="V2", item="I404")  # a variant of an item the warehouse does not have
    result = evaluate(warehouse, "catalog_items", "known_references")
    assert not result.passed and result.metadata["unknown_ids"].value == {
        "klaviyo_catalog_variants.item_id": ["I404"]
    }
    sql(warehouse, link, k="K1", i="I404")  # a link to an unknown item
    assert not evaluate(warehouse, "catalog_item_categories", "known_references").passed
    sql(warehouse, "DELETE FROM klaviyo_catalog_item_categories WHERE item_id = 'I404'")
    assert evaluate(warehouse, "catalog_item_categories", "known_references").passed
    sql(warehouse, link, k="K404", i="I1")  # ... and to an unknown category
    result = evaluate(warehouse, "catalog_item_categories", "known_references")
    assert not result.passed and result.metadata["unknown_ids"].value[
        "klaviyo_catalog_item_categories.category_id"
    ] == ["K404"]
    sql(warehouse, code, i="C404-X", c="C404")  # a code of an unknown coupon
    assert not evaluate(warehouse, "coupon_codes", "known_references").passed
    sql(warehouse, code, i="C1-Y", c=None)  # a code that names no coupon
    assert not evaluate(warehouse, "coupon_codes", "required_columns").passed

    now = dt.datetime.now(UTC)
    runs = """INSERT INTO klaviyo_sync_runs (account_id, entity, run_id, status, started_at, finished_at,
                records_read, records_rejected, rows_inserted) VALUES ('A', :e, :r, 'success', :t, :t, 3, :rej, :n)"""
    for entity in NEW:
        assert not evaluate(warehouse, entity, "loaded_what_the_api_reported").passed  # never ran
        sql(warehouse, runs, e=entity, r="1", t=now, rej=0, n=3)
        assert evaluate(warehouse, entity, "loaded_what_the_api_reported").passed, entity
        sql(
            warehouse, runs, e=entity, r="2", t=now + dt.timedelta(seconds=1), rej=1, n=2
        )  # a record rejected
        assert not evaluate(warehouse, entity, "loaded_what_the_api_reported").passed, entity


def test_the_new_tables_are_documented_and_readable_by_bi(warehouse):
    with warehouse.engine.connect() as conn:
        undocumented = conn.execute(
            text(
                """SELECT c.table_name, c.column_name FROM information_schema.columns c
                   WHERE c.table_schema = current_schema() AND c.table_name = ANY(:t)
                     AND col_description(format('%I.%I', c.table_schema, c.table_name)::regclass,
                                         c.ordinal_position) IS NULL"""
            ),
            {"t": list(TABLES)},
        ).all()
        keys = {
            r.table_name: r.columns
            for r in conn.execute(
                text(
                    """SELECT tc.table_name, array_agg(k.column_name::text ORDER BY k.ordinal_position) AS columns
                       FROM information_schema.table_constraints tc
                       JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)
                       WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()
                         AND tc.table_name = ANY(:t) GROUP BY tc.table_name"""
                ),
                {"t": list(TABLES)},
            )
        }
    assert undocumented == []
    for entity in NEW:
        assert tuple(keys[CATALOGUE[entity].table]) == CATALOGUE[entity].key, entity
    assert tuple(keys["klaviyo_catalog_variants"]) == ("account_id", "id")


def test_the_access_check_proves_the_coupon_codes_scope_under_a_coupon(sim, client_for):
    from assets.access import check_access

    results = {
        r.requirement.asset: r
        for r in check_access(client_for(sim))
        if r.requirement.scope != "accounts:read"
    }
    codes = results["klaviyo/coupon_codes"]
    assert codes.ok and codes.requirement.scope == "coupon-codes:read" and codes.detail == "ok"
    assert sim.calls(
        "get_coupon_codes_for_coupon"
    )  # proven by a request of its own, not by the coupons listing
    assert TEST_KEY  # the simulator's key reads everything
