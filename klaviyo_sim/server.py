"""The simulator's HTTP server: Klaviyo's routes, envelopes, filters, cursors, errors and rate limits."""

from __future__ import annotations

import base64
import bisect
import collections
import datetime as dt
import heapq
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from klaviyo_sim import reports
from klaviyo_sim.data import Account, Resource, parse_time
from klaviyo_sim.filters import Condition, FilterError, matches, parse_filter
from klaviyo_sim.spec import Operation, match

UTC = dt.UTC
JSONAPI = "application/vnd.api+json"
# Parameters whose own (stricter) limit stacks on the endpoint's, per Klaviyo's rate-limit docs. The limits the
# operations' descriptions state are read from the spec (Operation.param_limits: profile_count on a list or
# segment, predictive_analytics on the profiles list, include=lists|segments on a profile); this adds the one
# the docs give without the spec repeating it: predictive_analytics on a single profile.
PARAM_TIERS = {
    ("get_profile", "additional-fields[profile]", "predictive_analytics"): (10, 150),
}


class ApiError(Exception):
    """An error answered in Klaviyo's shape."""

    def __init__(
        self, status: int, code: str, title: str, detail: str, source: dict | None = None, headers=None
    ):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.source = source or {}
        self.headers = headers or {}

    def body(self) -> dict:
        return {
            "errors": [
                {
                    "id": str(uuid.uuid4()),
                    "status": self.status,
                    "code": self.code,
                    "title": self.title,
                    "detail": self.detail,
                    "source": self.source,
                    "links": {},
                    "meta": {},
                }
            ]
        }


def invalid(detail: str, parameter: str | None = None, pointer: str | None = None) -> ApiError:
    source = {"parameter": parameter} if parameter else {"pointer": pointer or "/data/"}
    return ApiError(400, "invalid", "Invalid input.", detail, source)


@dataclass
class Faults:
    """Fault injection: random shares per request, and a script of faults for the next requests."""

    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_slow: float = 0.0
    rate_cut: float = 0.0
    rate_html_504: float = 0.0
    slow_seconds: float = 2.0
    retry_after: int = 1
    operations: set[str] | None = None  # only these operations get faults (None: all)
    script: collections.deque = field(default_factory=collections.deque)
    rng: random.Random = field(default_factory=lambda: random.Random(1234))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self, operation: str | None = None) -> str | None:
        if self.operations is not None and operation not in self.operations:
            return None
        with self.lock:
            if self.script:
                return self.script.popleft()
            roll = self.rng.random()
        for name, rate in (
            ("429", self.rate_429),
            ("503", self.rate_503),
            ("slow", self.rate_slow),
            ("cut", self.rate_cut),
            ("504html", self.rate_html_504),
        ):
            if roll < rate:
                return name
            roll -= rate
        return None

    KINDS = frozenset({"429", "503", "slow", "cut", "504html", "badjson", "403html", "badrow"})

    def queue(self, *faults: str | None) -> None:
        """Answer the next requests with these, in order: 429, 503, slow, cut, 504html, badjson, 403html,
        badrow (a report whose first result lacks its first grouping), or None."""
        unknown = {f for f in faults if f is not None and f not in self.KINDS}
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        with self.lock:
            self.script.extend(faults)


