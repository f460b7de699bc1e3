"""Catalogs and coupons: the account's catalog items, their variants, catalog categories, coupons and coupon codes,
served as revision 2026-07-15 of Klaviyo's spec shapes them, and the mutation hooks that edit them.

Served (GET only; parameters, filters, sorts, includes, page sizes, scopes and rate tiers read from the spec
slices): /api/catalog-items, -variants, -categories (+ /{id}), /api/catalog-items/{id}/variants and
/categories (+ their /relationships/ id lists), /api/catalog-categories/{id}/items (+ relationships),
/api/coupons (+ /{id}), /api/coupon-codes (+ /{id}; a filter on `coupon.id` or `profile.id` is required),
/api/coupons/{id}/coupon-codes (+ relationships), /api/coupon-codes/{id}/coupon (+ relationships).

The seed: catalog ids are Klaviyo's compound ids, `$custom:::$default:::{external_id}` (a path may carry them
percent-encoded). Per account (small scale): 30 items with 1-3 variants each, 6 categories linked to items many
to many (an item is in 0-3 of them), 5 coupons with 8-12 codes each; codes are assigned to the account's seeded
profiles, used, unassigned or in an inactive version, and a share expired or without expiry. Items, variants and
categories carry `created` (categories: held for the `created` sort only; the spec gives them `updated` alone)
and `updated`, with microseconds as the spec's description shows them. Coupons and codes have no timestamps in
the spec. Everything comes from random streams of its own, so the account's other records are as they were,
and it is built the first time it is read: `store(account)`, held in `Account.commerce` (this module pages and
renders, so it sits above data.py, which never imports it).

Relationship linkage: a to-one relationship (a variant's item, a code's coupon and profile) carries its `data`
unasked (none for an unassigned code's profile); a to-many one (an item's variants, a category's items) only
when include= asks for it. The default order is by id; `sort=created|-created` where the spec offers it.

The hooks (Python: `store(account).use_code(...)`; over HTTP: POST /_sim/commerce/<hook> with query arguments
or a JSON body, `key=` picking the account, answered {"ids": [...]}): edit_item, add_item, delete_item,
add_variant, delete_variant, move_item, add_coupon, delete_coupon, assign_code, use_code, delete_code (see
Commerce.admin for their arguments). An edit moves `updated` of what it changed: an item's title, price or
publication, an item moved (and both categories, whose item lists changed), a category losing a deleted item.
A variant added or deleted leaves its item's `updated` as it was (they are records of their own in Klaviyo).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from klaviyo_sim.common import crockford, hash_str, iso, mix64
from klaviyo_sim.data import Account, Resource
from klaviyo_sim.errors import invalid, not_found
from klaviyo_sim.filters import Condition, FilterError, matches, parse_filter
from klaviyo_sim.paging import decode_cursor, encode_cursor, link, resume, self_link
from klaviyo_sim.spec import FieldRule, Operation

UTC = dt.UTC
ITEM, VARIANT, CATEGORY, COUPON, CODE = (
    "catalog-item",
    "catalog-variant",
    "catalog-category",
    "coupon",
    "coupon-code",
)
KINDS = (ITEM, VARIANT, CATEGORY, COUPON, CODE)
PATHS = {
    ITEM: "catalog-items",
    VARIANT: "catalog-variants",
    CATEGORY: "catalog-categories",
    COUPON: "coupons",
    CODE: "coupon-codes",
}
PREFIX = "$custom:::$default:::"  # the only integration and catalog Klaviyo supports
# Sizes per scale: catalog items, categories, coupons, codes per coupon (data.SCALES may override each).
DEFAULTS = {"catalog_items": 30, "catalog_categories": 6, "coupons": 5, "coupon_codes": 10}
CODE_STATUSES = ("UNASSIGNED", "PROCESSING", "ASSIGNED_TO_PROFILE", "VERSION_NOT_ACTIVE", "DELETING", "USED")

ADJECTIVES = ["Classic", "Ocean Blue", "Everyday", "Vintage", "Organic", "Slim", "Cozy", "Midnight", "Sunny"]
NOUNS = [
    "Shirt",
    "Hoodie",
    "Mug",
    "Tote Bag",
    "Sneakers",
    "Candle",
    "Notebook",
    "Scarf",
    "Water Bottle",
    "Cap",
]
ODD_TITLES = [
    "Café Crème — “Édition” Mug 🎉",
    "T-Shirt 100% Baumwolle (Größe S–XL)",
    "抹茶 Tea Set",
    "Bag <b>&</b>",
]
SIZES = [["Default"], ["S", "M"], ["S", "M", "L"]]
CATEGORY_NAMES = ["Apparel", "Accessories", "Home & Living", "Sale", "New Arrivals", "Gifts 🎁"]
COUPON_NAMES = [
    ("WELCOME10", "10% off a first order"),
    ("SPRING20", "20% off the spring collection"),
    ("FREESHIP", "Free shipping, any order"),
    ("VIP25", None),
    ("BDAY15", "Birthday: 15% off — “with love”"),
]


def _stamp(t: dt.datetime) -> str:
    """Catalog datetimes: microseconds and +00:00 (YYYY-MM-DDTHH:MM:SS.mmmmmm, as the spec describes them)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _now(at: dt.datetime | None) -> dt.datetime:
    return (at or dt.datetime.now(UTC)).astimezone(UTC)


