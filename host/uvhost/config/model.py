"""The config model: the single source of truth for every key of uvhost.toml.

Invariants:
- Frozen and `extra="forbid"`: a typo is an error, never a silently ignored
  setting, and a loaded config cannot be mutated behind the supervisor's back.
- Every field has a description and an example; the JSON Schema
  (`schemas/uvhost.schema.json`) and `docs/reference/config.md` are generated
  from these and nothing else, so no setting is described twice.
- Defaults are safe in production: every timeout is bounded, request heads
  and bodies have limits, proxy headers are trusted only from localhost.
- Rules that relate several fields (routes to missing apps, clashing binds,
  TLS key/certificate pairs) live in `checks.py`, which reports all of them
  at once with positions; validators here only judge a single value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
)

from uvhost.config.fields import (
    AccessFields,
    AccessFormat,
    Bind,
    ConfigPath,
    ControlSocket,
    DictConfig,
    EnvName,
    EnvValue,
    HeaderName,
    HeaderValue,
    IPNetwork,
    Protocols,
    RedirectTemplate,
    RootPath,
    SiteHosts,
    Workers,
)
from uvhost.config.names import ACCESS_LOG_FIELDS, BUILTIN_TARGETS
from uvhost.config.types import (
    NAME_PATTERN,
    AppTarget,
    ByteSize,
    ConfigValueError,
    Duration,
    SizeRange,
    UnixMode,
    check_name,
)

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


def _listener_name(name: str) -> str:
    return check_name(name, "listener")


def _app_name(name: str) -> str:
    return check_name(name, "app")


def _site_name(name: str) -> str:
    return check_name(name, "site")


def _route_target(target: str) -> str:
    if target.startswith("@") and target not in BUILTIN_TARGETS:
        raise ConfigValueError(
            f'"{target}" is not a built-in', f"the built-ins are {', '.join(BUILTIN_TARGETS)}"
        )
    return target


ListenerName = Annotated[
    str, AfterValidator(_listener_name), Field(json_schema_extra={"pattern": NAME_PATTERN})
]
AppName = Annotated[
    str, AfterValidator(_app_name), Field(json_schema_extra={"pattern": NAME_PATTERN})
]
SiteName = Annotated[
    str, AfterValidator(_site_name), Field(json_schema_extra={"pattern": NAME_PATTERN})
]
RouteTarget = Annotated[str, AfterValidator(_route_target)]
# Only what an editor can tell from the text; `checks.py` judges the rest (//, . and ..).
RoutePrefix = Annotated[str, Field(json_schema_extra={"pattern": r"^/[^?#\s]*$"})]


class Section(BaseModel):
    """Shared model settings: frozen, strict about unknown keys, documented fields."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_default=False,
        use_attribute_docstrings=False,
        hide_input_in_errors=True,
        # Validators are built on first validation, not at import: worker processes
        # only unpickle a plan the supervisor validated, and never pay for them.
        defer_build=True,
    )


class HostSettings(Section):
    """Process-wide settings of the supervisor: worker counts, timeouts, files."""

    workers: Workers = Field(
        1,
        description="Default number of worker processes per worker group. "
        '"auto" starts one per CPU core. An app can override it with its own `workers`.',
        examples=[2, "auto"],
    )
    graceful_timeout: Duration = Field(
        30.0,
        description="How long a draining worker may take to finish in-flight requests and "
        "WebSockets, on stop and on reload, before they are cut.",
        examples=["30s"],
    )
    drain_delay: Duration | None = Field(
        None,
        description="On stop, how long to keep accepting and serving while `@health` "
        "readiness answers 503, before the drain starts: time for a load balancer (a "
        "Kubernetes Service) to stop sending new connections before the sockets close. "
        "Unset: the drain starts at once.",
        examples=["5s"],
    )
    startup_timeout: Duration = Field(
        60.0,
        description="How long a new worker may take to import its apps and finish lifespan "
        "startup before it is counted as failed.",
        examples=["60s"],
    )
    env_files: tuple[ConfigPath, ...] = Field(
        (),
        description="Dotenv files whose variables feed `${VAR}` interpolation in this file. "
        "The process environment wins over a file; later files win over earlier ones.",
        examples=[[".env"]],
    )
    watch: bool = Field(
        True,
        description="Hot-apply edits of this file, its env files and its TLS files while running.",
        examples=[True],
    )
    control_socket: ControlSocket = Field(
        "auto",
        description='Unix socket for `uvhost status`, `reload` and `stop`. "auto" picks an '
        'owner-only folder under $XDG_RUNTIME_DIR (or the temp folder); "off" disables it.',
        examples=["auto", "/run/uvhost/control.sock"],
    )
    pid_file: ConfigPath | None = Field(
        None,
        description="Write the supervisor's PID here while it runs.",
        examples=["/run/uvhost.pid"],
    )
    max_requests: int = Field(
        0,
        ge=0,
        description="Recycle a worker after it has served this many requests (0: never). "
        "A recycled worker is replaced with a roll, so no request is dropped.",
        examples=[10000],
    )
    max_memory: ByteSize | None = Field(
        None,
        description="Recycle a worker whose resident memory (RSS, read by the supervisor once "
        "a second) exceeds this, as `max_requests` does: a replacement starts, and only once "
        "it is ready does the old worker drain, so no request is dropped. Off when left out. "
        "Applies live, without a restart.",
        examples=["512MiB", "2GiB"],
    )
    max_requests_jitter: int = Field(
        0,
        ge=0,
        description="Add a random 0..N to `max_requests` per worker so workers do not all "
        "recycle at once.",
        examples=[500],
    )


