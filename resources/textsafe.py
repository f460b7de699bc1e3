"""Postgres cannot store NUL (U+0000) in text or JSONB: escape it reversibly instead of dropping it.

A NUL character is stored as the six characters ``\\u0000`` and turned back on read. (Text that already
holds those six literal characters reads back as a NUL: the one ambiguity of the scheme, documented.)
"""

from __future__ import annotations

import re
from typing import Any

import orjson

NUL = "\x00"
NUL_ESCAPE = "\\u0000"
# A JSON escape \u0000 preceded by an even number of backslashes (i.e. a real NUL, not an escaped backslash).
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def escape_text(value: str) -> str:
    """Replace NUL characters so Postgres accepts the text."""
    return value.replace(NUL, NUL_ESCAPE) if NUL in value else value


def unescape_text(value: str) -> str:
    """Turn escaped NULs back into NUL characters."""
    return value.replace(NUL_ESCAPE, NUL) if NUL_ESCAPE in value else value


def dumps_jsonb(value: Any) -> str:
    """Serialize a JSON value for a JSONB column, escaping NULs in strings and keys."""
    text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    if "\\u0000" in text:
        text = _JSON_NUL.sub(lambda m: m.group(1) + "\\\\u0000", text)
    return text


def unescape_json(value: Any) -> Any:
    """Walk a decoded JSON value and turn escaped NULs back into NUL characters."""
    if isinstance(value, str):
        return unescape_text(value)
    if isinstance(value, dict):
        return {unescape_text(k): unescape_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape_json(v) for v in value]
    return value
