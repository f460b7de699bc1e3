"""Flow steps and their messages, campaign audiences and form versions, end to end: the simulator serves them as
Klaviyo's spec (revision 2026-07-15) says, the catalogue reads the spec's facts the same way, and the pipeline
loads them. A full sync, then an incremental one after edits through the simulator's hooks (a step edited, a
message edited, a step removed, a campaign's audiences changed, a form version added), leaves every new table
equal to the simulator's data, reading only under the flows and forms that changed."""

from __future__ import annotations

import datetime as dt
import json
import time
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
import pytest
import requests
from klaviyo_api import KlaviyoAPI
from sqlalchemy import text

from assets.partitions import daily_partitions
from assets.reconcile import reconcile_deletions
from assets.sync import SyncRequest, sync_entity
from assets.transform import transform, transform_derived, transform_included
from klaviyo_sim import Account
from klaviyo_sim.data import iso
from klaviyo_sim.spec import SPEC_DIR, operations
from pipelines.checks import CHECKS, evaluate
from resources.catalogue import CATALOGUE, MESSAGE_ACTION_TYPES, NESTED
from resources.klaviyo_api import parse_timestamp
from tests.test_pipeline import defs_for, mat_metadata, run, status
from tests.test_simulator import _openapi_to_jsonschema, _validator, all_pages, get

UTC = dt.UTC
ANCHOR = dt.datetime(2026, 6, 1, tzinfo=UTC)


# -- what the simulator holds, as the tables should hold it ---------------------------------------------------
def want_actions(acct) -> dict[str, dict]:
    out = {}
    for a in acct.flow_actions:
        definition = a.attributes["definition"]
        data = definition.get("data") or {}
        out[a.id] = {
            "flow_id": a.relationships["flow"][0][1],
            "action_type": definition["type"],
            "status": data.get("status"),
            "settings": {k: v for k, v in data.items() if k != "message"},
            "next_action_id": definition["links"]["next"],
            "definition": definition,
            "created_date": parse_timestamp(a.attributes["created"]),
            "updated_date": parse_timestamp(a.attributes["updated"]),
        }
    return out


def want_messages(acct) -> dict[str, dict]:
    out = {}
    for m in acct.flow_messages:
        d = m.attributes["definition"]
        action = acct.by_id[("flow-action", m.relationships["flow-action"][0][1])]
        out[m.id] = {
            "flow_action_id": action.id,
            "flow_id": action.relationships["flow"][0][1],
            "channel": m.attributes["channel"],
            "name": d.get("name"),
            "subject": d.get("subject_line"),
            "preview_text": d.get("preview_text"),
            "from_email": d.get("from_email"),
            "from_label": d.get("from_label"),
            "reply_to_email": d.get("reply_to_email"),
            "title": d.get("title"),
            "body": d.get("body"),
            "template_id": d.get("template_id"),
            "created_date": parse_timestamp(m.attributes["created"]),
            "updated_date": parse_timestamp(m.attributes["updated"]),
        }
    return out


def want_versions(acct) -> dict[str, dict]:
    return {
        v.id: {
            "form_id": v.relationships["form"][0][1],
            "variation_name": v.attributes["variation_name"],
            "form_type": v.attributes["form_type"],
            "status": v.attributes["status"],
            "ab_test_variation_name": (v.attributes["ab_test"] or {}).get("variation_name"),
            "created_date": parse_timestamp(v.attributes["created_at"]),
            "updated_date": parse_timestamp(v.attributes["updated_at"]),
        }
        for v in acct.form_versions
    }


def want_audiences(acct) -> dict[tuple, dt.datetime]:
    out = {}
    for c in acct.campaigns:
        audiences = c.attributes["audiences"]
        for inclusion in ("included", "excluded"):
            for aid in audiences.get(inclusion) or []:
                out[(c.id, aid, inclusion)] = parse_timestamp(c.attributes["updated_at"])
    return out


def table(warehouse, name: str, live: bool = True) -> dict[str, dict]:
    where = " WHERE deleted_at IS NULL" if live else ""
    with warehouse.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {name}{where}"))}


def audiences(warehouse, live: bool = True) -> dict[tuple, dict]:
    where = " WHERE deleted_at IS NULL" if live else ""
    with warehouse.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM klaviyo_campaign_audiences{where}"))
        return {(r.campaign_id, r.audience_id, r.inclusion): dict(r._mapping) for r in rows}


