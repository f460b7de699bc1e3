"""What flows, campaigns and forms are made of: each flow's steps (flow actions) and the messages its sending
steps send, each campaign's audiences, and each form's versions, as revision 2026-07-15 of Klaviyo's spec shapes
them, and the mutation hooks that edit them.

Steps are numbered as the seeded flows name them (`flow-actions` relationship: 1 to 3 a flow); the first sends an
email (with one of the account's templates), a second waits a few days, a third sends an SMS or a push
notification. Each sending step has one message. A form has one version, two when it runs an A/B test or every
other one otherwise. Everything is drawn from streams of their own, so the account's other records are as they
were. A hook that edits a step, a message or a version also moves the `updated` of what contains it (the step's
flow; the form), as an edit in Klaviyo's editor does: that is how a sync finds them changed.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from klaviyo_sim.common import hash_str, iso, mix64, parse_time

if TYPE_CHECKING:
    from klaviyo_sim.data import Account, Resource

UTC = dt.UTC
NESTED_KINDS = ("flow-action", "flow-message", "form-version")
FORM_TYPES = ("popup", "embed", "flyout", "full_page", "banner")
STEP_STATUS = {"live": "live", "draft": "draft", "manual": "manual"}  # a flow's status -> its steps'
SUBJECT_LINES = ["Welcome aboard", "Still thinking it over?", "A gift for you 🎁", "We miss you", "It's back"]


def _z(t: dt.datetime) -> str:
    return iso(t).replace("+00:00", "Z")


class Structure:
    """Builds the steps, messages and form versions of an account and edits them (thread-safe: the account's
    lock). `make` builds a held resource (the account's Resource class)."""

    def __init__(self, account: Account, make: Callable[..., Resource]):
        self.account = account
        self.make = make
        self._added_versions = 0

    # -- seeding -----------------------------------------------------------------------------------------
    def _between(self, rng: random.Random, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
        span = max(0, int((hi - lo).total_seconds()))
        return lo + dt.timedelta(seconds=rng.randint(0, span))

    def flow_steps(self) -> tuple[list[Resource], list[Resource]]:
        """Every flow's steps, and the messages of its sending steps."""
        acct = self.account
        rng = acct._own_rng("flow-actions")
        actions: list[Resource] = []
        messages: list[Resource] = []
        n = 0
        for i, flow in enumerate(acct.flows):
            created, updated = parse_time(flow.attributes["created"]), parse_time(flow.attributes["updated"])
            ids = [aid for _, aid in flow.relationships.get("flow-actions", [])]
            status = STEP_STATUS.get(flow.attributes["status"], "draft")
            for k, aid in enumerate(ids):
                step_created = self._between(rng, created, created + (updated - created) / 4)
                step_updated = self._between(rng, step_created, updated)
                nxt = ids[k + 1] if k + 1 < len(ids) else None
                kind = ["send-email", "time-delay", "send-sms" if i % 2 == 0 else "send-mobile-push"][k % 3]
                definition: dict[str, Any] = {"id": aid, "type": kind, "links": {"next": nxt}}
                relationships: dict[str, list[tuple[str, str]]] = {"flow": [("flow", flow.id)]}
                internal: dict[str, Any] = {"action_type": kind, "status": None}
                if kind == "time-delay":
                    definition["data"] = {
                        "unit": "days",
                        "value": 1 + i % 3,
                        "secondary_value": None,
                        "timezone": "profile",
                        "delay_until_time": None,
                        "delay_until_weekdays": None,
                    }
                    relationships["flow-messages"] = []
                else:
                    mid = acct._short_id("flow-message", n)
                    message = self._message(n, i, k, kind, mid, aid, step_created, step_updated, rng)
                    messages.append(message)
                    definition["data"] = {
                        "message": copy.deepcopy(message.attributes["definition"]),
                        "status": status,
                    }
                    relationships["flow-messages"] = [("flow-message", mid)]
                    internal["status"] = status
                actions.append(
                    self.make(
                        "flow-action",
                        aid,
                        {
                            "created": iso(step_created),
                            "updated": iso(step_updated),
                            "definition": definition,
                        },
                        relationships,
                        internal,
                    )
                )
                n += 1
        return actions, messages

    def _message(
        self,
        n: int,
        i: int,
        k: int,
        kind: str,
        mid: str,
        aid: str,
        created: dt.datetime,
        updated: dt.datetime,
        rng: random.Random,
    ) -> Resource:
        acct = self.account
        msg_created = self._between(rng, created, updated)
        subject = SUBJECT_LINES[n % len(SUBJECT_LINES)]
        relationships: dict[str, list[tuple[str, str]]] = {
            "flow-action": [("flow-action", aid)],
            "template": [],
        }
        if kind == "send-email":
            channel = "email"
            template = None
            if acct.templates:
                pick = mix64(hash_str(f"{acct.seed}:flow-message-template:{n}")) % len(acct.templates)
                template = acct.templates[pick].id
                relationships["template"] = [("template", template)]
            definition: dict[str, Any] = {
                "from_email": "flows@example.com",
                "from_label": "Simulated Store",
                "reply_to_email": "help@example.com" if n % 2 else None,
                "cc_email": None,
                "bcc_email": None,
                "subject_line": subject,
                "preview_text": None if n % 4 == 3 else f"Step {k + 1} of flow {i + 1}",
                "template_id": template,
                "smart_sending_enabled": True,
                "transactional": False,
                "add_tracking_params": n % 3 == 0,
                "custom_tracking_params": None,
                "additional_filters": None,
                "name": f"Email {k + 1}" if n % 7 != 5 else "Ünïcödé — “quoted” 🎉 email",
                "id": mid,
            }
        elif kind == "send-sms":
            channel = "sms"
            definition = {
                "body": f"{subject}! Reply STOP to opt out. ({n})",
                "image_id": None,
                "dynamic_image": None,
                "shorten_links": True,
                "include_contact_card": False,
                "add_org_prefix": True,
                "add_info_link": True,
                "add_opt_out_language": False,
                "smart_sending_enabled": True,
                "sms_quiet_hours_enabled": True,
                "transactional": False,
                "add_tracking_params": False,
                "custom_tracking_params": None,
                "template_id": None,
                "additional_filters": None,
                "name": f"SMS {k + 1}",
                "id": mid,
            }
        else:
            channel = "push-notification"
            definition = {
                "title": subject,
                "body": f"Open the app for step {k + 1} ({n})",
                "sound": n % 2 == 0,
                "badge": False,
                "image_id": None,
                "dynamic_image": None,
                "video_asset_id": None,
                "on_open": "home",
                "ios_link": None,
                "android_link": None,
                "web_url": None,
                "push_type": "standard",
                "kv_pairs": None,
                "conversion_metric_id": None,
                "smart_sending_enabled": True,
                "additional_filters": None,
                "name": f"Push {k + 1}",
                "id": mid,
            }
        return self.make(
            "flow-message",
            mid,
            {
                "channel": channel,
                "created": iso(msg_created),
                "updated": iso(updated),
                "definition": definition,
            },
            relationships,
            # A share of messages omit their step's linkage when omit_relationship_data is on.
            {"name": definition["name"], "omit_linkage": acct.omit_relationship_data and n % 3 == 1},
        )

    def form_versions(self) -> list[Resource]:
        """Every form's versions (its `form-versions`): the first live when the form is (all, in an A/B test)."""
        acct = self.account
        rng = acct._own_rng("form-versions")
        out: list[Resource] = []
        for i, form in enumerate(acct.forms):
            created, updated = (
                parse_time(form.attributes["created_at"]),
                parse_time(form.attributes["updated_at"]),
            )
            ab_test = bool(form.attributes["ab_test"])
            live = form.attributes["status"] == "live"
            for k, (_, vid) in enumerate(form.relationships.get("form-versions", [])):
                v_created = self._between(rng, created, created + (updated - created) / 2)
                v_updated = self._between(rng, v_created, updated)
                out.append(
                    self._version(
                        vid,
                        form.id,
                        f"Version {chr(65 + k)}" if i % 9 != 4 else f"Variante {chr(65 + k)} — “été” 🌞",
                        FORM_TYPES[(i + k) % len(FORM_TYPES)],
                        "live" if live and (ab_test or k == 0) else "draft",
                        {"variation_name": f"Variation {chr(65 + k)}"} if ab_test else None,
                        v_created,
                        v_updated,
                        omit=acct.omit_relationship_data and (i + k) % 3 == 1,
                    )
                )
        return out

    def _version(
        self,
        vid: str,
        form_id: str,
        name: str,
        form_type: str,
        status: str,
        ab_test: dict | None,
        created: dt.datetime,
        updated: dt.datetime,
        omit: bool = False,
    ) -> Resource:
        return self.make(
            "form-version",
            vid,
            {
                "form_type": form_type,
                "variation_name": name,
                "ab_test": ab_test,
                "status": status,
                "created_at": _z(created),
                "updated_at": _z(updated),
            },
            {"form": [("form", form_id)]},
            {"omit_linkage": omit},
        )

    def report_message_id(self, flow: Resource) -> str:
        """The flow message the flow reports credit (the flow's first message): a flow_message_id that
        klaviyo_flow_messages holds; the first step's id for a flow without any message left."""
        with self.account.lock:
            for _, aid in flow.relationships.get("flow-actions", []):
                action = self.account.by_id.get(("flow-action", aid))
                linked = action.relationships.get("flow-messages", []) if action else []
                if linked:
                    return linked[0][1]
            steps = flow.relationships.get("flow-actions", [])
        return steps[0][1] if steps else flow.id

    # -- mutation hooks ------------------------------------------------------------------------------------
    def _now(self, at: dt.datetime | None) -> dt.datetime:
        return (at or dt.datetime.now(UTC)).replace(microsecond=0)

    def _get(self, kind: str, rid: str) -> Resource:
        found = self.account.by_id.get((kind, rid))
        if found is None:
            raise ValueError(f"no {kind} {rid!r} in the account")
        return found

    def _bump_flow(self, flow_id: str, at: dt.datetime) -> None:
        flow = self.account.by_id.get(("flow", flow_id))
        if flow is not None:
            flow.attributes["updated"] = iso(at)

    def edit_flow_action(self, action_id: str, at: dt.datetime | None = None) -> str:
        """Edit a step (a sending step changes status, live <-> manual; a delay waits a day longer); the step and
        its flow are updated now."""
        at = self._now(at)
        with self.account.lock:
            action = self._get("flow-action", action_id)
            data = action.attributes["definition"].setdefault("data", {})
            if action.internal["action_type"] == "time-delay":
                data["value"] = int(data.get("value") or 0) + 1
            else:
                data["status"] = "manual" if data.get("status") == "live" else "live"
                action.internal["status"] = data["status"]
            action.attributes["updated"] = iso(at)
            self._bump_flow(action.relationships["flow"][0][1], at)
        return action_id

    def edit_flow_message(
        self, message_id: str, at: dt.datetime | None = None, text: str | None = None
    ) -> str:
        """Edit a message's content (an email's subject, an SMS's or a push notification's body) and name; the
        message, its step (whose definition carries it) and the flow are updated now."""
        at = self._now(at)
        with self.account.lock:
            message = self._get("flow-message", message_id)
            definition = message.attributes["definition"]
            field = "subject_line" if message.attributes["channel"] == "email" else "body"
            definition[field] = text if text is not None else f"Edited {iso(at)}"
            definition["name"] = (
                str(definition.get("name") or "").split(" (edited")[0] + f" (edited {iso(at)})"
            )
            message.internal["name"] = definition["name"]
            message.attributes["updated"] = iso(at)
            action = self._get("flow-action", message.relationships["flow-action"][0][1])
            action.attributes["definition"].setdefault("data", {})["message"] = copy.deepcopy(definition)
            action.attributes["updated"] = iso(at)
            self._bump_flow(action.relationships["flow"][0][1], at)
        return message_id

    def remove_flow_action(self, action_id: str, at: dt.datetime | None = None) -> list[str]:
        """Remove a step from its flow (the step before it then leads where it led); its messages go with it.
        The flow is updated now. Returns the ids removed (the step's, then its messages')."""
        at = self._now(at)
        acct = self.account
        with acct.lock:
            action = self._get("flow-action", action_id)
            flow_id = action.relationships["flow"][0][1]
            flow = acct.by_id.get(("flow", flow_id))
            nxt = (action.attributes["definition"].get("links") or {}).get("next")
            if flow is not None:
                steps = flow.relationships.get("flow-actions", [])
                for _, other in steps:
                    before = acct.by_id.get(("flow-action", other))
                    links = before.attributes["definition"].get("links") if before else None
                    if isinstance(links, dict) and links.get("next") == action_id:
                        links["next"] = nxt
                        before.attributes["updated"] = iso(at)
                flow.relationships["flow-actions"] = [(t, a) for t, a in steps if a != action_id]
            gone = [action_id, *self._drop(action)]
            self._bump_flow(flow_id, at)
        return gone

    def _drop(self, action: Resource) -> list[str]:
        """Forget a step and its messages (the caller holds the lock); the messages' ids."""
        acct = self.account
        mids = [mid for _, mid in action.relationships.get("flow-messages", [])]
        acct.flow_actions[:] = [a for a in acct.flow_actions if a.id != action.id]
        acct.flow_messages[:] = [m for m in acct.flow_messages if m.id not in set(mids)]
        acct.by_id.pop(("flow-action", action.id), None)
        for mid in mids:
            acct.by_id.pop(("flow-message", mid), None)
        return mids

    def add_form_version(self, form_id: str, at: dt.datetime | None = None, status: str = "draft") -> str:
        """Add a version to a form (an A/B variation when the form runs a test); the form is updated now. Its id."""
        at = self._now(at)
        acct = self.account
        with acct.lock:
            form = self._get("form", form_id)
            self._added_versions += 1
            vid = str(5_000_000 + self._added_versions)
            k = len(form.relationships.setdefault("form-versions", []))
            ab_test = (
                {"variation_name": f"Variation {chr(65 + k % 26)}"} if form.attributes["ab_test"] else None
            )
            version = self._version(
                vid, form_id, f"Version {chr(65 + k % 26)}", "popup", status, ab_test, at, at
            )
            form.relationships["form-versions"].append(("form-version", vid))
            acct.form_versions.append(version)
            acct.by_id[("form-version", vid)] = version
            form.attributes["updated_at"] = _z(at)
        return vid

    def edit_form_version(self, version_id: str, at: dt.datetime | None = None) -> str:
        """Rename a version and flip its status (live <-> draft); the version and its form are updated now."""
        at = self._now(at)
        with self.account.lock:
            version = self._get("form-version", version_id)
            attrs = version.attributes
            attrs["variation_name"] = attrs["variation_name"].split(" (edited")[0] + f" (edited {iso(at)})"
            attrs["status"] = "draft" if attrs["status"] == "live" else "live"
            attrs["updated_at"] = _z(at)
            form = self._get("form", version.relationships["form"][0][1])
            form.attributes["updated_at"] = _z(at)
        return version_id

    def remove_form_version(self, version_id: str, at: dt.datetime | None = None) -> str:
        """Remove a version from its form; the form is updated now."""
        at = self._now(at)
        acct = self.account
        with acct.lock:
            version = self._get("form-version", version_id)
            form = self._get("form", version.relationships["form"][0][1])
            form.relationships["form-versions"] = [
                (t, v) for t, v in form.relationships.get("form-versions", []) if v != version_id
            ]
            acct.form_versions[:] = [v for v in acct.form_versions if v.id != version_id]
            acct.by_id.pop(("form-version", version_id), None)
            form.attributes["updated_at"] = _z(at)
        return version_id

    def set_campaign_audiences(
        self,
        campaign_id: str,
        included: list[str],
        excluded: list[str] | None = None,
        at: dt.datetime | None = None,
    ) -> str:
        """Give a campaign these audiences (list and segment ids, sent to and left out); it is updated now."""
        at = self._now(at)
        with self.account.lock:
            campaign = self._get("campaign", campaign_id)
            campaign.attributes["audiences"] = {"included": list(included), "excluded": excluded}
            campaign.attributes["updated_at"] = iso(at)
        return campaign_id

    # -- the generic hooks (Account.touch, Account.delete) for these kinds ---------------------------------
    def touch(self, kind: str, n: int, at: dt.datetime | None = None) -> list[str]:
        """Edit the first `n` steps, messages or versions (see the edit_* hooks); their ids."""
        edit = {
            "flow-action": self.edit_flow_action,
            "flow-message": self.edit_flow_message,
            "form-version": self.edit_form_version,
        }[kind]
        with self.account.lock:
            chosen = [r.id for r in self.account.collections[kind][: max(0, n)]]
        return [edit(rid, at) for rid in chosen]

    def delete(self, kind: str, n: int, at: dt.datetime | None = None) -> list[str]:
        """Remove the last `n` steps (with their messages), messages or versions; the ids removed (of `kind`)."""
        with self.account.lock:
            items = self.account.collections[kind]
            chosen = [r.id for r in items[len(items) - n :]] if n > 0 else []
        for rid in chosen:
            if kind == "flow-action":
                self.remove_flow_action(rid, at)
            elif kind == "form-version":
                self.remove_form_version(rid, at)
            else:
                self.remove_flow_message(rid, at)
        return chosen

    def remove_flow_message(self, message_id: str, at: dt.datetime | None = None) -> str:
        """Remove a message from its step (the step then sends nothing); the step and its flow are updated now."""
        at = self._now(at)
        acct = self.account
        with acct.lock:
            message = self._get("flow-message", message_id)
            action = self._get("flow-action", message.relationships["flow-action"][0][1])
            action.relationships["flow-messages"] = [
                (t, m) for t, m in action.relationships.get("flow-messages", []) if m != message_id
            ]
            action.attributes["definition"].get("data", {}).pop("message", None)
            action.attributes["updated"] = iso(at)
            acct.flow_messages[:] = [m for m in acct.flow_messages if m.id != message_id]
            acct.by_id.pop(("flow-message", message_id), None)
            self._bump_flow(action.relationships["flow"][0][1], at)
        return message_id

    def forget(self, kind: str, gone: list[Resource]) -> None:
        """What a deleted flow or form takes along: its steps and their messages, or its versions (the caller,
        Account.delete, holds the lock)."""
        acct = self.account
        if kind == "flow":
            for flow in gone:
                for _, aid in flow.relationships.get("flow-actions", []):
                    action = acct.by_id.get(("flow-action", aid))
                    if action is not None:
                        self._drop(action)
        elif kind == "form":
            ids = {vid for form in gone for _, vid in form.relationships.get("form-versions", [])}
            acct.form_versions[:] = [v for v in acct.form_versions if v.id not in ids]
            for vid in ids:
                acct.by_id.pop(("form-version", vid), None)