class RateLimiter:
    """Klaviyo's per-account fixed windows: burst (1 s) and steady (60 s), optional daily; time-scalable."""

    def __init__(self, time_scale: float = 1.0, enabled: bool = True):
        self.time_scale = time_scale
        self.enabled = enabled
        self.lock = threading.Lock()
        self.counters: dict[tuple, int] = {}

    def check(self, buckets: list[tuple[str, int, int, int | None]], account: str) -> dict[str, str]:
        """Count one request in every bucket, or raise a 429; returns the RateLimit-* headers."""
        now = time.time()
        burst_w, steady_w = 1.0 * self.time_scale, 60.0 * self.time_scale
        day = dt.datetime.now(UTC).date().isoformat()
        with self.lock:
            if self.enabled:
                wait = 0.0
                for name, burst, steady, daily in buckets:
                    windows = [(burst_w, burst), (steady_w, steady)]
                    for width, limit in windows:
                        slot = math.floor(now / width)
                        if self.counters.get((account, name, width, slot), 0) >= limit:
                            wait = max(wait, (slot + 1) * width - now)
                    if daily is not None and self.counters.get((account, name, "day", day), 0) >= daily:
                        tomorrow = dt.datetime.combine(
                            dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(), UTC
                        )
                        wait = max(wait, (tomorrow - dt.datetime.now(UTC)).total_seconds())
                if wait > 0:
                    seconds = max(1, math.ceil(wait))
                    raise ApiError(
                        429,
                        "throttled",
                        "Request was throttled.",
                        f"Request was throttled. Expected available in {seconds} seconds.",
                        {"pointer": "/data/"},
                        {"Retry-After": str(seconds)},
                    )
            headers: dict[str, str] = {}
            if not self.enabled:
                return headers  # no limits, nothing to describe
            tightest = None
            for name, _burst, steady, daily in buckets:
                for width in (burst_w, steady_w):
                    key = (account, name, width, math.floor(now / width))
                    self.counters[key] = self.counters.get(key, 0) + 1
                if daily is not None:
                    key = (account, name, "day", day)
                    self.counters[key] = self.counters.get(key, 0) + 1
                # The headers describe the steady window of the tightest bucket (the endpoint's, or a stricter
                # parameter's such as predictive_analytics): the one a client must pace itself by.
                slot = math.floor(now / steady_w)
                remaining = max(0, steady - self.counters[(account, name, steady_w, slot)])
                if tightest is None or remaining < tightest[1]:
                    tightest = (steady, remaining)
                    headers = {
                        "RateLimit-Limit": str(steady),
                        "RateLimit-Remaining": str(remaining),
                        "RateLimit-Reset": str(max(0, math.ceil((slot + 1) * steady_w - now))),
                    }
            if len(self.counters) > 50_000:
                self._prune(now, steady_w)
            return headers

    def _prune(self, now: float, steady_w: float) -> None:
        old = [k for k in self.counters if isinstance(k[2], float) and (k[3] + 2) * k[2] < now]
        for k in old:
            del self.counters[k]


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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

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
                raise ApiError(404, "not_found", "Not found.", f"The path {split.path} was not found.")
            op, item_id = found
            operation = op.operation_id
            self._request_info = (method, split, operation)
            key, account = self._authenticate()
            self._account_id = account.account_id
            missing = sim.missing_scopes(key, op)
            if missing:
                raise ApiError(
                    403,
                    "permission_denied",
                    "You do not have permission to perform this action.",
                    f"This API key is missing required scopes: {', '.join(missing)}.",
                    {"pointer": "/data/"},
                )
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
            tiers = {
                (param, value): limits
                for (op_id, param, value), limits in PARAM_TIERS.items()
                if op_id == op.operation_id
            } | op.param_limits
            buckets = [(op.operation_id, op.burst, op.steady, op.daily)]
            for (param, value), (burst, steady) in sorted(tiers.items()):
                if value in params.get(param, "").split(","):
                    buckets.append((f"{op.operation_id}:{value}", burst, steady, None))
            # Each account has its own windows (two Account objects are two accounts, even on one seed).
            limit_headers = sim.limiter.check(buckets, f"{account.account_id}@{id(account):x}")
            fault = sim.faults.next_fault(op.operation_id)
            if fault and self._fault(fault):
                status = {"429": 429, "503": 503, "504html": 504, "403html": 403}.get(fault, 200)
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
                payload = _dispatch(account, op, item_id, params, query, raw_body, self._base())
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
            raise ApiError(
                401,
                "authentication_failed",
                "Incorrect authentication credentials.",
                "Missing or invalid private key.",
                {"pointer": "/data/"},
            )
        if key in self.sim.restricted_keys:
            raise ApiError(
                403,
                "permission_denied",
                "You do not have permission to perform this action.",
                "This API key is missing required scopes.",
                {"pointer": "/data/"},
            )
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
            err = ApiError(
                429,
                "throttled",
                "Request was throttled.",
                f"Request was throttled. Expected available in {self.sim.faults.retry_after} seconds.",
                {"pointer": "/data/"},
                {"Retry-After": str(self.sim.faults.retry_after)},
            )
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
            try:
                import socket

                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return True

    def _admin(self, split, raw_body: bytes) -> int:
        """Hooks over HTTP for a simulator run as its own process: POST /_sim/touch?type=flow&n=3.

        `key=` picks the account a key reads (default: the default account); /_sim/scopes and /_sim/revoke
        act on that key: /_sim/scopes?key=K&scopes=flows:read,events:read (`scopes=*`: every scope again),
        /_sim/revoke?key=K (`restore=1` undoes it)."""
        args = dict(parse_qsl(split.query, keep_blank_values=True))
        key = args.get("key")
        acct = self.sim.account_for(key)
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
def _dispatch(
    account: Account,
    op: Operation,
    item_id: str | None,
    params: dict,
    query: list,
    raw_body: bytes,
    base: str,
) -> dict:
    if op.method == "post":
        return reports.answer(account, op, raw_body, base)  # the handler passes the simulator's options
    if op.operation_id == "get_accounts":
        return _accounts(account, base)
    if op.operation_id == "get_messages_for_campaign":
        return _campaign_messages(account, Renderer(account, base, params), item_id or "", op, query, base)
    resource_type = {
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
        "get_profiles": "profile",
        "get_profile": "profile",
        "get_events": "event",
        "get_event": "event",
    }.get(op.operation_id)
    if resource_type is None:
        raise ApiError(404, "not_found", "Not found.", f"{op.path} is not simulated.")
    renderer = Renderer(account, base, params)
    if item_id is not None:
        return {
            "data": renderer.one(resource_type, item_id),
            "links": {"self": _self_link(base, op, item_id, query)},
        }
    conditions: list[Condition] = []
    if "filter" in params:
        try:
            conditions = parse_filter(params["filter"], op.filters, resource_type)
        except FilterError as exc:
            raise invalid(str(exc), parameter="filter") from None
    elif op.filter_required:
        raise invalid("A 'filter' parameter is required for this endpoint.", parameter="filter")
    size = int(params.get("page[size]", op.page_default or 200))
    cursor = _decode_cursor(params.get("page[cursor]"))
    sort = params.get("sort")
    if resource_type == "event":
        items, next_pos = _events_page(account, conditions, sort, cursor, size)
    elif resource_type == "profile":
        items, next_pos = _profiles_page(account, conditions, sort, cursor, size)
    else:
        items, next_pos = _small_page(account, resource_type, conditions, sort, cursor, size)
    data = [renderer.render(resource_type, item) for item in items]
    payload: dict[str, Any] = {
        "data": data,
        "links": {
            "self": _link(base, op.path, query, None),
            "next": _link(base, op.path, query, _encode_cursor(next_pos)) if next_pos is not None else None,
            "prev": _link(base, op.path, query, _encode_cursor(("prev", cursor)))
            if cursor is not None
            else None,
        },
    }
    if renderer.included:
        payload["included"] = list(renderer.included.values())
    return payload


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
        raise ApiError(404, "not_found", "Not found.", f"A campaign with id {campaign_id} does not exist.")
    data = [renderer.message(m) for m in messages]
    if messages and "campaign" in renderer.include:  # templates and images are not simulated
        renderer.included[("campaign", campaign_id)] = renderer._resource(campaign)
    payload: dict[str, Any] = {"data": data, "links": {"self": _self_link(base, op, campaign_id, query)}}
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