class Commerce:
    """The catalogs and coupons of one account and their hooks (thread-safe: the account's lock). `make` builds a
    held resource (the account's Resource class)."""

    def __init__(self, account: Account, make: Callable[..., Resource]):
        self.account = account
        self.make = make
        counts = {k: account.counts.get(k, v) for k, v in DEFAULTS.items()}
        self.tag = crockford(mix64(hash_str(f"{account.seed}:catalog")) % 32**4, 4)
        self.held: dict[str, dict[str, Resource]] = {kind: {} for kind in KINDS}
        self._items_made = 0
        self._seed_catalog(counts["catalog_items"], counts["catalog_categories"])
        self._seed_coupons(counts["coupons"], counts["coupon_codes"])

    # -- seeding -------------------------------------------------------------------------------------------
    def _between(self, rng: random.Random, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
        span = max(0.0, (hi - lo).total_seconds())
        return lo + dt.timedelta(seconds=rng.uniform(0, span))

    def _seed_catalog(self, n_items: int, n_categories: int) -> None:
        acct = self.account
        rng = acct._own_rng("catalog")
        start, anchor = acct.history_start, acct.anchor
        categories = []
        for k in range(n_categories):
            name = CATEGORY_NAMES[k] if k < len(CATEGORY_NAMES) else f"Category {k + 1}"
            external = f"CAT-{self.tag}-{k + 1:03d}"
            created = self._between(rng, start, start + (anchor - start) / 10)
            updated = self._between(rng, created, anchor)
            categories.append(
                self._put(
                    self.make(
                        CATEGORY,
                        PREFIX + external,
                        {"external_id": external, "name": name, "updated": _stamp(updated)},
                        {"items": []},
                        {"created": created},
                    )
                )
            )
        for i in range(n_items):
            created = self._between(rng, start, start + (anchor - start) * 0.7)
            updated = created if i % 8 == 5 else self._between(rng, created, anchor)
            title = (
                ODD_TITLES[(i // 11) % len(ODD_TITLES)]
                if i % 11 == 7
                else f"{ADJECTIVES[i % len(ADJECTIVES)]} {NOUNS[(i * 7) % len(NOUNS)]}"
            )
            price = None if i % 13 == 12 else round(rng.uniform(4, 240), 2)
            item = self._new_item(i, title, price, i % 10 != 9, created, updated, rng)
            for size in SIZES[rng.randrange(len(SIZES))]:
                v_created = self._between(rng, created, updated)
                self._new_variant(item, size, self._between(rng, v_created, anchor), v_created, rng)
            # Many to many: most items in 1-3 categories, every 17th in none.
            if categories and i % 17 != 16:
                for category in rng.sample(categories, k=min(len(categories), 1 + rng.randrange(3))):
                    category.relationships["items"].append((ITEM, item.id))

    def _new_item(
        self,
        i: int,
        title: str | None,
        price: float | None,
        published: bool,
        created: dt.datetime,
        updated: dt.datetime,
        rng: random.Random,
    ) -> Resource:
        external = f"SKU-{self.tag}-{i + 1:04d}"
        slug = external.lower()
        self._items_made = max(self._items_made, i + 1)
        return self._put(
            self.make(
                ITEM,
                PREFIX + external,
                {
                    "external_id": external,
                    "title": title,
                    "description": None if i % 9 == 4 else f"{title}: made to last, shipped in 2 days.",
                    "price": price,
                    "url": f"https://example.com/products/{slug}",
                    "image_full_url": f"https://example.com/images/{slug}.jpg",
                    "image_thumbnail_url": f"https://example.com/images/{slug}-thumb.jpg",
                    "images": []
                    if i % 6 == 3
                    else [f"https://example.com/images/{slug}-{k}.jpg" for k in (1, 2)],
                    "custom_metadata": None
                    if i % 5 == 2
                    else {"brand": "Simulated Goods", "Top Pick": rng.random() < 0.3},
                    "published": published,
                    "created": _stamp(created),
                    "updated": _stamp(updated),
                },
                {"variants": []},
                {"created": created},
            )
        )

    def _new_variant(
        self,
        item: Resource,
        size: str,
        updated: dt.datetime,
        created: dt.datetime,
        rng: random.Random,
        sku: str | None = None,
        price: float | None = None,
    ) -> Resource:
        attrs = item.attributes
        external = f"{attrs['external_id']}-{size.upper()}"
        base = attrs["price"]
        variant = self._put(
            self.make(
                VARIANT,
                PREFIX + external,
                {
                    "external_id": external,
                    "title": f"{attrs['title']} / {size}",
                    "description": attrs["description"],
                    "sku": sku or external,
                    "inventory_policy": rng.choice((0, 1, 2)),
                    "inventory_quantity": rng.choice((0, rng.randint(1, 500))),
                    "price": price
                    if price is not None
                    else (None if base is None else round(base + (4 if size == "L" else 0), 2)),
                    "url": f"{attrs['url']}?variant={size.lower()}",
                    "image_full_url": attrs["image_full_url"],
                    "image_thumbnail_url": attrs["image_thumbnail_url"],
                    "images": list(attrs["images"] or []),
                    "custom_metadata": {"size": size},
                    "published": attrs["published"],
                    "created": _stamp(created),
                    "updated": _stamp(updated),
                },
                {"item": [(ITEM, item.id)]},
                {"created": created},
            )
        )
        item.relationships["variants"].append((VARIANT, variant.id))
        return variant

    def _seed_coupons(self, n_coupons: int, per_coupon: int) -> None:
        acct = self.account
        rng = acct._own_rng("coupons")
        for k in range(n_coupons):
            name, description = (
                COUPON_NAMES[k] if k < len(COUPON_NAMES) else (f"PROMO{k + 1}", f"Promo {k + 1}")
            )
            monitor = {"low_balance_threshold": 10} if k % 2 == 0 else None
            coupon = self._new_coupon(name, description, monitor, acct.history_start + dt.timedelta(hours=k))
            for j in range(max(0, per_coupon + rng.randint(-2, 2))):
                roll = rng.random()
                profile = None
                if acct.counts["profiles"] and roll < 0.55:
                    profile = acct.profile_id(rng.randrange(acct.counts["profiles"]))
                    status = "ASSIGNED_TO_PROFILE" if roll < 0.35 else "USED"
                else:
                    status = "VERSION_NOT_ACTIVE" if roll > 0.92 else "UNASSIGNED"
                if j % 4 == 3:
                    expires = None
                elif rng.random() < 0.25:
                    expires = acct.anchor - dt.timedelta(days=rng.randint(1, 60))  # expired
                else:
                    expires = acct.anchor + dt.timedelta(days=rng.randint(1, 180))
                self._new_code(coupon.id, j, status, expires, profile)

    def _new_coupon(
        self, coupon_id: str, description: str | None, monitor: dict | None, created: dt.datetime
    ) -> Resource:
        return self._put(
            self.make(
                COUPON,
                coupon_id,
                {"external_id": coupon_id, "description": description, "monitor_configuration": monitor},
                {},
                {"created": created},
            )
        )

    def _new_code(
        self, coupon_id: str, j: int, status: str, expires: dt.datetime | None, profile: str | None
    ) -> Resource:
        unique = crockford(mix64(hash_str(f"{self.account.seed}:coupon-code:{coupon_id}:{j}")) % 32**10, 10)
        return self._put(
            self.make(
                CODE,
                f"{coupon_id}-{unique}",  # the spec: a code's id is its coupon's id and its unique code
                {
                    "unique_code": unique,
                    "expires_at": iso(expires) if expires else None,
                    "status": status,
                },
                {"coupon": [(COUPON, coupon_id)], "profile": [("profile", profile)] if profile else []},
            )
        )

    def _put(self, r: Resource) -> Resource:
        self.held[r.type][r.id] = r
        return r

    # -- reading -------------------------------------------------------------------------------------------
    def get(self, kind: str, rid: str) -> Resource | None:
        with self.account.lock:
            return self.held[kind].get(rid)

    def all(self, kind: str) -> list[Resource]:
        """Every held record of a kind, in id order."""
        with self.account.lock:
            return sorted(self.held[kind].values(), key=lambda r: r.id)

    def item_categories(self) -> dict[str, list[str]]:
        """Each item's categories (ids), from the categories' item lists."""
        out: dict[str, list[str]] = {}
        with self.account.lock:
            for category in self.held[CATEGORY].values():
                for _, iid in category.relationships["items"]:
                    out.setdefault(iid, []).append(category.id)
        return out

    def children(self, parent_kind: str, parent_id: str, kind: str) -> set[str]:
        """The ids a parent lists: a category's items, an item's variants or categories, a coupon's codes."""
        with self.account.lock:
            parent = self.held[parent_kind].get(parent_id)
            if parent is None:
                raise not_found(f"A {parent_kind} with id {parent_id} does not exist.")
            if kind == CATEGORY:
                return {c for c in self.item_categories().get(parent_id, [])}
            if kind == CODE:
                return {
                    r.id for r in self.held[CODE].values() if r.relationships["coupon"][0][1] == parent_id
                }
            rel = "items" if kind == ITEM else "variants"
            return {rid for _, rid in parent.relationships[rel]}

    def value(self, r: Resource, name: str, item_categories: dict[str, list[str]]) -> Any:
        """What a filter field reads: the id (`ids`), a relationship's id(s), or an attribute."""
        if name == "ids":
            return r.id
        if name == "category.id":
            return item_categories.get(r.id, [])
        if name == "item.id":
            if r.type == CATEGORY:
                return [iid for _, iid in r.relationships["items"]]
            return r.relationships["item"][0][1]
        if name in ("coupon.id", "profile.id"):
            linked = r.relationships[name.split(".")[0]]
            return linked[0][1] if linked else None
        return r.attributes.get(name)

    # -- mutation hooks ------------------------------------------------------------------------------------
    def _must(self, kind: str, rid: str) -> Resource:
        found = self.held[kind].get(rid)
        if found is None:
            raise ValueError(f"no {kind} {rid!r} in the account")
        return found

    def edit_item(
        self,
        item_id: str,
        title: str | None = None,
        price: float | None = None,
        published: bool | None = None,
        at: dt.datetime | None = None,
    ) -> str:
        """Edit an item's title, price or publication (no argument: its title gets an edit mark); its
        `updated` moves to `at` (default now)."""
        at = _now(at)
        with self.account.lock:
            item = self._must(ITEM, item_id)
            attrs = item.attributes
            if title is None and price is None and published is None:
                title = str(attrs["title"] or "").split(" (edited")[0] + f" (edited {iso(at)})"
            if title is not None:
                attrs["title"] = title
            if price is not None:
                attrs["price"] = float(price)
            if published is not None:
                attrs["published"] = bool(published)
            attrs["updated"] = _stamp(at)
        return item_id

    def add_item(
        self,
        title: str,
        price: float | None = None,
        categories: list[str] | None = None,
        variants: int = 1,
        at: dt.datetime | None = None,
    ) -> list[str]:
        """Add a published item with `variants` variants (sizes S, M, L...) in these categories (they are
        updated); created and updated at `at`. Returns the item's id, then its variants'."""
        at = _now(at)
        rng = random.Random(mix64(hash_str(f"{self.account.seed}:added-item:{self._items_made}")))
        with self.account.lock:
            targets = [self._must(CATEGORY, cid) for cid in categories or []]
            item = self._new_item(self._items_made, title, price, True, at, at, rng)
            added = [
                self._new_variant(item, size, at, at, rng).id
                for size in ["S", "M", "L", "XL", "XXL"][: max(0, variants)]
            ]
            for category in targets:
                category.relationships["items"].append((ITEM, item.id))
                category.attributes["updated"] = _stamp(at)
        return [item.id, *added]

    def delete_item(self, item_id: str, at: dt.datetime | None = None) -> list[str]:
        """Delete an item and its variants; it leaves its categories (they are updated). Returns the ids
        removed (the item's, then its variants')."""
        at = _now(at)
        with self.account.lock:
            item = self._must(ITEM, item_id)
            variants = [vid for _, vid in item.relationships["variants"]]
            for vid in variants:
                self.held[VARIANT].pop(vid, None)
            del self.held[ITEM][item_id]
            for category in self.held[CATEGORY].values():
                links = category.relationships["items"]
                if (ITEM, item_id) in links:
                    links.remove((ITEM, item_id))
                    category.attributes["updated"] = _stamp(at)
        return [item_id, *variants]

    def add_variant(
        self,
        item_id: str,
        size: str | None = None,
        sku: str | None = None,
        price: float | None = None,
        at: dt.datetime | None = None,
    ) -> str:
        """Add a variant to an item (default size: V2, V3... past the item's variants), created at `at`."""
        at = _now(at)
        with self.account.lock:
            item = self._must(ITEM, item_id)
            if size is None:
                taken = {vid for _, vid in item.relationships["variants"]}
                k = 2
                while f"{PREFIX}{item.attributes['external_id']}-V{k}" in taken | set(self.held[VARIANT]):
                    k += 1
                size = f"V{k}"
            vid = f"{PREFIX}{item.attributes['external_id']}-{size.upper()}"
            if vid in self.held[VARIANT]:
                raise ValueError(f"the variant {vid!r} exists")
            rng = random.Random(mix64(hash_str(f"{self.account.seed}:added-variant:{vid}")))
            price = None if price is None else float(price)
            return self._new_variant(item, size, at, at, rng, sku=sku, price=price).id

    def delete_variant(self, variant_id: str) -> str:
        """Delete a variant; its item no longer lists it (its `updated` stays)."""
        with self.account.lock:
            variant = self._must(VARIANT, variant_id)
            item = self.held[ITEM].get(variant.relationships["item"][0][1])
            if item is not None:
                item.relationships["variants"].remove((VARIANT, variant_id))
            del self.held[VARIANT][variant_id]
        return variant_id

    def move_item(
        self, item_id: str, to: str, source: str | None = None, at: dt.datetime | None = None
    ) -> str:
        """Move an item into category `to`, out of `source` (default: out of every other category); the item
        and the categories it left or joined are updated at `at`."""
        at = _now(at)
        with self.account.lock:
            item = self._must(ITEM, item_id)
            target = self._must(CATEGORY, to)
            leaving = [self._must(CATEGORY, source)] if source else list(self.held[CATEGORY].values())
            for category in leaving:
                links = category.relationships["items"]
                if category is not target and (ITEM, item_id) in links:
                    links.remove((ITEM, item_id))
                    category.attributes["updated"] = _stamp(at)
            if (ITEM, item_id) not in target.relationships["items"]:
                target.relationships["items"].append((ITEM, item_id))
            target.attributes["updated"] = _stamp(at)
            item.attributes["updated"] = _stamp(at)
        return item_id

    def add_coupon(
        self, coupon_id: str, description: str | None = None, codes: int = 0, at: dt.datetime | None = None
    ) -> list[str]:
        """Add a coupon with `codes` unassigned codes expiring 90 days after `at`; its id, then its codes'."""
        at = _now(at)
        with self.account.lock:
            if coupon_id in self.held[COUPON]:
                raise ValueError(f"the coupon {coupon_id!r} exists")
            coupon = self._new_coupon(coupon_id, description, None, at)
            made = [
                self._new_code(coupon.id, j, "UNASSIGNED", at + dt.timedelta(days=90), None).id
                for j in range(max(0, codes))
            ]
        return [coupon.id, *made]

    def delete_coupon(self, coupon_id: str) -> list[str]:
        """Delete a coupon and its codes; the ids removed (the coupon's, then its codes')."""
        with self.account.lock:
            self._must(COUPON, coupon_id)
            codes = sorted(self.children(COUPON, coupon_id, CODE))
            for cid in codes:
                del self.held[CODE][cid]
            del self.held[COUPON][coupon_id]
        return [coupon_id, *codes]

    def assign_code(self, code_id: str, profile_id: str) -> str:
        """Assign a code to a profile (status ASSIGNED_TO_PROFILE)."""
        with self.account.lock:
            code = self._must(CODE, code_id)
            code.relationships["profile"] = [("profile", profile_id)]
            code.attributes["status"] = "ASSIGNED_TO_PROFILE"
        return code_id

    def use_code(self, code_id: str, profile_id: str | None = None) -> str:
        """A code is redeemed (status USED), by `profile_id` if given (else by the profile it is assigned to)."""
        with self.account.lock:
            code = self._must(CODE, code_id)
            if profile_id:
                code.relationships["profile"] = [("profile", profile_id)]
            code.attributes["status"] = "USED"
        return code_id

    def delete_code(self, code_id: str, pending: bool = False) -> str:
        """Delete a code; `pending` leaves it listed with status DELETING, as while Klaviyo processes it."""
        with self.account.lock:
            code = self._must(CODE, code_id)
            if pending:
                code.attributes["status"] = "DELETING"
            else:
                del self.held[CODE][code_id]
        return code_id

    def admin(self, hook: str, args: dict[str, Any]) -> list[str]:
        """A hook by name with arguments from a query string or a JSON body (POST /_sim/commerce/<hook>):

        edit_item {id, title?, price?, published?} · add_item {title, price?, categories? (ids), variants? (1)}
        · delete_item {id} · add_variant {item_id, size?, sku?, price?} · delete_variant {id}
        · move_item {id, to, from? (default: every other category)} · add_coupon {id, description?, codes? (0)}
        · delete_coupon {id} · assign_code {id, profile_id} · use_code {id, profile_id?}
        · delete_code {id, pending? (true: status DELETING, still listed)}. Returns the ids acted on."""

        def number(name: str) -> float | None:
            return None if args.get(name) in (None, "") else float(args[name])

        def flag(name: str) -> bool | None:
            value = args.get(name)
            return value if value is None or isinstance(value, bool) else str(value).lower() in ("1", "true")

        def names(name: str) -> list[str]:
            value = args.get(name) or []
            return [v for v in (value.split(",") if isinstance(value, str) else value) if v]

        def text(name: str) -> str | None:
            return None if args.get(name) is None else str(args[name])

        def ids(result: str | list[str]) -> list[str]:
            return result if isinstance(result, list) else [result]

        hooks: dict[str, Callable[[], str | list[str]]] = {
            "edit_item": lambda: self.edit_item(
                args["id"], title=text("title"), price=number("price"), published=flag("published")
            ),
            "add_item": lambda: self.add_item(
                str(args["title"]),
                price=number("price"),
                categories=names("categories"),
                variants=int(args.get("variants", 1)),
            ),
            "delete_item": lambda: self.delete_item(args["id"]),
            "add_variant": lambda: self.add_variant(
                args["item_id"], size=text("size"), sku=text("sku"), price=number("price")
            ),
            "delete_variant": lambda: self.delete_variant(args["id"]),
            "move_item": lambda: self.move_item(args["id"], args["to"], source=text("from")),
            "add_coupon": lambda: self.add_coupon(
                args["id"], description=text("description"), codes=int(args.get("codes", 0))
            ),
            "delete_coupon": lambda: self.delete_coupon(args["id"]),
            "assign_code": lambda: self.assign_code(args["id"], args["profile_id"]),
            "use_code": lambda: self.use_code(args["id"], profile_id=text("profile_id")),
            "delete_code": lambda: self.delete_code(args["id"], pending=bool(flag("pending"))),
        }
        if hook not in hooks:
            raise ValueError(f"no commerce hook {hook!r}: one of {', '.join(sorted(hooks))}")
        return ids(hooks[hook]())


def store(account: Account) -> Commerce:
    """The account's catalogs and coupons, seeded on first use."""
    with account.lock:
        if account.commerce is None:
            account.commerce = Commerce(account, Resource)
        return account.commerce


# -- answering the GET operations ------------------------------------------------------------------------------
# List or fetch one kind: the operation -> its kind.
RESOURCES = {
    "get_catalog_items": ITEM,
    "get_catalog_item": ITEM,
    "get_catalog_variants": VARIANT,
    "get_catalog_variant": VARIANT,
    "get_catalog_categories": CATEGORY,
    "get_catalog_category": CATEGORY,
    "get_coupons": COUPON,
    "get_coupon": COUPON,
    "get_coupon_codes": CODE,
    "get_coupon_code": CODE,
}
# What one record lists: the operation -> (the parent's kind, the children's kind, ids only).
CHILDREN = {
    "get_items_for_catalog_category": (CATEGORY, ITEM, False),
    "get_item_ids_for_catalog_category": (CATEGORY, ITEM, True),
    "get_variants_for_catalog_item": (ITEM, VARIANT, False),
    "get_variant_ids_for_catalog_item": (ITEM, VARIANT, True),
    "get_categories_for_catalog_item": (ITEM, CATEGORY, False),
    "get_category_ids_for_catalog_item": (ITEM, CATEGORY, True),
    "get_coupon_codes_for_coupon": (COUPON, CODE, False),
    "get_coupon_code_ids_for_coupon": (COUPON, CODE, True),
}
# A code's coupon: the operation -> ids only.
CODE_COUPON = {"get_coupon_for_coupon_code": False, "get_coupon_id_for_coupon_code": True}
OPERATIONS = frozenset(RESOURCES) | frozenset(CHILDREN) | frozenset(CODE_COUPON)
# Relationships each kind renders, as the response schemas name them: (name, to-one).
RELATIONSHIPS: dict[str, tuple[tuple[str, bool], ...]] = {
    ITEM: (("variants", False),),
    VARIANT: (("item", True),),
    CATEGORY: (("items", False),),
    COUPON: (),
    CODE: (("coupon", True), ("profile", True)),
}


class _View:
    """Renders held records as JSON:API resources (sparse fieldsets, linkage, `included`)."""

    def __init__(self, shop: Commerce, base: str, params: dict[str, str]):
        self.shop = shop
        self.base = base
        self.include = set(params["include"].split(",")) if "include" in params else set()
        self.fields = {
            k[len("fields[") : -1]: set(v.split(",")) for k, v in params.items() if k.startswith("fields[")
        }
        self.included: dict[tuple[str, str], dict] = {}

    def resource(self, r: Resource) -> dict:
        attrs = json.loads(json.dumps(r.attributes))
        wanted = self.fields.get(r.type)
        if wanted:
            attrs = {k: v for k, v in attrs.items() if k in wanted}
        out: dict[str, Any] = {"type": r.type, "id": r.id, "attributes": attrs}
        path = f"{self.base}/api/{PATHS[r.type]}/{r.id}"
        relationships = {}
        for rel, to_one in RELATIONSHIPS[r.type]:
            body: dict[str, Any] = {
                "links": {"self": f"{path}/relationships/{rel}/", "related": f"{path}/{rel}/"}
            }
            linked = r.relationships.get(rel, [])
            if to_one and linked:
                body["data"] = {"type": linked[0][0], "id": linked[0][1]}
            elif not to_one and rel in self.include:
                body["data"] = [{"type": t, "id": i} for t, i in linked]
            if rel in self.include:
                for t, i in linked:
                    self._include(t, i)
            relationships[rel] = body
        if relationships:
            out["relationships"] = relationships
        out["links"] = {"self": f"{path}/"}
        return out

    def _include(self, kind: str, rid: str) -> None:
        if (kind, rid) not in self.included:
            related = self.shop.get(kind, rid)
            if related is not None:
                self.included[(kind, rid)] = self.resource(related)

    def document(self, payload: dict) -> dict:
        if self.included:
            payload["included"] = list(self.included.values())
        return payload


def _rules(op: Operation) -> dict[str, FieldRule]:
    """The operation's filter fields. `coupon.id` and `profile.id` list `equals` among their list operators
    only; Klaviyo's guides write `equals(coupon.id,'10OFF')`, so `equals` takes a single value too."""
    out = {}
    for name, rule in op.filters.items():
        if "equals" in rule.lists and "equals" not in rule.single:
            rule = dataclasses.replace(rule, single=(*rule.single, "equals"))
        out[name] = rule
    return out


def _conditions(op: Operation, params: dict, kind: str) -> list[Condition]:
    if "filter" not in params:
        return []
    try:
        return parse_filter(params["filter"], _rules(op), kind)
    except FilterError as exc:
        raise invalid(str(exc), parameter="filter") from None


def _match(cond: Condition, actual: Any) -> bool:
    if isinstance(actual, list):  # a to-many relationship: one of its ids matches
        return any(matches(cond, a) for a in actual)
    return matches(cond, actual)


def _page(
    shop: Commerce,
    kind: str,
    conditions: list[Condition],
    only: set[str] | None,
    sort: str | None,
    raw_cursor: str | None,
    size: int,
) -> tuple[list[Resource], Any, Any]:
    """A page: filtered (and limited to `only`), sorted (by id unless asked), resumed after the cursor's id
    (or at its offset once that id is gone). Returns the records, the cursor read and the next position."""
    cursor = decode_cursor(raw_cursor)
    records = [r for r in shop.all(kind) if only is None or r.id in only]
    if conditions:
        index = shop.item_categories() if kind == ITEM else {}
        records = [r for r in records if all(_match(c, shop.value(r, c.field, index)) for c in conditions)]
    if sort:
        records.sort(key=lambda r: (r.internal["created"], r.id), reverse=sort.startswith("-"))
    chunk, next_pos = resume(records, cursor, size)
    return chunk, cursor, next_pos


def _links(base: str, path: str, query: list, cursor: Any, next_pos: Any) -> dict:
    return {
        "self": link(base, path, query, None),
        "next": link(base, path, query, encode_cursor(next_pos)) if next_pos is not None else None,
        "prev": link(base, path, query, encode_cursor(("prev", cursor))) if cursor is not None else None,
    }


def answer(
    account: Account, op: Operation, item_id: str | None, params: dict, query: list, base: str
) -> dict:
    """The answer to a catalog or coupon GET whose parameters the server checked (see the module's docstring)."""
    shop = store(account)
    view = _View(shop, base, params)
    rid = unquote(item_id) if item_id is not None else None  # compound ids arrive percent-encoded or bare
    size = int(params.get("page[size]", op.page_default or 100))
    if op.operation_id in CODE_COUPON:
        code = shop.get(CODE, rid or "")
        if code is None:
            raise not_found(f"A coupon-code with id {rid} does not exist.")
        coupon_id = code.relationships["coupon"][0][1]
        coupon = shop.get(COUPON, coupon_id)
        self_url = self_link(base, op, item_id or "", query)
        if CODE_COUPON[op.operation_id]:
            return {"data": {"type": COUPON, "id": coupon_id}, "links": {"self": self_url}}
        return {"data": view.resource(coupon) if coupon else None, "links": {"self": self_url}}
    if op.operation_id in CHILDREN:
        parent_kind, kind, ids_only = CHILDREN[op.operation_id]
        only = shop.children(parent_kind, rid or "", kind)
        conditions = _conditions(op, params, kind)
        chunk, cursor, next_pos = _page(
            shop, kind, conditions, only, params.get("sort"), params.get("page[cursor]"), size
        )
        links = _links(base, op.path.replace("{id}", item_id or ""), query, cursor, next_pos)
        if ids_only:
            return {"data": [{"type": kind, "id": r.id} for r in chunk], "links": links}
        return view.document({"data": [view.resource(r) for r in chunk], "links": links})
    kind = RESOURCES[op.operation_id]
    if rid is not None:
        one = shop.get(kind, rid)
        if one is None:
            raise not_found(f"A {kind} with id {rid} does not exist.")
        return view.document(
            {"data": view.resource(one), "links": {"self": self_link(base, op, item_id, query)}}
        )
    conditions = _conditions(op, params, kind)
    if op.filter_required and not any(c.field in ("coupon.id", "profile.id") for c in conditions):
        # Get Coupon Codes: "A coupon/coupons or a profile/profiles must be provided as required filter params."
        raise invalid(
            "A coupon/coupons or a profile/profiles must be provided as required filter params: "
            "filter on coupon.id or profile.id.",
            parameter="filter",
        )
    chunk, cursor, next_pos = _page(
        shop, kind, conditions, None, params.get("sort"), params.get("page[cursor]"), size
    )
    return view.document(
        {"data": [view.resource(r) for r in chunk], "links": _links(base, op.path, query, cursor, next_pos)}
    )
