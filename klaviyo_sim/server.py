"""The simulator's HTTP server: the Simulator, its request handler, dispatch of Klaviyo's routes, admin hooks.

The other concerns live beside it: errors.py (Klaviyo's error bodies), faults.py (fault injection), limits.py
(rate limits), paging.py (cursors, links, pages), render.py (JSON:API resources), reports.py (the Reporting
API), spec.py (what each operation accepts), filters.py (the filter language), data.py (the account),
commerce.py (catalogs and coupons: their GETs and the /_sim/commerce/<hook> hooks).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from klaviyo_sim import commerce, reports
from klaviyo_sim.data import Account
from klaviyo_sim.errors import (
    ApiError,
    authentication_failed,
    invalid,
    not_found,
    permission_denied,
    throttled,
)
from klaviyo_sim.faults import Faults
from klaviyo_sim.filters import Condition, FilterError, parse_filter
from klaviyo_sim.limits import RateLimiter, buckets
from klaviyo_sim.paging import (
    collection_links,
    decode_cursor,
    encode_cursor,
    link,
    members_page,
    page,
    self_link,
)
from klaviyo_sim.render import Renderer
from klaviyo_sim.spec import Operation, match
from klaviyo_sim.webhooks import OPERATIONS as WEBHOOK_OPERATIONS
from klaviyo_sim.webhooks import WebhookService

__all__ = ["ApiError", "Faults", "RateLimiter", "Renderer", "RequestRecord", "Simulator"]

JSONAPI = "application/vnd.api+json"


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    at: float
    operation: str | None
    account: str | None = None  # the account id the request's key reads


class Simulator:
    """A running simulator: the account, its HTTP server, faults, limits, and what it was asked."""

    def __init__(
        self,
        account: Account | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: bool = True,
        time_scale: float = 1.0,
        api_keys: set[str] | None = None,
        restricted_keys: set[str] | None = None,
        faults: Faults | None = None,
        key_scopes: dict[str, set[str]] | None = None,
        report_page_size: int | None = 10,
        refuse_future_timeframes: bool = True,
        accounts: dict[str, Account] | None = None,
        webhooks: WebhookService | None = None,
    ):
        self.account = account or Account()
        # Several accounts, one per key (own data, time zone, rate limits); other keys read `account`.
        self.accounts: dict[str, Account] = dict(accounts or {})
        self.limiter = RateLimiter(time_scale, rate_limits)
        self.api_keys = api_keys
        self.restricted_keys = restricted_keys or set()
        # A key listed here has exactly these scopes; other keys have every scope.
        self.key_scopes: dict[str, set[str]] = {k: set(v) for k, v in (key_scopes or {}).items()}
        self.revoked_keys: set[str] = set()
        self.report_page_size = report_page_size
        self.refuse_future_timeframes = refuse_future_timeframes
        self.faults = faults or Faults()
        self.lock = threading.Lock()
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=200_000)
        self.client_errors: list[tuple[int, str, str]] = []
        handler = type("Handler", (_Handler,), {"sim": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        # System webhooks (webhooks.py): the registry, its API and the deliverer of new events.
        self.webhooks = webhooks or WebhookService()
        self.webhooks.base_url = self.url
        if self.webhooks.time_scale is None:
            self.webhooks.time_scale = time_scale
        for acct in (self.account, *self.accounts.values()):
            self.webhooks.watch(acct)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="klaviyo-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.webhooks.stop()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def calls(self, operation: str | None = None) -> list[RequestRecord]:
        return [r for r in list(self.requests) if operation is None or r.operation == operation]

    def account_for(self, key: str | None) -> Account:
        """The account a key reads: its own from `accounts`, else the default one."""
        return self.accounts.get(key, self.account) if key is not None else self.account

    def set_scopes(self, key: str, scopes: set[str] | None) -> None:
        """Give a key exactly these scopes from its next request on (None: every scope again)."""
        with self.lock:
            if scopes is None:
                self.key_scopes.pop(key, None)
            else:
                self.key_scopes[key] = set(scopes)

    def revoke_key(self, key: str, revoked: bool = True) -> None:
        """Revoke a key (its next requests get 401, as a deleted private key does), or restore it."""
        with self.lock:
            (self.revoked_keys.add if revoked else self.revoked_keys.discard)(key)

    def missing_scopes(self, key: str, operation: Operation) -> list[str]:
        with self.lock:
            have = self.key_scopes.get(key)
        return [] if have is None else sorted(set(operation.scopes) - have)


class _Handler(BaseHTTPRequestHandler):
    sim: Simulator
    protocol_version = "HTTP/1.1"
    server_version = "klaviyo-sim"
    # Headers and body go out in two writes; without TCP_NODELAY each response waits ~40 ms for the client's
    # delayed ACK (measured: 44.8 ms vs 1.8 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    # -- plumbing ------------------------------------------------------------------------------------
    def _record(self, status: int) -> None:
        # Recorded before the response is written, so a client that has its answer sees the record.
        if not self._recorded:
            self._recorded = True
            method, split, operation = self._request_info
            self.sim.requests.append(
                RequestRecord(
                    method, split.path, split.query, status, time.time(), operation, self._account_id
                )
            )

    def _send(
        self, status: int, body: bytes, content_type: str = JSONAPI, headers: dict | None = None
    ) -> None:
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, body, JSONAPI, headers)

    def _handle(self, method: str) -> None:
        sim = self.sim
        split = urlsplit(self.path)
        status, operation = 500, None
        self._recorded = False
        self._request_info = (method, split, None)
        self._account_id: str | None = None
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            if split.path.startswith("/_sim/"):
                status = self._admin(split, raw_body)
                return
            found = match(method, split.path)
            if found is None:
                raise not_found(f"The path {split.path} was not found.")
            op, item_id = found
            operation = op.operation_id
            self._request_info = (method, split, operation)
            key, account = self._authenticate()
            self._account_id = account.account_id
            missing = sim.missing_scopes(key, op)
            if missing:
                raise permission_denied(f"This API key is missing required scopes: {', '.join(missing)}.")
            revision = self.headers.get("revision")
            if not revision:
                raise invalid("The 'revision' header is required.", parameter="revision")
            if not _valid_revision(revision):
                raise invalid(
                    f"'{revision}' is not a valid revision (format: YYYY-MM-DD[.suffix]).",
                    parameter="revision",
                )
            query = parse_qsl(split.query, keep_blank_values=True)
            params = _params(query, op)
            # Each account has its own windows (two Account objects are two accounts, even on one seed).
            limit_headers = sim.limiter.check(buckets(op, params), f"{account.account_id}@{id(account):x}")
            fault = sim.faults.next_fault(op.operation_id)
            if fault and self._fault(fault):
                status = {"429": 429, "503": 503, "504html": 504, "403html": 403}.get(fault, 200)
                return
            if op.operation_id in WEBHOOK_OPERATIONS:  # system webhooks: CRUD and topics (webhooks.py)
                status, answer = sim.webhooks.answer(
                    account, op, item_id, params, query, raw_body, self._base()
                )
                if answer is None:
                    self._send(status, b"", JSONAPI, limit_headers)
                else:
                    self._json(status, answer, limit_headers)
                return
            if op.method == "post":
                payload = reports.answer(
                    account,
                    op,
                    raw_body,
                    self._base(),
                    page_cursor=params.get("page_cursor"),
                    page_size=sim.report_page_size,
                    refuse_future=sim.refuse_future_timeframes,
                )
            else:
                payload = dispatch(account, op, item_id, params, query, self._base())
            if fault == "badrow":
                _break_first_result(payload)
            self._json(200, payload, limit_headers)
            status = 200
        except ApiError as err:
            status = err.status
            if 400 <= err.status < 500 and err.status != 429:
                sim.client_errors.append((err.status, err.detail, self.path))
            self._json(err.status, err.body(), err.headers)
        except (BrokenPipeError, ConnectionResetError):
            status = 499
        except Exception as exc:  # noqa: BLE001 - an unexpected bug answers 500 like a server would
            status = 500
            detail = f"{type(exc).__name__}: {exc}"
            sim.client_errors.append((500, detail, self.path))
            self._json(500, ApiError(500, "error", "A server error occurred.", detail).body())
        finally:
            self._record(status)

    def _base(self) -> str:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    def _authenticate(self) -> tuple[str, Account]:
        auth = self.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if (
            scheme != "Klaviyo-API-Key"
            or not key.startswith("pk_")
            or (self.sim.api_keys is not None and key not in self.sim.api_keys)
            or key in self.sim.revoked_keys
        ):
            raise authentication_failed()
        if key in self.sim.restricted_keys:
            raise permission_denied("This API key is missing required scopes.")
        return key, self.sim.account_for(key)

    def _fault(self, fault: str) -> bool:
        """Answer with a fault; returns False when the request should go on (slow; badrow, which breaks the
        answer)."""
        if fault == "slow":
            time.sleep(self.sim.faults.slow_seconds)
            return False
        if fault == "badrow":
            return False
        if fault == "429":
            err = throttled(self.sim.faults.retry_after)
            self._json(429, err.body(), err.headers)
        elif fault == "503":
            self._json(503, ApiError(503, "error", "Service unavailable.", "Please try again later.").body())
        elif fault == "504html":
            self._send(504, b"<html><body><h1>504 Gateway Time-out</h1></body></html>", "text/html")
        elif fault == "403html":
            self._send(
                403,
                b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body></body></html>",
                "text/html; charset=UTF-8",
                {"cf-mitigated": "challenge"},
            )
        elif fault == "badjson":
            self._send(200, b'{"data": [{"type": "event", "id": ', JSONAPI)
        elif fault == "cut":
            body = b'{"data":[{"type":"event","id":"x","attributes":{"timestamp":1'
            self._record(200)
            self.send_response(200)
            self.send_header("Content-Type", JSONAPI)
            self.send_header("Content-Length", str(len(body) * 10))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        return True

    def _admin(self, split, raw_body: bytes) -> int:
        """Hooks over HTTP for a simulator run as its own process: POST /_sim/touch?type=flow&n=3.

        `key=` picks the account a key reads (default: the default account); /_sim/scopes and /_sim/revoke
        act on that key: /_sim/scopes?key=K&scopes=flows:read,events:read (`scopes=*`: every scope again),
        /_sim/revoke?key=K (`restore=1` undoes it)."""
        try:
            return self._admin_hook(split, raw_body)
        except (KeyError, ValueError) as exc:  # a missing or wrong argument (an unknown type=, ...)
            self._json(400, {"errors": [{"detail": f"{type(exc).__name__}: {exc}"}]})
            return 400

    def _admin_hook(self, split, raw_body: bytes = b"") -> int:
        args = dict(parse_qsl(split.query, keep_blank_values=True))
        key = args.get("key")
        acct = self.sim.account_for(key)
        if split.path.startswith("/_sim/commerce/"):  # catalogs and coupons: query arguments or a JSON body
            body = json.loads(raw_body) if raw_body else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            hook_args = {k: v for k, v in args.items() if k != "key"} | body
            self._json(200, {"ids": commerce.store(acct).admin(split.path.rsplit("/", 1)[-1], hook_args)})
            return 200
        if split.path.startswith(
            "/_sim/webhooks/"
        ):  # system webhooks: faults, settings, attempts (webhooks.py)
            self._json(200, self.sim.webhooks.admin(split.path, args, acct))
            return 200
        if split.path == "/_sim/touch":
            ids = acct.touch(args["type"], int(args.get("n", 1)))
        elif split.path == "/_sim/delete":
            ids = acct.delete(args["type"], int(args.get("n", 1)))
        elif split.path == "/_sim/revise":
            day = dt.date.fromisoformat(args["day"])
            acct.revise_stats(args["family"], args["id"], day, int(args.get("amount", 1)))
            ids = [args["id"]]
        elif split.path == "/_sim/account":
            ids = [acct.account_id]
        elif split.path == "/_sim/import_events":
            ids = acct.import_events(int(args.get("n", 1)), float(args.get("days_ago", 1)))
        elif split.path == "/_sim/add_members":  # /_sim/add_members?type=segment&id=Y6nRLr&n=5
            ids = acct.memberships.add(args["type"], args["id"], n=int(args.get("n", 1)))
        elif split.path == "/_sim/remove_members":
            ids = acct.memberships.remove(args["type"], args["id"], n=int(args.get("n", 1)))
        elif split.path in ("/_sim/scopes", "/_sim/revoke") and not key:
            self._json(400, {"errors": [{"detail": "key= is required"}]})
            return 400
        elif split.path == "/_sim/scopes":
            raw = args.get("scopes", "")
            scopes = None if raw == "*" else {s for s in raw.split(",") if s}
            self.sim.set_scopes(key, scopes)
            ids = [acct.account_id]
        elif split.path == "/_sim/revoke":
            self.sim.revoke_key(key, revoked=args.get("restore") not in ("1", "true"))
            ids = [acct.account_id]
        else:
            self._json(404, {"errors": [{"detail": "unknown admin path"}]})
            return 404
        self._json(200, {"ids": ids})
        return 200


def _break_first_result(payload: dict) -> None:
    """The `badrow` fault: a report's first result loses its first grouping (its entity id)."""
    data = payload.get("data")
    results = data.get("attributes", {}).get("results") if isinstance(data, dict) else None
    if results:
        groupings = results[0]["groupings"]
        groupings.pop(next(iter(groupings)), None)