def _encode_cursor(pos: Any) -> str:
    return (
        base64.urlsafe_b64encode(("next::" + json.dumps(pos, separators=(",", ":"))).encode())
        .decode()
        .rstrip("=")
    )


def _decode_cursor(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        kind, _, body = text.partition("::")
        pos = json.loads(body)
        if kind != "next":
            raise ValueError(kind)
    except Exception:  # noqa: BLE001 - any malformed cursor is the client's error
        raise invalid("Invalid page cursor.", parameter="page[cursor]") from None
    if isinstance(pos, list) and pos and pos[0] == "prev":
        return pos[1]
    return pos


def _link(base: str, path: str, query: list[tuple[str, str]], cursor: str | None) -> str:
    pairs = [(k, v) for k, v in query if k != "page[cursor]"]
    if cursor is not None:
        pairs.append(("page[cursor]", cursor))
    qs = urlencode(pairs, quote_via=quote, safe="")
    return f"{base}{path}" + (f"?{qs}" if qs else "")


def _self_link(base: str, op: Operation, item_id: str, query: list) -> str:
    return _link(base, op.path.replace("{id}", item_id), query, None)


# -- listing ---------------------------------------------------------------------------------------------
def _field_value(resource: Resource, name: str) -> Any:
    if name == "id":
        return resource.id
    if name in resource.internal:
        return resource.internal[name]
    value: Any = resource.attributes
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _small_page(
    account: Account, kind: str, conditions: list[Condition], sort: str | None, cursor: Any, size: int
) -> tuple[list[Resource], Any]:
    with account.lock:
        items = list(account.collections[kind])
    if kind in ("campaign", "flow") and not any(c.field == "archived" for c in conditions):
        items = [r for r in items if not r.attributes.get("archived")]
    if kind == "campaign" and not any(c.field == "messages.channel" and c.op == "equals" for c in conditions):
        raise invalid(
            "A filter on 'messages.channel' (equals) is required for campaigns.", parameter="filter"
        )
    items = [r for r in items if all(matches(c, _field_value(r, c.field)) for c in conditions)]
    if sort:
        key = sort.lstrip("-")

        def sort_key(r: Resource) -> tuple:
            v = _field_value(r, key)
            if isinstance(v, str) and key in (
                "created",
                "updated",
                "created_at",
                "updated_at",
                "scheduled_at",
            ):
                v = parse_time(v).timestamp()
            return (v is None, v if v is not None else 0, r.id)

        items.sort(key=sort_key, reverse=sort.startswith("-"))
    else:
        items.sort(key=lambda r: r.id)
    start = 0
    if cursor is not None:
        last_id, offset = cursor
        ids = [r.id for r in items]
        start = ids.index(last_id) + 1 if last_id in ids else offset
    page = items[start : start + size]
    next_pos = [page[-1].id, start + len(page)] if start + size < len(items) and page else None
    return page, next_pos


def _time_bounds(conditions: list[Condition], field_name: str) -> tuple[float, float, bool, bool]:
    """[lo, hi] from comparisons on a time field, as timestamps, with strictness flags."""
    lo, hi, lo_strict, hi_strict = -math.inf, math.inf, False, False
    for c in conditions:
        if c.field != field_name or c.op not in (
            "greater-than",
            "greater-or-equal",
            "less-than",
            "less-or-equal",
        ):
            continue
        v = c.value.timestamp() if isinstance(c.value, dt.datetime) else float(c.value)
        if c.op.startswith("greater") and (v > lo or (v == lo and c.op == "greater-than")):
            lo, lo_strict = v, c.op == "greater-than"
        if c.op.startswith("less") and (v < hi or (v == hi and c.op == "less-than")):
            hi, hi_strict = v, c.op == "less-than"
    return lo, hi, lo_strict, hi_strict


def _events_page(
    account: Account, conditions: list[Condition], sort: str | None, cursor: Any, size: int
) -> tuple[list[int], Any]:
    """A page of events in datetime order: the seeded ones (computed from their index, a window found by
    bisection) merged with the few imported late. Positions are (timestamp, 0 seeded | 1 imported, index)."""
    for c in conditions:
        if c.field == "metric_id" and not any(m.id == c.value for m in account.metrics):
            raise invalid(
                f"'{c.value}' is not a metric of this account: the metric_id filter takes the id of a metric "
                "from /api/metrics (custom metrics are not supported).",
                parameter="filter",
            )
    n = account.total_events
    lo_i, hi_i = 0, n
    bounds = []
    for name in ("datetime", "timestamp"):
        lo, hi, lo_strict, hi_strict = _time_bounds(conditions, name)
        bounds.append((lo, hi, lo_strict, hi_strict))
        if lo > -math.inf:
            lo_i = max(lo_i, account.event_index_at(math.floor(lo) + 1 if lo_strict else math.ceil(lo)))
        if hi < math.inf:
            hi_i = min(hi_i, account.event_index_at(math.ceil(hi) if hi_strict else math.floor(hi) + 1))

    def in_window(ts: int) -> bool:
        return all(
            (ts > lo if lo_s else ts >= lo) and (ts < hi if hi_s else ts <= hi)
            for lo, hi, lo_s, hi_s in bounds
        )

    imported = [k for k in account.imported_keys() if in_window(k[0])]
    others = [c for c in conditions if c.field not in ("datetime", "timestamp")]
    reverse = bool(sort and sort.startswith("-"))
    if cursor is not None:
        try:
            if isinstance(cursor, int):  # a position among the seeded events alone
                if not 0 <= cursor < n:
                    raise ValueError(cursor)
                cursor = (account.event_timestamp(cursor), 0, cursor)
            else:
                cursor = (int(cursor[0]), int(cursor[1]), int(cursor[2]))
        except (TypeError, ValueError, IndexError):
            raise invalid("Invalid page cursor.", parameter="page[cursor]") from None

    def keep(key: tuple[int, int, int]) -> bool:
        i = key[2]
        for c in others:
            if c.field == "metric_id" and not matches(c, account.event_metric_id(i)):
                return False
            if c.field == "profile_id" and not matches(c, account.profile_id(account.event_profile_index(i))):
                return False
        return True

    def seeded(indices: range) -> Iterator[tuple[int, int, int]]:
        return ((account.event_timestamp(i), 0, i) for i in indices)

    if reverse:
        start = hi_i - 1
        if cursor is not None:
            ts, src, idx = cursor
            start = min(start, idx - 1 if src == 0 else account.event_index_at(ts + 1) - 1)
            imported = [k for k in imported if k < cursor]
        keys: Iterator[tuple[int, int, int]] = seeded(range(start, lo_i - 1, -1))
        if imported:
            keys = heapq.merge(keys, reversed(imported), reverse=True)
    else:
        start = lo_i
        if cursor is not None:
            ts, src, idx = cursor
            start = max(start, idx + 1 if src == 0 else account.event_index_at(ts + 1))
            imported = [k for k in imported if k > cursor]
        keys = seeded(range(start, hi_i))
        if imported:
            keys = heapq.merge(keys, imported)
    page = _take(keys, keep, size + 1)
    has_more = len(page) > size
    page = page[:size]
    return [k[2] for k in page], (list(page[-1]) if has_more else None)


def _take(indices: Iterator[Any], keep: Callable[[Any], bool], k: int) -> list[Any]:
    out = []
    for i in indices:
        if keep(i):
            out.append(i)
            if len(out) == k:
                break
    return out


def _index_bounds(
    n: int, conditions: list[Condition], field_name: str, stamp: Callable[[int], float]
) -> tuple[int, int]:
    """[lo, hi) of the indices whose `stamp` (rising with the index) meets the comparisons on a field."""
    lo, hi, lo_strict, hi_strict = _time_bounds(conditions, field_name)
    first = 0
    if lo > -math.inf:
        first = (bisect.bisect_right if lo_strict else bisect.bisect_left)(range(n), lo, key=stamp)
    last = n
    if hi < math.inf:
        last = (bisect.bisect_left if hi_strict else bisect.bisect_right)(range(n), hi, key=stamp)
    return first, last


def _profiles_page(
    account: Account, conditions: list[Condition], sort: str | None, cursor: Any, size: int
) -> tuple[list[int], Any]:
    n = account.counts["profiles"]
    if sort and sort.lstrip("-") not in ("created", "id", "updated"):
        raise invalid(f"Sorting profiles by '{sort}' is not supported by the simulator.", parameter="sort")
    reverse = bool(sort and sort.startswith("-"))
    lo_i, hi_i = _index_bounds(n, conditions, "created", lambda i: account.profile_created(i).timestamp())
    # The base `updated` rises with the index; overridden profiles are checked one by one.
    base_lo, base_hi = _index_bounds(
        n, conditions, "updated", lambda i: account.profile_base_updated(i).timestamp()
    )
    with account.lock:
        overrides = sorted(account.profile_overrides)
    id_values = None
    for c in conditions:
        if c.field == "id":
            vals = c.value if isinstance(c.value, list) else [c.value]
            found = {account.profile_index(v) for v in vals}
            id_values = (
                sorted(i for i in found if i is not None)
                if id_values is None
                else sorted(set(id_values) & found)
            )
    attr_conditions = [c for c in conditions if c.field not in ("id",)]

    def keep(i: int) -> bool:
        if not account.profile_exists(i) or not (lo_i <= i < hi_i):
            return False
        if attr_conditions:
            attrs = None
            for c in attr_conditions:
                if c.field == "updated":
                    actual: Any = account.profile_updated(i)
                elif c.field == "created":
                    actual = account.profile_created(i)
                else:
                    attrs = attrs or account.profile(i)
                    actual = attrs
                    for part in c.field.split("."):
                        actual = actual.get(part) if isinstance(actual, dict) else None
                if not matches(c, actual):
                    return False
        return True

    if id_values is not None:
        candidates: list[int] | range = id_values
        merged: Iterator[int] = iter(candidates)
    else:
        base = range(max(base_lo, lo_i), min(base_hi, hi_i))
        merged = _unique(heapq.merge(base, overrides))
    if reverse:
        pool = [i for i in merged if cursor is None or i < cursor]
        pool.reverse()
        indices: Iterator[int] = iter(pool)
    else:
        indices = (i for i in merged if cursor is None or i > cursor)
    page = _take(indices, keep, size + 1)
    has_more = len(page) > size
    page = page[:size]
    return page, (page[-1] if has_more else None)


def _unique(it: Iterator[int]) -> Iterator[int]:
    last = None
    for i in it:
        if i != last:
            yield i
            last = i


# -- rendering -----------------------------------------------------------------------------------------
class Renderer:
    """Turns held or computed records into JSON:API resources, collecting `included`."""

    def __init__(self, account: Account, base: str, params: dict[str, str]):
        self.account = account
        self.base = base
        self.include = set(params["include"].split(",")) if "include" in params else set()
        self.fields = {
            k[len("fields[") : -1]: v.split(",") for k, v in params.items() if k.startswith("fields[")
        }
        self.additional = {
            v for k, val in params.items() if k.startswith("additional-fields[") for v in val.split(",")
        }
        self.included: dict[tuple[str, str], dict] = {}

    def _links(self, kind: str, rid: str, rel: str) -> dict:
        return {
            "self": f"{self.base}/api/{kind}s/{rid}/relationships/{rel}/",
            "related": f"{self.base}/api/{kind}s/{rid}/{rel}/",
        }

    def _sparse(self, kind: str, attrs: dict) -> dict:
        wanted = self.fields.get(kind)
        if not wanted:
            return attrs
        tops = {w.split(".")[0] for w in wanted}
        return {k: v for k, v in attrs.items() if k in tops}

    def render(self, kind: str, item: Any) -> dict:
        if kind == "event":
            return self._event(item)
        if kind == "profile":
            return self._profile(item)
        return self._resource(item)

    def one(self, kind: str, rid: str) -> dict:
        if kind == "event":
            i = self.account.event_index(rid)
            if i is None:
                raise ApiError(404, "not_found", "Not found.", f"Event {rid} was not found.")
            return self._event(i)
        if kind == "profile":
            i = self.account.profile_index(rid)
            if i is None or not self.account.profile_exists(i):
                raise ApiError(404, "not_found", "Not found.", f"Profile {rid} was not found.")
            return self._profile(i)
        with self.account.lock:
            resource = self.account.by_id.get((kind, rid))
        if resource is None:
            raise ApiError(404, "not_found", "Not found.", f"A {kind} with id {rid} does not exist.")
        out = self._resource(resource)
        if "profile_count" in self.additional and "profile_count" in resource.internal:
            out["attributes"]["profile_count"] = resource.internal["profile_count"]
        if kind == "form":
            out["attributes"]["definition"] = {
                "versions": [
                    {
                        "id": int(v),
                        "steps": [{"id": f"step-{v}", "name": "Step 1", "columns": []}],
                        "triggers": [],
                    }
                    for _, v in resource.relationships.get("form-versions", [])
                ]
            }
        if "definition" in self.additional and kind == "flow":
            out["attributes"]["definition"] = {"triggers": [], "profile_filter": None, "actions": []}
        return out

    def _resource(self, r: Resource) -> dict:
        kind = r.type
        attrs = json.loads(json.dumps(r.attributes)) if r.type == "campaign" else dict(r.attributes)
        out: dict[str, Any] = {"type": kind, "id": r.id, "attributes": self._sparse(kind, attrs)}
        rel_names = {
            "campaign": ["campaign-messages", "tags"],
            "flow": ["flow-actions", "tags"],
            "form": ["form-versions"],
            "segment": ["profiles", "tags", "flow-triggers"],
            "list": ["profiles", "tags", "flow-triggers"],
            "metric": ["flow-triggers"],
            "tag": ["tag-group", "lists", "segments", "campaigns", "flows"],
        }[kind]
        relationships = {}
        for rel in rel_names:
            body: dict[str, Any] = {"links": self._links(kind, r.id, rel)}
            if rel in self.include:
                if rel == "tag-group":
                    group = r.internal.get("tag_group", "group-0")
                    body["data"] = {"type": "tag-group", "id": group}
                    self.included[("tag-group", group)] = {
                        "type": "tag-group",
                        "id": group,
                        "attributes": {
                            "name": group.replace("-", " ").title(),
                            "exclusive": False,
                            "default": group == "group-0",
                        },
                        "links": {"self": f"{self.base}/api/tag-groups/{group}/"},
                    }
                else:
                    body["data"] = [{"type": t, "id": i} for t, i in r.relationships.get(rel, [])]
                    for t, i in r.relationships.get(rel, []):
                        self._include(t, i, r)
            relationships[rel] = body
        out["relationships"] = relationships
        out["links"] = {"self": f"{self.base}/api/{kind}s/{r.id}/"}
        return out

    def _include(self, kind: str, rid: str, owner: Resource) -> None:
        if (kind, rid) in self.included:
            return
        if kind == "tag":
            tag = self.account.by_id.get(("tag", rid))
            if tag:
                self.included[(kind, rid)] = {
                    "type": "tag",
                    "id": rid,
                    "attributes": {"name": tag.attributes["name"]},
                    "links": {"self": f"{self.base}/api/tags/{rid}/"},
                }
        elif kind == "campaign-message":
            message = self.account.by_id.get((kind, rid))
            if message is not None:
                self.included[(kind, rid)] = self.message(message)

    def message(self, r: Resource) -> dict:
        """A campaign message: its attributes (sparse fieldsets apply) and its campaign, template and image."""
        attrs = json.loads(json.dumps(r.attributes))
        relationships = {}
        for rel in ("campaign", "template", "image"):
            body: dict[str, Any] = {"links": self._links("campaign-message", r.id, rel)}
            linked = r.relationships.get(rel)
            omitted = rel == "template" and r.internal.get("omit_template_data") and rel not in self.include
            if linked and not omitted:
                body["data"] = {"type": linked[0][0], "id": linked[0][1]}
            relationships[rel] = body
        return {
            "type": "campaign-message",
            "id": r.id,
            "attributes": self._sparse("campaign-message", attrs),
            "relationships": relationships,
            "links": {"self": f"{self.base}/api/campaign-messages/{r.id}/"},
        }

    def _event(self, i: int) -> dict:
        attrs, metric_id, profile_id = self.account.event(i)
        eid = self.account.event_id(i)
        base = self.base
        out: dict[str, Any] = {
            "type": "event",
            "id": eid,
            "attributes": self._sparse("event", attrs),
            "relationships": {
                "profile": {
                    "data": {"type": "profile", "id": profile_id},
                    "links": {
                        "self": f"{base}/api/events/{eid}/relationships/profile/",
                        "related": f"{base}/api/events/{eid}/profile/",
                    },
                },
                "metric": {
                    "data": {"type": "metric", "id": metric_id},
                    "links": {
                        "self": f"{base}/api/events/{eid}/relationships/metric/",
                        "related": f"{base}/api/events/{eid}/metric/",
                    },
                },
                "attributions": {
                    "data": [],
                    "links": {
                        "self": f"{base}/api/events/{eid}/relationships/attributions/",
                        "related": f"{base}/api/events/{eid}/attributions/",
                    },
                },
            },
            "links": {"self": f"{base}/api/events/{eid}/"},
        }
        if self.account.event_omits_relationship_data(i):
            # Linkage is optional in the spec: only links, unless the relationship was asked for with include=.
            for rel in ("metric", "profile"):
                if rel not in self.include:
                    del out["relationships"][rel]["data"]
        if "metric" in self.include and ("metric", metric_id) not in self.included:
            self.included[("metric", metric_id)] = self._resource(self.account.by_id[("metric", metric_id)])
        if "profile" in self.include and ("profile", profile_id) not in self.included:
            idx = self.account.profile_index(profile_id)
            if idx is not None:
                self.included[("profile", profile_id)] = self._profile(idx, with_relationships=False)
        return out

    def _profile(self, i: int, with_relationships: bool = True) -> dict:
        pid = self.account.profile_id(i)
        attrs = self.account.profile(i, frozenset(self.additional))
        out: dict[str, Any] = {"type": "profile", "id": pid, "attributes": self._sparse("profile", attrs)}
        if with_relationships:
            out["relationships"] = {
                rel: {
                    "links": {
                        "self": f"{self.base}/api/profiles/{pid}/relationships/{rel}/",
                        "related": f"{self.base}/api/profiles/{pid}/{rel}/",
                    }
                }
                for rel in ("lists", "segments", "push-tokens", "conversations")
            }
        out["links"] = {"self": f"{self.base}/api/profiles/{pid}/"}
        return out
