"""Pure helpers every module of the simulator may use: stable hashes, id alphabets, Klaviyo's datetimes.

It imports nothing from the package, so it sits at the bottom of the import graph.
"""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64 finalizer: a fast, well-spread hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def hash_str(text: str) -> int:
    """A stable (not per-process-salted) hash of a string."""
    h = 1469598103934665603
    for byte in text.encode():
        h = ((h ^ byte) * 1099511628211) & MASK64
    return h


def iso(t: dt.datetime) -> str:
    """Klaviyo's usual datetime rendering: seconds and +00:00."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_time(value: str) -> dt.datetime:
    text = value.strip().replace(" ", "T").replace("Z", "+00:00")
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(reversed(out))


def unb62(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 62 + BASE62.index(ch)
    return n


def crockford(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 32)
        out.append(CROCKFORD[r])
    return "".join(reversed(out))


def uncrockford(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 32 + CROCKFORD.index(ch)
    return n
