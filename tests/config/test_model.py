"""Tests for `uvhost.config.model`: safe defaults, frozen sections, unknown keys refused,
a full config validating, and secrets masked when dumped."""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from uvhost.config.model import (
    AppSettings,
    HostConfig,
    HostSettings,
    Http2Settings,
    Listener,
    LoggingSettings,
    Section,
    TlsSettings,
    WebSocketSettings,
    validate_config,
)
from uvhost.config.types import MAX_DURATION, TcpBind, UnixBind, parse_duration

MINIMAL: dict[str, Any] = {
    "listeners": {"public": {"bind": "127.0.0.1:8000", "app": "site"}},
    "apps": {"site": {"target": "site:app"}},
}

FULL: dict[str, Any] = {
    "host": {
        "workers": "auto",
        "graceful_timeout": "45s",
        "startup_timeout": 90,
        "env_files": [".env"],
        "watch": False,
        "control_socket": "run/control.sock",
        "pid_file": "/run/uvhost.pid",
        "max_requests": 10000,
        "max_requests_jitter": 500,
    },
    "logging": {
        "level": "debug",
        "format": "json",
        "access_log": False,
        "file": "logs/uvhost.log",
        "loggers": {"uvhost.access": "warning", "myapp": "debug"},
    },
    "listeners": {
        "public": {
            "bind": "[::]:8443",
            "routes": {"/": "site", "/api": "api", "/healthz": "@health"},
            "backlog": 1024,
            "keep_alive_timeout": "2s",
            "header_timeout": "500ms",
            "max_header_bytes": "16KiB",
            "limit_concurrency": 100,
            "proxy_headers": True,
            "forwarded_allow_ips": ["10.0.0.0/8", "::1"],
            "server_header": False,
            "date_header": False,
            "headers": {"Strict-Transport-Security": "max-age=63072000"},
            "root_path": "/app",
            "protocols": ["h2", "http/1.1"],
            "http2": {
                "max_concurrent_streams": 250,
                "initial_window_size": "1MiB",
                "max_frame_size": "64KiB",
                "ping_interval": "30s",
            },
            "tls": {
                "certificate": "certs/site.pem",
                "private_key": "certs/site.key",
                "password": "hunter2",
                "client_ca": "certs/ca.pem",
                "client_auth": "optional",
                "min_version": "1.3",
                "ciphers": "ECDHE+AESGCM",
            },
        },
        "private": {"bind": "unix:run/app.sock", "app": "api", "unix_mode": "660"},
        "inherited": {"bind": "fd:3", "routes": {"/metrics": "@metrics"}},
    },
    "apps": {
        "site": {"target": "site.main:app", "lifespan": "on", "interface": "asgi3"},
        "api": {
            "target": "api:create_app",
            "factory": True,
            "app_dir": "src",
            "workers": 4,
            "env": {"MODE": "prod", "PORT": 8000, "DEBUG": False},
            "env_files": ["api.env"],
            "max_body_bytes": "10MiB",
            "root_path": "/v1",
            "websocket": {
                "enabled": False,
                "max_message_bytes": "64KiB",
                "max_queue": 8,
                "ping_interval": "10s",
                "ping_timeout": "5s",
                "per_message_deflate": False,
            },
        },
    },
}


def all_sections() -> list[type[BaseModel]]:
    return [
        HostConfig,
        HostSettings,
        LoggingSettings,
        Listener,
        TlsSettings,
        Http2Settings,
        AppSettings,
        WebSocketSettings,
    ]


def test_minimal_config_fills_safe_defaults() -> None:
    config = validate_config(MINIMAL, Path("/srv"))
    assert config.host.workers == 1
    assert config.host.graceful_timeout == 30.0
    assert config.logging.level == "info"
    listener = config.listeners["public"]
    assert listener.bind == TcpBind("127.0.0.1", 8000)
    assert listener.routes is None
    assert listener.max_header_bytes == 64 * 1024
    assert listener.proxy_headers is False
    assert listener.forwarded_allow_ips == (ipaddress.ip_network("127.0.0.1/32"),)
    app = config.apps["site"]
    assert app.max_body_bytes == 16 * 1024 * 1024
    assert app.websocket.max_message_bytes == 1024 * 1024
    assert app.app_dir is None
    assert app.workers is None
    assert listener.protocols == ("http/1.1", "h2")
    assert listener.http2 == Http2Settings()
    assert listener.http2.max_concurrent_streams == 100
    assert listener.http2.initial_window_size == 256 * 1024
    assert listener.http2.max_frame_size == 16384
    assert listener.http2.ping_interval is None
    assert "http2" not in listener.model_fields_set  # what `uvhost check` tells apart