def assert_equal_to_the_simulator(sim, warehouse) -> None:
    acct = sim.account
    for name, want in (
        ("klaviyo_flow_actions", want_actions(acct)),
        ("klaviyo_flow_messages", want_messages(acct)),
        ("klaviyo_form_versions", want_versions(acct)),
    ):
        got = table(warehouse, name)
        assert set(got) == set(want), name
        for rid, row in want.items():
            assert {k: got[rid][k] for k in row} == row, (name, rid)
            assert got[rid]["account_id"] == acct.account_id
    got = audiences(warehouse)
    want = want_audiences(acct)
    assert {k: r["updated_date"] for k, r in got.items()} == want


def ids_read(sim, operation: str, since: int = 0) -> list[str]:
    """The parent ids a nested listing was asked for, in order (from the request paths)."""
    return [urlsplit(c.path).path.rstrip("/").split("/")[3] for c in sim.calls(operation)[since:]]


# -- the spec's facts, read by the catalogue and the simulator alike -------------------------------------------
def test_the_catalogue_and_the_simulator_read_the_same_spec_facts():
    ops = operations()
    for entity, op_id in (
        ("flow_messages", "get_flow_action_messages"),
        ("form_versions", "get_versions_for_form"),
    ):
        entry, op = CATALOGUE[entity], ops[op_id]
        endpoint = entry.endpoint
        assert entry.kind == NESTED and endpoint.path == op.path
        assert (endpoint.tier.burst, endpoint.tier.steady) == (op.burst, op.steady) == (3, 60)  # the S tier
        assert endpoint.page_size == op.page_max
        assert endpoint.scope in op.scopes
        assert {f: set(ops_) for f, ops_ in endpoint.filters.items()} == {
            f: set(r.single) | set(r.lists) for f, r in op.filters.items()
        }
    # Steps come with their flows: the flows listing allows include=flow-actions, its compound document carries
    # the whole flow-action resource, and the step listing itself offers no include for messages.
    assert "flow-actions" in ops["get_flows"].includes and CATALOGUE["flows"].include == ("flow-actions",)
    assert ops["get_actions_for_flow"].includes == () and ops["get_flow_action_messages"].includes == ()
    assert (ops["get_actions_for_flow"].burst, ops["get_actions_for_flow"].steady) == (3, 60)
    spec = json.loads((SPEC_DIR / "get_flows.json").read_text())["components"]["schemas"]
    included = spec["GetFlowResponseCollectionCompoundDocument"]["properties"]["included"]["items"]["oneOf"]
    assert {"$ref": "#/components/schemas/FlowActionEncodedResponseObjectResource"} in included
    # Only steps whose definition carries a message (and experiments over them) are read for messages.
    schemas = json.loads((SPEC_DIR / "get_flow_action.json").read_text())["components"]["schemas"]
    sending = set()
    for name, schema in schemas.items():
        data = (schema.get("properties") or {}).get("data", {})
        ref = data.get("$ref", "").rsplit("/", 1)[-1]
        props = (schemas.get(ref) or data).get("properties") or {}
        if name.endswith("Action") and ("message" in props or "main_action" in props):
            sending |= set(schema["properties"]["type"]["enum"])
    assert sending == set(MESSAGE_ACTION_TYPES)


# -- the simulator ---------------------------------------------------------------------------------------------
def test_the_account_holds_steps_messages_and_versions_consistent_with_its_flows_and_forms():
    acct = Account(seed=7, anchor=ANCHOR)
    assert acct.collections["flow-action"] is acct.flow_actions and acct.flow_messages and acct.form_versions
    templates = {t.id for t in acct.templates}
    for flow in acct.flows:
        steps = [acct.by_id[("flow-action", aid)] for _, aid in flow.relationships["flow-actions"]]
        assert steps and steps[0].internal["action_type"] == "send-email"
        for k, step in enumerate(steps):
            definition = step.attributes["definition"]
            assert definition["id"] == step.id and step.relationships["flow"] == [("flow", flow.id)]
            assert definition["links"]["next"] == (steps[k + 1].id if k + 1 < len(steps) else None)
            assert parse_timestamp(flow.attributes["created"]) <= parse_timestamp(step.attributes["created"])
            assert parse_timestamp(step.attributes["updated"]) <= parse_timestamp(flow.attributes["updated"])
            for _, mid in step.relationships["flow-messages"]:
                message = acct.by_id[("flow-message", mid)]
                assert definition["data"]["message"] == message.attributes["definition"]
                assert message.relationships["flow-action"] == [("flow-action", step.id)]
                template = message.attributes["definition"].get("template_id")
                assert (template in templates) == (message.attributes["channel"] == "email")
    kinds = {a.internal["action_type"] for a in acct.flow_actions}
    assert kinds == {"send-email", "time-delay", "send-sms", "send-mobile-push"}
    assert {m.attributes["channel"] for m in acct.flow_messages} == {"email", "sms", "push-notification"}
    for form in acct.forms:
        versions = [acct.by_id[("form-version", v)] for _, v in form.relationships["form-versions"]]
        assert len(versions) >= (2 if form.attributes["ab_test"] else 1)
        assert all((v.attributes["ab_test"] is not None) == form.attributes["ab_test"] for v in versions)
        assert all(v.attributes["updated_at"] <= form.attributes["updated_at"] for v in versions)
    # The flow reports credit a message the account holds.
    assert acct.structure.report_message_id(acct.flows[0]) == acct.flow_messages[0].id
    # Deterministic by seed; the rest of the account is as it was without them.
    again = Account(seed=7, anchor=ANCHOR)
    assert [(m.id, m.attributes) for m in again.flow_messages] == [
        (m.id, m.attributes) for m in acct.flow_messages
    ]
    assert [c.attributes for c in again.campaigns] == [c.attributes for c in acct.campaigns]


