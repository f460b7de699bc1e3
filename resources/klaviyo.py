"""The Klaviyo client every asset uses, and the Dagster resource that hands it out.

`requests.Session` with the private key and the pinned revision; pages follow `links.next` verbatim; a rate
budget shared across threads and processes; tenacity retries on 429 (honouring Retry-After), 5xx, timeouts,
cut connections and bodies that are not JSON; immediate, descriptive errors on 4xx. The API key never
appears in a message, log line, repr or metadata.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import requests
import tenacity
from pydantic import Field, PrivateAttr

from resources import settings
from resources.accounts import Account
from resources.catalogue import ENDPOINTS, SORTS_BY_UPDATE, scope_for
from resources.klaviyo_api import (
    ACCOUNTS_PATH,
    ACCOUNTS_TIER,
    REPORT_ENDPOINTS,
    Cond,
    Endpoint,
    FilterNotAllowed,
    UnsupportedRevision,
    build_filter,
    check_revision,
    parse_timestamp,
    window_conditions,
)
from resources.ratelimit import RateBudget, RedisRateBudget, Tier, shared_budget

log = logging.getLogger(__name__)
UTC = dt.UTC
Limits = Sequence[tuple[str, Tier]]  # (bucket, tier) pairs one request spends

__all__ = [
    "AccountInfo",
    "FilterNotAllowed",
    "KlaviyoApiError",
    "KlaviyoClient",
    "KlaviyoResource",
    "Page",
    "QuotaExhausted",
    "UnsupportedRevision",
]


class KlaviyoError(RuntimeError):
    """Base of the client's errors."""


class KlaviyoApiError(KlaviyoError):
    """Klaviyo refused a request (4xx): endpoint, status, and Klaviyo's own code, detail and source. A 401 or
    403 also says what to fix: the key, or the scope this endpoint needs (`scope`)."""

    def __init__(
        self, method: str, endpoint: str, status: int, code: str | None, detail: str, source: Any = None
    ):
        self.method, self.endpoint, self.status = method, endpoint, status
        self.code, self.detail, self.source = code, detail, source
        self.scope = scope_for(endpoint)
        where = f" (source: {source})" if source else ""
        super().__init__(
            f"Klaviyo {method} {endpoint} answered {status} {code or ''}: {detail}{where}".replace("  ", " ")
            + self.hint()
        )

    @property
    def unauthorized(self) -> bool:
        """The key itself was refused (401) or lacks a permission (403): no retry can help."""
        return self.status in (401, 403)

    def hint(self) -> str:
        if self.status == 401:
            return "; the API key was refused: check KLAVIYO_API_KEY (a private key, pk_...)"
        if self.status == 403 and self.scope:
            return (
                f"; the API key lacks the scope {self.scope} (add it to the key in Klaviyo, or run "
                "`klaviyo-pipeline check` to list every scope the enabled assets need)"
            )
        return ""


class QuotaExhausted(KlaviyoError):
    """A quota that resets far in the future (the reporting API's daily 225): stop now, say when it resets."""

    def __init__(self, endpoint: str, retry_after: float):
        self.endpoint = endpoint
        self.retry_after = retry_after
        self.resets_at = dt.datetime.now(UTC) + dt.timedelta(seconds=retry_after)
        super().__init__(
            f"Klaviyo {endpoint}: quota exhausted; it resets in {retry_after:.0f} s "
            f"(at {self.resets_at:%Y-%m-%d %H:%M:%S} UTC). Not waiting."
        )


