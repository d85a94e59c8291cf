"""Reusable value types of the config language: durations, sizes, binds, names.

Invariants:
- Each type parses in exactly one place (a plain validator), so a bad value
  yields one error, never a cascade of union-member errors from pydantic.
- Every parse failure raises `ConfigValueError`, whose `hint` says what a
  valid value looks like; `errors.py` shows it under the message.
- Each type serialises back to the text a person would write ("30s",
  "64KiB", "unix:/run/x.sock"), and parsing that text gives the same value,
  so `uvhost config` output is itself a valid config.
- Nothing here touches the network or the file system.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


class ConfigValueError(ValueError):
    """A value the config language rejects, with a hint for the person fixing it.

    `where` narrows the blame to a part of the value, as a key path below it: a
    validator of a whole array that finds one bad entry says `where=(index,)`, so
    the error points at that entry rather than at the array.
    """

    def __init__(self, message: str, hint: str = "", *, where: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where


# ---------------------------------------------------------------- durations

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)\s*$", re.ASCII)
_DURATION_HINT = 'write a number of seconds or a string such as "500ms", "30s", "2m" or "1h"'
MAX_DURATION = 7 * 24 * 3600.0


def parse_duration(value: object) -> float:
    """Seconds as a float; numbers are seconds, strings carry a unit."""
    if isinstance(value, bool):
        raise ConfigValueError(f"expected a duration, got {_show(value)}", _DURATION_HINT)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too big for a float is longer than any limit
            seconds = math.inf
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ConfigValueError(f"{_show(value)} is not a duration", _DURATION_HINT)
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ConfigValueError(f"expected a duration, got {_show(value)}", _DURATION_HINT)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigValueError(
            f"a duration must be positive and finite, got {_show(value)}",
            'every timeout is bounded; pick a positive limit such as "30s"',
        )
    if seconds > MAX_DURATION:
        raise ConfigValueError(
            f"{_show(value)} is longer than the 7-day maximum", "use a shorter duration"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest unit that shows `seconds` exactly and parses back to it."""
    seconds = float(seconds)
    milliseconds = seconds * 1000
    if seconds >= 1 and seconds.is_integer():
        whole = int(seconds)
        if whole % 3600 == 0:
            return f"{whole // 3600}h"
        if whole % 60 == 0:
            return f"{whole // 60}m"
        return f"{whole}s"
    if milliseconds.is_integer() and parse_duration(f"{int(milliseconds)}ms") == seconds:
        return f"{int(milliseconds)}ms"
    # repr() is the shortest text that reads back as the same float, but it may use an
    # exponent ("1e-05"), which the duration syntax has no room for: spell it out.
    return f"{Decimal(repr(seconds)):f}s"


Duration = Annotated[
    float,
    PlainValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*(ms|s|m|h)\s*$"},
            ],
            "description": 'Seconds as a number, or a string with a unit: "500ms", "30s", "2m".',
        }
    ),
]


# -------------------------------------------------------------------- sizes

_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)\s*$", re.ASCII)
_SIZE_HINT = 'write a number of bytes or a string such as "64KiB", "16MiB" or "1GiB"'


def parse_size(value: object) -> int:
    """Bytes as an int; numbers are bytes, strings carry a unit (KiB = 1024, KB = 1000)."""
    if isinstance(value, bool):
        raise ConfigValueError(f"expected a size, got {_show(value)}", _SIZE_HINT)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match is None:
            raise ConfigValueError(f"{_show(value)} is not a size", _SIZE_HINT)
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    else:
        raise ConfigValueError(f"expected a size, got {_show(value)}", _SIZE_HINT)
    if size <= 0:
        raise ConfigValueError(f"a size must be positive, got {_show(value)}", _SIZE_HINT)
    return size


def format_size(size: int) -> str | int:
    """The largest binary unit that divides `size`, or plain bytes."""
    for unit in ("GiB", "MiB", "KiB"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return size


ByteSize = Annotated[
    int,
    PlainValidator(parse_size),
    PlainSerializer(format_size, return_type=str | int),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\s*\d+\s*(B|KB|MB|GB|KiB|MiB|GiB)\s*$"},
            ],
            "description": 'Bytes as a number, or a string with a unit: "64KiB", "16MiB".',
        }
    ),
]