def _valid_revision(revision: str) -> bool:
    date, _, suffix = revision.partition(".")
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        return False
    return suffix in ("", "pre")


def _params(query: list[tuple[str, str]], op: Operation) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in query:
        if name not in op.params:
            raise invalid(f"'{name}' is not a valid parameter for this endpoint.", parameter=name)
        if name in params:
            raise invalid(f"'{name}' was given more than once.", parameter=name)
        params[name] = value
    if "page[size]" in params:
        try:
            size = int(params["page[size]"])
        except ValueError:
            raise invalid("page[size] must be an integer.", parameter="page[size]") from None
        if not 1 <= size <= (op.page_max or 0):
            raise invalid(
                f"Page size must be between 1 and {op.page_max}, got {params['page[size]']}.",
                parameter="page[size]",
            )
    if "sort" in params and params["sort"] not in op.sorts:
        raise invalid(f"'{params['sort']}' is not a valid sort option for this endpoint.", parameter="sort")
    if "include" in params:
        for inc in params["include"].split(","):
            if inc not in op.includes:
                raise invalid(
                    f"'{inc}' is not an allowed include parameter for this resource.", parameter="include"
                )
    for name, value in params.items():
        if name.startswith("additional-fields["):
            allowed = op.additional_fields.get(name[len("additional-fields[") : -1], ())
            for v in value.split(","):
                if v not in allowed:
                    raise invalid(f"'{v}' is not a valid value for {name}.", parameter=name)
        elif name.startswith("fields["):
            allowed = op.fields.get(name[len("fields[") : -1], ())
            for v in value.split(","):
                if v not in allowed:
                    raise invalid(f"'{v}' is not a valid field for {name}.", parameter=name)
    return params