class LoggingSettings(Section):
    """What is logged, how it looks and where it goes; changes apply live."""

    level: LogLevel = Field(
        "info", description="Minimum level of uvhost's own logs.", examples=["info"]
    )
    format: Literal["auto", "plain", "json"] = Field(
        "auto",
        description='"plain" text lines, "json" one object per line, or "auto": rich output '
        "on a terminal and plain otherwise.",
        examples=["json"],
    )
    access_log: bool = Field(True, description="Log one line per request.", examples=[False])
    access_format: AccessFormat | None = Field(
        None,
        description="The access line's text, with `{field}` placeholders (format specs such "
        "as `{duration_ms:.1f}` allowed; `{{` for a literal brace). The fields: "
        + ", ".join(f"`{name}`" for name in ACCESS_LOG_FIELDS)
        + ". Left out: uvhost's own line, with the request id at the end when there is one. "
        'With `format = "json"` it is the `message` of each object.',
        examples=[
            '{client} "{method} {path} {protocol}" {status} {bytes} {duration_ms:.1f}ms '
            "rid={request_id}"
        ],
    )
    access_fields: AccessFields | None = Field(
        None,
        description='The fields of each access object with `format = "json"`, in this order '
        "(the same names as `access_format`'s placeholders). Left out: client, method, path, "
        "protocol, status, bytes, duration_ms, app, listener, and request_id when there is one.",
        examples=[["client_ip", "method", "path", "status", "duration_ms", "request_id"]],
    )
    slow_request_threshold: Duration | None = Field(
        None,
        description="Log a request that takes this long or longer once, as it ends, as a "
        'warning on the "uvhost.slow" logger (with its route, app, status, duration and '
        "request id), and count it in the stats (`slow_requests` in `uvhost status --json`, "
        "`uvhost_slow_requests_total` in `@metrics`). Off when left out. Applies live.",
        examples=["2s", "500ms"],
    )
    file: ConfigPath | None = Field(
        None,
        description="Also write logs to this file; it is reopened on SIGUSR1 for logrotate.",
        examples=["/var/log/uvhost.log"],
    )
    dict_config: DictConfig | None = Field(
        None,
        description="A `logging.config.dictConfig` (version 1) applied in the supervisor and in "
        "every worker, and again on each reload: inline as a table, or the name of a JSON, "
        "TOML or YAML file (YAML needs PyYAML installed) that is watched like this file. It is "
        "checked with positions like every other key. With a `root` entry it owns the output "
        "(`format` and `file` are then not used); without one it adds handlers and loggers "
        "beside uvhost's own. `level`, `loggers` and `access_log` are applied after it; a "
        "missing `disable_existing_loggers` means false here. See the operate how-to.",
        examples=[
            "logging.yaml",
            {
                "version": 1,
                "handlers": {"app": {"class": "logging.FileHandler", "filename": "app.log"}},
                "loggers": {"myapp": {"handlers": ["app"], "level": "DEBUG"}},
            },
        ],
    )
    loggers: dict[str, LogLevel] = Field(
        default_factory=dict,
        description="Levels for individual loggers, such as your app's or a library's.",
        examples=[{"uvhost.access": "warning", "myapp": "debug"}],
    )


