"""The JSON Schema and the Markdown reference, both generated from the model.

Invariants:
- The model is the only source: descriptions, defaults and examples come
  from its fields, so a setting is never described twice.
- Output is deterministic (sorted keys, fixed layout), so a test can compare
  the checked-in files with a fresh rendering and fail when they are stale.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from pydantic import BaseModel

from uvhost.config.model import (
    AnswerSettings,
    AppSettings,
    HostConfig,
    HostSettings,
    Http2Settings,
    Listener,
    LoggingSettings,
    ProxyProtocolSettings,
    RedirectSettings,
    RequestIdSettings,
    Site,
    SiteTlsSettings,
    StaticSettings,
    TlsSettings,
    WebSocketSettings,
)
from uvhost.config.types import NAME_PATTERN

SCHEMA_ID = "https://uvhost.dev/schemas/uvhost.schema.json"

# The tables in the order the reference shows them: (header as written, model).
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("[host]", HostSettings),
    ("[logging]", LoggingSettings),
    ("[listeners.NAME]", Listener),
    ("[listeners.NAME.tls]", TlsSettings),
    ("[listeners.NAME.http2]", Http2Settings),
    ("[listeners.NAME.proxy_protocol]", ProxyProtocolSettings),
    ("[listeners.NAME.request_id]", RequestIdSettings),
    ("[apps.NAME]", AppSettings),
    ("[apps.NAME.websocket]", WebSocketSettings),
    ("[apps.NAME.static]", StaticSettings),
    ("[sites.NAME]", Site),
    ("[sites.NAME.tls]", SiteTlsSettings),
    ("[redirects.NAME]", RedirectSettings),
    ("[answers.NAME]", AnswerSettings),
)


INTERPOLATED = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:[-?][^}]*)?\}",
    "description": "A value taken from the environment when the file is loaded.",
}


def json_schema() -> dict[str, Any]:
    """The model's schema, where any value may also be a `${VAR}` reference.

    Editors validate the file as written, before interpolation, so a
    `workers = "${WORKERS}"` must pass here; the loader checks the result.
    """
    schema = HostConfig.model_json_schema(mode="validation")
    for section in ("listeners", "apps", "sites", "redirects", "answers"):
        schema["properties"][section]["propertyNames"] = {"pattern": NAME_PATTERN}
    for definition in schema["$defs"].values():
        for name, field in definition.get("properties", {}).items():
            definition["properties"][name] = _allow_interpolation(field)
    _names_follow_patterns(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "uvhost configuration",
        "$defs": {**schema["$defs"], "Interpolated": INTERPOLATED},
    }


_DOC_KEYS = ("description", "examples", "default", "title")


def _names_follow_patterns(node: Any) -> None:
    """A table whose keys have a pattern (headers, env, routes) rejects the other keys.

    pydantic writes `patternProperties` alone, which lets a key that does not match
    through unchecked: "X Frame Options" would pass as a header name.
    """
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1 and "propertyNames" not in node:
            node["propertyNames"] = {"pattern": next(iter(patterns))}
        for value in node.values():
            _names_follow_patterns(value)
    elif isinstance(node, list):
        for item in node:
            _names_follow_patterns(item)


def _allow_interpolation(field: dict[str, Any]) -> dict[str, Any]:
    """Leaf values accept a reference too; tables keep their own structure."""
    if "$ref" in field or field.get("type") == "object":
        if field.get("type") == "object" and isinstance(field.get("additionalProperties"), dict):
            field["additionalProperties"] = _allow_interpolation(field["additionalProperties"])
        return field
    if field.get("type") == "array" and isinstance(field.get("items"), dict):
        field["items"] = _allow_interpolation(field["items"])
        return field
    docs: dict[str, Any] = {
        key: field.pop(key)
        for key in ("description", "examples", "default", "title")
        if key in field
    }
    return {"anyOf": [field, {"$ref": "#/$defs/Interpolated"}], **docs}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def markdown_reference() -> str:
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from host/uvhost/config/model.py by `uvhost schema --markdown "
        "docs/reference/config.md`; do not edit by hand. -->",
        "",
        "Every key of `uvhost.toml`. Durations are seconds as a number or a string with a "
        'unit (`"500ms"`, `"30s"`, `"2m"`, `"1h"`); sizes are bytes as a number or a string '
        'with a unit (`"64KiB"`, `"16MiB"`; `KB`/`MB` are powers of 1000). Relative paths '
        "start at the config file's folder. Any string value may use `${VAR}`, "
        "`${VAR:-default}`, `${VAR:?message}` and `$$`.",
        "",
    ]
    for table, model in SECTIONS:
        lines.extend(_section(table, model))
    return "\n".join(lines).rstrip() + "\n"


def _section(table: str, model: type[BaseModel]) -> list[str]:
    # cleandoc, not strip: Python 3.13 dedents docstrings itself, 3.11 and 3.12 do not.
    lines = [f"## `{table}`", "", inspect.cleandoc(model.__doc__ or ""), ""]
    lines.extend(["| key | default | description | example |", "| --- | --- | --- | --- |"])
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            continue  # nested tables get their own section
        if name == "tls":
            continue
        default = "required" if info.is_required() else _toml(_default(model, name))
        example = _toml(info.examples[0]) if info.examples else ""
        description = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {default} | {description} | {example} |")
    lines.append("")
    return lines


def _default(model: type[BaseModel], name: str) -> Any:
    """A default as the user would write it ("30s", not 30.0), through the field's serializer."""
    value = model.model_fields[name].get_default(call_default_factory=True, validated_data={})
    if value is None:
        return None
    return model.model_construct(**{name: value}).model_dump(mode="json", include={name})[name]


def _toml(value: Any) -> str:
    if value is None:
        return "—"
    text = json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        text = "true" if value else "false"
    if isinstance(value, dict):
        text = "{ " + ", ".join(f"{json.dumps(k)} = {_toml_inline(v)}" for k, v in value.items())
        text = text + " }" if value else "{}"
    return f"`{text}`".replace("|", "\\|")


def _toml_inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)