class _Retryable(Exception):
    """A failure worth another try."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class EndpointStats:
    calls: int = 0
    retries: int = 0
    throttled: int = 0
    throttled_seconds: float = 0.0


@dataclass
class ApiStats:
    """Calls, retries, 429s and seconds spent waiting, per endpoint (thread-safe)."""

    per_endpoint: dict[str, EndpointStats] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, endpoint: str, **deltas: float) -> None:
        with self.lock:
            stats = self.per_endpoint.setdefault(endpoint, EndpointStats())
            for k, v in deltas.items():
                setattr(stats, k, getattr(stats, k) + v)

    def totals(self) -> EndpointStats:
        with self.lock:
            out = EndpointStats()
            for s in self.per_endpoint.values():
                out.calls += s.calls
                out.retries += s.retries
                out.throttled += s.throttled
                out.throttled_seconds += s.throttled_seconds
            return out

    def as_metadata(self) -> dict[str, Any]:
        t = self.totals()
        with self.lock:
            per = {k: vars(v).copy() for k, v in self.per_endpoint.items()}
        return {
            "api_calls": t.calls,
            "api_retries": t.retries,
            "api_throttled": t.throttled,
            "api_throttled_seconds": round(t.throttled_seconds, 3),
            "api_per_endpoint": per,
        }


@dataclass
class Page:
    """One page of a listing: resources, `included` by (type, id), and the pass it belongs to."""

    records: list[dict[str, Any]]
    included: dict[tuple[str, str], dict[str, Any]]
    context: dict[str, Any]
    received: int  # records on the page before the client-side window filter


@dataclass(frozen=True)
class AccountInfo:
    """The account a key reads (GET /api/accounts): its id, and the time zone its reports count days in."""

    id: str
    timezone: str = "UTC"


class KlaviyoClient:
    """Reads one Klaviyo account."""

    def __init__(
        self,
        api_key: str,
        base_url: str = settings.DEFAULT_BASE_URL,
        revision: str = settings.DEFAULT_REVISION,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 300.0,
        now_margin: float = 5.0,
        budget: RateBudget | RedisRateBudget | None = None,
        stats: ApiStats | None = None,
        account: AccountInfo | None = None,
        rate_time_scale: float = 1.0,
    ):
        if not api_key:
            raise KlaviyoError("no Klaviyo API key given (set KLAVIYO_API_KEY)")
        self.base_url = base_url.rstrip("/")
        self.revision = check_revision(revision)
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.max_retry_after = max_retry_after
        self.now_margin = now_margin
        account_key = hashlib.sha256(f"{self.base_url}\0{api_key}".encode()).hexdigest()[:16]
        self.budget = budget or shared_budget(account_key, time_scale=rate_time_scale)
        self.stats = stats or ApiStats()
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Klaviyo-API-Key {api_key}",
                "revision": revision,
                "Accept": "application/vnd.api+json",
                "User-Agent": "klaviyo-pipeline/0.1",
            }
        )
        self._account = account  # known already, or looked up on first use

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self.base_url!r}, revision={self.revision!r})"

    def close(self) -> None:
        self._session.close()

    # -- one request -------------------------------------------------------------------------------
    def _endpoint_name(self, url: str) -> str:
        """The endpoint's path template (ids replaced), for stats and messages."""
        path = urlsplit(url).path.rstrip("/")
        parts = path.split("/")
        if len(parts) >= 4 and parts[1] == "api":
            parts[3] = "{id}"
        return "/".join(parts)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict | None = None,
        json_body: Any = None,
        limits: Limits,
    ) -> dict[str, Any]:
        """Send one request through the budget (a slot in every (bucket, tier) of `limits`) with retries; the
        decoded JSON body. A 4xx is never retried: it raises KlaviyoApiError at once."""
        endpoint = self._endpoint_name(url)
        attempts = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            before_sleep=lambda state: self._before_retry(endpoint, state),
            reraise=True,
        )
        try:
            for attempt in attempts:
                with attempt:
                    return self._once(method, url, params, json_body, limits, endpoint)
        except _Retryable as exc:
            raise KlaviyoError(
                f"Klaviyo {method} {endpoint}: gave up after {self.max_attempts} attempts: {exc}"
            ) from None
        raise AssertionError("unreachable")

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            # The budget holds every client back until Retry-After has passed; add jitter on top.
            return random.uniform(0, 0.25)
        return min(self.backoff_cap, self.backoff_base * 2 ** (state.attempt_number - 1)) * random.uniform(
            0.5, 1.5
        )

    def _before_retry(self, endpoint: str, state: tenacity.RetryCallState) -> None:
        self.stats.add(endpoint, retries=1)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None and state.next_action is not None:
            self.stats.add(endpoint, throttled_seconds=state.next_action.sleep)
        log.warning("Klaviyo %s: retrying (attempt %d): %s", endpoint, state.attempt_number + 1, exc)

    def _once(self, method, url, params, json_body, limits: Limits, endpoint: str) -> dict[str, Any]:
        waited = sum(self.budget.acquire(bucket, tier) for bucket, tier in limits)
        bucket = limits[0][0]
        if waited:
            self.stats.add(endpoint, throttled_seconds=waited)
        self.stats.add(endpoint, calls=1)
        try:
            response = self._session.request(method, url, params=params, json=json_body, timeout=self.timeout)
            body_bytes = response.content
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"{type(exc).__name__}") from None
        status = response.status_code
        if status == 429:
            self.stats.add(endpoint, throttled=1)
            retry_after = _retry_after(response)
            if retry_after > self.max_retry_after:
                raise QuotaExhausted(endpoint, retry_after)
            for blocked, _tier in limits:
                self.budget.block(blocked, retry_after)
            raise _Retryable(f"429 throttled, Retry-After {retry_after:.0f} s", retry_after=retry_after)
        if status >= 500:
            raise _Retryable(f"HTTP {status}{_html_note(response)}")
        if status >= 400:
            raise _client_error(method, endpoint, response)
        if status == 204:
            return {}  # No Content: a success without a body (e.g. DELETE /api/webhooks/{id})
        try:
            body = response.json()
        except ValueError:
            raise _Retryable(
                f"HTTP {status} with a body that is not JSON ({len(body_bytes)} bytes)"
            ) from None
        remaining = _int_header(response, "RateLimit-Remaining")
        reset = _int_header(response, "RateLimit-Reset")
        self.budget.observe(bucket, remaining, reset)
        return body

    # -- listings ----------------------------------------------------------------------------------
    def iter_pages(
        self,
        endpoint: Endpoint,
        params: dict[str, str] | None = None,
        context: dict[str, Any] | None = None,
        keep: Any = None,
        additional_fields: Iterable[str] = (),
    ) -> Iterator[Page]:
        """Pages of a listing, following `links.next` verbatim until it is null or absent."""
        url: str | None = self.base_url + endpoint.path
        first = True
        seen_urls: set[str] = set()
        limits = endpoint.tiers_for(additional_fields)
        while url:
            body = self.request("GET", url, params=params if first else None, limits=limits)
            first = False
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise KlaviyoError(f"Klaviyo GET {endpoint.path}: the response has no 'data' list")
            data = body["data"]
            included = {
                (r.get("type"), r.get("id")): r for r in body.get("included") or [] if isinstance(r, dict)
            }
            records = [r for r in data if keep(r)] if keep else data
            yield Page(records, included, dict(context or {}), len(data))
            next_url = (body.get("links") or {}).get("next")
            if next_url and next_url in seen_urls:
                raise KlaviyoError(f"Klaviyo GET {endpoint.path}: the cursor did not advance")
            if next_url:
                seen_urls.add(next_url)
            url = next_url

    def live_bounds(
        self, start: dt.datetime | None, end: dt.datetime | None
    ) -> tuple[dt.datetime | None, dt.datetime | None] | None:
        """Bounds that are safe to ask for: Klaviyo rejects bounds near now, so an end later than now minus a
        margin is dropped (the window stays open: future-dated records are read too), and a window that starts
        after that is not read at all (None)."""
        limit = dt.datetime.now(UTC) - dt.timedelta(seconds=self.now_margin)
        if start is not None and start >= limit:
            return None
        return start, (None if end is None or end > limit else end)

    def list_window(
        self,
        entity: str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        *,
        filters: Iterable[Cond] = (),
        include: Iterable[str] = (),
        additional_fields: Iterable[str] = (),
        page_size: int | None = None,
        sort: str | None = None,
    ) -> Iterator[Page]:
        """Every record of an entity whose timestamp lies in [start, end), across the passes the entity needs
        (campaigns per channel and archived state, flows per archived state)."""
        endpoint = ENDPOINTS[entity]
        if endpoint.updated_field is not None:
            bounds = self.live_bounds(start, end)
            if bounds is None:
                return
            start, end = bounds
        base = list(filters) + window_conditions(endpoint, start, end)
        fname = endpoint.updated_field

        def keep(record: dict[str, Any]) -> bool:
            if fname is None or (start is None and end is None):
                return True
            try:
                stamp = parse_timestamp((record.get("attributes") or {}).get(fname))
            except ValueError:
                return True  # let the transform report an unparseable timestamp rather than drop the record
            if stamp is None:
                return True
            return (start is None or stamp >= start) and (end is None or stamp < end)

        size = page_size or endpoint.page_size
        for conds, ctx in _passes(endpoint):
            params = _list_params(endpoint, conds + base, size, include, additional_fields, sort)
            yield from self.iter_pages(endpoint, params, ctx, keep, additional_fields)

    def list_under(self, entity: str, parent_id: str) -> Iterator[Page]:
        """Every record of a nested entity under one parent record (e.g. GET /api/flow-actions/{id}/flow-messages),
        at the endpoint's largest page. A parent Klaviyo no longer has answers 404 (KlaviyoApiError)."""
        endpoint = ENDPOINTS[entity]
        params = _list_params(endpoint, [], endpoint.page_size, (), (), None)
        yield from self.iter_pages(endpoint.under(parent_id), params)

    def newest_update(self, entity: str) -> dt.datetime | None:
        """The newest timestamp of an entity: one request per pass where the API sorts newest first,
        otherwise (metrics) one listing."""
        endpoint = ENDPOINTS[entity]
        fname = endpoint.updated_field
        if fname is None:
            return None
        sortable = entity in SORTS_BY_UPDATE
        newest: dt.datetime | None = None
        # Bounded at now where the field allows it, so a future-dated record (events) is not "newest" forever.
        limit = dt.datetime.now(UTC) - dt.timedelta(seconds=self.now_margin)
        bound = window_conditions(endpoint, None, limit.replace(microsecond=0))
        for conds, ctx in _passes(endpoint):
            if sortable:
                params = _list_params(endpoint, conds + bound, 1, (), (), f"-{fname}")
                pages: Iterable[Page] = [next(self.iter_pages(endpoint, params, ctx))]
            else:
                pages = self.iter_pages(endpoint, _list_params(endpoint, conds, None, (), (), None), ctx)
            for page in pages:
                for record in page.records:
                    try:
                        stamp = parse_timestamp((record.get("attributes") or {}).get(fname))
                    except ValueError:
                        continue
                    if stamp is not None and stamp <= limit and (newest is None or stamp > newest):
                        newest = stamp
        return newest

    def probe(self, entity: str, include: Iterable[str] = ()) -> int:
        """The smallest request an entity's listing allows (one record of its first pass, one page): proves the
        key may read it. Returns how many records came back; a refusal raises KlaviyoApiError."""
        endpoint = ENDPOINTS[entity]
        conds, ctx = _passes(endpoint)[0]
        params = _list_params(endpoint, conds, 1, include, (), None)
        return len(next(self.iter_pages(endpoint, params, ctx)).records)

    def get_resource(
        self, entity: str, record_id: str, additional_fields: Iterable[str] = ()
    ) -> dict[str, Any]:
        endpoint = ENDPOINTS[entity]
        params = {}
        extra = list(additional_fields)
        if extra:
            params[f"additional-fields[{endpoint.type}]"] = ",".join(extra)
        # A GET by id has its own counters, apart from the listing's.
        limits = [(f"{bucket}-get", tier) for bucket, tier in endpoint.tiers_for(extra)]
        body = self.request(
            "GET", f"{self.base_url}{endpoint.path}/{record_id}", params=params, limits=limits
        )
        return body["data"]

    def account(self) -> AccountInfo:
        """The account behind the key: id and time zone (GET /api/accounts, scope accounts:read; cached)."""
        if self._account is None:
            body = self.request("GET", self.base_url + ACCOUNTS_PATH, limits=[("accounts", ACCOUNTS_TIER)])
            try:
                first = body["data"][0]
                account_id = first["id"]
            except (KeyError, IndexError, TypeError):
                raise KlaviyoError(f"Klaviyo GET {ACCOUNTS_PATH}: no account in the response") from None
            timezone = (first.get("attributes") or {}).get("timezone") or "UTC"
            self._account = AccountInfo(str(account_id), str(timezone))
        return self._account

    def account_id(self) -> str:
        """The account's id."""
        return self.account().id

    def report_page(
        self, kind: str, attributes: dict[str, Any], url: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """POST one page of a Reporting API query (1/s, 2/min, 225/day per account): the response's data,
        and the URL of the next page (`links.next`, POSTed with the same body) or None on the last page."""
        report = REPORT_ENDPOINTS[kind]
        body = {"data": {"type": f"{kind}-report", "attributes": attributes}}
        answer = self.request(
            "POST", url or self.base_url + report.path, json_body=body, limits=[("reports", report.tier)]
        )
        if not isinstance(answer, dict):
            raise KlaviyoError(f"Klaviyo POST {report.path}: the response is not a JSON object")
        next_url = (answer.get("links") or {}).get("next") if isinstance(answer.get("links"), dict) else None
        if next_url is not None and (not isinstance(next_url, str) or next_url == url):
            raise KlaviyoError(f"Klaviyo POST {report.path}: the report's next page link does not advance")
        return answer.get("data"), next_url


def _passes(endpoint: Endpoint) -> list[tuple[list[Cond], dict[str, Any]]]:
    """The listings an entity needs: campaigns per channel and archived state, flows per archived state."""
    passes: list[tuple[list[Cond], dict[str, Any]]] = [([], {})]
    if endpoint.channel_passes:
        passes = [
            ([Cond("equals", "messages.channel", ch)], {"channel": ch}) for ch in endpoint.channel_passes
        ]
    if endpoint.archived_passes:
        passes = [
            (conds + [Cond("equals", "archived", flag)], {**ctx, "archived": flag})
            for conds, ctx in passes
            for flag in (False, True)
        ]
    return passes


def _list_params(
    endpoint: Endpoint,
    conditions: list[Cond],
    size: int | None,
    include: Iterable[str],
    additional_fields: Iterable[str],
    sort: str | None,
) -> dict[str, str]:
    params: dict[str, str] = {}
    filter_text = build_filter(endpoint, conditions)
    if filter_text:
        params["filter"] = filter_text
    if size is not None and endpoint.page_size is not None:
        params["page[size]"] = str(min(size, endpoint.page_size))
    if include:
        params["include"] = ",".join(include)
    if additional_fields:
        params[f"additional-fields[{endpoint.type}]"] = ",".join(additional_fields)
    if sort:
        params["sort"] = sort
    return params


def _retry_after(response: requests.Response) -> float:
    raw = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 1.0


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def _html_note(response: requests.Response) -> str:
    ctype = response.headers.get("Content-Type", "")
    return f" (an HTML page, {ctype})" if "html" in ctype else ""


def _client_error(method: str, endpoint: str, response: requests.Response) -> KlaviyoApiError:
    ctype = response.headers.get("Content-Type", "")
    status = response.status_code
    if "json" not in ctype:
        challenge = (
            " (cf-mitigated: challenge: a Cloudflare challenge page)"
            if response.headers.get("cf-mitigated")
            else ""
        )
        return KlaviyoApiError(
            method,
            endpoint,
            status,
            None,
            f"an HTML/non-JSON page ({ctype or 'no content type'}) instead of JSON{challenge}",
        )
    try:
        errors = response.json().get("errors") or [{}]
        first = errors[0]
    except (ValueError, AttributeError):
        first = {}
    return KlaviyoApiError(
        method,
        endpoint,
        status,
        first.get("code"),
        first.get("detail") or first.get("title") or response.reason,
        first.get("source") or None,
    )


class KlaviyoResource(dg.ConfigurableResource):
    """Klaviyo API access for the assets. The key comes from the environment and is never shown."""

    api_key: str = Field(
        default="",
        description="Private API key (pk_...); use dg.EnvVar('KLAVIYO_API_KEY'). With an accounts file, each "
        "account's key comes from the variable the file names for it instead.",
    )
    # Host, revision and time scale left unset are read from the environment when a client is made, not when the
    # definitions load: the job's snapshot then does not depend on where the simulator listens, and a run started
    # by the CLI matches the job the UI loads (no "may be a different version" on re-execution).
    base_url: str | None = Field(
        default=None, description="API host; unset: KLAVIYO_BASE_URL, else https://a.klaviyo.com."
    )
    revision: str | None = Field(
        default=None, description="Pinned API revision header; unset: KLAVIYO_REVISION, else the pinned one."
    )
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = Field(default=6, description="Tries per request (first included).")
    max_retry_after: float = Field(default=300.0, description="A longer Retry-After is a quota: fail fast.")
    rate_time_scale: float | None = Field(
        default=None,
        gt=0,
        description="Shrinks the client's rate windows to match a time-scaled simulator; unset: "
        "KLAVIYO_RATE_TIME_SCALE, else 1.0 (Klaviyo).",
    )

    _accounts: dict = PrivateAttr(default_factory=dict)  # AccountInfo by declared account name

    def fresh_client(self, account: Account | None = None) -> KlaviyoClient:
        """A client with its own stats (one per materialization) for one declared account (resources/accounts.py;
        None: the key of `api_key`); each account is looked up once. A key Klaviyo refuses (401, or 403 for lack
        of accounts:read) raises KlaviyoApiError here; an account whose key variable is unset, AccountsError."""
        name = account.name if account is not None else None
        client = KlaviyoClient(
            account.api_key() if account is not None else self.api_key,
            base_url=self.base_url or settings.base_url(),
            revision=self.revision or settings.revision(),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_attempts=self.max_attempts,
            max_retry_after=self.max_retry_after,
            account=self._accounts.get(name),
            rate_time_scale=self.rate_time_scale or settings.rate_time_scale(),
        )
        try:
            self._accounts[name] = client.account()
        except BaseException:
            client.close()
            raise
        return client

    def account(self, account: Account | None = None) -> AccountInfo:
        """The account (id, time zone), looked up once (by the first client this resource hands out for it)."""
        name = account.name if account is not None else None
        if name not in self._accounts:
            self.fresh_client(account).close()
        return self._accounts[name]

    def account_id(self, account: Account | None = None) -> str:
        return self.account(account).id