class TlsSettings(Section):
    """TLS for one listener. Files are re-read when they change, without a restart."""

    certificate: ConfigPath = Field(
        description="PEM certificate chain: the server certificate first, then intermediates.",
        examples=["certs/site.pem"],
    )
    private_key: ConfigPath | None = Field(
        None,
        description="PEM private key; leave out when the key is inside the certificate file.",
        examples=["certs/site.key"],
    )
    password: SecretStr | None = Field(
        None,
        description="Password of an encrypted private key; use `${VAR}` rather than "
        "writing it here. Masked in `uvhost config`.",
        examples=["${TLS_KEY_PASSWORD}"],
    )
    client_ca: ConfigPath | None = Field(
        None,
        description="PEM bundle of CAs trusted to sign client certificates.",
        examples=["certs/clients-ca.pem"],
    )
    client_auth: Literal["none", "optional", "required"] = Field(
        "none",
        description="Ask clients for a certificate: not at all, optionally, or require one "
        "(needs `client_ca`).",
        examples=["required"],
    )
    min_version: Literal["1.2", "1.3"] = Field(
        "1.2", description="Lowest TLS version accepted.", examples=["1.3"]
    )
    ciphers: str | None = Field(
        None,
        description="OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are not configurable).",
        examples=["ECDHE+AESGCM:ECDHE+CHACHA20"],
    )

    @field_serializer("password")
    def _mask_password(self, password: SecretStr | None) -> str | None:
        return None if password is None else "********"


class SiteTlsSettings(Section):
    """A site's own certificate, picked by SNI on the TLS listeners it is served on. The rest
    of TLS (versions, ciphers, client certificates, ALPN) is the listener's: a handshake
    agrees on those before the server name is known."""

    certificate: ConfigPath = Field(
        description="PEM certificate chain for the site's hosts: the server certificate "
        "first, then intermediates. It should name every host of the site (`uvhost check` "
        "warns when it does not).",
        examples=["certs/example.com.pem"],
    )
    private_key: ConfigPath | None = Field(
        None,
        description="PEM private key; leave out when the key is inside the certificate file.",
        examples=["certs/example.com.key"],
    )
    password: SecretStr | None = Field(
        None,
        description="Password of an encrypted private key; use `${VAR}`. Masked in "
        "`uvhost config`.",
        examples=["${SHOP_KEY_PASSWORD}"],
    )

    @field_serializer("password")
    def _mask_password(self, password: SecretStr | None) -> str | None:
        return None if password is None else "********"


HTTP2_MAX = 2**31 - 1
"""The largest HTTP/2 stream count and flow-control window (RFC 9113 6.5.2, 6.9.1)."""


class Http2Settings(Section):
    """HTTP/2 tuning for one listener, used when its `protocols` include `"h2"`. There is no key
    for the header list limit: it is the listener's `max_header_bytes`, advertised as
    SETTINGS_MAX_HEADER_LIST_SIZE. A change applies on reload, like the listener's other keys."""

    max_concurrent_streams: int = Field(
        100,
        ge=1,
        le=HTTP2_MAX,
        description="Most requests a client may have open at once on one connection, "
        "advertised as SETTINGS_MAX_CONCURRENT_STREAMS; a stream beyond it is refused "
        "(RST_STREAM with REFUSED_STREAM), which a client may retry.",
        examples=[100],
    )
    initial_window_size: Annotated[
        ByteSize, SizeRange(1, HTTP2_MAX, "HTTP/2's largest window, RFC 9113 6.9.1")
    ] = Field(
        256 * 1024,
        description="Receive window advertised for each stream (SETTINGS_INITIAL_WINDOW_SIZE): "
        "how much request body a client may send before the app reads it. The connection's "
        "window is 4 times this (at most 2^31-1 bytes), so one connection buffers at most that "
        "much request body; the window reopens as the app consumes the body.",
        examples=["256KiB"],
    )
    max_frame_size: Annotated[ByteSize, SizeRange(16384, 16777215, "RFC 9113 6.5.2")] = Field(
        16384,
        description="Largest frame payload a client may send, advertised as "
        "SETTINGS_MAX_FRAME_SIZE.",
        examples=["16KiB"],
    )
    ping_interval: Duration | None = Field(
        None,
        description="When set, a connection that has sent nothing for this long gets a PING, "
        "and one that does not answer within the next interval is closed: dead peers and "
        "vanished NAT mappings are found. Off when left out.",
        examples=["30s"],
    )