@dataclass(frozen=True, slots=True)
class SizeRange:
    """Bounds of a `ByteSize` field: `Annotated[ByteSize, SizeRange(16384, 16777215, why)]`.

    pydantic's own `ge=` / `le=` do not reach a type with a plain validator: on a
    `ByteSize` they are accepted and silently never checked. This marker checks
    the parsed size, says the bounds as a person writes them, and puts them in the
    JSON Schema (on the number form; a string such as "8KiB" is only checked on load).
    """

    minimum: int
    maximum: int
    why: str = ""

    def check(self, size: int) -> int:
        if self.minimum <= size <= self.maximum:
            return size
        bound = "below the minimum" if size < self.minimum else "above the maximum"
        limit = self.minimum if size < self.minimum else self.maximum
        hint = f"write a size from {_show_size(self.minimum)} to {_show_size(self.maximum)}"
        raise ConfigValueError(
            f"{_show_size(size)} is {bound} of {_show_size(limit)}",
            f"{hint} ({self.why})" if self.why else hint,
        )

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = dict(handler(schema))
        json_schema["anyOf"] = [
            {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
            if branch.get("type") == "integer"
            else branch
            for branch in json_schema.get("anyOf", ())
        ]
        return json_schema


def _show_size(size: int) -> str:
    """16384 as "16KiB (16384 bytes)", 16777215 as "16777215 bytes": exact and readable."""
    shown, exact = format_size(size), f"{size} byte" if size == 1 else f"{size} bytes"
    return exact if isinstance(shown, int) else f"{shown} ({exact})"


# -------------------------------------------------------------------- binds

_BIND_HINT = 'write "HOST:PORT", "[IPv6]:PORT", "unix:/path/to.sock", "fd:N" or "systemd:NAME"'
# systemd's FileDescriptorName=: printable ASCII without ":" or spaces, at most 255.
SYSTEMD_NAME_PATTERN = r"[!-9;-~]{1,255}"
_SYSTEMD_NAME_RE = re.compile(rf"^{SYSTEMD_NAME_PATTERN}$", re.ASCII)
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True, slots=True)
class TcpBind:
    """A TCP address; `host` is an IP literal or a host name, port 0 picks a free port."""

    host: str
    port: int
    kind: Literal["tcp"] = "tcp"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def is_wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::")  # noqa: S104 - comparing, not binding


@dataclass(frozen=True, slots=True)
class UnixBind:
    """A Unix domain socket path (relative paths are resolved against the config's folder)."""

    path: Path
    kind: Literal["unix"] = "unix"

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True, slots=True)
class FdBind:
    """A listening socket inherited from the parent process as file descriptor `fd`."""

    fd: int
    kind: Literal["fd"] = "fd"

    def __str__(self) -> str:
        return f"fd:{self.fd}"


@dataclass(frozen=True, slots=True)
class SystemdBind:
    """A socket systemd passed by socket activation, found by name in LISTEN_FDNAMES.

    The name is the socket unit's FileDescriptorName= (by default the unit's
    name, e.g. "myapp.socket"); it is looked up when the supervisor starts,
    so a config naming one validates anywhere.
    """

    name: str
    kind: Literal["systemd"] = "systemd"

    def __str__(self) -> str:
        return f"systemd:{self.name}"


BindAddress = TcpBind | UnixBind | FdBind | SystemdBind


def parse_bind(value: object) -> BindAddress:
    """One parser for every bind kind; `sockets.py` is the only code that opens them."""
    if isinstance(value, TcpBind | UnixBind | FdBind | SystemdBind):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ConfigValueError(f"expected a bind address, got {_show(value)}", _BIND_HINT)
    text = value.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path or "\0" in path:
            raise ConfigValueError(f"{_show(value)} has no socket path", _BIND_HINT)
        return UnixBind(Path(path))
    if text.startswith("fd:"):
        digits = text[len("fd:") :]
        if not _is_number(digits):
            raise ConfigValueError(f"{_show(value)}: the fd must be a number", _BIND_HINT)
        fd = int(digits)
        if fd < 3:
            raise ConfigValueError(
                f"fd {fd} is standard input, output or error, not a socket",
                "inherited sockets start at fd 3 (systemd passes them from fd 3)",
            )
        return FdBind(fd)
    if text.startswith("systemd:"):
        name = text[len("systemd:") :]
        if not _SYSTEMD_NAME_RE.match(name):
            raise ConfigValueError(
                f"{_show(value)}: {_show(name)} is not a systemd socket name",
                "write the socket unit's FileDescriptorName= (printable ASCII, no ':' or spaces),"
                ' e.g. "systemd:web"',
            )
        return SystemdBind(name)
    return _parse_tcp(text, value)