# -- dispatch ------------------------------------------------------------------------------------------
# The GET operations that list or fetch one kind of resource, and the kind.
RESOURCE_TYPES = {
    "get_campaigns": "campaign",
    "get_campaign": "campaign",
    "get_flows": "flow",
    "get_flow": "flow",
    "get_forms": "form",
    "get_form": "form",
    "get_segments": "segment",
    "get_segment": "segment",
    "get_lists": "list",
    "get_list": "list",
    "get_metrics": "metric",
    "get_metric": "metric",
    "get_tags": "tag",
    "get_tag_groups": "tag-group",
    "get_tag_group": "tag-group",
    "get_templates": "template",
    "get_template": "template",
    "get_flow_action": "flow-action",
    "get_flow_message": "flow-message",
    "get_form_version": "form-version",
    "get_profiles": "profile",
    "get_profile": "profile",
    "get_events": "event",
    "get_event": "event",
}


def dispatch(
    account: Account, op: Operation, item_id: str | None, params: dict, query: list, base: str
) -> dict:
    """The answer to a GET whose parameters were checked: one resource, or a page of a list."""
    if op.operation_id == "get_accounts":
        return _accounts(account, base)
    if op.operation_id == "get_messages_for_campaign":
        return _campaign_messages(account, Renderer(account, base, params), item_id or "", op, query, base)
    if op.operation_id in NESTED_OPERATIONS:
        return _nested(account, op, item_id or "", params, query, base)
    if op.operation_id in MEMBER_OPERATIONS:
        return _members(account, op, item_id or "", params, query, base)
    if op.operation_id in commerce.OPERATIONS:  # catalogs and coupons (klaviyo_sim/commerce.py)
        return commerce.answer(account, op, item_id, params, query, base)
    resource_type = RESOURCE_TYPES.get(op.operation_id)
    if resource_type is None:
        raise not_found(f"{op.path} is not simulated.")
    renderer = Renderer(account, base, params)
    if item_id is not None:
        one: dict[str, Any] = {
            "data": renderer.one(resource_type, item_id),
            "links": {"self": self_link(base, op, item_id, query)},
        }
        if renderer.included:  # what include= asked for (a step's flow and messages, ...)
            one["included"] = list(renderer.included.values())
        return one
    conditions: list[Condition] = []
    if "filter" in params:
        try:
            conditions = parse_filter(params["filter"], op.filters, resource_type)
        except FilterError as exc:
            raise invalid(str(exc), parameter="filter") from None
    elif op.filter_required:
        raise invalid("A 'filter' parameter is required for this endpoint.", parameter="filter")
    size = int(params.get("page[size]", op.page_default or 200))
    cursor = decode_cursor(params.get("page[cursor]"))
    items, next_pos = page(account, resource_type, conditions, params.get("sort"), cursor, size)
    payload: dict[str, Any] = {
        "data": [renderer.render(resource_type, item) for item in items],
        "links": collection_links(base, op, query, cursor, next_pos),
    }
    if renderer.included:
        payload["included"] = list(renderer.included.values())
    return payload


