"""A client nobody here wrote: Klaviyo's official Python SDK (klaviyo-api 24.0.0, revision 2026-07-15).

It deserializes every response into its own pydantic models, so a shape the simulator gets wrong fails here.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from klaviyo_api import KlaviyoAPI

from klaviyo_sim import Account


@pytest.fixture
def sdk_and_sim(make_sim):
    sim = make_sim(Account(seed=21))
    return KlaviyoAPI("pk_" + "k" * 34, max_delay=1, max_retries=2, test_host=sim.url), sim


def _drain(call, **kwargs) -> list:
    """Follow `links.next` through the SDK's page_cursor (the SDK extracts it only from https links)."""
    out, cursor = [], None
    while True:
        page = call(**kwargs, page_cursor=cursor) if cursor else call(**kwargs)
        out += page.data
        link = page.links.next if page.links else None
        if not link:
            return out
        cursor = parse_qs(urlsplit(link).query)["page[cursor]"][0]


def test_sdk_reads_every_entity(sdk_and_sim):
    sdk, sim = sdk_and_sim
    acct = sim.account

    campaigns = []
    for channel in ("email", "sms", "mobile_push"):
        for archived in ("false", "true"):
            f = f"and(equals(messages.channel,'{channel}'),equals(archived,{archived}))"
            campaigns += _drain(sdk.Campaigns.get_campaigns, filter=f)
    assert sorted(c.id for c in campaigns) == sorted(c.id for c in acct.campaigns)
    by_id = {c.id: c for c in campaigns}
    sample = acct.campaigns[0]
    assert by_id[sample.id].attributes.name == sample.attributes["name"]
    assert by_id[sample.id].attributes.archived == sample.attributes["archived"]

    flows = _drain(sdk.Flows.get_flows) + _drain(sdk.Flows.get_flows, filter="equals(archived,true)")
    assert sorted(f.id for f in flows) == sorted(f.id for f in acct.flows)
    assert {f.id: f.attributes.trigger_type for f in flows} == {
        f.id: f.attributes["trigger_type"] for f in acct.flows
    }

    forms = _drain(sdk.Forms.get_forms, page_size=7)
    assert sorted(f.id for f in forms) == sorted(f.id for f in acct.forms)

    segments = _drain(sdk.Segments.get_segments)
    assert sorted(s.id for s in segments) == sorted(s.id for s in acct.segments)

    lists = _drain(sdk.Lists.get_lists)
    assert sorted(x.id for x in lists) == sorted(x.id for x in acct.lists)

    metrics = _drain(sdk.Metrics.get_metrics)
    assert {m.id: m.attributes.name for m in metrics} == {m.id: m.attributes["name"] for m in acct.metrics}

    tags = _drain(sdk.Tags.get_tags)
    assert sorted(t.id for t in tags) == sorted(t.id for t in acct.tags)

    events = _drain(sdk.Events.get_events, page_size=1000)
    assert [e.id for e in events] == [acct.event_id(i) for i in range(acct.total_events)]
    assert events[5].attributes.timestamp == acct.event_timestamp(5)

    profiles = _drain(sdk.Profiles.get_profiles, page_size=100)
    assert [p.id for p in profiles] == [acct.profile_id(i) for i in range(acct.counts["profiles"])]
    assert profiles[3].attributes.email == acct.profile(3)["email"]


def test_sdk_reads_single_resources_and_reports(sdk_and_sim):
    sdk, sim = sdk_and_sim
    acct = sim.account
    seg = sdk.Segments.get_segment(acct.segments[1].id, additional_fields_segment=["profile_count"])
    assert seg.data.attributes.profile_count == acct.memberships.count("segment", acct.segments[1].id)
    assert sdk.Events.get_event(acct.event_id(9)).data.id == acct.event_id(9)
    report = sdk.Reporting.query_segment_values(
        {
            "data": {
                "type": "segment-values-report",
                "attributes": {"statistics": ["total_members"], "timeframe": {"key": "last_30_days"}},
            }
        }
    )
    assert len(report.data.attributes.results) == len(acct.segments)


def test_sdk_reads_templates_and_tag_groups(sdk_and_sim):
    sdk, sim = sdk_and_sim
    acct = sim.account

    templates = _drain(sdk.Templates.get_templates, additional_fields_template=["definition"])
    assert sorted(t.id for t in templates) == sorted(t.id for t in acct.templates)
    by_id = {t.id: t for t in acct.templates}
    for t in templates:
        assert t.attributes.editor_type == by_id[t.id].attributes["editor_type"]
        assert t.attributes.name == by_id[t.id].attributes["name"]
    drag = next(t for t in acct.templates if t.attributes["editor_type"] == "SYSTEM_DRAGGABLE")
    one = sdk.Templates.get_template(drag.id)
    assert one.data.attributes.html == drag.attributes["html"]
    assert one.data.attributes.definition.template_id == drag.id

    groups = _drain(sdk.Tags.get_tag_groups)
    assert {g.id: g.attributes.default for g in groups} == {
        g.id: g.attributes["default"] for g in acct.tag_groups
    }
    assert sdk.Tags.get_tag_group(acct.tag_groups[1].id).data.attributes.name == "Season"
    tags = _drain(sdk.Tags.get_tags, include=["tag-group"])
    assert {t.id: t.relationships.tag_group.data.id for t in tags} == {
        t.id: t.internal["tag_group"] for t in acct.tags
    }
