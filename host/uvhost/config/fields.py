"""Field types that need the config file's folder or carry HTTP rules.

Invariants:
- Relative paths are resolved against the folder of the config file, passed
  as the validation context `{"base_dir": Path}`; without a context they are
  resolved against the current directory. A resolved path is absolute, so a
  printed config (`uvhost config`) means the same wherever it is saved.
- Header names and values, root paths and env names are checked here so no
  later layer has to guard against CR/LF or NUL smuggled in from the file.
"""

from __future__ import annotations

import ipaddress
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema

from uvhost.config.dict_config import parse_dict_config
from uvhost.config.errors import did_you_mean
from uvhost.config.hostnames import HostNameError, site_host
from uvhost.config.names import ACCESS_LOG_FIELDS, ACCESS_LOG_NUMBERS, REDIRECT_FIELDS
from uvhost.config.types import (
    BIND_SCHEMA,
    BindAddress,
    ConfigValueError,
    UnixBind,
    parse_bind,
    show_value,
)


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def resolve_path(value: object, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        text = str(value)
    elif isinstance(value, str) and value.strip() and "\0" not in value:
        text = value
    else:
        raise ConfigValueError(
            f"expected a file path, got {show_value(value)}",
            "write a path, absolute or relative to the config file's folder",
        )
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~name/..." for a user that does not exist, or no home folder
        raise ConfigValueError(
            f"cannot expand ~ in {show_value(value)}: no such user or home folder",
            "write the path without ~, or with the ~user of an existing user",
        ) from None
    return path if path.is_absolute() else _base_dir(info) / path


ConfigPath = Annotated[
    Path,
    PlainValidator(resolve_path),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "minLength": 1}),
]


def resolve_control_socket(value: object, info: ValidationInfo) -> Literal["auto", "off"] | Path:
    if value in ("auto", "off"):
        return "auto" if value == "auto" else "off"
    if isinstance(value, str) and value.strip():
        return resolve_path(value, info)
    raise ConfigValueError(
        f"{show_value(value)} is not a control socket setting",
        'write "auto", "off", or the path of the socket to create',
    )


ControlSocket = Annotated[
    Literal["auto", "off"] | Path,
    PlainValidator(resolve_control_socket),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"anyOf": [{"enum": ["auto", "off"]}, {"type": "string", "minLength": 1}]}),
]


def resolve_bind(value: object, info: ValidationInfo) -> BindAddress:
    bind = parse_bind(value)
    if isinstance(bind, UnixBind) and not bind.path.is_absolute():
        return UnixBind(_base_dir(info) / bind.path)
    return bind


Bind = Annotated[
    BindAddress,
    PlainValidator(resolve_bind),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(BIND_SCHEMA),
]


# ------------------------------------------------------------------ workers


def parse_workers(value: object) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024:
        return value
    raise ConfigValueError(
        f"{show_value(value)} is not a worker count",
        'write a whole number from 1 to 1024, or "auto" for one per CPU core',
    )


Workers = Annotated[
    int | Literal["auto"],
    PlainValidator(parse_workers),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 1024},
                {"const": "auto"},
            ]
        }
    ),
]


# -------------------------------------------------------------- root paths


def parse_root_path(value: object) -> str:
    """A URL path prefix such as "/myapp": leading slash, no trailing slash."""
    if value == "":
        return ""
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.endswith("/")
        or any(ch in value for ch in "?#\r\n\0 \t")
    ):
        raise ConfigValueError(
            f"{show_value(value)} is not a root path",
            'write a path prefix such as "/myapp" (leading slash, no trailing slash), or ""',
        )
    return value


RootPath = Annotated[
    str,
    PlainValidator(parse_root_path),
    WithJsonSchema({"type": "string", "pattern": r"^(/[^?#\s]*[^/?#\s])?$"}),
]


