"""Reading a closed window with several threads: the window cut into sub-windows, their pages merged into one
bounded queue (memory stays flat; the rate budget is shared by the threads)."""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from resources.klaviyo import Page


def split_window(start: dt.datetime, end: dt.datetime, parts: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) cut into up to `parts` adjacent pieces of whole seconds (no gap, no overlap)."""
    seconds = int((end - start).total_seconds())
    parts = max(1, min(parts, seconds // 60 or 1))
    cuts = [start + dt.timedelta(seconds=seconds * k // parts) for k in range(parts)] + [end]
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if a < b]


_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def concurrent_pages(
    sources: list[Callable[[], Iterator[Page]]], workers: int, depth: int = 8
) -> Iterator[Page]:
    """Pages from several listings read by `workers` threads into a bounded queue (memory stays flat;
    order across sources is not kept). The first error stops everything and is raised here."""
    if workers <= 1 or len(sources) <= 1:
        for source in sources:
            yield from source()
        return
    yield from _threaded(sources, workers, depth)


def read_ahead(source: Callable[[], Iterator[Page]], depth: int = 4) -> Iterator[Page]:
    """One listing read by a thread of its own into a bounded queue: the caller works on a page while the next
    ones are fetched (memory stays flat). An error is raised here."""
    return _threaded([source], 1, depth)


def _threaded(sources: list[Callable[[], Iterator[Page]]], workers: int, depth: int) -> Iterator[Page]:
    pending: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(source: Callable[[], Iterator[Page]]) -> None:
        try:
            for page in source():
                if not put(page):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failed(exc))
        finally:
            put(_DONE)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="klaviyo-fetch")
    for source in sources:
        pool.submit(run, source)
    remaining = len(sources)
    try:
        while remaining:
            item = pending.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, _Failed):
                raise item.exc
            else:
                yield item
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
