"""Rate limits: Klaviyo's per-account fixed windows, and the buckets a request counts in.

A request counts in its operation's bucket (the tier `x-klaviyo-ratelimit` gives: burst per second, steady
per minute, optional daily) and, for some parameter values, in a stricter bucket of its own: the limits stack,
per Klaviyo's rate-limit docs.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time

from klaviyo_sim.errors import throttled
from klaviyo_sim.spec import Operation

UTC = dt.UTC
# Parameters whose own (stricter) limit stacks on the endpoint's, per Klaviyo's rate-limit docs. The limits the
# operations' descriptions state are read from the spec (Operation.param_limits: profile_count on a list or
# segment, predictive_analytics on the profiles list, include=lists|segments on a profile); this adds the one
# the docs give without the spec repeating it: predictive_analytics on a single profile.
PARAM_TIERS = {
    ("get_profile", "additional-fields[profile]", "predictive_analytics"): (10, 150),
}

Bucket = tuple[str, int, int, int | None]  # (name, burst per second, steady per minute, daily or None)


def buckets(op: Operation, params: dict[str, str]) -> list[Bucket]:
    """The buckets a request counts in: its operation's, and one per stricter parameter value it sends."""
    tiers = {
        (param, value): limits
        for (op_id, param, value), limits in PARAM_TIERS.items()
        if op_id == op.operation_id
    } | op.param_limits
    out: list[Bucket] = [(op.operation_id, op.burst, op.steady, op.daily)]
    for (param, value), (burst, steady) in sorted(tiers.items()):
        if value in params.get(param, "").split(","):
            out.append((f"{op.operation_id}:{value}", burst, steady, None))
    return out


class RateLimiter:
    """Klaviyo's per-account fixed windows: burst (1 s) and steady (60 s), optional daily; time-scalable."""

    def __init__(self, time_scale: float = 1.0, enabled: bool = True):
        self.time_scale = time_scale
        self.enabled = enabled
        self.lock = threading.Lock()
        self.counters: dict[tuple, int] = {}

    def check(self, buckets: list[Bucket], account: str) -> dict[str, str]:
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
                    raise throttled(max(1, math.ceil(wait)))
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
