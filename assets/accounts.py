"""One materialization over the accounts it covers: each account's share runs with its own client, and one
account's failure does not stop the others'."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import dagster as dg

from assets.partitions import Scope, run_scopes
from resources.accounts import AccountsError
from resources.klaviyo import (
    FilterNotAllowed,
    KlaviyoApiError,
    KlaviyoClient,
    KlaviyoResource,
    QuotaExhausted,
)
from resources.warehouse import Warehouse
from resources.warehouse import status as sync_status

# Klaviyo refused the request or the key (401, 403), the quota is gone, a filter is not allowed, or the
# account's key is not configured: a step retry would get the same answer.
REFUSED: tuple[type[Exception], ...] = (KlaviyoApiError, QuotaExhausted, FilterNotAllowed, AccountsError)


def account_label(scope: Scope) -> str:
    """ " [name]" in a log line about one account's share, with several accounts; "" with one."""
    return f" [{scope.account.name}]" if scope.account is not None else ""


@contextlib.contextmanager
def account_client(klaviyo: KlaviyoResource, warehouse: Warehouse, scope: Scope) -> Iterator[KlaviyoClient]:
    """A client for the account's share of a run, closed after it; the account (id, time zone, declared name)
    is recorded in klaviyo_accounts. A key Klaviyo refuses (401, 403) fails on opening."""
    client = klaviyo.fresh_client(scope.account)
    try:
        info = client.account()
        name = scope.account.name if scope.account is not None else None
        sync_status.note_account(warehouse.engine, info.id, info.timezone, name)
        yield client
    finally:
        client.close()


def for_each_account(
    context: dg.AssetExecutionContext,
    work: Callable[[Scope], dict],
    refused: tuple[type[Exception], ...] = REFUSED,
) -> dict:
    """Run `work` for each account of the materialization (run_scopes) and return the metadata of its result.
    One account: its error is the step's (a refusal fails without retries). Several: every account runs; the
    step then fails naming each account that failed, after the others' rows have landed."""
    scopes = run_scopes(context)
    if len(scopes) == 1:
        try:
            return work(scopes[0])
        except refused as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
    metadata: dict = {}
    failed: dict[str, Exception] = {}
    for scope in scopes:
        try:
            metadata = work(scope) or metadata
        except Exception as exc:  # noqa: BLE001 - the other accounts go on; the step fails below
            context.log.error(f"account {scope.account.name}: {type(exc).__name__}: {exc}")
            failed[scope.account.name] = exc
    if failed:
        said = "; ".join(f"account {name}: {exc}" for name, exc in failed.items())
        raise dg.Failure(
            f"{len(failed)} of {len(scopes)} accounts failed ({said})",
            allow_retries=not all(isinstance(e, refused) for e in failed.values()),
        )
    return metadata | {"accounts": ", ".join(s.account.name for s in scopes)}
