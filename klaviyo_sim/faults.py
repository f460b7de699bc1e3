"""Fault injection: random shares of requests answered badly, and a script of faults for the next requests."""

from __future__ import annotations

import collections
import random
import threading
from dataclasses import dataclass, field


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