# List and segment members (klaviyo_sim/members.py): the profiles, or their ids only (relationships), by group kind.
MEMBER_OPERATIONS = {
    "get_profiles_for_list": ("list", False),
    "get_profiles_for_segment": ("segment", False),
    "get_profile_ids_for_list": ("list", True),
    "get_profile_ids_for_segment": ("segment", True),
}


def _members(account: Account, op: Operation, group_id: str, params: dict, query: list, base: str) -> dict:
    """A page of a list's or segment's members, in joined_group_at order: whole profiles (with the time they
    joined, sparse fieldsets and additional fields as asked) or, on the relationships route, ids only."""
    kind, ids_only = MEMBER_OPERATIONS[op.operation_id]
    if account.memberships.group(kind, group_id) is None:
        raise not_found(f"A {kind} with id {group_id} does not exist.")
    conditions: list[Condition] = []
    if "filter" in params:
        try:
            conditions = parse_filter(params["filter"], op.filters, "profile")
        except FilterError as exc:
            raise invalid(str(exc), parameter="filter") from None
    size = int(params.get("page[size]", op.page_default or 20))
    cursor = decode_cursor(params.get("page[cursor]"))
    items, next_pos = members_page(account, kind, group_id, conditions, params.get("sort"), cursor, size)
    if ids_only:
        data = [{"type": "profile", "id": account.profile_id(i)} for i, _ in items]
    else:
        renderer = Renderer(account, base, params)
        data = [renderer.member(i, joined) for i, joined in items]
    path = op.path.replace("{id}", group_id)
    links = {
        "self": link(base, path, query, None),
        "next": link(base, path, query, encode_cursor(next_pos)) if next_pos is not None else None,
        "prev": link(base, path, query, encode_cursor(("prev", cursor))) if cursor is not None else None,
    }
    return {"data": data, "links": links}


