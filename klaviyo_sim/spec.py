"""Klaviyo's OpenAPI slices, read once: what each operation accepts and how it is rate limited."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parent / "spec"
REVISION = "2026-07-15"


@dataclass(frozen=True)
class FieldRule:
    """Operators a filter field allows, by value shape, and the value's type."""

    single: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    value_type: str | None = None
    value_format: str | None = None
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    params: frozenset[str]
    filters: dict[str, FieldRule]
    filter_required: bool
    page_default: int | None
    page_max: int | None
    sorts: tuple[str, ...]
    includes: tuple[str, ...]
    additional_fields: dict[str, tuple[str, ...]]
    fields: dict[str, tuple[str, ...]]
    burst: int
    steady: int
    daily: int | None
    document: dict = field(repr=False, compare=False, hash=False)
    # The scopes a key needs (`x-klaviyo-scopes`), and the stricter limits some parameter values add, as the
    # operation's description states them: {(parameter, value): (burst, steady)}.
    scopes: tuple[str, ...] = ()
    param_limits: dict[tuple[str, str], tuple[int, int]] = field(
        default_factory=dict, compare=False, hash=False
    )

    @property
    def response_schema_name(self) -> str | None:
        ok = self.document["paths"][self.path][self.method]["responses"]
        code = "200"
        schema = ok[code]["content"]["application/vnd.api+json"]["schema"]
        return schema.get("$ref", "").rsplit("/", 1)[-1] or None


def _rate(value: str | None) -> int | None:
    return int(value.split("/")[0]) if value else None


# "Rate limits when using the `additional-fields[profile]=predictive_analytics` parameter in your API request:
# <br>Burst: `10/s`<br>Steady: `150/m`" (operation descriptions).
_PARAM_LIMIT = re.compile(
    r"Rate limits when using the `([^=`]+)=([^`]+)` parameter in your API request:"
    r"<br>Burst: `(\d+)/s`<br>Steady: `(\d+)/m`"
)


def _param_limits(description: str, params: dict) -> dict[tuple[str, str], tuple[int, int]]:
    out = {}
    for name, value, burst, steady in _PARAM_LIMIT.findall(description or ""):
        allowed = params.get(name, {}).get("schema", {}).get("items", {}).get("enum", [])
        if value not in allowed and f"{value}s" in allowed:
            value = f"{value}s"  # the text says `include=list` where the parameter's value is `lists`
        out[(name, value)] = (int(burst), int(steady))
    return out


def _load(path: Path) -> list[Operation]:
    doc = json.loads(path.read_text())
    out = []
    for route, methods in doc["paths"].items():
        for method, op in methods.items():
            if not isinstance(op, dict) or "operationId" not in op:
                continue
            params = {p["name"]: p for p in op.get("parameters", [])}
            size = params.get("page[size]", {}).get("schema", {})
            sort = params.get("sort", {}).get("schema", {}).get("enum", [])
            include = params.get("include", {}).get("schema", {}).get("items", {}).get("enum", [])
            extra = {
                name[len("additional-fields[") : -1]: tuple(p["schema"]["items"]["enum"])
                for name, p in params.items()
                if name.startswith("additional-fields[")
            }
            fields = {
                name[len("fields[") : -1]: tuple(p["schema"].get("items", {}).get("enum", []))
                for name, p in params.items()
                if name.startswith("fields[")
            }
            rules = {}
            for fname, rule in (op.get("x-klaviyo-filters") or {}).items():
                ops = rule.get("operators", {})
                value = rule.get("value", {})
                rules[fname] = FieldRule(
                    single=tuple(ops.get("single", ())),
                    lists=tuple(ops.get("list", ())),
                    none=tuple(ops.get("none", ())),
                    value_type=value.get("type"),
                    value_format=value.get("format"),
                    enum=tuple(value["enum"]) if "enum" in value else None,
                )
            limits = op.get("x-klaviyo-ratelimit") or {}
            out.append(
                Operation(
                    operation_id=op["operationId"],
                    method=method,
                    path=route,
                    params=frozenset(n for n, p in params.items() if p.get("in") == "query"),
                    filters=rules,
                    filter_required=bool(params.get("filter", {}).get("required")),
                    page_default=size.get("default"),
                    page_max=size.get("maximum"),
                    sorts=tuple(sort),
                    includes=tuple(include),
                    additional_fields=extra,
                    fields=fields,
                    burst=_rate(limits.get("burst")) or 1,
                    steady=_rate(limits.get("steady")) or 1,
                    daily=_rate(limits.get("daily")),
                    document=doc,
                    scopes=tuple(op.get("x-klaviyo-scopes") or ()),
                    param_limits=_param_limits(op.get("description", ""), params),
                )
            )
    return out


@cache
def operations() -> dict[str, Operation]:
    """Every operation in the slices, by operationId."""
    ops: dict[str, Operation] = {}
    for path in sorted(SPEC_DIR.glob("*.json")):
        for op in _load(path):
            ops[op.operation_id] = op
    return ops


@cache
def routes() -> list[tuple[re.Pattern[str], Operation]]:
    """(path regex, operation) pairs; a trailing slash is accepted on every path."""
    out = []
    for op in operations().values():
        pattern = re.escape(op.path).replace(re.escape("{id}"), "(?P<id>[^/]+)")
        out.append((re.compile(f"^{pattern}/?$"), op))
    return out


def match(method: str, path: str) -> tuple[Operation, str | None] | None:
    for pattern, op in routes():
        if op.method == method.lower():
            m = pattern.match(path)
            if m:
                return op, m.groupdict().get("id")
    return None
