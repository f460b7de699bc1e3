"""Rendering: held or computed records as JSON:API resources, with sparse fieldsets and `included`."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from klaviyo_sim.common import iso
from klaviyo_sim.data import Account, Resource
from klaviyo_sim.errors import not_found

# The relationships each held kind renders (links always; linkage data when asked for with include=), as the
# spec's response schemas name them. Templates have none.
RELATIONSHIPS: dict[str, tuple[str, ...]] = {
    "campaign": ("campaign-messages", "tags"),
    "flow": ("flow-actions", "tags"),
    "form": ("form-versions",),
    "segment": ("profiles", "tags", "flow-triggers"),
    "list": ("profiles", "tags", "flow-triggers"),
    "metric": ("flow-triggers",),
    "tag": ("tag-group", "lists", "segments", "campaigns", "flows"),
    "tag-group": ("tags",),
    "template": (),
    "flow-action": ("flow", "flow-messages"),
    "flow-message": ("flow-action", "template"),
    "form-version": ("form",),
}
TO_ONE = {"tag-group", "flow", "flow-action", "template", "form"}  # linkage is one object, not a list
# Kinds whose linkage comes unasked (the spec marks it optional: with `omit_linkage` a resource leaves out its
# to-one linkage, e.g. a message its step's, unless include= asks for it).
LINKED = {"flow-action", "flow-message", "form-version"}


class Renderer:
    """Turns held or computed records into JSON:API resources, collecting `included`."""

    def __init__(self, account: Account, base: str, params: dict[str, str]):
        self.account = account
        self.base = base
        self.include = set(params["include"].split(",")) if "include" in params else set()
        self.fields = {
            k[len("fields[") : -1]: v.split(",") for k, v in params.items() if k.startswith("fields[")
        }
        self.additional = {
            v for k, val in params.items() if k.startswith("additional-fields[") for v in val.split(",")
        }
        self.included: dict[tuple[str, str], dict] = {}

    def _links(self, kind: str, rid: str, rel: str) -> dict:
        return {
            "self": f"{self.base}/api/{kind}s/{rid}/relationships/{rel}/",
            "related": f"{self.base}/api/{kind}s/{rid}/{rel}/",
        }

    def _sparse(self, kind: str, attrs: dict) -> dict:
        wanted = self.fields.get(kind)
        if not wanted:
            return attrs
        tops = {w.split(".")[0] for w in wanted}
        return {k: v for k, v in attrs.items() if k in tops}

    def render(self, kind: str, item: Any) -> dict:
        if kind == "event":
            return self._event(item)
        if kind == "profile":
            return self._profile(item)
        return self.resource(item)

    def one(self, kind: str, rid: str) -> dict:
        if kind == "event":
            i = self.account.event_index(rid)
            if i is None:
                raise not_found(f"Event {rid} was not found.")
            return self._event(i)
        if kind == "profile":
            i = self.account.profile_index(rid)
            if i is None or not self.account.profile_exists(i):
                raise not_found(f"Profile {rid} was not found.")
            return self._profile(i)
        with self.account.lock:
            resource = self.account.by_id.get((kind, rid))
        if resource is None:
            raise not_found(f"A {kind} with id {rid} does not exist.")
        out = self.resource(resource, single=True)
        if "profile_count" in self.additional and kind in ("list", "segment"):
            out["attributes"]["profile_count"] = self.account.memberships.count(kind, rid)
        if kind == "form":
            out["attributes"]["definition"] = {
                "versions": [
                    {
                        "id": int(v),
                        "steps": [{"id": f"step-{v}", "name": "Step 1", "columns": []}],
                        "triggers": [],
                    }
                    for _, v in resource.relationships.get("form-versions", [])
                ]
            }
        if "definition" in self.additional and kind == "flow":
            out["attributes"]["definition"] = {"triggers": [], "profile_filter": None, "actions": []}
        return out

    def resource(self, r: Resource, single: bool = False) -> dict:
        """A held resource: attributes (sparse fieldsets apply), relationships, links; `single` for a GET by
        id (a drag-and-drop template's definition comes with it unasked, in a list only when asked)."""
        kind = r.type
        attrs = json.loads(json.dumps(r.attributes)) if kind in ("campaign", *LINKED) else dict(r.attributes)
        definition = r.internal.get("definition") if kind == "template" else None
        if definition is not None and (single or "definition" in self.additional):
            attrs["definition"] = json.loads(json.dumps(definition))
        out: dict[str, Any] = {"type": kind, "id": r.id, "attributes": self._sparse(kind, attrs)}
        relationships = {}
        for rel in RELATIONSHIPS[kind]:
            body: dict[str, Any] = {"links": self._links(kind, r.id, rel)}
            linked = r.relationships.get(rel, [])
            asked = rel in self.include
            unasked = kind in LINKED and not (rel in TO_ONE and r.internal.get("omit_linkage"))
            if asked or unasked:
                if rel not in TO_ONE:
                    body["data"] = [{"type": t, "id": i} for t, i in linked]
                elif linked:
                    body["data"] = {"type": linked[0][0], "id": linked[0][1]}
                elif kind not in LINKED:
                    body["data"] = None
            if asked:
                for t, i in linked:
                    self._include(t, i)
            relationships[rel] = body
        if relationships:
            out["relationships"] = relationships
        out["links"] = {"self": f"{self.base}/api/{kind}s/{r.id}/"}
        return out

    def _include(self, kind: str, rid: str) -> None:
        """Add a related resource to `included` (once; a related resource since deleted is left out)."""
        if (kind, rid) in self.included:
            return
        with self.account.lock:
            related = self.account.by_id.get((kind, rid))
        if related is None:
            return
        if kind == "tag":
            self.included[(kind, rid)] = {
                "type": "tag",
                "id": rid,
                "attributes": self._sparse("tag", {"name": related.attributes["name"]}),
                "links": {"self": f"{self.base}/api/tags/{rid}/"},
            }
        elif kind == "campaign-message":
            self.included[(kind, rid)] = self.message(related)
        elif kind in ("tag-group", "template", "flow", "form", *LINKED):
            self.included[(kind, rid)] = self.resource(related)

    def message(self, r: Resource) -> dict:
        """A campaign message: its attributes (sparse fieldsets apply) and its campaign, template and image."""
        attrs = json.loads(json.dumps(r.attributes))
        relationships = {}
        for rel in ("campaign", "template", "image"):
            body: dict[str, Any] = {"links": self._links("campaign-message", r.id, rel)}
            linked = r.relationships.get(rel)
            omitted = rel == "template" and r.internal.get("omit_template_data") and rel not in self.include
            if linked and not omitted:
                body["data"] = {"type": linked[0][0], "id": linked[0][1]}
            if linked and rel == "template" and rel in self.include:
                self._include("template", linked[0][1])
            relationships[rel] = body
        return {
            "type": "campaign-message",
            "id": r.id,
            "attributes": self._sparse("campaign-message", attrs),
            "relationships": relationships,
            "links": {"self": f"{self.base}/api/campaign-messages/{r.id}/"},
        }

    def _event(self, i: int) -> dict:
        attrs, metric_id, profile_id = self.account.event(i)
        eid = self.account.event_id(i)
        base = self.base
        out: dict[str, Any] = {
            "type": "event",
            "id": eid,
            "attributes": self._sparse("event", attrs),
            "relationships": {
                "profile": {
                    "data": {"type": "profile", "id": profile_id},
                    "links": {
                        "self": f"{base}/api/events/{eid}/relationships/profile/",
                        "related": f"{base}/api/events/{eid}/profile/",
                    },
                },
                "metric": {
                    "data": {"type": "metric", "id": metric_id},
                    "links": {
                        "self": f"{base}/api/events/{eid}/relationships/metric/",
                        "related": f"{base}/api/events/{eid}/metric/",
                    },
                },
                "attributions": {
                    "data": [],
                    "links": {
                        "self": f"{base}/api/events/{eid}/relationships/attributions/",
                        "related": f"{base}/api/events/{eid}/attributions/",
                    },
                },
            },
            "links": {"self": f"{base}/api/events/{eid}/"},
        }
        if self.account.event_omits_relationship_data(i):
            # Linkage is optional in the spec: only links, unless the relationship was asked for with include=.
            for rel in ("metric", "profile"):
                if rel not in self.include:
                    del out["relationships"][rel]["data"]
        if "metric" in self.include and ("metric", metric_id) not in self.included:
            self.included[("metric", metric_id)] = self.resource(self.account.by_id[("metric", metric_id)])
        if "profile" in self.include and ("profile", profile_id) not in self.included:
            idx = self.account.profile_index(profile_id)
            if idx is not None:
                self.included[("profile", profile_id)] = self._profile(idx, with_relationships=False)
        return out

    def member(self, i: int, joined: int) -> dict:
        """A list's or segment's member (GET /api/lists|segments/{id}/profiles): the profile, with the time it
        joined the group (`joined_group_at`, kept in a sparse fieldset only when named, as every attribute)."""
        pid = self.account.profile_id(i)
        wanted = {w.split(".")[0] for w in self.fields.get("profile", [])}
        # A fieldset of the join time alone (what a sync asks for) needs no profile computed.
        lean = wanted and wanted <= {"id", "joined_group_at"}
        attrs = {} if lean else self.account.profile(i, frozenset(self.additional))
        attrs["joined_group_at"] = iso(dt.datetime.fromtimestamp(joined, dt.UTC))
        return {
            "type": "profile",
            "id": pid,
            "attributes": self._sparse("profile", attrs),
            "relationships": {
                rel: {
                    "links": {
                        "self": f"{self.base}/api/profiles/{pid}/relationships/{rel}/",
                        "related": f"{self.base}/api/profiles/{pid}/{rel}/",
                    }
                }
                for rel in ("lists", "segments", "push-tokens")
            },
            "links": {"self": f"{self.base}/api/profiles/{pid}/"},
        }

    def _profile(self, i: int, with_relationships: bool = True) -> dict:
        pid = self.account.profile_id(i)
        attrs = self.account.profile(i, frozenset(self.additional))
        out: dict[str, Any] = {"type": "profile", "id": pid, "attributes": self._sparse("profile", attrs)}
        if with_relationships:
            out["relationships"] = {
                rel: {
                    "links": {
                        "self": f"{self.base}/api/profiles/{pid}/relationships/{rel}/",
                        "related": f"{self.base}/api/profiles/{pid}/{rel}/",
                    }
                }
                for rel in ("lists", "segments", "push-tokens", "conversations")
            }
        out["links"] = {"self": f"{self.base}/api/profiles/{pid}/"}
        return out