def _parse_tcp(text: str, original: object) -> TcpBind:
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigValueError(f"{_show(original)} is not a bind address", _BIND_HINT)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigValueError(
                f"{_show(host)} is not an IPv6 address", "inside [...] write an IPv6 address"
            ) from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigValueError(f"{_show(original)} has no port", _BIND_HINT)
        if ":" in host:
            raise ConfigValueError(
                f"{_show(original)}: an IPv6 address needs brackets",
                f'write "[{host}]:{port_text}"',
            )
        if not _is_ipv4(host) and not _HOSTNAME_RE.match(host):
            raise ConfigValueError(f"{_show(host)} is not an IP address or host name", _BIND_HINT)
    if not _is_number(port_text) or int(port_text) > 65535:
        raise ConfigValueError(
            f"{_show(port_text)} is not a port",
            "a port is a number from 0 to 65535 (0 picks a free one)",
        )
    return TcpBind(host, int(port_text))


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²", which int() then refuses."""
    return text.isascii() and text.isdigit()


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


BIND_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"^(unix:.+|fd:\d+|systemd:"
    + SYSTEMD_NAME_PATTERN
    + r"|\[[0-9A-Fa-f:.]+\]:\d{1,5}|[A-Za-z0-9.-]+:\d{1,5})$",
    "description": 'Where to listen: "HOST:PORT", "[IPv6]:PORT", "unix:PATH", "fd:N" '
    'or "systemd:NAME" (a socket-activated socket, by its FileDescriptorName=).',
    "examples": ["127.0.0.1:8000", "[::]:8443", "unix:/run/app.sock", "fd:3", "systemd:web"],
}


# ------------------------------------------------------------- app targets

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
TARGET_PATTERN = rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$"
_TARGET_RE = re.compile(TARGET_PATTERN)


def parse_target(value: object) -> str:
    if not isinstance(value, str) or not _TARGET_RE.match(value):
        module = value.partition(":")[0] if isinstance(value, str) else ""
        file_like = "/" in module or "\\" in module or module.endswith(".py")
        raise ConfigValueError(
            f"{_show(value)} is not an app target",
            'name the module as you would import it: "api.main:app", not "api/main.py:app"'
            if file_like
            else 'write "module:attribute", e.g. "myproject.main:app"',
        )
    return value


AppTarget = Annotated[
    str,
    PlainValidator(parse_target),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TARGET_PATTERN,
            "description": 'The ASGI app to import, as "module:attribute".',
            "examples": ["myproject.main:app"],
        }
    ),
]


# -------------------------------------------------------------------- names

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
_NAME_RE = re.compile(NAME_PATTERN)


def check_name(name: str, what: str) -> str:
    """Names appear in logs, metrics labels and the dashboard, so keep them plain."""
    if not _NAME_RE.match(name):
        raise ConfigValueError(
            f"{_show(name)} is not a valid {what} name",
            "use ASCII letters, digits, '-' and '_' (at most 63), starting with a letter or digit",
        )
    return name


# ----------------------------------------------------------- unix file mode


def parse_mode(value: object) -> int:
    """A permission mode: TOML's 0o660, or a string of octal digits such as "660"."""
    mode: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"(0o?)?[0-7]{3,4}", value.strip()):
        mode = int(value.strip().removeprefix("0o"), 8)
    if mode is None or not 0 <= mode <= 0o7777:
        raise ConfigValueError(
            f"{_show(value)} is not a file mode", 'write an octal mode such as 0o660 or "660"'
        )
    return mode


UnixMode = Annotated[
    int,
    PlainValidator(parse_mode),
    PlainSerializer(lambda mode: f"{mode:03o}", return_type=str),  # "007", not "7": parses back
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 0o7777},
                {"type": "string", "pattern": r"^\s*(0o?)?[0-7]{3,4}\s*$"},
            ],
            "description": 'Permission bits for a Unix socket file: 0o660 or "660".',
        }
    ),
]


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML, for messages."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


show_value = _show