@pytest.mark.parametrize(
    "operation_id,path",
    [
        ("get_flows", "/api/flows?include=flow-actions"),
        ("get_flows", "/api/flows?include=flow-actions,tags&filter=equals(archived,true)"),
        ("get_actions_for_flow", "/api/flows/{flow}/flow-actions"),
        ("get_flow_action_messages", "/api/flow-actions/{email_step}/flow-messages"),
        ("get_flow_action_messages", "/api/flow-actions/{sms_step}/flow-messages"),
        ("get_flow_action_messages", "/api/flow-actions/{push_step}/flow-messages"),
        ("get_versions_for_form", "/api/forms/{ab_form}/form-versions"),
        ("get_flow_action", "/api/flow-actions/{email_step}?include=flow,flow-messages"),
        ("get_flow_message", "/api/flow-messages/{message}?include=flow-action,template"),
        ("get_form_version", "/api/form-versions/{version}?include=form"),
    ],
)
def test_every_response_validates_against_the_openapi_schema(sim, operation_id, path):
    acct = sim.account
    step = {
        k: next(a.id for a in acct.flow_actions if a.internal["action_type"] == k)
        for k in MESSAGE_ACTION_TYPES[:3]
    }
    ab_form = next(f.id for f in acct.forms if f.attributes["ab_test"])
    path = path.format(
        flow=acct.flows[2].id, email_step=step["send-email"], sms_step=step["send-sms"],
        push_step=step["send-mobile-push"], ab_form=ab_form, message=acct.flow_messages[0].id,
        version=acct.form_versions[0].id,
    )  # fmt: skip
    r = get(sim, path)
    assert r.status_code == 200, r.text
    body = r.json()
    errors = sorted(_validator(operation_id).iter_errors(body), key=str)
    assert not errors, errors[0]
    assert body["data"]


def _branch(operation_id: str, name: str):
    """A validator for one named schema of an operation's slice (stricter than the response's oneOf, which the
    suite reads as anyOf)."""
    import jsonschema

    doc = json.loads((SPEC_DIR / f"{operation_id}.json").read_text())
    components = _openapi_to_jsonschema(doc["components"])
    return jsonschema.Draft7Validator({"components": components, "$ref": f"#/components/schemas/{name}"})


def test_definitions_validate_against_their_own_branch(sim):
    acct = sim.account
    branches = {"email": "FlowEmail", "sms": "FlowSms", "push-notification": "FlowPushNotification"}
    for m in acct.flow_messages:
        validator = _branch("get_flow_action_messages", branches[m.attributes["channel"]])
        assert not list(validator.iter_errors(m.attributes["definition"])), m.id
    actions = {"send-email": "SendEmailAction", "send-sms": "SendSmsAction",
               "send-mobile-push": "SendPushNotificationAction", "time-delay": "TimeDelayAction"}  # fmt: skip
    for a in acct.flow_actions:
        validator = _branch("get_flow_action", actions[a.internal["action_type"]])
        assert not list(validator.iter_errors(a.attributes["definition"])), a.id
    for v in acct.form_versions:
        body = {"type": "form-version", "id": v.id, "attributes": v.attributes, "links": {"self": "x"}}
        assert not list(
            _branch("get_versions_for_form", "FormVersionResponseObjectResource").iter_errors(body)
        )


