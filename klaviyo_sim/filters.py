"""Klaviyo's filter language, parsed and checked against the operators each field allows."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from klaviyo_sim.common import parse_time
from klaviyo_sim.spec import FieldRule

OPERATORS = {
    "equals",
    "any",
    "greater-than",
    "greater-or-equal",
    "less-than",
    "less-or-equal",
    "contains",
    "starts-with",
    "ends-with",
    "has",
    "contains-any",
    "contains-all",
}
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class FilterError(ValueError):
    """A filter the API would reject with 400; the message is Klaviyo's `detail`."""


@dataclass(frozen=True)
class Condition:
    op: str
    field: str
    value: Any  # str, bool, None, int/float, datetime, or list of those


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_ws(self) -> None:
        while self.peek() == " ":
            self.i += 1

    def expect(self, ch: str) -> None:
        self.skip_ws()
        if self.peek() != ch:
            raise FilterError("Invalid filter provided. Verify your parentheses match.")
        self.i += 1

    def word(self) -> str:
        self.skip_ws()
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in "(),[] ":
            self.i += 1
        return self.s[start : self.i]

    def value(self) -> tuple[Any, bool]:
        """A value and whether it was quoted."""
        self.skip_ws()
        ch = self.peek()
        if ch in ("'", '"'):
            end = self.s.find(ch, self.i + 1)
            if end < 0:
                raise FilterError("Invalid filter provided. A string value is missing its closing quote.")
            text = self.s[self.i + 1 : end]
            self.i = end + 1
            return text, True
        if ch == "[":
            self.i += 1
            items = []
            self.skip_ws()
            if self.peek() == "]":
                self.i += 1
                return items, False
            while True:
                items.append(self.value()[0])
                self.skip_ws()
                if self.peek() == ",":
                    self.i += 1
                    continue
                if self.peek() == "]":
                    self.i += 1
                    return items, False
                raise FilterError("Invalid filter provided. Verify your brackets match.")
        raw = self.word()
        if raw == "":
            raise FilterError("Invalid filter provided. A value is missing.")
        return _bare(raw), False

    def expression(self) -> list[tuple[Condition, bool]]:
        op = self.word()
        if op == "":
            raise FilterError("Invalid filter provided. Verify your parentheses match.")
        if op not in OPERATORS | {"and"}:
            raise FilterError(f"'{op}' is not a valid operator.")
        self.expect("(")
        if op == "and":
            out = self.expression()
            while True:
                self.skip_ws()
                if self.peek() == ",":
                    self.i += 1
                    out += self.expression()
                    continue
                self.expect(")")
                return out
        field_name = self.word()
        self.skip_ws()
        if op == "has":
            self.expect(")")
            return [(Condition(op, field_name, None), False)]
        self.expect(",")
        value, quoted = self.value()
        self.expect(")")
        return [(Condition(op, field_name, value), quoted)]

    def parse(self) -> list[tuple[Condition, bool]]:
        out = self.expression()
        while True:
            self.skip_ws()
            if self.i >= len(self.s):
                return out
            if self.peek() != ",":
                raise FilterError("Invalid filter provided. Verify your parentheses match.")
            self.i += 1
            out += self.expression()


def _bare(raw: str) -> Any:
    if raw == "true":
        return True
    if raw == "false":
        return False
    if raw == "null":
        return None
    if _NUMBER.match(raw):
        return float(raw) if "." in raw else int(raw)
    if _DATETIME.match(raw):
        try:
            return parse_time(raw)
        except ValueError as exc:
            raise FilterError(f"'{raw}' is not a valid datetime.") from exc
    raise FilterError(f"Invalid input. '{raw}' must be quoted if it is a string.")


def parse_filter(text: str, rules: dict[str, FieldRule], resource: str) -> list[Condition]:
    """Parse a filter and check each condition against the field's allowed operators and value type."""
    if text.count("(") != text.count(")"):
        raise FilterError("Invalid filter provided. Verify your parentheses match.")
    conditions = []
    for cond, quoted in _Parser(text).parse():
        rule = rules.get(cond.field)
        if rule is None:
            raise FilterError(f"'{cond.field}' is not a valid field for the resource '{resource}'.")
        if isinstance(cond.value, list):
            allowed = rule.lists
        elif cond.op == "has":
            allowed = rule.none
        else:
            allowed = rule.single
        if cond.op not in allowed:
            raise FilterError(f"'{cond.op}' is not an allowed operator for the field '{cond.field}'.")
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        for v in values if cond.op != "has" else []:
            _check_value(cond, v, quoted, rule)
        conditions.append(cond)
    return conditions


def _check_value(cond: Condition, value: Any, quoted: bool, rule: FieldRule) -> None:
    if rule.value_format == "date-time":
        if quoted or isinstance(value, str):
            raise FilterError(
                f"Invalid date-time for field '{cond.field}': datetimes must not be quoted "
                "(e.g. greater-than(updated,2024-01-01T00:00:00Z))."
            )
        if not isinstance(value, dt.datetime):
            raise FilterError(f"'{value}' is not a valid datetime for field '{cond.field}'.")
    elif rule.value_type == "string":
        if not isinstance(value, str):
            raise FilterError(f"Invalid input. The value for '{cond.field}' must be a quoted string.")
        if rule.enum and value not in rule.enum:
            raise FilterError(
                f"'{value}' is not a valid choice for '{cond.field}'. Valid choices: {', '.join(rule.enum)}."
            )
    elif rule.value_type == "boolean":
        if not isinstance(value, bool):
            raise FilterError(f"Invalid input. The value for '{cond.field}' must be true or false.")
    elif rule.value_type in ("integer", "number") and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise FilterError(f"Invalid input. The value for '{cond.field}' must be a number.")


def matches(cond: Condition, actual: Any) -> bool:
    """Whether a record's value satisfies one condition (None never compares)."""
    if cond.op == "has":
        return actual is not None
    target = cond.value
    if isinstance(actual, str) and isinstance(target, dt.datetime):
        try:
            actual = parse_time(actual)
        except ValueError:
            return False  # a value that is not a datetime never compares
    if cond.op == "equals":
        if isinstance(target, list):
            return actual in target
        return actual == target
    if cond.op == "any":
        return actual in target
    if actual is None:
        return False
    if cond.op == "greater-than":
        return actual > target
    if cond.op == "greater-or-equal":
        return actual >= target
    if cond.op == "less-than":
        return actual < target
    if cond.op == "less-or-equal":
        return actual <= target
    if cond.op == "contains":
        return isinstance(actual, str) and target in actual
    if cond.op == "starts-with":
        return isinstance(actual, str) and actual.startswith(target)
    if cond.op == "ends-with":
        return isinstance(actual, str) and actual.endswith(target)
    raise FilterError(f"'{cond.op}' is not supported here.")