def is_duration(info: FieldInfo) -> bool:
    metadata = list(info.metadata)
    for member in getattr(info.annotation, "__args__", ()):  # `Duration | None`
        metadata.extend(getattr(member, "__metadata__", ()))
    return any(getattr(meta, "func", None) is parse_duration for meta in metadata)


# Durations that are off unless set: probes that find dead peers, not limits on a client;
# a wait before a stop's drain, which only lengthens a stop; a threshold for a log line.
OFF_BY_DEFAULT = {
    ("Http2Settings", "ping_interval"),
    ("HostSettings", "drain_delay"),
    ("LoggingSettings", "slow_request_threshold"),
}


def test_every_timeout_default_is_bounded() -> None:
    timeouts = {
        (model.__name__, name): info.get_default(call_default_factory=True)
        for model in all_sections()
        for name, info in model.model_fields.items()
        if is_duration(info)
    }
    assert ("Http2Settings", "ping_interval") in timeouts
    for where in OFF_BY_DEFAULT:
        assert timeouts.pop(where) is None, where
    assert {name for _, name in timeouts} == {
        "graceful_timeout",
        "startup_timeout",
        "keep_alive_timeout",
        "header_timeout",
        "body_timeout",
        "send_timeout",
        "ping_interval",
        "ping_timeout",
    }
    named_like_a_timeout = {
        name
        for model in all_sections()
        for name in model.model_fields
        if "timeout" in name or "interval" in name
    }
    assert named_like_a_timeout <= {name for _, name in timeouts}
    for where, seconds in timeouts.items():
        assert isinstance(seconds, float), where
        assert math.isfinite(seconds), where
        assert 0 < seconds <= MAX_DURATION, where


def test_limits_are_set_by_default() -> None:
    listener = Listener(bind="127.0.0.1:1", app="a")
    assert 0 < listener.max_header_bytes <= 1024 * 1024
    assert 0 < listener.backlog <= 65535
    app = AppSettings(target="m:app")
    assert 0 < app.max_body_bytes <= 1024**3
    assert 0 < app.websocket.max_message_bytes <= 64 * 1024 * 1024
    assert 0 < app.websocket.max_queue <= 65536


def test_every_field_is_documented_with_an_example() -> None:
    for model in all_sections():
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"
            assert info.examples, f"{model.__name__}.{name}"


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (HostSettings, "workers", 3),
        (LoggingSettings, "level", "debug"),
        (Listener, "backlog", 1),
        (Listener, "protocols", ("h2",)),
        (Http2Settings, "max_concurrent_streams", 5),
        (AppSettings, "target", "x:y"),
        (WebSocketSettings, "max_queue", 2),
    ],
)
def test_sections_are_frozen(model: type[Section], field: str, value: object) -> None:
    config = validate_config(MINIMAL, Path("/srv"))
    instances: dict[type[Section], Section] = {
        HostSettings: config.host,
        LoggingSettings: config.logging,
        Listener: config.listeners["public"],
        AppSettings: config.apps["site"],
        WebSocketSettings: config.apps["site"].websocket,
        Http2Settings: config.listeners["public"].http2,
    }
    with pytest.raises(ValidationError, match="frozen"):
        setattr(instances[model], field, value)


def test_the_whole_config_is_frozen() -> None:
    config = validate_config(MINIMAL, Path("/srv"))
    with pytest.raises(ValidationError, match="frozen"):
        config.apps = {}  # type: ignore[misc]


@pytest.mark.parametrize(
    ("section", "data"),
    [
        ("host", {"host": {"wrokers": 2}}),
        ("logging", {"logging": {"colour": True}}),
        ("listener", {"listeners": {"public": {"bind": "127.0.0.1:1", "app": "site", "x": 1}}}),
        ("top", {"extra": {}}),
    ],
)
def test_unknown_keys_are_refused(section: str, data: dict[str, Any]) -> None:
    merged = {**MINIMAL, **data}
    with pytest.raises(ValidationError) as caught:
        validate_config(merged, Path("/srv"))
    assert [error["type"] for error in caught.value.errors()] == ["extra_forbidden"], section


def test_every_section_forbids_extra_keys() -> None:
    for model in all_sections():
        assert model.model_config.get("extra") == "forbid", model.__name__
        assert model.model_config.get("frozen") is True, model.__name__


