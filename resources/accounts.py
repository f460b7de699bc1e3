"""The Klaviyo accounts a deployment reads, declared in one YAML file (its path in KLAVIYO_ACCOUNTS_FILE).

Each account has a name (its partition key in Dagster's `account` dimension), the name of the environment
variable that holds its private API key (the key itself is never written anywhere), and optionally the first
day of its history. The file:

    accounts:
      - name: acme
        key_env: KLAVIYO_KEY_ACME
      - name: globex
        key_env: KLAVIYO_KEY_GLOBEX
        start_date: "2025-06-01"

Without KLAVIYO_ACCOUNTS_FILE the deployment reads the one account behind KLAVIYO_API_KEY, unpartitioned by
account, as it always did.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

ACCOUNTS_FILE_ENV = "KLAVIYO_ACCOUNTS_FILE"
DEFAULT_KEY_ENV = "KLAVIYO_API_KEY"
# A partition key of Dagster's, readable in a URL and a run tag; no "|" (the multi-partition separator) or ",".
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENV_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class AccountsError(ValueError):
    """The accounts file, or an account in it, cannot be used: the message says which and why."""


@dataclass(frozen=True)
class Account:
    """One Klaviyo account the deployment reads."""

    name: str
    key_env: str = DEFAULT_KEY_ENV
    start_date: str | None = None  # YYYY-MM-DD; None: the partitions' start (KLAVIYO_START_DATE)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise AccountsError(
                f"account name {self.name!r}: use 1-63 lowercase letters, digits, '-' or '_', starting with a "
                "letter or digit"
            )
        if not ENV_PATTERN.match(self.key_env):
            raise AccountsError(
                f"account {self.name}: key_env {self.key_env!r} is not an environment variable's name "
                "(the file names the variable that holds the key, never the key)"
            )
        if self.start_date is not None:
            try:
                dt.date.fromisoformat(self.start_date)
            except ValueError:
                raise AccountsError(
                    f"account {self.name}: start_date {self.start_date!r} is not YYYY-MM-DD"
                ) from None

    def api_key(self) -> str:
        """The account's key, from its environment variable; an unset variable is a clear error (naming the
        variable, never a value)."""
        key = os.environ.get(self.key_env, "")
        if not key:
            raise AccountsError(f"account {self.name}: its API key variable {self.key_env} is not set")
        return key

    def as_dict(self) -> dict:
        return {"name": self.name, "key_env": self.key_env} | (
            {"start_date": self.start_date} if self.start_date else {}
        )


def accounts_file() -> Path | None:
    """The accounts file (KLAVIYO_ACCOUNTS_FILE), or None: one account, behind KLAVIYO_API_KEY."""
    value = os.environ.get(ACCOUNTS_FILE_ENV, "").strip()
    return Path(value) if value else None


def multi_account() -> bool:
    """Whether accounts are a partition dimension (an accounts file is configured)."""
    return accounts_file() is not None


def read_accounts(path: Path | None = None) -> list[Account]:
    """The declared accounts, in file order. A missing file declares none (the CLI's `accounts add` makes it)."""
    path = path or accounts_file()
    if path is None:
        return [Account("default")]
    if not path.exists():
        return []
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AccountsError(f"{path}: not YAML ({exc})") from None
    entries = document.get("accounts") if isinstance(document, dict) else None
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise AccountsError(f"{path}: 'accounts' must be a list of {{name, key_env, start_date}}")
    accounts = []
    for i, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or set(entry) - {"name", "key_env", "start_date"}
            or "name" not in entry
        ):
            raise AccountsError(
                f"{path}: account #{i + 1} must have a name, a key_env and optionally a start_date ({entry!r})"
            )
        start = entry.get("start_date")
        accounts.append(
            Account(
                str(entry["name"]),
                str(entry.get("key_env", DEFAULT_KEY_ENV)),
                start.isoformat() if isinstance(start, dt.date) else start,
            )
        )
    names = [a.name for a in accounts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AccountsError(f"{path}: account names appear twice: {', '.join(duplicates)}")
    return accounts


def accounts_named(names: list[str], path: Path | None = None) -> list[Account]:
    """The declared accounts of those names (partition keys of the `account` dimension), the file read once."""
    declared = {a.name: a for a in read_accounts(path)}
    for name in names:
        if name not in declared:
            where = path or accounts_file()
            raise AccountsError(f"account {name!r} is not declared in {where} ({ACCOUNTS_FILE_ENV})")
    return [declared[n] for n in names]


def write_accounts(path: Path, accounts: list[Account]) -> None:
    """Replace the file's accounts (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Klaviyo accounts (klaviyo-pipeline accounts add|list). Keys live in the named variables.\n"
    text += yaml.safe_dump({"accounts": [a.as_dict() for a in accounts]}, sort_keys=False)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def add_account(path: Path, account: Account) -> list[Account]:
    """Declare one more account (or change the key variable or start date of one declared already)."""
    accounts = read_accounts(path)
    names = [a.name for a in accounts]
    if account.name in names:
        accounts[names.index(account.name)] = account
    else:
        accounts.append(account)
    write_accounts(path, accounts)
    return accounts