# What is listed only under one record of another (klaviyo_sim/structure.py): the operation -> (the parent's kind,
# the relationship listing the children, their kind).
NESTED_OPERATIONS = {
    "get_actions_for_flow": ("flow", "flow-actions", "flow-action"),
    "get_flow_action_messages": ("flow-action", "flow-messages", "flow-message"),
    "get_versions_for_form": ("form", "form-versions", "form-version"),
}


def _nested(account: Account, op: Operation, parent_id: str, params: dict, query: list, base: str) -> dict:
    """A page of a flow's steps, a step's messages or a form's versions: the parent's children, filtered,
    sorted and paged as a held entity's list (an unknown parent answers 404)."""
    parent_kind, rel, kind = NESTED_OPERATIONS[op.operation_id]
    with account.lock:
        parent = account.by_id.get((parent_kind, parent_id))
        children = [cid for _, cid in parent.relationships.get(rel, [])] if parent else []
    if parent is None:
        raise not_found(f"A {parent_kind} with id {parent_id} does not exist.")
    conditions: list[Condition] = []
    if "filter" in params:
        try:
            conditions = parse_filter(params["filter"], op.filters, kind)
        except FilterError as exc:
            raise invalid(str(exc), parameter="filter") from None
    size = int(params.get("page[size]", op.page_default or 50))
    cursor = decode_cursor(params.get("page[cursor]"))
    mine = Condition("any", "id", children)  # the parent's own children, nothing else
    items, next_pos = page(account, kind, [*conditions, mine], params.get("sort"), cursor, size)
    renderer = Renderer(account, base, params)
    path = op.path.replace("{id}", parent_id)
    return {
        "data": [renderer.render(kind, item) for item in items],
        "links": {
            "self": link(base, path, query, None),
            "next": link(base, path, query, encode_cursor(next_pos)) if next_pos is not None else None,
            "prev": link(base, path, query, encode_cursor(("prev", cursor))) if cursor is not None else None,
        },
    }