def test_the_official_sdk_reads_them(make_sim):
    sim = make_sim(Account(seed=21))
    sdk = KlaviyoAPI("pk_" + "k" * 34, max_delay=1, max_retries=2, test_host=sim.url)
    acct = sim.account
    flows = sdk.Flows.get_flows(include=["flow-actions"])
    included = {
        i["id"] if isinstance(i, dict) else i.id for i in flows.included
    }  # the SDK leaves some as dicts
    assert included and included <= {a.id for a in acct.flow_actions}
    step = next(a for a in acct.flow_actions if a.internal["action_type"] == "send-sms")
    [message] = sdk.Flows.get_flow_action_messages(step.id).data
    assert message.id == step.relationships["flow-messages"][0][1]
    assert message.relationships.flow_action.data.id == step.id
    form = next(f for f in acct.forms if f.attributes["ab_test"])
    versions = sdk.Forms.get_versions_for_form(form.id).data
    assert sorted(v.id for v in versions) == sorted(v for _, v in form.relationships["form-versions"])
    assert sdk.Flows.get_flow_action(step.id, include=["flow-messages"]).data.id == step.id


def test_nested_listings_page_filter_sort_and_refuse_as_the_spec_says(sim):
    acct = sim.account
    flow = acct.flows[2]
    steps = [aid for _, aid in flow.relationships["flow-actions"]]
    assert all_pages(sim, f"/api/flows/{flow.id}/flow-actions")[0] == sorted(steps)
    assert all_pages(sim, f"/api/flows/{flow.id}/flow-actions?page[size]=1") == (sorted(steps), len(steps))
    listed = all_pages(sim, f"/api/flows/{flow.id}/flow-actions?filter=any(action_type,['time-delay'])")[0]
    assert listed == [
        a for a in steps if acct.by_id[("flow-action", a)].internal["action_type"] == "time-delay"
    ]
    by_updated = sorted(steps, key=lambda a: (acct.by_id[("flow-action", a)].attributes["updated"], a))
    assert all_pages(sim, f"/api/flows/{flow.id}/flow-actions?sort=-updated")[0] == by_updated[::-1]
    form = next(f for f in acct.forms if len(f.relationships["form-versions"]) > 1)
    versions = [v for _, v in form.relationships["form-versions"]]
    assert sorted(all_pages(sim, f"/api/forms/{form.id}/form-versions?page[size]=1")[0]) == sorted(versions)
    first = acct.by_id[("form-version", versions[0])].attributes["updated_at"]
    since = parse_timestamp(first).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = all_pages(sim, f"/api/forms/{form.id}/form-versions?filter=greater-or-equal(updated_at,{since})")[
        0
    ]
    assert versions[0] in later
    for path, status_code, where in [
        ("/api/flows/NOPE00/flow-actions", 404, None),
        ("/api/flow-actions/999/flow-messages", 404, None),
        ("/api/forms/NOPE00/form-versions", 404, None),
        (f"/api/forms/{form.id}/form-versions?page[size]=101", 400, "page[size]"),
        (f"/api/forms/{form.id}/form-versions?filter=equals(form_type,'modal')", 400, "filter"),
        (f"/api/forms/{form.id}/form-versions?sort=variation_name", 400, "sort"),
        (f"/api/flow-actions/{steps[0]}/flow-messages?include=template", 400, "include"),
        (f"/api/flow-actions/{steps[0]}/flow-messages?page[size]=51", 400, "page[size]"),
    ]:
        r = get(sim, path)
        assert r.status_code == status_code, (path, r.text)
        if where:
            assert r.json()["errors"][0]["source"] == {"parameter": where}


def test_absent_linkage_is_left_out_as_the_spec_allows(make_sim):
    sim = make_sim(Account(seed=7, omit_relationship_data=True))
    acct = sim.account
    omitted = [m for m in acct.flow_messages if m.internal["omit_linkage"]]
    assert omitted
    body = get(sim, f"/api/flow-actions/{omitted[0].relationships['flow-action'][0][1]}/flow-messages").json()
    assert set(body["data"][0]["relationships"]["flow-action"]) == {"links"}
    assert not list(_validator("get_flow_action_messages").iter_errors(body))