class ProxyProtocolSettings(Section):
    """The PROXY protocol (HAProxy's, v1 text or v2 binary) in front of every connection of
    a listener behind a TCP load balancer: the client and server addresses the app sees, the
    access log and the stats come from the header. Its presence turns it on; from then on a
    connection without a valid header is closed, so only turn it on for a port that only
    the balancer reaches. A change applies on reload, like the listener's other keys."""

    allow: tuple[IPNetwork, ...] = Field(
        min_length=1,
        description="Addresses and networks of the load balancers allowed to send the header; "
        "a connection from anywhere else is closed before it is read, and counted. List the "
        "balancer's own addresses (for an AWS NLB, the subnets it has nodes in), not the "
        "clients'. A Unix-socket peer is always allowed: the socket's permissions decide "
        "who may connect.",
        examples=[["10.0.0.0/8"], ["192.0.2.10", "2001:db8::/32"]],
    )


class RequestIdSettings(Section):
    """Request IDs on one listener: each request carries one id, from a trusted proxy or made
    here, that the app, the response and the access log all see. Its presence turns it on;
    a listener without it pays nothing per request."""

    header: HeaderName = Field(
        "X-Request-ID",
        description="The request header the id is read from and written to: the app finds "
        "it among the scope's headers (`HTTP_X_REQUEST_ID` for WSGI apps) and as "
        '`scope["state"]["request_id"]`, and the response carries it unless the app sets '
        "that header itself.",
        examples=["X-Request-ID", "X-Correlation-ID"],
    )
    trust: Literal["proxies", "all", "none"] = Field(
        "proxies",
        description='Whose incoming id is kept. "proxies": only from a direct peer in this '
        "listener's `forwarded_allow_ips` (or over a Unix socket), the peers already trusted "
        'with forwarded headers; "all": from any client; "none": always a fresh id. An id '
        "not kept, or not 1-200 visible ASCII characters, is replaced by a fresh one, so the "
        "app never sees a value a client chose.",
        examples=["proxies"],
    )
    response: bool = Field(
        True, description="Return the id on the response, in the same header.", examples=[True]
    )