# ------------------------------------------------------------- HTTP headers

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_VALUE_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_VALUE_PATTERN = r"^[^\u0000-\u0008\u000a-\u001f\u007f]*$"
FRAMING_HEADERS = frozenset(
    ("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te")
)
"""Response headers that frame the message or the connection: uvhost writes them itself
for each response, so a listener-wide value would make responses that read two ways."""


def parse_header_name(value: object) -> str:
    if not isinstance(value, str) or not _TOKEN_RE.match(value):
        raise ConfigValueError(
            f"{show_value(value)} is not a valid HTTP header name",
            "header names are letters, digits and !#$%&'*+-.^_`|~, with no spaces or colons",
        )
    if value.lower() in FRAMING_HEADERS:
        raise ConfigValueError(
            f"{value} cannot be set for every response",
            "uvhost writes the framing and connection headers of each response itself; "
            "remove it (an app can still set content-length on its own responses)",
        )
    return value


def parse_header_value(value: object) -> str:
    if not isinstance(value, str) or _FORBIDDEN_VALUE_CHARS.search(value):
        raise ConfigValueError(
            "header values must be strings without control characters (tabs are fine)",
            "control characters would let a value inject extra headers; remove them",
        )
    try:
        value.encode("latin-1")  # what the worker writes on the wire
    except UnicodeEncodeError as error:
        raise ConfigValueError(
            f"header value {show_value(value)} holds {value[error.start]!r}, which has no "
            "byte in an HTTP header",
            "header values are bytes (ASCII, at most Latin-1); percent-encode other text",
        ) from None
    return value


HeaderName = Annotated[
    str,
    PlainValidator(parse_header_name),
    WithJsonSchema({"type": "string", "pattern": _TOKEN_RE.pattern}),
]
HeaderValue = Annotated[
    str,
    PlainValidator(parse_header_value),
    WithJsonSchema({"type": "string", "pattern": _VALUE_PATTERN}),
]


# ------------------------------------------------------- environment names

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME_RE.match(value):
        raise ConfigValueError(
            f"{show_value(value)} is not an environment variable name",
            "use letters, digits and '_', not starting with a digit",
        )
    return value


EnvName = Annotated[
    str,
    PlainValidator(parse_env_name),
    WithJsonSchema({"type": "string", "pattern": _ENV_NAME_RE.pattern}),
]