def test_listeners_are_required() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_config({"apps": MINIMAL["apps"]}, Path("/srv"))
    assert [e["loc"] for e in caught.value.errors()] == [("listeners",)]
    with pytest.raises(ValidationError):
        validate_config({"listeners": {}}, Path("/srv"))


def test_full_config_validates() -> None:
    base = Path("/srv/site")
    config = validate_config(FULL, base)
    assert config.host.workers == "auto"
    assert config.host.startup_timeout == 90.0
    assert config.host.env_files == (base / ".env",)
    assert config.host.control_socket == base / "run" / "control.sock"
    assert config.host.pid_file == Path("/run/uvhost.pid")
    assert config.logging.file == base / "logs" / "uvhost.log"
    assert config.logging.loggers == {"uvhost.access": "warning", "myapp": "debug"}
    public = config.listeners["public"]
    assert public.bind == TcpBind("::", 8443)
    assert public.header_timeout == 0.5
    assert public.max_header_bytes == 16 * 1024
    assert public.forwarded_allow_ips == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert public.tls is not None
    assert public.tls.certificate == base / "certs" / "site.pem"
    assert public.tls.password is not None
    assert public.tls.password.get_secret_value() == "hunter2"
    assert public.tls.min_version == "1.3"
    assert public.protocols == ("h2", "http/1.1")
    assert public.http2 == Http2Settings(
        max_concurrent_streams=250,
        initial_window_size=1024 * 1024,
        max_frame_size=64 * 1024,
        ping_interval=30.0,
    )
    private = config.listeners["private"]
    assert private.bind == UnixBind(base / "run" / "app.sock")
    assert private.unix_mode == 0o660
    api = config.apps["api"]
    assert api.app_dir == base / "src"
    assert api.env == {"MODE": "prod", "PORT": "8000", "DEBUG": "false"}
    assert api.env_files == (base / "api.env",)
    assert api.websocket.ping_timeout == 5.0
    assert api.websocket.enabled is False


def test_dump_is_text_a_person_would_write() -> None:
    data = validate_config(FULL, Path("/srv/site")).model_dump(mode="json", exclude_none=True)
    assert data["host"]["graceful_timeout"] == "45s"
    assert data["host"]["startup_timeout"] == "90s"
    public = data["listeners"]["public"]
    assert public["bind"] == "[::]:8443"
    assert public["header_timeout"] == "500ms"
    assert public["max_header_bytes"] == "16KiB"
    assert public["forwarded_allow_ips"] == ["10.0.0.0/8", "::1"]
    assert data["listeners"]["private"]["bind"] == "unix:/srv/site/run/app.sock"
    assert data["listeners"]["private"]["unix_mode"] == "660"
    assert data["apps"]["api"]["max_body_bytes"] == "10MiB"
    assert public["protocols"] == ["h2", "http/1.1"]
    assert public["http2"] == {
        "max_concurrent_streams": 250,
        "initial_window_size": "1MiB",
        "max_frame_size": "64KiB",
        "ping_interval": "30s",
    }


def test_dump_validates_back_to_the_same_config() -> None:
    config = validate_config(FULL, Path("/srv/site"))
    data = config.model_dump(mode="json", exclude_none=True)
    data["listeners"]["public"]["tls"]["password"] = "hunter2"  # noqa: S105 - masked in the dump
    assert validate_config(data, Path("/elsewhere")) == config


@pytest.mark.parametrize("mode", [0, 0o7, 0o77, 0o600, 0o1777])
def test_small_unix_modes_dump_to_text_that_parses_back(mode: int) -> None:
    listener = Listener(bind="unix:/run/a.sock", app="a", unix_mode=mode)
    shown = listener.model_dump(mode="json")["unix_mode"]
    assert Listener.model_validate(
        {"bind": "unix:/run/a.sock", "app": "a", "unix_mode": shown}
    ) == (listener)


def test_tls_password_is_masked_in_json_dumps() -> None:
    config = validate_config(FULL, Path("/srv/site"))
    dumped = config.model_dump(mode="json")
    assert dumped["listeners"]["public"]["tls"]["password"] == "********"  # noqa: S105 - the mask
    assert "hunter2" not in str(dumped)
    assert "hunter2" not in config.model_dump_json()
    assert "hunter2" not in repr(config)
    tls = config.listeners["public"].tls
    assert tls is not None
    assert isinstance(tls.password, SecretStr)


