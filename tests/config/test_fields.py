"""Tests for `uvhost.config.fields`: paths resolved against the config's folder, HTTP header
rules, root paths, env names and values, worker counts and trusted networks."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from uvhost.config.fields import (
    Bind,
    ConfigPath,
    ControlSocket,
    EnvName,
    EnvValue,
    HeaderName,
    HeaderValue,
    IPNetwork,
    Protocols,
    RootPath,
    Workers,
)
from uvhost.config.types import ConfigValueError, FdBind, TcpBind, UnixBind


def valid(kind: Any, value: object, base_dir: Path | None = None) -> Any:
    context = {"base_dir": base_dir} if base_dir is not None else None
    return TypeAdapter(kind).validate_python(value, context=context)


def invalid(kind: Any, value: object) -> ConfigValueError:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(kind).validate_python(value, context={"base_dir": Path("/base")})
    [details] = caught.value.errors()
    error = (details.get("ctx") or {}).get("error")
    assert isinstance(error, ConfigValueError), details
    return error


def dump(kind: Any, value: object) -> Any:
    return TypeAdapter(kind).dump_python(value, mode="json")


# -------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    assert valid(ConfigPath, "certs/site.pem", tmp_path) == tmp_path / "certs" / "site.pem"
    assert valid(ConfigPath, "./x", tmp_path) == tmp_path / "x"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    assert valid(ConfigPath, "/etc/site.pem", tmp_path) == Path("/etc/site.pem")


def test_without_a_context_paths_resolve_against_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert valid(ConfigPath, "a.pem") == tmp_path / "a.pem"


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert valid(ConfigPath, "~/x.pem", Path("/base")) == tmp_path / "home" / "x.pem"


def test_an_unknown_user_is_an_error_not_a_crash() -> None:
    error = invalid(ConfigPath, "~no-such-user-uvhost/x.pem")
    assert error.message.startswith("cannot expand ~")


@pytest.mark.parametrize("value", ["", "   ", "a\0b", 5, None, ["a"]])
def test_bad_paths(value: object) -> None:
    error = invalid(ConfigPath, value)
    assert error.message.startswith("expected a file path, got")


def test_paths_serialise_as_text(tmp_path: Path) -> None:
    assert dump(ConfigPath, valid(ConfigPath, "x", tmp_path)) == str(tmp_path / "x")


def test_unix_binds_resolve_against_base_dir(tmp_path: Path) -> None:
    assert valid(Bind, "unix:run/app.sock", tmp_path) == UnixBind(tmp_path / "run" / "app.sock")
    assert valid(Bind, "unix:/run/app.sock", tmp_path) == UnixBind(Path("/run/app.sock"))
    assert valid(Bind, "127.0.0.1:80", tmp_path) == TcpBind("127.0.0.1", 80)
    assert valid(Bind, "fd:4", tmp_path) == FdBind(4)
    assert dump(Bind, UnixBind(tmp_path / "a.sock")) == f"unix:{tmp_path / 'a.sock'}"


def test_control_socket(tmp_path: Path) -> None:
    assert valid(ControlSocket, "auto", tmp_path) == "auto"
    assert valid(ControlSocket, "off", tmp_path) == "off"
    assert valid(ControlSocket, "ctl.sock", tmp_path) == tmp_path / "ctl.sock"
    assert invalid(ControlSocket, 5).message == "5 is not a control socket setting"


# ------------------------------------------------------------- HTTP headers


@pytest.mark.parametrize("name", ["X-Frame-Options", "x-a", "Strict-Transport-Security", "a!#$%&"])
def test_header_names(name: str) -> None:
    assert valid(HeaderName, name) == name


@pytest.mark.parametrize("name", ["", "X A", "X:A", "X\r\nA", "X\0", "é", "(x)", 1])
def test_bad_header_names(name: object) -> None:
    error = invalid(HeaderName, name)
    assert error.message.endswith("is not a valid HTTP header name")
    assert "no spaces or colons" in error.hint


@pytest.mark.parametrize("value", ["nosniff", "", "max-age=1; includeSubDomains", "a\tb", "é $x"])
def test_header_values(value: str) -> None:
    assert valid(HeaderValue, value) == value


@pytest.mark.parametrize(
    "value", ["a\r\nSet-Cookie: x=1", "a\rb", "a\nb", "a\0b", "a\x01b", "a\x1bb", "a\x7f", 5, None]
)
def test_header_values_refuse_control_characters(value: object) -> None:
    error = invalid(HeaderValue, value)
    assert error.message.startswith("header values must be strings without control characters")
    assert "inject" in error.hint


@pytest.mark.parametrize("value", ["€", "a→b", "日本"])
def test_header_values_outside_latin1_are_refused(value: str) -> None:
    """The worker writes values as Latin-1 bytes: such a value passed `check` and then
    stopped every worker at startup."""
    error = invalid(HeaderValue, value)
    assert "has no byte in an HTTP header" in error.message
    assert "percent-encode" in error.hint


@pytest.mark.parametrize(
    "name", ["Content-Length", "transfer-encoding", "Connection", "Keep-Alive", "Upgrade", "TE"]
)
def test_framing_header_names_are_refused_for_every_response(name: str) -> None:
    """A listener-wide content-length or connection header would make every response
    read two ways; uvhost writes those itself."""
    error = invalid(HeaderName, name)
    assert error.message == f"{name} cannot be set for every response"
    assert "writes the framing" in error.hint


# -------------------------------------------------------------- root paths


@pytest.mark.parametrize("value", ["", "/myapp", "/a/b", "/v1.2"])
def test_root_paths(value: str) -> None:
    assert valid(RootPath, value) == value


@pytest.mark.parametrize("value", ["/", "myapp", "/myapp/", "/a?b", "/a#b", "/a b", "/a\nb", 1])
def test_bad_root_paths(value: object) -> None:
    error = invalid(RootPath, value)
    assert error.message.endswith("is not a root path")
    assert "leading slash, no trailing slash" in error.hint


# --------------------------------------------------------------- env names


@pytest.mark.parametrize("name", ["A", "_a", "MODE_2", "lower"])
def test_env_names(name: str) -> None:
    assert valid(EnvName, name) == name


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A=B", "É"])
def test_bad_env_names(name: str) -> None:
    assert invalid(EnvName, name).message.endswith("is not an environment variable name")


@pytest.mark.parametrize(
    ("value", "text"),
    [("prod", "prod"), ("", ""), (8, "8"), (1.5, "1.5"), (True, "true"), (False, "false")],
)
def test_env_values_become_strings(value: object, text: str) -> None:
    assert valid(EnvValue, value) == text


@pytest.mark.parametrize("value", ["a\0b", None, [1], {"a": 1}])
def test_bad_env_values(value: object) -> None:
    error = invalid(EnvValue, value)
    assert error.message.startswith("expected a string, got")
    assert "quote the value" in error.hint


# ------------------------------------------------------------------ workers


@pytest.mark.parametrize(("value", "count"), [(1, 1), (1024, 1024), ("4", 4), ("auto", "auto")])
def test_workers(value: object, count: object) -> None:
    assert valid(Workers, value) == count


@pytest.mark.parametrize("value", [0, 1025, -1, True, 1.5, "x", "²", "AUTO"])
def test_bad_workers(value: object) -> None:
    error = invalid(Workers, value)
    assert error.message.endswith("is not a worker count")
    assert '"auto"' in error.hint


# ----------------------------------------------------------------- networks


@pytest.mark.parametrize(
    ("value", "network", "shown"),
    [
        ("127.0.0.1", ipaddress.ip_network("127.0.0.1/32"), "127.0.0.1"),
        ("10.0.0.0/8", ipaddress.ip_network("10.0.0.0/8"), "10.0.0.0/8"),
        ("10.1.2.3/8", ipaddress.ip_network("10.0.0.0/8"), "10.0.0.0/8"),
        ("::1", ipaddress.ip_network("::1/128"), "::1"),
        ("fd00::/8", ipaddress.ip_network("fd00::/8"), "fd00::/8"),
    ],
)
def test_networks(value: str, network: object, shown: str) -> None:
    parsed = valid(IPNetwork, value)
    assert parsed == network
    assert dump(IPNetwork, parsed) == shown
    assert valid(IPNetwork, shown) == parsed


@pytest.mark.parametrize("value", ["localhost", "10.0.0.0/33", "", 10, None])
def test_bad_networks(value: object) -> None:
    error = invalid(IPNetwork, value)
    assert error.message.endswith("is not an IP address or network")
    assert "10.0.0.0/8" in error.hint


# ---------------------------------------------------------------- protocols


@pytest.mark.parametrize(
    "value",
    [["http/1.1", "h2"], ["h2", "http/1.1"], ["h2"], ["http/1.1"], ("h2",)],
)
def test_protocols(value: list[str]) -> None:
    assert valid(Protocols, value) == tuple(value)  # order kept, and meaningless
    assert dump(Protocols, tuple(value)) == list(value)


@pytest.mark.parametrize(
    ("value", "index", "message", "hint"),
    [
        (["h2c"], 0, '"h2c" is not a protocol name', "HTTP/2 with prior knowledge (h2c)"),
        (["http/1.1", "http/2"], 1, '"http/2" is not a protocol name', 'spelt "h2"'),
        (["HTTP/1.1"], 0, '"HTTP/1.1" is not a protocol name', 'exactly "http/1.1"'),
        ([" h2"], 0, '" h2" is not a protocol name', 'exactly "h2"'),
        (["http/1.0"], 0, '"http/1.0" is not a protocol name', 'served by "http/1.1"'),
        (["h3"], 0, '"h3" is not a protocol name', "does not speak HTTP/3"),
        (["spdy/3"], 0, '"spdy/3" is not a protocol name', 'write "http/1.1" or "h2"'),
        (["h2", 2], 1, "expected a protocol name, got 2", 'write "http/1.1" or "h2"'),
    ],
)
def test_bad_protocol_names_are_blamed_on_their_entry(
    value: list[object], index: int, message: str, hint: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        valid(Protocols, value)
    [details] = caught.value.errors()
    assert details["loc"] == (index,)
    error = (details.get("ctx") or {}).get("error")
    assert isinstance(error, ConfigValueError)
    assert error.message == message
    assert hint in error.hint


@pytest.mark.parametrize(
    ("value", "where"),
    [(["h2", "h2"], (1,)), (["http/1.1", "h2", "http/1.1"], (2,))],
)
def test_a_protocol_listed_twice_is_blamed_on_the_second_entry(
    value: list[str], where: tuple[int, ...]
) -> None:
    error = invalid(Protocols, value)
    assert error.message == f'"{value[where[0]]}" is listed twice'
    assert "order does not matter" in error.hint
    assert error.where == where


def test_a_listener_speaks_at_least_one_protocol() -> None:
    error = invalid(Protocols, [])
    assert error.message == "a listener must speak at least one protocol"
    assert error.where == ()


def test_protocols_are_an_array() -> None:
    with pytest.raises(ValidationError):
        valid(Protocols, "h2")
