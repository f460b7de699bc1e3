"""What the enabled assets ask of an API key: each endpoint they read, the scope it needs, and a check that
sends the smallest request each allows (`klaviyo-pipeline check`)."""

from __future__ import annotations

from dataclasses import dataclass

from assets.stats import STATS_KEYS
from resources.catalogue import ALL_ENTITIES, CATALOGUE, ENDPOINTS
from resources.klaviyo import KlaviyoApiError, KlaviyoClient, KlaviyoError
from resources.klaviyo_api import ACCOUNTS_PATH, ACCOUNTS_SCOPE, REPORT_ENDPOINTS
from resources.reports import FAMILIES


@dataclass(frozen=True)
class Requirement:
    """An endpoint an asset reads, the key scope it needs, and the entity listing whose smallest request proves
    that scope (reports are proven by a listing of the same scope: a report request would spend the daily
    report quota)."""

    asset: str
    endpoint: str
    scope: str
    probe: str | None  # entity to probe; None: GET /api/accounts


@dataclass(frozen=True)
class AccessResult:
    requirement: Requirement
    ok: bool
    detail: str


def requirements() -> list[Requirement]:
    """Every endpoint the assets read, in asset order, with its scope."""
    out = [Requirement("(every asset)", f"GET {ACCOUNTS_PATH}", ACCOUNTS_SCOPE, None)]
    for entity in ALL_ENTITIES:
        endpoint = ENDPOINTS[entity]
        member_of = CATALOGUE[entity].member_of
        if member_of is not None:
            # A list's or segment's members need the group's scope and profiles:read (the spec's
            # x-klaviyo-scopes); the route needs a group id, so each scope is proven by its own listing.
            for scope, probe in ((endpoint.scope, member_of), (ENDPOINTS["profiles"].scope, "profiles")):
                out.append(Requirement(f"klaviyo/{entity}", f"GET {endpoint.path}", scope, probe))
            continue
        include = f"?include={','.join(CATALOGUE[entity].include)}" if CATALOGUE[entity].include else ""
        # A nested endpoint needs a parent's id: its scope is proven by its parent's listing when it is the same
        # scope, else by a request under the parent's first record (a coupon's codes need coupon-codes:read).
        parent = CATALOGUE[entity].parent
        same_scope = parent is not None and ENDPOINTS[parent.entity].scope == endpoint.scope
        probe = parent.entity if same_scope else entity
        out.append(Requirement(f"klaviyo/{entity}", f"GET {endpoint.path}{include}", endpoint.scope, probe))
    for name, key in STATS_KEYS.items():
        report = REPORT_ENDPOINTS[FAMILIES[name].report]
        proof = next(e for e in ENDPOINTS.values() if e.scope == report.scope)
        out.append(Requirement(key.to_user_string(), f"POST {report.path}", report.scope, proof.entity))
    return out


def check_access(client: KlaviyoClient) -> list[AccessResult]:
    """One smallest request per scope the assets need (each probe is sent once and its answer shared)."""
    answers: dict[str | None, tuple[bool, str]] = {}
    results = []
    for req in requirements():
        if req.probe not in answers:
            answers[req.probe] = _probe(client, req.probe)
        ok, detail = answers[req.probe]
        if ok and req.endpoint.startswith("POST"):
            detail = f"{detail} (scope proven by GET {ENDPOINTS[req.probe].path}; no report quota spent)"
        elif ok and req.probe is not None:
            proof = f"GET {ENDPOINTS[req.probe].path}"
            if req.endpoint.partition("?")[0] != proof:  # e.g. a list's members: the route needs a list id
                detail = f"{detail} (scope proven by {proof})"
        results.append(AccessResult(req, ok, detail))
    return results


def _probe(client: KlaviyoClient, entity: str | None) -> tuple[bool, str]:
    try:
        if entity is None:
            account = client.account()
            return True, f"ok: account {account.id}, time zone {account.timezone}"
        parent = CATALOGUE[entity].parent
        if parent is not None:
            return _probe_under(client, entity, parent.entity)
        client.probe(entity, CATALOGUE[entity].include)
        return True, "ok"
    except KlaviyoApiError as exc:
        if exc.status == 401:
            return False, "refused: the key is not valid (401)"
        if exc.status == 403:
            return False, f"missing: {exc.detail} (403)"
        return False, f"error: {exc}"
    except KlaviyoError as exc:
        return False, f"error: {exc}"


def _probe_under(client: KlaviyoClient, entity: str, parent: str) -> tuple[bool, str]:
    """The smallest request of a nested endpoint, under the first record of its parent's listing (one record
    each); an account without such a record cannot prove the scope, which is said, not failed."""
    first = next(iter(client.list_window(parent, page_size=1)), None)
    ids = [
        r["id"]
        for r in (first.records if first else [])
        if isinstance(r, dict) and isinstance(r.get("id"), str)
    ]
    if not ids:
        return True, f"not proven: the account has no {ENDPOINTS[parent].type} to read under yet"
    next(iter(client.iter_pages(ENDPOINTS[entity].under(ids[0]), {"page[size]": "1"})), None)
    return True, "ok"
