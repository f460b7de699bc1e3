"""Cut an operation's slice out of Klaviyo's OpenAPI spec (openapi/stable.json of klaviyo/openapi).

    python klaviyo_sim/spec/extract.py PATH/TO/stable.json get_templates get_template ...

A slice holds the operation (its path and method only), every component it reaches through `$ref` (sorted by
name), the security schemes, and its tag; the file is written beside this script as <operationId>.json.
Run on the snapshot named in README.md it reproduces every slice here byte for byte.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _refs(spec: dict, node: object, out: set[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                kind, name = value.split("/")[-2:]
                if (kind, name) not in out:
                    out.add((kind, name))
                    _refs(spec, spec["components"][kind][name], out)
            else:
                _refs(spec, value, out)
    elif isinstance(node, list):
        for item in node:
            _refs(spec, item, out)


def slice_of(spec: dict, operation_id: str) -> dict:
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                reached: set[tuple[str, str]] = set()
                _refs(spec, op, reached)
                components = {}
                for kind in ("responses", "schemas"):
                    names = sorted(name for k, name in reached if k == kind)
                    if names:
                        components[kind] = {name: spec["components"][kind][name] for name in names}
                components["securitySchemes"] = spec["components"]["securitySchemes"]
                return {
                    "openapi": spec["openapi"],
                    "info": spec["info"],
                    "servers": spec["servers"],
                    "security": spec["security"],
                    "paths": {path: {method: op}},
                    "components": components,
                    "tags": [t for t in spec["tags"] if t["name"] in op.get("tags", [])],
                }
    raise KeyError(f"no operation {operation_id!r} in the spec")


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text())
    for operation_id in argv[1:]:
        text = json.dumps(slice_of(spec, operation_id), indent=2, ensure_ascii=False) + "\n"
        (HERE / f"{operation_id}.json").write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