class Listener(Section):
    """One listening socket and what it serves: a whole app, or apps by path prefix."""

    bind: Bind = Field(
        description='Where to listen: "HOST:PORT", "[IPv6]:PORT", "unix:PATH", "fd:N" '
        '(a socket inherited from the parent) or "systemd:NAME" (a socket-activated '
        "socket, by its FileDescriptorName=).",
        examples=["127.0.0.1:8000", "[::]:8443", "unix:run/app.sock", "fd:3", "systemd:web"],
    )
    app: AppName | None = Field(
        None,
        description="Serve this whole port with one app (use either `app` or `routes`). With "
        "`[sites]` on this listener, it serves the hosts no site names.",
        examples=["site"],
    )
    routes: dict[RoutePrefix, RouteTarget] | None = Field(
        None,
        description="Path prefix → app name, or a built-in (`@health`, `@metrics`). The "
        "longest prefix matching on `/` boundaries wins; the app gets the prefix as "
        "`root_path` and the full `path`. With `[sites]` on this listener, these routes serve "
        "the hosts no site names; a listener with sites may leave out both `app` and "
        "`routes`, and then answers such hosts 404, as it answers a path no route serves.",
        examples=[{"/": "site", "/api": "api", "/healthz": "@health"}],
    )
    backlog: int = Field(
        2048, ge=1, le=65535, description="Length of the kernel's accept queue.", examples=[2048]
    )
    unix_mode: UnixMode | None = Field(
        None,
        description="Permission bits of a `unix:` socket file; default follows the umask.",
        examples=["660"],
    )
    keep_alive_timeout: Duration = Field(
        5.0,
        description="Close an idle keep-alive connection after this long.",
        examples=["5s"],
    )
    header_timeout: Duration = Field(
        10.0,
        description="A client must send a complete request head within this time "
        "(slowloris protection); otherwise 408 and close. On TLS listeners the handshake "
        "must also finish within it.",
        examples=["10s"],
    )
    body_timeout: Duration = Field(
        60.0,
        description="Longest pause allowed between pieces of a request body while uvhost is "
        "reading it; a client that stalls longer gets 408 (or a close, if the response has "
        "begun). Pauses uvhost causes itself, while the app is not reading, do not count.",
        examples=["60s"],
    )
    send_timeout: Duration = Field(
        60.0,
        description="Longest time a client may take none of the bytes waiting for it "
        "while writing is paused (measured by what its TCP stack acknowledges, so a slow "
        "reader that takes anything is never cut); the connection is then dropped and the "
        "app's pending `send` returns, so a client that stops reading cannot hold a "
        "connection and its app forever. Covers WebSockets on this listener too.",
        examples=["60s"],
    )
    max_header_bytes: ByteSize = Field(
        65536,
        description="Largest request head (request line and headers); beyond it 431.",
        examples=["64KiB"],
    )
    limit_concurrency: int | None = Field(
        None,
        ge=1,
        description="Most connections served at once per worker; beyond it new requests "
        "get 503. Unlimited when left out.",
        examples=[1000],
    )
    proxy_headers: bool = Field(
        False,
        description="Trust X-Forwarded-For and X-Forwarded-Proto from `forwarded_allow_ips`.",
        examples=[True],
    )
    forwarded_allow_ips: tuple[IPNetwork, ...] = Field(
        (ipaddress.ip_network("127.0.0.1"),),
        description="Addresses and networks of the proxies whose forwarded headers are trusted.",
        examples=[["127.0.0.1", "10.0.0.0/8"]],
    )
    server_header: bool = Field(
        True, description="Send `Server: uvhost` on responses.", examples=[False]
    )
    date_header: bool = Field(
        True, description="Send a `Date` header on responses.", examples=[True]
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        description="Headers added to every response unless the app sets them itself. A "
        "`Server` or `Date` here replaces uvhost's own; the framing headers (`Content-Length`, "
        "`Transfer-Encoding`, `Connection`, `Keep-Alive`, `Upgrade`, `TE`) are refused: uvhost "
        "writes those for each response. Values are Latin-1 text without control characters.",
        examples=[{"Strict-Transport-Security": "max-age=63072000"}],
    )
    root_path: RootPath = Field(
        "",
        description="Prefix a proxy strips before requests reach this listener; the apps see "
        "it at the front of `root_path` and `path`, so the URLs they build include it.",
        examples=["/myapp"],
    )
    protocols: Protocols = Field(
        ("http/1.1", "h2"),
        description='Protocols this listener speaks: `"http/1.1"`, `"h2"` (HTTP/2) or both, '
        "in any order. With TLS they are offered by ALPN, and h2 is always preferred when both "
        'are allowed. Without TLS (TCP, unix, fd, systemd), `"h2"` accepts HTTP/2 with prior '
        "knowledge (h2c: a client that opens with the HTTP/2 connection preface, as proxies "
        'and service meshes do) besides HTTP/1.1; `["h2"]` alone accepts only the preface, and '
        "over TLS offers only h2. Settings for HTTP/2 are in the `http2` table.",
        examples=[["http/1.1", "h2"], ["http/1.1"], ["h2"]],
    )
    http2: Http2Settings = Field(
        default_factory=Http2Settings,
        description="HTTP/2 settings for this listener.",
        examples=[{"max_concurrent_streams": 100, "initial_window_size": "256KiB"}],
    )
    tls: TlsSettings | None = Field(
        None, description="Serve HTTPS with these certificates.", examples=[None]
    )
    request_id: RequestIdSettings | None = Field(
        None,
        description="Give every request an id (see the `request_id` table). Off when left out.",
        examples=[{"header": "X-Request-ID", "trust": "proxies"}],
    )
    proxy_protocol: ProxyProtocolSettings | None = Field(
        None,
        description="Expect a PROXY protocol header (v1 or v2) before anything else on each "
        "connection, from the load balancers in `allow`. It must arrive within "
        "`header_timeout`; with `tls`, it comes before the TLS handshake, in cleartext, as "
        "balancers send it. Off when left out.",
        examples=[{"allow": ["10.0.0.0/8"]}],
    )


class WebSocketSettings(Section):
    """How an app's WebSocket connections are handled."""

    enabled: bool = Field(
        True,
        description="Accept WebSocket upgrades; when off, an upgrade is answered as plain HTTP.",
        examples=[False],
    )
    max_message_bytes: ByteSize = Field(
        1024 * 1024,
        description="Largest message accepted; a bigger one closes the connection with 1009.",
        examples=["1MiB"],
    )
    max_queue: int = Field(
        32,
        ge=1,
        le=65536,
        description="Received messages buffered while the app is busy; beyond it the socket "
        "stops being read (back-pressure).",
        examples=[32],
    )
    ping_interval: Duration = Field(
        20.0, description="Send a ping this often to detect dead peers.", examples=["20s"]
    )
    ping_timeout: Duration = Field(
        20.0,
        description="Close the connection when a ping is not answered in time.",
        examples=["20s"],
    )
    per_message_deflate: bool = Field(
        True, description="Offer permessage-deflate compression.", examples=[False]
    )
    deflate_min_bytes: ByteSize = Field(
        128,
        description="With compression negotiated, messages shorter than this are sent "
        "uncompressed: deflating a few bytes costs more CPU than it saves on the wire. "
        "1 compresses every message.",
        examples=["1KiB"],
    )


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ConfigValueError(
            f"not a valid regular expression: {error}",
            "write a Python regular expression, e.g. '\\.[0-9a-f]{8,}\\.' for hashed names",
        ) from None
    return value


