"""The JSON Schema and the Markdown reference: fresh, complete, and honest about what they catch.

Both files are generated from the model (`uvhost schema --markdown docs/reference/config.md`).
The schema is what editors check the file against before uvhost ever loads it, so it must
accept every valid config and reject every broken config whose fault is visible in the text
alone. Which broken configs those are is listed here explicitly, in both directions, so the
list cannot drift from the corpus in `tests/configs/bad/`.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from uvhost.config import model
from uvhost.config.schema import SECTIONS, json_schema, json_schema_text, markdown_reference

ROOT = Path(__file__).parents[2]
SCHEMA_FILE = ROOT / "schemas" / "uvhost.schema.json"
REFERENCE_FILE = ROOT / "docs" / "reference" / "config.md"
CONFIGS = ROOT / "tests" / "configs"
REGENERATE = "uvhost schema --markdown docs/reference/config.md"

# Broken configs the schema rejects: name -> (the key path of one error it reports, why).
SCHEMA_REJECTS: dict[str, tuple[tuple[str, ...], str]] = {
    "bad_app_target": (("apps", "site", "target"), "target pattern module:attribute"),
    "bad_binds": (("listeners", "noport", "bind"), "bind pattern"),
    "bad_durations": (("host", "graceful_timeout"), "duration pattern and bounds"),
    "bad_headers": (("listeners", "web", "headers"), "header name and value patterns"),
    "bad_http2": (("listeners", "web", "protocols", "1"), "protocol names, unique, non-empty"),
    "bad_literals": (("logging", "format"), "enumerated choices"),
    "bad_names": (("listeners",), "listener and app name patterns"),
    "bad_root_path": (("listeners", "web", "root_path"), "root path pattern"),
    "bad_route_prefixes": (("listeners", "web-routes", "routes"), "prefixes start with /"),
    "bad_sizes": (("listeners", "web", "max_header_bytes"), "size pattern and bounds"),
    "columns_tabs_unicode": (("listeners",), "listener name pattern"),
    "empty_listeners": (("listeners",), "at least one listener"),
    "env_unclosed_reference": (("listeners", "web", "bind"), "neither a bind nor ${VAR}"),
    "many_errors": (("host",), "unknown key"),
    "misc_values": (("apps", "jobs", "env"), "environment variable name pattern"),
    "missing_required": (("listeners", "web"), "required keys"),
    "no_listeners": ((), "listeners is required"),
    "only_listener_invalid": (("listeners", "web", "bind"), "bind pattern"),
    "out_of_range": (("listeners", "web", "backlog"), "integer bounds"),
    "type_array_for_table": (("host", "env_files"), "types"),
    "type_string_for_int": (("listeners", "web", "backlog"), "types"),
    "type_table_for_string": (("logging", "loggers"), "types"),
    "unix_mode_on_tcp": (("listeners", "local", "unix_mode"), "octal mode pattern"),
    "unknown_keys": (("host",), "additionalProperties: false"),
    "unknown_section": ((), "additionalProperties: false"),
    "unrouted_app_and_error": (("host", "workers"), "worker count"),
    "wsgi_keys": (("apps", "old", "threads"), "integer bounds (threads >= 1)"),
}

# Broken configs the schema accepts, because only loading them shows the fault.
SCHEMA_ACCEPTS: dict[str, str] = {
    "bind_clash_same_address": "cross-field: two listeners on one address",
    "bind_clash_unix": "cross-field: one socket path or fd, spelt two ways",
    "bind_clash_wildcard": "cross-field: a wildcard and a specific host on one port",
    "env_file_missing": "files: a missing env file, and the variable it held",
    "env_required_message": "environment: ${VAR:?message} is unset",
    "env_unset_variable": "environment: ${VAR} is unset",
    "listener_app_and_routes": "cross-field: app and routes together",
    "listener_serves_nothing": "cross-field: neither app nor routes",
    "overlapping_prefixes": "cross-field: two prefixes that normalise to one",
    "route_missing_app": "cross-field: a route to an app that is not defined",
    "tls_client_auth_without_ca": "cross-field: client_auth without client_ca",
    "tls_garbage": "files: the certificate is not PEM",
    "tls_key_mismatch": "files: the key is not the certificate's",
    "tls_missing_certificate": "files: the certificate does not exist",
    "tls_missing_password": "files: an encrypted key without a password",
    "tls_wrong_password": "files and environment: the wrong password",
    "workers_disagree_default": "cross-field: worker counts on one listener",
    "workers_disagree_explicit": "cross-field: worker counts on one listener",
}

# Broken configs that are not TOML at all: no schema ever sees them.
NOT_TOML = {
    "syntax_duplicate_inline_key",
    "syntax_duplicate_key",
    "syntax_duplicate_table",
    "syntax_missing_equals",
    "syntax_missing_quote",
    "syntax_non_ascii_name",
    "syntax_unclosed_array",
    "syntax_unclosed_inline_table",
    "syntax_unquoted_value",
}

BAD = sorted((CONFIGS / "bad").glob("*.toml"))
VALID = [ROOT / "uvhost.toml.example", *sorted((CONFIGS / "good").glob("*.toml"))]
MODELS = sorted(
    (
        value
        for value in vars(model).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == model.__name__
        and value is not model.Section
    ),
    key=lambda cls: cls.__name__,
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def read(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------- stale files


def test_schema_file_is_fresh():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), (
        f"{SCHEMA_FILE.relative_to(ROOT)} is stale; regenerate it with `{REGENERATE}`"
    )


def test_reference_file_is_fresh():
    assert REFERENCE_FILE.read_text(encoding="utf-8") == markdown_reference(), (
        f"{REFERENCE_FILE.relative_to(ROOT)} is stale; regenerate it with `{REGENERATE}`"
    )


def test_schema_file_is_the_draft_2020_12_schema_it_claims():
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


# ------------------------------------------------------- valid and broken


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_schema_accepts_valid_config(path: Path, validator: jsonschema.Draft202012Validator):
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(read(path))]
    assert not errors, f"the schema rejects the valid {path.name}:\n" + "\n".join(errors)


def test_every_broken_config_is_classified_once():
    names = {path.stem for path in BAD}
    lists = [set(SCHEMA_REJECTS), set(SCHEMA_ACCEPTS), NOT_TOML]
    assert sum(len(names) for names in lists) == len(set().union(*lists)), "listed twice"
    assert set().union(*lists) == names, (
        f"unclassified: {sorted(names - set().union(*lists))}; "
        f"no such config: {sorted(set().union(*lists) - names)}"
    )


@pytest.mark.parametrize("name", sorted(SCHEMA_REJECTS))
def test_schema_rejects_what_the_text_shows(name: str, validator: jsonschema.Draft202012Validator):
    where, why = SCHEMA_REJECTS[name]
    errors = list(validator.iter_errors(read(CONFIGS / "bad" / f"{name}.toml")))
    assert errors, f"the schema should reject {name}.toml ({why})"
    paths = {tuple(str(part) for part in error.absolute_path) for error in errors}
    assert where in paths, f"expected an error at {where} ({why}); got {sorted(paths)}"


@pytest.mark.parametrize("name", sorted(SCHEMA_ACCEPTS))
def test_schema_accepts_what_only_loading_shows(
    name: str, validator: jsonschema.Draft202012Validator
):
    errors = [e.message for e in validator.iter_errors(read(CONFIGS / "bad" / f"{name}.toml"))]
    assert not errors, (
        f"the schema now rejects {name}.toml ({SCHEMA_ACCEPTS[name]}): move it to "
        f"SCHEMA_REJECTS:\n" + "\n".join(errors)
    )


@pytest.mark.parametrize("name", sorted(NOT_TOML))
def test_syntax_errors_never_reach_the_schema(name: str):
    with pytest.raises(tomllib.TOMLDecodeError):
        read(CONFIGS / "bad" / f"{name}.toml")


def test_schema_accepts_a_reference_wherever_a_value_goes(
    validator: jsonschema.Draft202012Validator,
):
    data = {
        "host": {"workers": "${WORKERS}", "graceful_timeout": "${GRACE:-30s}"},
        "listeners": {
            "web": {"bind": "${BIND}", "app": "site", "backlog": "${BACKLOG}"},
        },
        "apps": {"site": {"target": "${TARGET:?set TARGET}", "max_body_bytes": "${MAX}"}},
    }
    assert not list(validator.iter_errors(data))


@pytest.mark.parametrize(
    ("keys", "valid"),
    [
        ({"protocols": ["h2", "http/1.1"]}, True),
        ({"protocols": ["h2", "h2"]}, False),
        ({"protocols": []}, False),
        ({"protocols": ["h3"]}, False),
        ({"protocols": ["${PROTOCOL}"]}, True),
        ({"http2": {"max_frame_size": 16384, "initial_window_size": 2**31 - 1}}, True),
        ({"http2": {"max_frame_size": 16383}}, False),
        ({"http2": {"max_frame_size": 2**24}}, False),
        ({"http2": {"initial_window_size": 2**31}}, False),
        ({"http2": {"max_concurrent_streams": 0}}, False),
        ({"http2": {"max_frame_size": "64KiB", "ping_interval": "30s"}}, True),
        ({"http2": {"max_header_list_size": 65536}}, False),
    ],
)
def test_schema_knows_the_http2_settings(
    keys: dict[str, Any], valid: bool, validator: jsonschema.Draft202012Validator
):
    data = {"listeners": {"web": {"bind": "127.0.0.1:8000", "app": "site", **keys}}}
    assert validator.is_valid(data) is valid


# ----------------------------------------------------- descriptions, docs


@pytest.mark.parametrize("cls", MODELS, ids=[cls.__name__ for cls in MODELS])
def test_every_field_has_a_description_and_an_example(cls: type[BaseModel]):
    assert (cls.__doc__ or "").strip(), f"{cls.__name__} has no docstring"
    for name, info in cls.model_fields.items():
        assert (info.description or "").strip(), f"{cls.__name__}.{name} has no description"
        assert info.examples, f"{cls.__name__}.{name} has no example"


def test_every_schema_property_is_described():
    for definition, body in json_schema()["$defs"].items():
        for name, prop in body.get("properties", {}).items():
            assert prop.get("description"), f"{definition}.{name} has no description"
            assert prop.get("examples"), f"{definition}.{name} has no examples"


def reference_sections() -> dict[str, str]:
    """The reference's "## `[table]`" sections, by table header."""
    parts = re.split(r"^## `(\[[^\]]+\])`$", REFERENCE_FILE.read_text(encoding="utf-8"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def test_every_model_has_a_section_in_the_reference():
    documented = {cls for _, cls in SECTIONS}
    missing = [cls.__name__ for cls in MODELS if cls is not model.HostConfig]
    missing = [name for name in missing if name not in {cls.__name__ for cls in documented}]
    assert not missing, f"models without a reference section: {missing}"
    assert set(reference_sections()) == {header for header, _ in SECTIONS}


def test_every_key_appears_in_the_reference():
    sections = reference_sections()
    tables = {cls: header for header, cls in SECTIONS}
    top = {
        "host": "[host]",
        "logging": "[logging]",
        "listeners": "[listeners.NAME]",
        "apps": "[apps.NAME]",
        "sites": "[sites.NAME]",
        "redirects": "[redirects.NAME]",
        "answers": "[answers.NAME]",
    }
    assert set(top) == set(model.HostConfig.model_fields)
    for name, header in top.items():
        assert header in sections, f"the top-level key {name} has no {header} section"
    for cls, header in tables.items():
        for name, info in cls.model_fields.items():
            nested = nested_model(info.annotation)
            if nested is not None:
                sub = header.removesuffix("]") + f".{name}]"
                assert sub in sections, f"{header} {name} has no {sub} section"
                assert tables[nested] == sub
            else:
                row = f"| `{name}` |"
                assert row in sections[header], f"{header} {name} is not in {REFERENCE_FILE.name}"