def test_the_s_tier_holds_for_the_new_endpoints(make_sim):
    acct = Account(seed=7)
    sim = make_sim(acct, rate_limits=True)
    step = acct.flow_actions[0].id
    time.sleep(1 - time.time() % 1 + 0.01)  # the top of a 1-second window
    answers = [get(sim, f"/api/flow-actions/{step}/flow-messages") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Limit"] == "60"


def test_hooks_edit_remove_and_add_and_move_their_parents(make_sim):
    acct = Account(seed=7, anchor=ANCHOR)
    sim = make_sim(acct)
    flow = acct.flows[2]
    [_, delay, last] = [aid for _, aid in flow.relationships["flow-actions"]]
    before = flow.attributes["updated"]
    acct.structure.edit_flow_action(delay)
    assert flow.attributes["updated"] > before
    assert acct.by_id[("flow-action", delay)].attributes["definition"]["data"]["value"] == 1 + 2 % 3 + 1
    message = acct.by_id[("flow-action", last)].relationships["flow-messages"][0][1]
    acct.structure.edit_flow_message(message, text="New body")
    body = get(sim, f"/api/flow-actions/{last}/flow-messages").json()["data"][0]["attributes"]["definition"]
    assert body["body"] == "New body"
    assert acct.by_id[("flow-action", last)].attributes["definition"]["data"]["message"]["body"] == "New body"
    gone = acct.structure.remove_flow_action(last)
    assert gone == [last, message]
    assert get(sim, f"/api/flow-actions/{last}/flow-messages").status_code == 404
    assert last not in all_pages(sim, f"/api/flows/{flow.id}/flow-actions")[0]
    assert acct.by_id[("flow-action", delay)].attributes["definition"]["links"]["next"] is None
    form = acct.forms[0]
    vid = acct.structure.add_form_version(form.id)
    assert vid in all_pages(sim, f"/api/forms/{form.id}/form-versions")[0]
    assert parse_timestamp(form.attributes["updated_at"]) > ANCHOR
    campaign = acct.campaigns[0]
    acct.structure.set_campaign_audiences(campaign.id, [acct.lists[0].id], [acct.segments[0].id])
    assert campaign.attributes["audiences"] == {
        "included": [acct.lists[0].id],
        "excluded": [acct.segments[0].id],
    }
    # The generic hooks, over HTTP too, for a simulator run as its own process.
    r = requests.post(sim.url + "/_sim/touch?type=flow-message&n=1", timeout=10)
    assert r.status_code == 200 and r.json()["ids"] == [acct.flow_messages[0].id]
    r = requests.post(sim.url + "/_sim/delete?type=form-version&n=1", timeout=10)
    assert r.status_code == 200 and r.json()["ids"] == [vid]
    # A deleted flow takes its steps and their messages along.
    doomed = acct.flows[-1]
    steps = [aid for _, aid in doomed.relationships["flow-actions"]]
    acct.delete("flow", 1)
    assert not any(("flow-action", a) in acct.by_id for a in steps)
    assert all(m.relationships["flow-action"][0][1] not in steps for m in acct.flow_messages)


# -- transforms ------------------------------------------------------------------------------------------------
def test_steps_messages_versions_and_audiences_become_typed_rows():
    flow = {
        "type": "flow",
        "id": "F1",
        "relationships": {"flow-actions": {"data": [{"type": "flow-action", "id": "1"}]}},
    }
    step = {
        "type": "flow-action",
        "id": "1",
        "attributes": {
            "created": "2026-03-01T10:00:00+00:00",
            "updated": "2026-03-02 10:00:00.5+00:00",
            "definition": {
                "id": "1",
                "type": "send-sms",
                "links": {"next": "2"},
                "data": {"status": "live", "message": {"body": "Hi \u0000"}},
            },  # fmt: skip
        },
    }
    older = {"type": "flow-action", "id": "2", "attributes": {  # a revision before the encoded definition
        "action_type": "TIME_DELAY", "status": "draft", "settings": {"delay_seconds": 60}, "updated": None}}  # fmt: skip
    result = transform_included("flow-action", [flow], [step, older, {"type": "flow-action", "id": "9"}], "A")
    rows = {r["id"]: r for r in result.frame.to_dict("records")}
    assert set(rows) == {"1"}  # only the steps a flow of the batch lists
    assert (rows["1"]["flow_id"], rows["1"]["action_type"], rows["1"]["status"]) == ("F1", "send-sms", "live")
    assert rows["1"]["settings"] == {"status": "live"} and rows["1"]["next_action_id"] == "2"
    assert rows["1"]["definition"]["data"]["message"]["body"] == "Hi \u0000"
    flow["relationships"]["flow-actions"]["data"].append({"type": "flow-action", "id": "2"})
    rows = {
        r["id"]: r for r in transform_included("flow-action", [flow], [older], "A").frame.to_dict("records")
    }
    assert (rows["2"]["action_type"], rows["2"]["status"], rows["2"]["settings"]) == (
        "TIME_DELAY", "draft", {"delay_seconds": 60},
    )  # fmt: skip

    message = {
        "type": "flow-message",
        "id": "M1",
        "attributes": {
            "channel": "email",
            "created": None,
            "updated": "2026-03-02T10:00:00Z",
            "definition": {"subject_line": "S", "name": "N", "template_id": "T9"},
        },  # fmt: skip
        "relationships": {"template": {"data": {"type": "template", "id": "T1"}}},
    }
    [m] = transform("flow_messages", [message], "A", {"_parent": "7", "_root": "F1"}).frame.to_dict("records")
    assert (m["flow_action_id"], m["flow_id"], m["subject"], m["name"], m["template_id"]) == (
        "7",
        "F1",
        "S",
        "N",
        "T1",
    )
    message["relationships"] = {"flow-action": {"data": {"type": "flow-action", "id": "8"}}}
    [m] = transform("flow_messages", [message], "A", {"_parent": "7", "_root": "F1"}).frame.to_dict("records")
    assert (m["flow_action_id"], m["template_id"]) == (
        "8",
        "T9",
    )  # its own linkage first; the definition's id

    version = {"type": "form-version", "id": "V1", "attributes": {
        "form_type": "popup", "variation_name": "A", "ab_test": {"variation_name": "Var A"}, "status": "live",
        "created_at": "2026-03-01T00:00:00Z", "updated_at": "2026-03-02T00:00:00Z"}}  # fmt: skip
    [v] = transform("form_versions", [version], "A", {"_parent": "FORM1"}).frame.to_dict("records")
    assert (v["form_id"], v["ab_test_variation_name"], v["updated_date"]) == (
        "FORM1", "Var A", pd.Timestamp("2026-03-02", tz="UTC"),
    )  # fmt: skip

    campaigns = [
        {"id": "C1", "attributes": {"audiences": {"included": ["L1", "S1", "L1"], "excluded": None}}},
        {"id": "C2", "attributes": {"audiences": {"included": [], "excluded": ["L1"]}}},
        {"id": "C3", "attributes": {"audiences": {"included": ["L9"]}}},  # not loaded: no rows
    ]
    stamp = dt.datetime(2026, 3, 1, tzinfo=UTC)
    frame = transform_derived("campaign_audiences", campaigns, {"C1": stamp, "C2": stamp}, "A")
    assert sorted(frame[["campaign_id", "audience_id", "inclusion"]].itertuples(index=False, name=None)) == [
        ("C1", "L1", "included"), ("C1", "S1", "included"), ("C2", "L1", "excluded"),
    ]  # fmt: skip


# -- the pipeline end to end ------------------------------------------------------------------------------------
JOBS = ("klaviyo_sync_flows", "klaviyo_sync_forms", "klaviyo_sync_campaigns")


def test_full_then_incremental_sync_after_edits_matches_the_simulator(sim, warehouse):
    acct = sim.account
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    for job in JOBS:
        result = run(defs, job, start=first, end=today)
        assert result.success, job
    assert_equal_to_the_simulator(sim, warehouse)
    # Steps and audiences cost no request of their own; each sending step one, each form one.
    assert not sim.calls("get_actions_for_flow")
    sending = [a.id for a in acct.flow_actions if a.internal["action_type"] in MESSAGE_ACTION_TYPES]
    assert sorted(ids_read(sim, "get_flow_action_messages")) == sorted(sending)
    assert sorted(ids_read(sim, "get_versions_for_form")) == sorted(f.id for f in acct.forms)
    assert sim.client_errors == []
    marks = {e: status(warehouse, e).watermark for e in ("flow_messages", "form_versions")}
    assert marks["flow_messages"] == max(parse_timestamp(f.attributes["updated"]) for f in acct.flows)

    # Edits in Klaviyo, through the simulator's hooks.
    at = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(seconds=30)
    three = [f for f in acct.flows if len(f.relationships["flow-actions"]) == 3]
    edited_step = three[0].relationships["flow-actions"][0][1]
    acct.structure.edit_flow_action(edited_step, at=at)
    two = next(f for f in acct.flows if len(f.relationships["flow-actions"]) == 2)
    edited_message = acct.by_id[("flow-action", two.relationships["flow-actions"][0][1])].relationships[
        "flow-messages"
    ][0][1]
    acct.structure.edit_flow_message(edited_message, at=at, text="Edited subject ✉")
    removed_step = three[1].relationships["flow-actions"][2][1]
    removed = acct.structure.remove_flow_action(removed_step, at=at)
    campaign = acct.campaigns[0]
    old_audiences = {k for k in want_audiences(acct) if k[0] == campaign.id}
    acct.structure.set_campaign_audiences(campaign.id, [acct.lists[3].id], [acct.segments[4].id], at=at)
    form = acct.forms[1]
    added = acct.structure.add_form_version(form.id, at=at)

    before = {
        op: len(sim.calls(op)) for op in ("get_flows", "get_flow_action_messages", "get_versions_for_form")
    }
    for job in JOBS:
        result = run(defs, job, partition=today)
        assert result.success, job
    assert_equal_to_the_simulator(sim, warehouse)

    # Only under the flows and forms that changed since the last run (their updated from the watermark less the
    # lookback on): the three flows and the form edited, and whatever else lies that close to the watermark.
    since = {e: m - dt.timedelta(hours=1) for e, m in marks.items()}
    changed_flows = {
        f.id for f in acct.flows if parse_timestamp(f.attributes["updated"]) >= since["flow_messages"]
    }
    assert {three[0].id, two.id, three[1].id} <= changed_flows and len(changed_flows) <= 5
    read = ids_read(sim, "get_flow_action_messages", before["get_flow_action_messages"])
    assert sorted(read) == sorted(
        a.id for a in acct.flow_actions
        if a.relationships["flow"][0][1] in changed_flows and a.internal["action_type"] in MESSAGE_ACTION_TYPES
    )  # fmt: skip
    changed_forms = {
        f.id for f in acct.forms if parse_timestamp(f.attributes["updated_at"]) >= since["form_versions"]
    }
    assert form.id in changed_forms and len(changed_forms) <= 3
    assert sorted(ids_read(sim, "get_versions_for_form", before["get_versions_for_form"])) == sorted(
        changed_forms
    )
    assert len(sim.calls("get_flows")) - before["get_flows"] == 2  # one windowed page per archived pass
    assert not sim.calls("get_actions_for_flow")

    # What changed landed; what went is soft-deleted, with what hung off it.
    steps = table(warehouse, "klaviyo_flow_actions", live=False)
    assert steps[edited_step]["updated_date"] == at and steps[edited_step]["deleted_at"] is None
    assert steps[removed_step]["deleted_at"] is not None
    messages = table(warehouse, "klaviyo_flow_messages", live=False)
    assert (
        messages[edited_message]["subject"] == "Edited subject ✉"
        and messages[edited_message]["deleted_at"] is None
    )
    assert all(messages[m]["deleted_at"] is not None for m in removed[1:]) and removed[1:]
    assert table(warehouse, "klaviyo_form_versions")[added]["form_id"] == form.id
    every = audiences(warehouse, live=False)
    for key in old_audiences - set(want_audiences(acct)):
        assert every[key]["deleted_at"] is not None
    assert (campaign.id, acct.segments[4].id, "excluded") in audiences(warehouse)
    meta = mat_metadata(result, "campaigns")
    assert meta["campaign_audiences_deleted"] == len(old_audiences - set(want_audiences(acct)))

    # The checks the catalogue derives for the new assets pass.
    wanted = {"flow_messages", "form_versions", "flows", "campaigns", "forms"}
    for key in CHECKS:
        if key.asset_key.path[-1] in wanted:
            outcome = evaluate(warehouse, key)
            assert outcome.passed, (key, outcome.metadata)


def test_an_older_copy_of_a_campaign_leaves_its_audiences_alone(sim, warehouse, client_for):
    client = client_for(sim, rate_time_scale=0.01)
    acct = sim.account
    sync_entity(SyncRequest("campaigns", None, None, full_refresh=True), client, warehouse)
    campaign = acct.campaigns[1]
    kept = {k for k in audiences(warehouse) if k[0] == campaign.id}
    stored = parse_timestamp(campaign.attributes["updated_at"])
    campaign.attributes["audiences"] = {"included": [acct.lists[5].id], "excluded": None}
    campaign.attributes["updated_at"] = iso(stored - dt.timedelta(days=1))  # a copy older than the row
    outcome = sync_entity(SyncRequest("campaigns", None, None, full_refresh=True), client, warehouse)
    assert outcome.removed == {}
    assert {k for k in audiences(warehouse) if k[0] == campaign.id} == kept
    campaign.attributes["updated_at"] = iso(stored + dt.timedelta(seconds=1))  # now a newer one
    sync_entity(SyncRequest("campaigns", None, None, full_refresh=True), client, warehouse)
    assert {k for k in audiences(warehouse) if k[0] == campaign.id} == {
        (campaign.id, acct.lists[5].id, "included")
    }


def test_the_reconciliation_finds_what_no_update_announced(sim, warehouse, client_for):
    client = client_for(sim, rate_time_scale=0.01)
    acct = sim.account
    for entity in ("flows", "forms", "campaigns"):
        sync_entity(SyncRequest(entity, None, None, full_refresh=True), client, warehouse)
    for entity in ("flow_messages", "form_versions"):
        reconcile_deletions(entity, client, warehouse)  # the first full pass loads them
    assert_equal_to_the_simulator(sim, warehouse)

    # Removals whose flow or form Klaviyo did not touch (their `updated` put back): no incremental run reads
    # them; the reconciliation's listings do.
    def quietly(record, stamp_field, hook, *args):
        stamp = record.attributes[stamp_field]
        out = hook(*args)
        record.attributes[stamp_field] = stamp
        return out

    three = next(f for f in acct.flows if len(f.relationships["flow-actions"]) == 3)
    quiet_step = three.relationships["flow-actions"][2][1]
    step_messages = quietly(three, "updated", acct.structure.remove_flow_action, quiet_step)[1:]
    two = next(f for f in acct.flows if len(f.relationships["flow-actions"]) == 2)
    sender = acct.by_id[("flow-action", two.relationships["flow-actions"][0][1])]
    quiet_message = sender.relationships["flow-messages"][0][1]
    quietly(two, "updated", acct.structure.remove_flow_message, quiet_message)
    form = next(f for f in acct.forms if len(f.relationships["form-versions"]) > 1)
    quiet_version = form.relationships["form-versions"][-1][1]
    quietly(form, "updated_at", acct.structure.remove_form_version, quiet_version)
    doomed = acct.flows[-1]
    doomed_steps = {aid for _, aid in doomed.relationships["flow-actions"]}
    doomed_messages = {
        m for a in doomed_steps for _, m in acct.by_id[("flow-action", a)].relationships["flow-messages"]
    }
    acct.delete("flow", 1)
    assert not sim.client_errors

    # The flows' listing (with their steps) finds the deleted flow and the step its flow no longer lists, and
    # takes what hung off them along; the messages' full pass finds the message its step no longer lists.
    assert reconcile_deletions("flows", client, warehouse).marked_deleted == [doomed.id]
    steps = table(warehouse, "klaviyo_flow_actions", live=False)
    assert {a for a, r in steps.items() if r["deleted_at"] is not None} == doomed_steps | {quiet_step}
    messages = table(warehouse, "klaviyo_flow_messages", live=False)
    assert {m for m, r in messages.items() if r["deleted_at"] is not None} == doomed_messages | set(
        step_messages
    )
    assert reconcile_deletions("flow_messages", client, warehouse).marked_deleted == [quiet_message]
    assert reconcile_deletions("form_versions", client, warehouse).marked_deleted == [quiet_version]
    assert set(table(warehouse, "klaviyo_flow_actions")) == {a.id for a in acct.flow_actions}
    assert set(table(warehouse, "klaviyo_flow_messages")) == {m.id for m in acct.flow_messages}
    assert set(table(warehouse, "klaviyo_form_versions")) == {v.id for v in acct.form_versions}
    # A second pass finds nothing more.
    assert reconcile_deletions("flow_messages", client, warehouse).marked_deleted == []


def test_the_definitions_wire_the_new_assets_in(sim, warehouse):
    defs = defs_for(sim, warehouse)
    graph = defs.resolve_asset_graph()
    for child, parent in (("flow_messages", "flows"), ("form_versions", "forms")):
        node = graph.get(dg.AssetKey(["klaviyo", child]))
        assert {k.to_user_string() for k in node.parent_keys} == {f"klaviyo/{parent}"}
        assert node.partitions_def == daily_partitions
        job = defs.resolve_job_def(f"klaviyo_sync_{parent}")
        assert job.asset_layer.selected_asset_keys == {dg.AssetKey(["klaviyo", e]) for e in (parent, child)}
    names = {(k.asset_key.path[-1], k.name) for k in CHECKS}
    assert {("flow_messages", "known_references"), ("flow_messages", "required_columns"),
            ("form_versions", "known_references"), ("form_versions", "watermark_never_moves_back")} <= names  # fmt: skip


def test_a_step_gone_before_its_messages_are_read_is_skipped(sim, warehouse, client_for):
    from assets.nested import sync_nested

    client = client_for(sim, rate_time_scale=0.01)
    acct = sim.account
    sync_entity(SyncRequest("flows", None, None, full_refresh=True), client, warehouse)
    flow = next(f for f in acct.flows if len(f.relationships["flow-actions"]) == 3)
    stamp, step = flow.attributes["updated"], flow.relationships["flow-actions"][0][1]
    acct.structure.remove_flow_action(step)  # Klaviyo dropped it after the flows were read
    flow.attributes["updated"] = stamp
    outcome = sync_nested(SyncRequest("flow_messages", None, None, full_refresh=True), client, warehouse)
    assert outcome.parents_gone == [step]
    assert status(warehouse, "flow_messages").status == "success"
    assert set(table(warehouse, "klaviyo_flow_messages")) == {m.id for m in acct.flow_messages}
    assert [c.status for c in sim.calls("get_flow_action_messages")].count(404) == 1