def _file_name(value: str) -> str:
    if "/" in value or "\\" in value or "\0" in value or value in (".", ".."):
        raise ConfigValueError(
            f"{value!r} is not a plain file name", 'write a name such as "index.html"'
        )
    return value


def _relative_file(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if not value or value.startswith("/") or "\0" in value or ".." in parts:
        raise ConfigValueError(
            f"{value!r} is not a file inside the folder",
            'write a path relative to the folder, such as "index.html"',
        )
    return value


def _extension(value: str) -> str:
    if not re.fullmatch(r"\.[A-Za-z0-9][A-Za-z0-9._+-]*", value):
        raise ConfigValueError(
            f"{value!r} is not a file extension", 'write it with its dot: ".webmanifest"'
        )
    return value.lower()


def _media_type(value: str) -> str:
    if not re.fullmatch(r"[\w.+-]+/[\w.+-]+(\s*;.*)?", value):
        raise ConfigValueError(
            f"{value!r} is not a media type", 'write type/subtype, e.g. "application/wasm"'
        )
    return value


Pattern = Annotated[str, AfterValidator(_pattern)]
FileName = Annotated[str, AfterValidator(_file_name)]
RelativeFile = Annotated[str, AfterValidator(_relative_file)]
Extension = Annotated[str, AfterValidator(_extension)]
MediaType = Annotated[HeaderValue, AfterValidator(_media_type)]


class StaticSettings(Section):
    """How a folder app serves its files: `[apps.NAME.static]`.

    A table of its own rather than more keys beside `folder`: an app's flat keys
    mean the same for every app, and these mean something only for a folder, so
    an app with a `target` that carries a `static` table is one clear error, and
    the reference lists them together. Directory listings do not exist: a folder
    without its index file is a 404."""

    index: FileName = Field(
        "index.html",
        description="The file served for a path that names a folder (`/docs/` serves "
        '`docs/index.html`); "" serves nothing there. A folder asked for without its '
        "trailing slash is redirected to it (308), so relative links in the page work.",
        examples=["index.html", ""],
    )
    fallback: RelativeFile | None = Field(
        None,
        description="For single-page apps: a file (relative to the folder) answered with 200 "
        "for a path under the mount that names no file, so the client-side router shows the "
        "page. Never for a path with a file extension (a missing `app.js` stays 404) unless "
        "`fallback_with_extension` is true, never for other methods than GET and HEAD.",
        examples=["index.html"],
    )
    fallback_with_extension: bool = Field(
        False,
        description="Answer `fallback` for missing paths with a file extension too.",
        examples=[True],
    )
    media_types: dict[Extension, MediaType] = Field(
        default_factory=dict,
        description="Content-Type by file extension, added to or overriding the built-in "
        "table (extensions compare case-insensitively). Text types get `charset=utf-8` "
        "unless the value has parameters of its own.",
        examples=[{".webmanifest": "application/manifest+json", ".data": "application/wasm"}],
    )
    cache_control: HeaderValue = Field(
        "no-cache",
        description="Cache-Control of every file but those `immutable` matches. The default "
        "lets browsers keep files but ask each time (a 304 when unchanged), so a deploy is "
        'seen at once; "" sends none.',
        examples=["public, max-age=300", "no-cache"],
    )
    immutable: Pattern | None = Field(
        None,
        description="A regular expression searched in each file's path relative to the "
        "folder (with `/` separators): matching files, fingerprinted by the build, get "
        "`Cache-Control: public, max-age=31536000, immutable`.",
        examples=[r"^assets/.+-[0-9A-Za-z_-]{8,}\.(js|css|woff2|svg|png)$"],
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        description="More headers on every file response (200, 206, 304). The headers "
        "uvhost computes for files (Content-Type, ETag, Last-Modified, Content-Range, "
        "Accept-Ranges, Content-Encoding, Vary, Cache-Control) are set with the keys above, "
        "not here.",
        examples=[{"Access-Control-Allow-Origin": "*"}],
    )
    dotfiles: bool = Field(
        False,
        description="Serve files and folders whose name starts with a dot (`.env`, `.git/`); "
        "off by default, so they are 404.",
        examples=[True],
    )
    follow_symlinks_outside: bool = Field(
        False,
        description="Serve symbolic links that point outside the folder. Off by default: "
        "such a link is 404; links that stay inside are always followed.",
        examples=[True],
    )


class AppSettings(Section):
    """One app: an ASGI or WSGI application to import (`target`), or a folder of files
    (`folder`)."""

    # Editors flag an app with neither or both; `checks.py` says so with a position.
    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["target"]}, {"required": ["folder"]}]}
    )

    target: AppTarget | None = Field(
        None,
        description='The app to import, as "module:attribute". Use either `target` or `folder`.',
        examples=["myproject.main:app"],
    )
    folder: ConfigPath | None = Field(
        None,
        description="Serve the files in this folder instead of an app (GET and HEAD, with "
        "ETag, ranges and precompressed `.br`/`.zst`/`.gz` siblings). It needs no import and "
        "no lifespan; options are in the `static` table.",
        examples=["frontend/dist"],
    )
    factory: bool = Field(
        False,
        description="The target is a function that returns the app; call it at startup.",
        examples=[True],
    )
    interface: Literal["auto", "asgi3", "asgi2", "wsgi"] = Field(
        "auto",
        description='The interface the app speaks: "asgi3", "asgi2" or "wsgi" (PEP 3333, run '
        'in a pool of `threads` per worker). "auto" tells ASGI 3 from ASGI 2 and recognises '
        "plain WSGI apps (Flask, Django's `get_wsgi_application()`); it refuses an app it "
        "cannot tell, so set it when the load error asks.",
        examples=["asgi3", "wsgi"],
    )
    threads: int = Field(
        8,
        ge=1,
        le=1024,
        description="WSGI apps only: threads per worker that run requests. A request holds "
        "its thread while the app runs (the event loop does all the socket I/O, so a slow "
        "client costs no thread); size it as Gunicorn's `--threads`: about the requests "
        "each worker should run at once, given how long they wait on databases and APIs.",
        examples=[8, 32],
    )
    max_queued: int | None = Field(
        None,
        ge=0,
        le=65536,
        description="WSGI apps only: requests that wait for a free thread per worker; "
        "beyond it a request is answered 503 with Retry-After at once, never queued without "
        "bound. Defaults to 4 times `threads`; 0 answers 503 as soon as every thread is busy.",
        examples=[32, 0],
    )
    lifespan: Literal["auto", "on", "off"] = Field(
        "auto",
        description='Run the ASGI lifespan protocol: "on" requires it, "auto" uses it if the '
        'app supports it, "off" skips it.',
        examples=["on"],
    )
    app_dir: ConfigPath | None = Field(
        None,
        description="Folder put first on `sys.path` before importing `target`; defaults to the "
        "config file's folder.",
        examples=["src"],
    )
    workers: Workers | None = Field(
        None,
        description="Worker processes for this app's group; defaults to `host.workers`. Apps "
        "that share a listener must agree.",
        examples=[4],
    )
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        description="Environment variables set in the app's workers before it is imported.",
        examples=[{"MODE": "production"}],
    )
    env_files: tuple[ConfigPath, ...] = Field(
        (),
        description="Dotenv files loaded into the app's environment (under `env`, which wins).",
        examples=[["app.env"]],
    )
    max_body_bytes: ByteSize = Field(
        16 * 1024 * 1024,
        description="Largest request body; a bigger one is answered with 413.",
        examples=["10MiB"],
    )
    root_path: RootPath = Field(
        "",
        description="Prefix a proxy strips before this app's requests reach uvhost (after the "
        "listener's `root_path`); the app sees it at the front of `root_path` and `path`.",
        examples=["/v1"],
    )
    websocket: WebSocketSettings = Field(
        default_factory=WebSocketSettings,
        description="WebSocket settings for this app.",
        examples=[{"max_message_bytes": "1MiB"}],
    )
    static: StaticSettings = Field(
        default_factory=StaticSettings,
        description="How a `folder` app serves its files.",
        examples=[{"fallback": "index.html", "immutable": r"^assets/"}],
    )


