"""The webhook receiver (a Starlette app served by uvicorn) and the `klaviyo-pipeline webhooks` commands.

POST /klaviyo/webhooks takes a Klaviyo system webhook delivery (resources/webhooks.py says what Klaviyo sends and
where that comes from) and answers:
- 200 once the delivery and its events are committed to the inbox (a redelivered event adds no second row;
  an event of an unknown topic is stored, flagged, and never loaded);
- 401 when a signature header is missing, the signature or the webhook id does not match, or
  Klaviyo-Timestamp lies more than TIMESTAMP_TOLERANCE from now;
- 400 when a signed body is not JSON or not Klaviyo's envelope;
- 413 when the body is over MAX_BODY_BYTES (by Content-Length, or counted while it streams in);
- 503 when the warehouse cannot store it (Klaviyo sends it again).
No refused request writes a row; the body and the secret never reach a log line or a response.
GET /healthz answers 200 while the warehouse answers, 503 otherwise.

With `webhooks serve --load` (the default) each committed delivery also wakes an `InboxLoader`: one thread in
the receiver's process that loads the inbox into klaviyo_events with `drain_inbox`, the drain the
klaviyo/webhook_events asset runs, so an event lands about a second after Klaviyo sends it rather than at the
sensor's next run (a tick every 5 s at best, then the launch of a Dagster run). Both claim inbox rows
FOR UPDATE SKIP LOCKED, so they never load the same rows; what the loader cannot load stays pending for its
next try and for the sensor's runs. `--no-load` leaves the inbox to the asset alone.

The secret is KLAVIYO_WEBHOOK_SECRET (the webhook's secret_key at Klaviyo; `webhooks register` sets it from the
same variable), the warehouse WAREHOUSE_URL. Klaviyo sends only to https URLs: put the receiver behind a TLS
proxy and register the proxy's URL.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

# The receiver's modules (Starlette, the warehouse, hence Dagster) are imported where they are used: the CLI
# builds its parser from this module, and `klaviyo-pipeline --help` should not wait for them.
if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request

    from assets.webhook_events import DrainOutcome
    from resources.warehouse import Warehouse

RECEIVE_PATH = "/klaviyo/webhooks"
HEALTH_PATH = "/healthz"
SECRET_ENV = "KLAVIYO_WEBHOOK_SECRET"
DEFAULT_WEBHOOK_NAME = "klaviyo-pipeline"
log = logging.getLogger("klaviyo_pipeline.webhooks")


# -- loading in the receiver's process -----------------------------------------------------------------------
class InboxLoader:
    """One background thread that loads pending inbox events into klaviyo_events (`drain_inbox`) whenever it is
    woken, and once when it starts (what an earlier process left pending). Wakes that come while it loads are
    folded into one more pass. A failed pass is logged and tried again after `retry_seconds`; its events stay
    pending meanwhile, for it and for the klaviyo/webhook_events asset. Loaded inbox rows older than
    `keep_loaded_days` are purged at most every `purge_every` seconds, as the asset does after its runs."""

    def __init__(
        self,
        warehouse: Warehouse,
        *,
        retry_seconds: float = 5.0,
        keep_loaded_days: int | None = None,
        purge_every: float = 3600.0,
        drain: Callable[..., DrainOutcome] | None = None,
    ):
        from assets.webhook_events import KEEP_LOADED_DAYS, drain_inbox

        self.warehouse = warehouse
        self.retry_seconds = retry_seconds
        self.keep_loaded_days = KEEP_LOADED_DAYS if keep_loaded_days is None else keep_loaded_days
        self.purge_every = purge_every
        self._drain = drain or drain_inbox
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_purge = float("-inf")
        # What it did (for tests and a debugger; the log says it as it happens).
        self.passes = 0
        self.loaded = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> InboxLoader:
        """Start the thread (once); its first pass loads whatever is pending."""
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="klaviyo-inbox-loader", daemon=True)
                self._wake.set()
                self._thread.start()
        return self

    def wake(self) -> None:
        """Ask for a pass (a delivery was committed)."""
        self._wake.set()
        if self._thread is None:
            self.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch under way (its transaction commits or rolls back whole) and end the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        retry_in: float | None = None
        while True:
            self._wake.wait(retry_in)
            if self._stopping.is_set():
                return
            # Cleared before the pass: a delivery committed from here on wakes it for one more.
            self._wake.clear()
            try:
                self._pass()
            except Exception as exc:  # noqa: BLE001 - the rows stay pending; the next pass (or the asset) loads them
                self.failures += 1
                self.last_error = _short(exc)
                log.error(
                    "could not load the inbox into klaviyo_events (trying again in %.0f s; the events stay "
                    "pending): %s",
                    self.retry_seconds,
                    self.last_error,
                )
                retry_in = self.retry_seconds
                continue
            retry_in = None
            self.last_error = None
            self._purge_when_due()

    def _pass(self) -> None:
        """Load batch after batch until none is pending (or the loader is stopped between two batches)."""
        began, loaded, inserted, rejected = time.monotonic(), 0, 0, 0
        while not self._stopping.is_set():
            outcome = self._drain(self.warehouse, log=log, max_batches=1)
            if not outcome.batches:
                break
            loaded += outcome.loaded
            inserted += outcome.counts.inserted
            rejected += len(outcome.rejected)
            self.loaded += outcome.loaded
        self.passes += 1
        if loaded or rejected:
            log.info(
                "loaded %d inbox events into klaviyo_events (%d new rows, %d rejected) in %.2f s",
                loaded,
                inserted,
                rejected,
                time.monotonic() - began,
            )

    def _purge_when_due(self) -> None:
        if not self.keep_loaded_days or time.monotonic() - self._last_purge < self.purge_every:
            return
        from assets.webhook_events import purge_inbox

        self._last_purge = time.monotonic()
        try:
            events, deliveries = purge_inbox(self.warehouse, self.keep_loaded_days)
        except Exception as exc:  # noqa: BLE001 - retention can wait for the next pass
            log.warning("could not purge loaded inbox rows: %s", _short(exc))
            return
        if events or deliveries:
            log.info("purged %d loaded inbox rows and %d deliveries", events, deliveries)


# -- the receiver ---------------------------------------------------------------------------------------------
def create_app(
    warehouse: Warehouse,
    secret: str,
    *,
    max_body_bytes: int | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    loader: InboxLoader | None = None,
) -> Starlette:
    """The receiver's ASGI app: Klaviyo's deliveries into the warehouse's inbox, verified with `secret`; bodies
    up to `max_body_bytes` (default MAX_BODY_BYTES); `clock` stands in for now in tests. With a `loader`, each
    committed delivery wakes it (and the app's shutdown stops it)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from resources.warehouse import inbox
    from resources.webhooks import MAX_BODY_BYTES, WebhookRefused, read_delivery

    if not secret:
        raise ValueError(f"no webhook secret: set {SECRET_ENV}")
    limit = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes

    async def receive(request: Request) -> Response:
        try:
            body = await _read_body(request, limit)
            delivery = read_delivery(
                body, request.headers, secret, now=clock() if clock else None, max_bytes=limit
            )
        except WebhookRefused as exc:
            log.warning("refused a webhook request from %s: %d %s", _client(request), exc.status, exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        try:
            stored = await run_in_threadpool(inbox.store_delivery, warehouse.engine, delivery)
        except Exception as exc:  # noqa: BLE001 - nothing was committed: Klaviyo sends the delivery again
            log.error(
                "could not store a delivery of webhook %s (%d events): %s",
                delivery.webhook_id,
                len(delivery.events),
                _short(exc),
            )
            return JSONResponse({"error": "the delivery was not stored; send it again"}, status_code=503)
        log.info(
            "webhook %s: %d events stored (%d new, %d repeated, %d of unknown topics), delivery %d",
            delivery.webhook_id,
            stored.events,
            stored.new_events,
            stored.repeated_events,
            stored.unknown_topic_events,
            stored.delivery_id,
        )
        if loader is not None and stored.events > stored.unknown_topic_events:
            loader.wake()  # after the commit: the loader's pass sees these rows
        return JSONResponse(
            {
                "delivery": stored.delivery_id,
                "events": stored.events,
                "new": stored.new_events,
                "repeated": stored.repeated_events,
                "unknown_topic": stored.unknown_topic_events,
            }
        )

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(_ping, warehouse)
        except Exception as exc:  # noqa: BLE001 - any failure means the receiver cannot store deliveries
            return JSONResponse({"status": "warehouse unreachable", "error": _short(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if loader is not None:
            loader.start()
        try:
            yield
        finally:
            if loader is not None:
                await run_in_threadpool(loader.stop)

    return Starlette(
        routes=[
            Route(RECEIVE_PATH, receive, methods=["POST"]),
            Route(HEALTH_PATH, healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` (declared or counted)."""
    from resources.webhooks import Malformed, TooLarge

    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise Malformed("Content-Length is not a number") from None
        if length > limit:
            raise TooLarge(f"the body is over {limit} bytes (Content-Length {length})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ping(warehouse: Warehouse) -> None:
    with warehouse.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


def _short(exc: BaseException) -> str:
    """An error in one line without the statement's parameters (they would hold the body)."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first[:300]}"


def serve(port: int, host: str = "127.0.0.1", load: bool = True) -> None:
    """Serve the receiver with uvicorn until interrupted: the secret from KLAVIYO_WEBHOOK_SECRET, the warehouse
    from WAREHOUSE_URL (its pending migrations applied first, as every process start does); with `load`, an
    InboxLoader loads each committed delivery into klaviyo_events in this process."""
    import uvicorn

    from resources.warehouse import Warehouse, resolve_warehouse_url

    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        raise ValueError(
            f"{SECRET_ENV} is not set: give the receiver the secret_key the webhook was registered with"
        )
    warehouse = Warehouse(url=resolve_warehouse_url())
    warehouse.ensure_migrated()
    # uvicorn's own logging, plus the receiver's lines (what was stored, what was refused and why).
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"][log.name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    loader = InboxLoader(warehouse) if load else None
    try:
        uvicorn.run(
            create_app(warehouse, secret, loader=loader),
            host=host,
            port=port,
            server_header=False,
            log_level="info",
            log_config=log_config,
        )
    finally:
        if loader is not None:
            loader.stop()
        warehouse.dispose()


# -- the commands ---------------------------------------------------------------------------------------------
def add_webhook_commands(subparsers: argparse._SubParsersAction) -> None:
    """`klaviyo-pipeline webhooks serve|register|list|delete`."""
    webhooks = subparsers.add_parser(
        "webhooks", help="receive Klaviyo system webhooks into the inbox; register, list and delete webhooks"
    )
    sub = webhooks.add_subparsers(
        dest="webhooks_command", required=True, metavar="{serve,register,list,delete}"
    )
    serve_cmd = sub.add_parser(
        "serve", help=f"serve the receiver (POST {RECEIVE_PATH}, GET {HEALTH_PATH}); needs {SECRET_ENV}"
    )
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve_cmd.add_argument(
        "--load",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="load each delivery into klaviyo_events within about a second, in this process (default); "
        "--no-load leaves the inbox to the klaviyo/webhook_events asset and its sensor",
    )
    serve_cmd.set_defaults(func=cmd_serve)
    register = sub.add_parser(
        "register",
        help=f"create the webhook (or update the one of that name) sending these topics to URL, signed with {SECRET_ENV}",
    )
    register.add_argument(
        "--url", required=True, help=f"the receiver's public https URL (ending in {RECEIVE_PATH})"
    )
    register.add_argument(
        "--topics", nargs="+", required=True, metavar="TOPIC", help="e.g. event:klaviyo.opened_email"
    )
    register.add_argument(
        "--name", default=DEFAULT_WEBHOOK_NAME, help=f"the webhook's name (default {DEFAULT_WEBHOOK_NAME})"
    )
    register.add_argument("--description")
    register.set_defaults(func=cmd_register)
    listing = sub.add_parser("list", help="the account's webhooks and their topics")
    listing.set_defaults(func=cmd_list)
    delete = sub.add_parser("delete", help="delete a webhook by id")
    delete.add_argument("id")
    delete.set_defaults(func=cmd_delete)


def cmd_serve(args: argparse.Namespace) -> int:
    from pipelines.environment import prepared

    if not os.environ.get(SECRET_ENV):
        return _usage(
            f"{SECRET_ENV} is not set: give the receiver the secret_key the webhook was registered with"
        )
    with prepared():
        print(f"receiving Klaviyo webhooks at http://{args.host}:{args.port}{RECEIVE_PATH}")
        if args.load:
            print("loading them into klaviyo_events in this process (--no-load: leave it to the asset)")
        else:
            print(
                "leaving the inbox to the klaviyo/webhook_events asset and klaviyo_webhook_sensor (--no-load)"
            )
        serve(args.port, args.host, load=args.load)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from resources.webhooks import UnknownTopics, check_endpoint_url

    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        return _usage(
            f"{SECRET_ENV} is not set: Klaviyo signs every delivery with it, the receiver checks it"
        )
    try:
        check_endpoint_url(args.url)
    except ValueError as exc:
        return _usage(str(exc))

    def run(api) -> int:
        try:
            webhook, created = api.register(args.name, args.url, secret, args.topics, args.description)
        except (UnknownTopics, ValueError) as exc:
            return _usage(str(exc))
        print(f"{'created' if created else 'updated'} webhook {webhook.id} ({webhook.name}): "
              f"{', '.join(webhook.topics)} -> {args.url}")  # fmt: skip
        return 0

    return _with_api(run)


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    def run(api) -> int:
        webhooks = api.list_webhooks()
        rows = [
            (w.id, w.name, "yes" if w.enabled else "no", w.endpoint_url, ", ".join(w.topics) or "-")
            for w in webhooks
        ]
        headers = ("id", "name", "enabled", "endpoint_url (as Klaviyo shows it)", "topics")
        print(tabulate(rows, headers=headers, tablefmt="simple"))
        print(f"\n{len(webhooks)} webhook(s)")
        return 0

    return _with_api(run)


def cmd_delete(args: argparse.Namespace) -> int:
    def run(api) -> int:
        api.delete(args.id)
        print(f"deleted webhook {args.id}")
        return 0

    return _with_api(run)


def _usage(message: str) -> int:
    """Input refused before anything is sent: one line on stderr, exit status 2 (as the CLI's other commands)."""
    print(f"klaviyo-pipeline webhooks: {message}", file=sys.stderr)
    return 2


def _with_api(action: Callable) -> int:
    """Run `action(WebhooksApi)` against the account behind KLAVIYO_API_KEY (the simulator without one); a
    refusal by Klaviyo is one line on stderr and exit status 1."""
    from pipelines.environment import command_client, prepared
    from resources.klaviyo import KlaviyoApiError
    from resources.webhooks import WebhookAccessError, WebhooksApi

    with prepared(warehouse=False) as env:
        client = command_client(env)
        try:
            return action(WebhooksApi(client))
        except (WebhookAccessError, KlaviyoApiError) as exc:
            print(f"klaviyo-pipeline webhooks: {exc}", file=sys.stderr)
            return 1
        finally:
            client.close()
