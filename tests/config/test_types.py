"""Tests for `uvhost.config.types`: durations, sizes, binds, targets, names and file modes,
each parsed in one place and printed back as text that parses to the same value."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from uvhost.config.types import (
    BIND_SCHEMA,
    MAX_DURATION,
    ByteSize,
    ConfigValueError,
    FdBind,
    SizeRange,
    SystemdBind,
    TcpBind,
    UnixBind,
    check_name,
    format_duration,
    format_size,
    parse_bind,
    parse_duration,
    parse_mode,
    parse_size,
    parse_target,
)


def refused(parse: object, value: object) -> ConfigValueError:
    assert callable(parse)
    with pytest.raises(ConfigValueError) as caught:
        parse(value)
    return caught.value


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (2.5, 2.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        (".5s", 0.5),
        ("1.5m", 90.0),
        (" 10s ", 10.0),
        ("10 s", 10.0),
        ("1ms", 0.001),
        ("168h", MAX_DURATION),
        (MAX_DURATION, MAX_DURATION),
    ],
)
def test_durations_parse_to_seconds(value: object, seconds: float) -> None:
    parsed = parse_duration(value)
    assert parsed == seconds
    assert isinstance(parsed, float)


@pytest.mark.parametrize(
    "value", ["5", "5 sec", "5d", "1h30m", "s", "-5s", "5S", "1e3s", "\u0665s"]
)
def test_durations_without_a_known_unit_are_refused(value: str) -> None:
    error = refused(parse_duration, value)
    assert error.message == f'"{value}" is not a duration'
    assert "500ms" in error.hint


@pytest.mark.parametrize("value", [0, 0.0, "0s", "0ms", -1, -0.5])
def test_zero_and_negative_durations_are_refused(value: object) -> None:
    error = refused(parse_duration, value)
    assert error.message.startswith("a duration must be positive and finite")
    assert "bounded" in error.hint


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 10**400])
def test_infinite_durations_are_refused(value: float) -> None:
    error = refused(parse_duration, value)
    assert "positive and finite" in error.message or "7-day maximum" in error.message


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_durations(value: bool) -> None:
    error = refused(parse_duration, value)
    assert error.message == f"expected a duration, got {str(value).lower()}"


@pytest.mark.parametrize("value", [None, [1], {"s": 1}])
def test_other_types_are_not_durations(value: object) -> None:
    assert refused(parse_duration, value).message.startswith("expected a duration, got")


@pytest.mark.parametrize("value", [MAX_DURATION + 1, "169h", "10081m"])
def test_durations_over_seven_days_are_refused(value: object) -> None:
    error = refused(parse_duration, value)
    assert error.message.endswith("is longer than the 7-day maximum")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30.0, "30s"),
        (90.0, "90s"),
        (120.0, "2m"),
        (3600.0, "1h"),
        (7200.0, "2h"),
        (0.5, "500ms"),
        (1.5, "1500ms"),
        (0.001, "1ms"),
        (0.0005, "0.0005s"),
        (1e-05, "0.00001s"),
    ],
)
def test_format_duration_picks_the_shortest_exact_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


durations = st.one_of(
    st.floats(min_value=0, max_value=MAX_DURATION, exclude_min=True, allow_nan=False),
    st.integers(min_value=1, max_value=int(MAX_DURATION)).map(float),
    st.integers(min_value=1, max_value=10**6).map(lambda ms: ms / 1000),
    st.floats(min_value=1e-300, max_value=1e-3),
)


@given(durations)
def test_format_duration_round_trips(seconds: float) -> None:
    parsed = parse_duration(seconds)
    text = format_duration(parsed)
    assert parse_duration(text) == parsed


# -------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1, 1),
        (65536, 65536),
        ("10B", 10),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("64KiB", 65536),
        ("2MB", 2_000_000),
        ("16MiB", 16 * 1024 * 1024),
        ("1GB", 1_000_000_000),
        ("1GiB", 1024**3),
        (" 3 KiB ", 3072),
    ],
)
def test_sizes_parse_to_bytes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["1.5KiB", "10kb", "1K", "KiB", "-1KiB", "1TiB", "\u0661KiB"])
def test_malformed_sizes_are_refused(value: str) -> None:
    error = refused(parse_size, value)
    assert error.message == f'"{value}" is not a size'
    assert "64KiB" in error.hint


@pytest.mark.parametrize("value", [0, "0B", "0KiB", -5])
def test_zero_and_negative_sizes_are_refused(value: object) -> None:
    assert refused(parse_size, value).message.startswith("a size must be positive")


@pytest.mark.parametrize("value", [True, 1.5, None, [1]])
def test_other_types_are_not_sizes(value: object) -> None:
    assert refused(parse_size, value).message.startswith("expected a size, got")


@pytest.mark.parametrize(
    ("size", "shown"),
    [(1024, "1KiB"), (65536, "64KiB"), (1024**2, "1MiB"), (3 * 1024**3, "3GiB"), (1000, 1000)],
)
def test_format_size_uses_the_largest_binary_unit(size: int, shown: object) -> None:
    assert format_size(size) == shown


@given(st.integers(min_value=1, max_value=2**48))
def test_format_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size


class Framed(BaseModel):
    frame: Annotated[ByteSize, SizeRange(16384, 16777215, "RFC 9113 6.5.2")] = Field(16384)
    window: Annotated[ByteSize, SizeRange(1, 2**31 - 1)] | None = None


def range_error(**values: object) -> ConfigValueError:
    with pytest.raises(ValidationError) as caught:
        Framed.model_validate(values)
    [details] = caught.value.errors()
    error = (details.get("ctx") or {}).get("error")
    assert isinstance(error, ConfigValueError), details
    return error


@pytest.mark.parametrize(
    ("value", "size"),
    [(16384, 16384), ("16KiB", 16384), ("1MiB", 1024**2), (16777215, 16777215)],
)
def test_a_size_range_keeps_the_sizes_spellings(value: object, size: int) -> None:
    assert Framed.model_validate({"frame": value}).frame == size


def test_a_size_range_is_inclusive_and_exact() -> None:
    range_error(frame=16383)
    error = range_error(frame="16MiB")  # one byte over 2^24-1
    assert error.message == "16MiB (16777216 bytes) is above the maximum of 16777215 bytes"


def test_a_size_range_refuses_what_plain_ge_le_would_let_through() -> None:
    """The reason SizeRange exists: Field(ge=...) on a ByteSize is never checked."""

    class Unchecked(BaseModel):
        size: ByteSize = Field(16384, ge=16384)

    assert Unchecked.model_validate({"size": "8KiB"}).size == 8192  # pydantic's silent pass
    error = range_error(frame="8KiB")
    assert error.message == "8KiB (8192 bytes) is below the minimum of 16KiB (16384 bytes)"
    assert error.hint == "write a size from 16KiB (16384 bytes) to 16777215 bytes (RFC 9113 6.5.2)"


def test_a_size_range_names_the_maximum_in_bytes_when_no_unit_divides_it() -> None:
    error = range_error(window="2GiB")
    assert error.message == "2GiB (2147483648 bytes) is above the maximum of 2147483647 bytes"
    assert error.hint == "write a size from 1 byte to 2147483647 bytes"
    assert Framed.model_validate({"window": 2**31 - 1}).window == 2**31 - 1


def test_a_size_range_still_refuses_what_a_size_refuses() -> None:
    assert range_error(frame="lots").message == '"lots" is not a size'
    assert range_error(frame=0).message.startswith("a size must be positive")


def test_a_size_range_dumps_like_a_size_and_bounds_the_schema() -> None:
    assert Framed(frame=32768).model_dump(mode="json") == {"frame": "32KiB", "window": None}
    frame = Framed.model_json_schema()["properties"]["frame"]
    assert {"type": "integer", "minimum": 16384, "maximum": 16777215} in frame["anyOf"]
    assert any(branch.get("type") == "string" for branch in frame["anyOf"])


# -------------------------------------------------------------------- binds


@pytest.mark.parametrize(
    ("text", "bind"),
    [
        ("127.0.0.1:8000", TcpBind("127.0.0.1", 8000)),
        ("0.0.0.0:0", TcpBind("0.0.0.0", 0)),
        ("localhost:80", TcpBind("localhost", 80)),
        ("api.example.com:65535", TcpBind("api.example.com", 65535)),
        ("[::]:8443", TcpBind("::", 8443)),
        ("[::1]:1", TcpBind("::1", 1)),
        ("unix:/run/app.sock", UnixBind(Path("/run/app.sock"))),
        ("unix:run/app.sock", UnixBind(Path("run/app.sock"))),
        ("fd:3", FdBind(3)),
        ("fd:10", FdBind(10)),
        ("systemd:web", SystemdBind("web")),
        ("systemd:myapp.socket", SystemdBind("myapp.socket")),
        ("systemd:80", SystemdBind("80")),
    ],
)
def test_binds_parse_and_print_back(text: str, bind: object) -> None:
    parsed = parse_bind(text)
    assert parsed == bind
    assert str(parsed) == text
    assert parse_bind(str(parsed)) == parsed


def test_wildcards() -> None:
    assert TcpBind("0.0.0.0", 1).is_wildcard()
    assert TcpBind("::", 1).is_wildcard()
    assert not TcpBind("127.0.0.1", 1).is_wildcard()


def test_a_relative_unix_path_stays_relative_here() -> None:
    # Resolution against the config's folder is the job of fields.resolve_bind.
    bind = parse_bind("unix:sock/x.sock")
    assert isinstance(bind, UnixBind)
    assert not bind.path.is_absolute()


@pytest.mark.parametrize("fd", [0, 1, 2])
def test_standard_streams_are_not_sockets(fd: int) -> None:
    error = refused(parse_bind, f"fd:{fd}")
    assert error.message == f"fd {fd} is standard input, output or error, not a socket"
    assert "fd 3" in error.hint


@pytest.mark.parametrize(
    ("text", "message", "hint_part"),
    [
        ("8000", '"8000" has no port', "HOST:PORT"),
        (":8000", '":8000" has no port', "HOST:PORT"),
        ("127.0.0.1:", '"" is not a port', "0 to 65535"),
        ("127.0.0.1:65536", '"65536" is not a port', "0 to 65535"),
        ("127.0.0.1:http", '"http" is not a port', "0 to 65535"),
        ("127.0.0.1:²", '"²" is not a port', "0 to 65535"),
        ("::1:8000", '"::1:8000": an IPv6 address needs brackets', '"[::1]:8000"'),
        ("[::1]8000", '"[::1]8000" is not a bind address', "HOST:PORT"),
        ("[nope]:80", '"nope" is not an IPv6 address', "IPv6"),
        ("bad_host!:80", '"bad_host!" is not an IP address or host name', "HOST:PORT"),
        ("unix:", '"unix:" has no socket path', "unix:"),
        ("fd:x", '"fd:x": the fd must be a number', "fd:N"),
        ("fd:²", '"fd:²": the fd must be a number', "fd:N"),
        ("", 'expected a bind address, got ""', "HOST:PORT"),
        ("systemd:", '"systemd:": "" is not a systemd socket name', "FileDescriptorName="),
        ("systemd:a:b", '"systemd:a:b": "a:b" is not a systemd socket name', "no ':'"),
        ("systemd:a b", '"systemd:a b": "a b" is not a systemd socket name', "no ':'"),
        ("systemd:é", '"systemd:é": "é" is not a systemd socket name', "printable ASCII"),
    ],
)
def test_bad_binds_say_what_is_wrong(text: str, message: str, hint_part: str) -> None:
    error = refused(parse_bind, text)
    assert error.message == message
    assert hint_part in error.hint


@pytest.mark.parametrize("value", [8000, None, True, ["127.0.0.1:80"]])
def test_binds_are_strings(value: object) -> None:
    assert refused(parse_bind, value).message.startswith("expected a bind address, got")


# ------------------------------------------------------------- app targets


@pytest.mark.parametrize("target", ["main:app", "pkg.mod:app", "pkg.mod:factory.app", "_m:_a"])
def test_targets(target: str) -> None:
    assert parse_target(target) == target


@pytest.mark.parametrize("target", ["main", "main:", ":app", "a-b:app", "m:app()", "1m:app", 3])
def test_bad_targets(target: object) -> None:
    error = refused(parse_target, target)
    assert error.message.endswith("is not an app target")
    assert "module:attribute" in error.hint


# -------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["public", "a", "api-v2", "x_1", "0", "A" * 63])
def test_names(name: str) -> None:
    assert check_name(name, "listener") == name


@pytest.mark.parametrize("name", ["", "-a", "_a", "a b", "a.b", "a+b", "@a", "é", "A" * 64])
def test_bad_names(name: str) -> None:
    error = refused(lambda value: check_name(value, "app"), name)
    assert error.message.endswith("is not a valid app name")
    assert "at most 63" in error.hint


# ----------------------------------------------------------- unix file mode


@pytest.mark.parametrize(
    ("value", "mode"),
    [(0o660, 0o660), ("660", 0o660), ("0660", 0o660), ("0o600", 0o600), ("1777", 0o1777), (0, 0)],
)
def test_modes(value: object, mode: int) -> None:
    assert parse_mode(value) == mode


@pytest.mark.parametrize("value", ["888", "66", "rw-rw----", "0x660", 0o10000, -1, True, 6.6])
def test_bad_modes(value: object) -> None:
    error = refused(parse_mode, value)
    assert error.message.endswith("is not a file mode")
    assert "0o660" in error.hint


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("systemd:web", True),
        ("systemd:my-app.socket", True),
        ("systemd:" + "n" * 255, True),
        ("systemd:" + "n" * 256, False),
        ("systemd:", False),
        ("systemd:a:b", False),
        ("systemd:a b", False),
    ],
)
def test_the_schema_pattern_agrees_on_systemd_names(text: str, matches: bool) -> None:
    assert bool(re.match(BIND_SCHEMA["pattern"], text)) == matches
    try:
        parse_bind(text)
    except ConfigValueError:
        assert not matches
    else:
        assert matches
