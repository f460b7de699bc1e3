"""The client's filter builder and timestamp parser (no I/O)."""

from __future__ import annotations

import datetime as dt

import pytest

from resources.catalogue import ENDPOINTS
from resources.klaviyo_api import (
    Cond,
    FilterNotAllowed,
    build_filter,
    parse_timestamp,
    window_conditions,
)

UTC = dt.UTC
T = dt.datetime(2026, 3, 1, 12, 30, 15, tzinfo=UTC)


def test_values_are_written_in_klaviyo_syntax():
    flows = ENDPOINTS["flows"]
    assert build_filter(flows, [Cond("equals", "name", "Welcome")]) == 'equals(name,"Welcome")'
    assert build_filter(flows, [Cond("equals", "name", 'say "hi"')]) == "equals(name,'say \"hi\"')"
    assert build_filter(flows, [Cond("equals", "archived", True)]) == "equals(archived,true)"
    assert build_filter(flows, [Cond("any", "id", ["a", "b"])]) == 'any(id,["a","b"])'
    both = build_filter(flows, [Cond("greater-or-equal", "updated", T), Cond("less-than", "updated", T)])
    assert (
        both == "and(greater-or-equal(updated,2026-03-01T12:30:15Z),less-than(updated,2026-03-01T12:30:15Z))"
    )
    offset = dt.datetime(2026, 3, 1, 14, 30, 15, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert (
        build_filter(flows, [Cond("greater-than", "updated", offset)])
        == "greater-than(updated,2026-03-01T12:30:15Z)"
    )


@pytest.mark.parametrize(
    "entity,cond",
    [
        ("segments", Cond("less-than", "updated", T)),
        ("lists", Cond("greater-or-equal", "updated", T)),
        ("profiles", Cond("greater-or-equal", "updated", T)),
        ("events", Cond("any", "metric_id", ["a"])),
        ("metrics", Cond("greater-than", "updated", T)),
        ("flows", Cond("equals", "nope", 1)),
    ],
)
def test_filters_klaviyo_would_reject_are_refused(entity, cond):
    with pytest.raises(FilterNotAllowed):
        build_filter(ENDPOINTS[entity], [cond])


def test_naive_datetimes_and_unwritable_strings_are_refused():
    with pytest.raises(FilterNotAllowed):
        build_filter(ENDPOINTS["flows"], [Cond("greater-than", "updated", dt.datetime(2026, 1, 1))])
    with pytest.raises(FilterNotAllowed):
        build_filter(ENDPOINTS["flows"], [Cond("equals", "name", "both ' and \"")])


def test_window_uses_the_best_operator_each_field_allows():
    start, end = T, T + dt.timedelta(days=1, microseconds=5)
    flows = window_conditions(ENDPOINTS["flows"], start, end)
    assert [(c.op, c.value) for c in flows] == [
        ("greater-or-equal", T),
        ("less-than", T + dt.timedelta(days=1, seconds=1)),
    ]
    segments = window_conditions(ENDPOINTS["segments"], start, end)
    assert [(c.op, c.value) for c in segments] == [("greater-than", T - dt.timedelta(seconds=1))]
    profiles = window_conditions(ENDPOINTS["profiles"], start, end)
    assert [c.op for c in profiles] == ["greater-than", "less-than"]
    assert window_conditions(ENDPOINTS["metrics"], start, end) == []
    assert window_conditions(ENDPOINTS["tags"], start, end) == []


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01T12:30:15+00:00",
        "2026-03-01T12:30:15Z",
        "2026-03-01 12:30:15+00:00",
        "2026-03-01T12:30:15.000000+00:00",
        "2026-03-01 12:30:15.000+00:00",
        "2026-03-01T14:30:15+02:00",
        "2026-03-01T12:30:15",
    ],
)
def test_lenient_timestamps(text):
    assert parse_timestamp(text) == T


def test_bad_timestamps_raise():
    assert parse_timestamp(None) is None
    assert parse_timestamp(1772368215) == T
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")