def parse_env_value(value: object) -> str:
    """Env values are strings; TOML numbers and booleans are accepted and spelt as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and "\0" not in value:
        return value
    raise ConfigValueError(
        f"expected a string, got {show_value(value)}", 'quote the value: KEY = "value"'
    )


EnvValue = Annotated[
    str, PlainValidator(parse_env_value), WithJsonSchema({"type": ["string", "number", "boolean"]})
]


# --------------------------------------------------------- trusted proxies


def parse_network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            pass
    raise ConfigValueError(
        f"{show_value(value)} is not an IP address or network",
        'write an address such as "10.0.0.1" or a network such as "10.0.0.0/8"',
    )


def format_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    single = network.prefixlen == network.max_prefixlen
    return str(network.network_address) if single else str(network)


IPNetwork = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network,
    PlainValidator(parse_network),
    PlainSerializer(format_network, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["127.0.0.1", "10.0.0.0/8", "::1"]}),
]


# ------------------------------------------------------------ protocols

PROTOCOLS = ("http/1.1", "h2")
"""What a listener may speak, by ALPN name (RFC 7301), in the default's order. The order a
config writes carries no meaning: TLS must offer h2 first whatever it is, and a server's
ALPN list is its preference (OpenSSL picks the first of ours the client offers), so pass
the ALPN layer h2 first, never `protocols` as written."""

_PROTOCOL_HINTS = {
    "h2c": 'write "h2": on a listener without TLS it means HTTP/2 with prior knowledge (h2c)',
    "http/2": 'HTTP/2 is spelt "h2", its ALPN name',
    "http/2.0": 'HTTP/2 is spelt "h2", its ALPN name',
    "http2": 'HTTP/2 is spelt "h2", its ALPN name',
    "http/1.0": 'HTTP/1.0 clients are served by "http/1.1"',
    "http/1": 'HTTP/1.x is spelt "http/1.1", its ALPN name',
    "http1": 'HTTP/1.x is spelt "http/1.1", its ALPN name',
    "h3": 'uvhost does not speak HTTP/3; write "http/1.1", "h2" or both',
    "http/3": 'uvhost does not speak HTTP/3; write "http/1.1", "h2" or both',
}


def parse_protocol(value: object) -> str:
    if isinstance(value, str) and value in PROTOCOLS:
        return value
    hint = 'write "http/1.1" or "h2"'
    if isinstance(value, str):
        near = value.strip().lower()
        if near in PROTOCOLS:
            hint = f'write it exactly "{near}": ALPN names are lower case, without spaces'
        hint = _PROTOCOL_HINTS.get(near, hint)
    if not isinstance(value, str):
        raise ConfigValueError(f"expected a protocol name, got {show_value(value)}", hint)
    raise ConfigValueError(f"{show_value(value)} is not a protocol name", hint)


def check_protocols(protocols: tuple[str, ...]) -> tuple[str, ...]:
    """At least one, each once; the order carries no meaning (TLS always prefers h2)."""
    if not protocols:
        raise ConfigValueError(
            "a listener must speak at least one protocol",
            'write ["http/1.1", "h2"], or one of them alone',
        )
    for index, protocol in enumerate(protocols):
        if protocol in protocols[:index]:
            raise ConfigValueError(
                f'"{protocol}" is listed twice',
                "list each protocol once; the order does not matter (TLS always prefers h2)",
                where=(index,),
            )
    return protocols


ProtocolName = Annotated[
    str,
    PlainValidator(parse_protocol),
    WithJsonSchema({"enum": list(PROTOCOLS)}),
]
Protocols = Annotated[
    tuple[ProtocolName, ...],
    AfterValidator(check_protocols),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"enum": list(PROTOCOLS)},
            "minItems": 1,
            "uniqueItems": True,
        }
    ),
]


# ------------------------------------------------------------------ site hosts


def parse_site_host(value: object) -> str:
    """A host a site answers for, in the form requests are compared in (hostnames.py)."""
    if not isinstance(value, str):
        raise ConfigValueError(
            f"expected a host name, got {show_value(value)}", 'write a name such as "example.com"'
        )
    try:
        return site_host(value)
    except HostNameError as error:
        raise ConfigValueError(str(error), error.hint) from None


def check_site_hosts(hosts: tuple[str, ...]) -> tuple[str, ...]:
    """At least one, each once (after normalising: "Example.com" and "example.com." are one)."""
    if not hosts:
        raise ConfigValueError(
            "a site needs at least one host", 'write hosts = ["example.com", "www.example.com"]'
        )
    for index, host in enumerate(hosts):
        if host in hosts[:index]:
            raise ConfigValueError(
                f'"{host}" is listed twice', "list each host once", where=(index,)
            )
    return hosts


SiteHost = Annotated[
    str,
    PlainValidator(parse_site_host),
    WithJsonSchema({"type": "string", "pattern": r"^[^\s/@]+$"}),
]
SiteHosts = Annotated[
    tuple[SiteHost, ...],
    AfterValidator(check_site_hosts),
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1}),
]


# ---------------------------------------------------------------- redirects


def template_parts(
    value: str, hint: str = ""
) -> list[tuple[str, str | None, str | None, str | None]]:
    """`string.Formatter().parse` of a template from the file; an unmatched brace is a
    ConfigValueError (`hint` goes before the advice on literal braces)."""
    try:
        return list(string.Formatter().parse(value))
    except ValueError as error:
        raise ConfigValueError(
            f"{show_value(value)} has an unmatched brace ({error})",
            f"{hint}write a literal brace as {{{{ or }}}}",
        ) from None


def parse_redirect_template(value: object) -> str:
    """A redirect target such as "https://{host}{uri}": placeholders from REDIRECT_FIELDS
    only, no format specs, no characters a Location header cannot carry."""
    known = ", ".join("{" + name + "}" for name in REDIRECT_FIELDS)
    if not isinstance(value, str) or not value:
        raise ConfigValueError(
            f"expected a URL, got {show_value(value)}",
            'write a target such as "https://{host}{uri}"',
        )
    if any(ord(char) <= 32 or ord(char) >= 127 for char in value):
        raise ConfigValueError(
            "a redirect target has spaces, control or non-ASCII characters",
            "percent-encode them (a Location header is visible ASCII)",
        )
    parsed = template_parts(value, f"placeholders are {known}; ")
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in REDIRECT_FIELDS or spec or conversion:
            raise ConfigValueError(
                f'"{{{field}{"!" + conversion if conversion else ""}'
                f'{":" + spec if spec else ""}}}" is not a placeholder of a redirect',
                f"placeholders are {known}",
            )
    return value


RedirectTemplate = Annotated[
    str,
    PlainValidator(parse_redirect_template),
    WithJsonSchema({"type": "string", "pattern": r"^[!-~]+$"}),
]


# ------------------------------------------------------------- access log


def parse_access_format(value: object) -> str:
    """An access-line template such as '{client} "{method} {path}" {status}': placeholders
    from ACCESS_LOG_FIELDS, with format specs that work on the field's kind; no
    conversions (`!r`), which would show escaped text differently from the JSON."""
    if not isinstance(value, str) or not value:
        raise ConfigValueError(
            f"expected a template, got {show_value(value)}",
            "write a line such as '{client} \"{method} {path}\" {status} {duration_ms:.1f}ms'",
        )
    parsed = template_parts(value)
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in ACCESS_LOG_FIELDS:
            raise ConfigValueError(
                f'"{{{field}}}" is not an access log field', did_you_mean(field, ACCESS_LOG_FIELDS)
            )
        if conversion:
            raise ConfigValueError(
                f'"{{{field}!{conversion}}}": conversions are not supported',
                f'write "{{{field}}}"; text fields are escaped already',
            )
        sample = ACCESS_LOG_NUMBERS.get(field, "text")
        try:
            format(sample, spec or "")
        except (ValueError, TypeError) as error:
            raise ConfigValueError(
                f'"{{{field}:{spec}}}" is not a format for this field ({error})',
                f"{field} is {'a number' if field in ACCESS_LOG_NUMBERS else 'text'}",
            ) from None
    return value


def parse_access_fields(value: object) -> tuple[str, ...]:
    """The JSON access line's fields, in order: known names, each once."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigValueError(
            f"expected a list of field names, got {show_value(value)}",
            'write a list such as ["client", "method", "path", "status", "duration_ms"]',
        )
    seen: set[str] = set()
    for index, name in enumerate(value):
        if not isinstance(name, str) or name not in ACCESS_LOG_FIELDS:
            raise ConfigValueError(
                f"{show_value(name)} is not an access log field",
                did_you_mean(str(name), ACCESS_LOG_FIELDS),
                where=(index,),
            )
        if name in seen:
            raise ConfigValueError(
                f'"{name}" is listed twice', "list each field once", where=(index,)
            )
        seen.add(name)
    return tuple(value)


AccessFormat = Annotated[
    str, PlainValidator(parse_access_format), WithJsonSchema({"type": "string"})
]
AccessFields = Annotated[
    tuple[str, ...],
    PlainValidator(parse_access_fields),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"enum": list(ACCESS_LOG_FIELDS)},
            "uniqueItems": True,
            "minItems": 1,
        }
    ),
]

DictConfig = Annotated[
    dict[str, Any],
    PlainValidator(parse_dict_config),
    WithJsonSchema(
        {
            "type": ["object", "string"],
            "description": "A logging.config.dictConfig table (version = 1), or the name of a "
            ".json, .toml or .yaml file holding one.",
        }
    ),
]