def test_absent_password_stays_absent() -> None:
    tls = TlsSettings(certificate=Path("/c.pem"))
    assert tls.model_dump(mode="json")["password"] is None


@pytest.mark.parametrize("target", ["@health", "@metrics"])
def test_builtins_can_be_routed(target: str) -> None:
    data = {"listeners": {"admin": {"bind": "127.0.0.1:9000", "routes": {"/x": target}}}}
    assert validate_config(data, Path("/srv")).listeners["admin"].routes == {"/x": target}


def test_unknown_builtins_are_refused() -> None:
    data = {"listeners": {"admin": {"bind": "127.0.0.1:9000", "routes": {"/x": "@status"}}}}
    with pytest.raises(ValidationError, match="is not a built-in"):
        validate_config(data, Path("/srv"))


@pytest.mark.parametrize("section", ["listeners", "apps"])
def test_table_names_are_checked(section: str) -> None:
    data = {
        "listeners": {"public": {"bind": "127.0.0.1:8000", "app": "site"}},
        "apps": {"site": {"target": "site:app"}},
    }
    data[section]["bad name"] = data[section].pop(next(iter(data[section])))
    with pytest.raises(ValidationError) as caught:
        validate_config(data, Path("/srv"))
    [error] = caught.value.errors()
    assert error["loc"] == (section, "bad name", "[key]")


# ------------------------------------------------------------------- HTTP/2


def listener_with(**keys: Any) -> dict[str, Any]:
    return {"listeners": {"web": {"bind": "127.0.0.1:8000", "app": "site", **keys}}}


def http2_of(**keys: Any) -> Http2Settings:
    return validate_config(listener_with(http2=keys), Path("/srv")).listeners["web"].http2


def refused(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        validate_config(data, Path("/srv"))
    return [(error["loc"], error["type"]) for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("protocols", "kept"),
    [
        (["http/1.1", "h2"], ("http/1.1", "h2")),
        (["h2", "http/1.1"], ("h2", "http/1.1")),
        (["h2"], ("h2",)),
        (["http/1.1"], ("http/1.1",)),
    ],
)
def test_protocols_accepted(protocols: list[str], kept: tuple[str, ...]) -> None:
    config = validate_config(listener_with(protocols=protocols), Path("/srv"))
    assert config.listeners["web"].protocols == kept


@pytest.mark.parametrize(
    ("protocols", "loc"),
    [
        (["h2", "h2"], ("listeners", "web", "protocols")),
        ([], ("listeners", "web", "protocols")),
        (["http/1.1", "h3"], ("listeners", "web", "protocols", 1)),
        ("h2", ("listeners", "web", "protocols")),
    ],
)
def test_protocols_refused(protocols: object, loc: tuple[str | int, ...]) -> None:
    assert [found for found, _ in refused(listener_with(protocols=protocols))] == [loc]


def test_http2_spellings_of_sizes_and_durations() -> None:
    http2 = http2_of(initial_window_size="64KiB", max_frame_size="1MiB", ping_interval="2m")
    assert http2.initial_window_size == 65536
    assert http2.max_frame_size == 1024 * 1024
    assert http2.ping_interval == 120.0
    assert http2_of(initial_window_size=65535, ping_interval=0.5).initial_window_size == 65535


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_concurrent_streams", 1),
        ("max_concurrent_streams", 2**31 - 1),
        ("initial_window_size", 1),
        ("initial_window_size", 2**31 - 1),
        ("max_frame_size", 16384),
        ("max_frame_size", 16777215),
    ],
)
def test_http2_bounds_are_inclusive(key: str, value: int) -> None:
    assert getattr(http2_of(**{key: value}), key) == value


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("max_concurrent_streams", 0, "greater_than_equal"),
        ("max_concurrent_streams", 2**31, "less_than_equal"),
        ("max_concurrent_streams", "lots", "int_parsing"),
        ("initial_window_size", 0, "value_error"),
        ("initial_window_size", 2**31, "value_error"),
        ("initial_window_size", "2GiB", "value_error"),
        ("max_frame_size", 16383, "value_error"),
        ("max_frame_size", "8KiB", "value_error"),
        ("max_frame_size", "16MiB", "value_error"),
        ("ping_interval", 0, "value_error"),
        ("ping_interval", "often", "value_error"),
        ("max_header_list_size", 65536, "extra_forbidden"),
    ],
)
def test_http2_values_refused(key: str, value: object, kind: str) -> None:
    where = ("listeners", "web", "http2", key)
    assert refused(listener_with(http2={key: value})) == [(where, kind)]
