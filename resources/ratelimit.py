"""A rate budget shared by every thread and process that reads one Klaviyo account.

Klaviyo counts requests per account in fixed windows (burst: 1 s, steady: 60 s) per endpoint. A sliding log
of send times kept below both limits never exceeds a fixed window either. The log lives in a small file per
(account, bucket) under an exclusive `flock`, so concurrent runs on one machine share it. The server's own
`RateLimit-Remaining`/`RateLimit-Reset` and `Retry-After` can only slow the budget down further.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Windows are padded a little: the server sees arrival times, not our send times.
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


class RateBudget:
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
        burst_w, steady_w, pad = self.time_scale, 60 * self.time_scale, max(0.005, PAD * self.time_scale)
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

    def observe(self, bucket: str, remaining: int | None, reset_seconds: float | None) -> None:
        """Use the server's RateLimit-* headers: when the steady window is spent, wait for its reset."""
        if remaining is not None and reset_seconds is not None and remaining <= 0:
            self.block(bucket, reset_seconds)