def _campaign_messages(
    account: Account, renderer: Renderer, campaign_id: str, op: Operation, query: list, base: str
) -> dict:
    """GET /api/campaigns/{id}/campaign-messages: all of a campaign's messages, no paging."""
    with account.lock:
        campaign = account.by_id.get(("campaign", campaign_id))
        messages = [
            account.by_id[(kind, rid)]
            for kind, rid in (campaign.relationships.get("campaign-messages", []) if campaign else [])
            if (kind, rid) in account.by_id
        ]
    if campaign is None:
        raise not_found(f"A campaign with id {campaign_id} does not exist.")
    data = [
        renderer.message(m) for m in messages
    ]  # includes their templates when asked (images: not simulated)
    if messages and "campaign" in renderer.include:
        renderer.included[("campaign", campaign_id)] = renderer.resource(campaign)
    payload: dict[str, Any] = {"data": data, "links": {"self": self_link(base, op, campaign_id, query)}}
    if renderer.included:
        payload["included"] = list(renderer.included.values())
    return payload


def _accounts(account: Account, base: str) -> dict:
    return {
        "data": [
            {
                "type": "account",
                "id": account.account_id,
                "attributes": {
                    "test_account": True,
                    "contact_information": {
                        "default_sender_name": "Simulated Store",
                        "default_sender_email": "store@example.com",
                        "website_url": "https://example.com",
                        "organization_name": "Simulated Store",
                        "street_address": {
                            "address1": "1 Main St",
                            "address2": None,
                            "city": "Boston",
                            "region": "MA",
                            "country": "US",
                            "zip": "02110",
                        },
                    },
                    "industry": "Retail",
                    "timezone": account.timezone,
                    "preferred_currency": "USD",
                    "public_api_key": "SiMuL8",
                    "locale": "en-US",
                },
                "links": {"self": f"{base}/api/accounts/{account.account_id}/"},
            }
        ],
        "links": {"self": f"{base}/api/accounts/", "next": None, "prev": None},
    }