class Site(Section):
    """Requests for some host names, on some listeners, and what serves them.

    A request's host (its Host header, or `:authority` on HTTP/2) is compared
    without the port, case-insensitively, after IDNA: exact names first, then
    a wildcard one label up, then the listener's own `app` or `routes`."""

    hosts: SiteHosts = Field(
        description='Host names this site answers for: exact names ("example.com"), '
        'wildcards of one label ("*.example.com" matches "a.example.com", not '
        '"example.com" nor "a.b.example.com") or IP addresses. Unicode names are matched '
        "in their punycode form, as browsers send them.",
        examples=[["example.com", "www.example.com"], ["*.example.com"]],
    )
    listeners: tuple[ListenerName, ...] = Field(
        min_length=1,
        description="The listeners this site is served on.",
        examples=[["https"]],
    )
    app: AppName | None = Field(
        None,
        description="Serve every path of these hosts with one app (use either `app` or `routes`).",
        examples=["shop"],
    )
    routes: dict[RoutePrefix, RouteTarget] | None = Field(
        None,
        description="Path prefix → app name or built-in for these hosts, matched exactly as "
        "a listener's `routes` are.",
        examples=[{"/": "shop", "/api": "api"}],
    )
    tls: SiteTlsSettings | None = Field(
        None,
        description="This site's certificate on its TLS listeners, chosen by the name the "
        "client asks for in the handshake (SNI): exact names, then wildcards, then the "
        "listener's own certificate. A request for a host whose certificate differs from "
        "the one its connection was made with gets 421 Misdirected Request, so a reused "
        "connection never crosses sites.",
        examples=[{"certificate": "certs/shop.pem", "private_key": "certs/shop.key"}],
    )


