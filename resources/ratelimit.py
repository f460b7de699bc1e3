"""A rate budget shared by every thread, process and machine that reads one Klaviyo account.

Klaviyo counts requests per account in fixed windows (burst: 1 s, steady: 60 s) per endpoint. A sliding log
of send times kept below both limits never exceeds a fixed window either. The server's own
`RateLimit-Remaining`/`RateLimit-Reset` and `Retry-After` can only slow the budget down further.

Where the log lives:
- `RedisRateBudget` (when `KLAVIYO_RATE_REDIS_URL` is set): a sorted set per (account, bucket) in Redis, each
  decision one atomic Lua script on the Redis server's clock, so every process on every machine shares one
  budget (and one Retry-After), whatever their own clocks say;
- `RateBudget` (otherwise): a small file per (account, bucket) under an exclusive `flock`: every thread and
  process of one machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# Windows are padded a little: the server sees arrival times, not our send times. The pad is real time (how far
# a request's arrival may lag its send), so it is not shrunk with a time-scaled simulator's windows.
PAD = 0.05


@dataclass(frozen=True)
class Tier:
    """A rate-limit tier: requests per 1-second burst window and per 60-second steady window."""

    burst: int
    steady: int
    daily: int | None = None


XS = Tier(1, 15)
S = Tier(3, 60)
M = Tier(10, 150)
L = Tier(75, 700)  # the spec prints 750/m for L-tier reads from 2026-01-15; 700 is the documented floor
XL = Tier(350, 3500)
REPORTS = Tier(1, 2, 225)


def default_state_dir() -> Path:
    return Path(
        os.environ.get("KLAVIYO_RATE_STATE_DIR") or Path(tempfile.gettempdir()) / "klaviyo-pipeline-rate"
    )


class _Budget:
    """What both budgets do with the server's RateLimit-* headers."""

    time_scale: float

    def block(self, bucket: str, seconds: float) -> None:
        raise NotImplementedError

    def observe(self, bucket: str, remaining: int | None, reset_seconds: float | None) -> None:
        """When the server says the steady window is spent, wait for its reset. The header counts whole seconds,
        rounded up, and no reset is further off than one steady window: with a time-scaled simulator, whose
        window is shorter than the second the header rounds to, the window is the wait."""
        if remaining is not None and reset_seconds is not None and remaining <= 0:
            self.block(bucket, min(reset_seconds, 60 * self.time_scale + PAD))


class RateBudget(_Budget):
    """Blocks until a request may be sent in a bucket; shared through files in `state_dir`."""

    def __init__(
        self,
        account_key: str,
        state_dir: Path | None = None,
        clock=time.time,
        sleep=time.sleep,
        time_scale: float = 1.0,
    ):
        """`time_scale` shrinks the windows (0.01: a minute lasts 0.6 s); only for a time-scaled simulator."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.account_key = account_key
        self.time_scale = time_scale
        self.state_dir = state_dir or default_state_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.sleep = sleep

    @contextlib.contextmanager
    def _locked(self, bucket: str):
        path = self.state_dir / f"{self.account_key}.{bucket}.json"
        with open(path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.seek(0)
                raw = fh.read()
                try:
                    state = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    state = {}
                state.setdefault("sent", [])
                state.setdefault("blocked_until", 0.0)
                yield state
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(state, separators=(",", ":")))
                fh.flush()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def acquire(self, bucket: str, tier: Tier) -> float:
        """Wait for a slot and take it; returns the seconds waited."""
        waited = 0.0
        burst_w, steady_w, pad = self.time_scale, 60 * self.time_scale, PAD
        while True:
            with self._locked(bucket) as state:
                now = self.clock()
                sent = [t for t in state["sent"] if t > now - steady_w - pad]
                wait = max(0.0, state["blocked_until"] - now)
                recent = [t for t in sent if t > now - burst_w - pad]
                if len(recent) >= tier.burst:
                    wait = max(wait, recent[-tier.burst] + burst_w + pad - now)
                if len(sent) >= tier.steady:
                    wait = max(wait, sent[-tier.steady] + steady_w + pad - now)
                if wait <= 0:
                    sent.append(now)
                    state["sent"] = sent
                    return waited
                state["sent"] = sent
            self.sleep(wait)
            waited += wait

    def block(self, bucket: str, seconds: float) -> None:
        """Hold the bucket closed for everyone (after a 429's Retry-After, or an exhausted window)."""
        with self._locked(bucket) as state:
            state["blocked_until"] = max(state["blocked_until"], self.clock() + seconds)


# One decision of the sliding log, atomically on the Redis server: drop what left the steady window, then either
# take a slot (0) or say how long to wait. Times are the server's (TIME), so machines' clocks never matter.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local burst_w, steady_w, pad = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local burst, steady = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - steady_w - pad)
local wait = 0
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then wait = blocked - now end
local n = redis.call('ZCARD', KEYS[1])
if n >= steady then
  local e = redis.call('ZRANGE', KEYS[1], n - steady, n - steady, 'WITHSCORES')
  wait = math.max(wait, tonumber(e[2]) + steady_w + pad - now)
end
if redis.call('ZCOUNT', KEYS[1], now - burst_w - pad, '+inf') >= burst then
  local e = redis.call('ZRANGE', KEYS[1], n - burst, n - burst, 'WITHSCORES')
  wait = math.max(wait, tonumber(e[2]) + burst_w + pad - now)
end
if wait <= 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], math.ceil((steady_w + pad) * 1000) + 1000)
  return '0'
end
return tostring(wait)
"""
_BLOCK = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""


class RedisRateBudget(_Budget):
    """The same budget as `RateBudget`, kept in Redis: shared by every process on every machine."""

    def __init__(self, account_key: str, url: str, sleep=time.sleep, time_scale: float = 1.0):
        """`url`: e.g. redis://host:6379/0. `time_scale` as for RateBudget."""
        import redis

        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.account_key, self.time_scale, self.sleep = account_key, time_scale, sleep
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._block = self._redis.register_script(_BLOCK)

    def _key(self, bucket: str) -> str:
        return f"klaviyo-pipeline:rate:{self.account_key}:{bucket}"

    def acquire(self, bucket: str, tier: Tier) -> float:
        """Wait for a slot and take it; returns the seconds waited."""
        waited = 0.0
        burst_w, steady_w, pad = self.time_scale, 60 * self.time_scale, PAD
        key = self._key(bucket)
        while True:
            wait = float(
                self._acquire(
                    keys=[key, key + ":blocked"],
                    args=[burst_w, steady_w, pad, tier.burst, tier.steady, uuid.uuid4().hex],
                )
            )
            if wait <= 0:
                return waited
            self.sleep(wait)
            waited += wait

    def block(self, bucket: str, seconds: float) -> None:
        """Hold the bucket closed for everyone (after a 429's Retry-After, or an exhausted window)."""
        if seconds > 0:
            self._block(keys=[self._key(bucket) + ":blocked"], args=[seconds])


def shared_budget(account_key: str, time_scale: float = 1.0) -> RateBudget | RedisRateBudget:
    """The budget every client of an account shares: in Redis when KLAVIYO_RATE_REDIS_URL is set (every
    machine), else in files under KLAVIYO_RATE_STATE_DIR (this machine)."""
    url = os.environ.get("KLAVIYO_RATE_REDIS_URL")
    if url:
        return RedisRateBudget(account_key, url, time_scale=time_scale)
    return RateBudget(account_key, time_scale=time_scale)