class RedirectSettings(Section):
    """A redirect the host answers itself, mounted by name like an app (in a listener's or a
    site's `app` or `routes`). It reads no body and runs in no worker group of its own."""

    to: RedirectTemplate = Field(
        description="Where to send the client, with placeholders filled from the request: "
        "`{scheme}`, `{host}` (without the port), `{authority}` (the Host as sent, port "
        "included), `{path}` (the whole path, percent-encoded), `{rest}` (the path below the "
        "mount), `{query}` (`?` and the query, or nothing) and `{uri}` (`{path}{query}`).",
        examples=["https://{host}{uri}", "https://example.com{uri}", "/v2{rest}{query}"],
    )
    status: Literal[301, 302, 303, 307, 308] = Field(
        308,
        description="301 or 308 for a permanent move (308 keeps the method and body), 302, "
        "303 or 307 for a temporary one (307 keeps the method and body).",
        examples=[301],
    )


class AnswerSettings(Section):
    """A fixed response the host answers itself, mounted by name like an app: a
    `robots.txt`, a maintenance 503 with Retry-After, a 410 for a retired path."""

    status: int = Field(
        200,
        ge=200,
        le=599,
        description="The status code. 204 and 304 carry no body, so `body` must be empty "
        "with them.",
        examples=[503],
    )
    body: str = Field(
        "",
        description="The body, sent as UTF-8.",
        examples=["User-agent: *\nDisallow: /admin\n"],
    )
    content_type: HeaderValue = Field(
        "text/plain; charset=utf-8",
        description="The Content-Type of the body.",
        examples=["text/html; charset=utf-8"],
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        description="More response headers (framing headers are refused: uvhost writes them).",
        examples=[{"Retry-After": "120", "Cache-Control": "no-store"}],
    )


class HostConfig(Section):
    """A whole uvhost.toml: the host, logging, listeners and apps."""

    host: HostSettings = Field(
        default_factory=HostSettings, description="Process-wide settings.", examples=[{}]
    )
    logging: LoggingSettings = Field(
        default_factory=LoggingSettings, description="Logging.", examples=[{}]
    )
    listeners: dict[ListenerName, Listener] = Field(
        min_length=1,
        description="The listening sockets, by name.",
        examples=[{"public": {"bind": "127.0.0.1:8000", "app": "site"}}],
    )
    apps: dict[AppName, AppSettings] = Field(
        default_factory=dict,
        description="The ASGI apps, by name.",
        examples=[{"site": {"target": "myproject.main:app"}}],
    )
    redirects: dict[AppName, RedirectSettings] = Field(
        default_factory=dict,
        description="Redirects by name, mountable wherever an app is.",
        examples=[{"to_https": {"to": "https://{host}{uri}", "status": 301}}],
    )
    answers: dict[AppName, AnswerSettings] = Field(
        default_factory=dict,
        description="Fixed answers by name, mountable wherever an app is.",
        examples=[{"maintenance": {"status": 503, "headers": {"Retry-After": "120"}}}],
    )
    sites: dict[SiteName, Site] = Field(
        default_factory=dict,
        description="Sites by name: several domains on one listener, each with its own apps.",
        examples=[{"shop": {"hosts": ["example.com"], "listeners": ["https"], "app": "shop"}}],
    )


def validate_config(data: Mapping[str, Any], base_dir: Path) -> HostConfig:
    """Validate raw (interpolated) data; raises pydantic.ValidationError."""
    return HostConfig.model_validate(data, context={"base_dir": base_dir})
