"""Rules that relate several fields, each reported at the key or value to fix.

Invariants:
- Runs only on a validated `HostConfig` (possibly pruned of sections that
  failed validation); names in `unvalidated_apps` exist in the file but
  failed validation, so a route to one is not also called "missing".
- Reads files (TLS material, env files, folders) but opens no socket and
  imports no app.
- Every rule reports all its findings; none stops at the first.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from uvhost.config.errors import Problem, did_you_mean
from uvhost.config.hostnames import parent_wildcard
from uvhost.config.model import (
    AppSettings,
    HostConfig,
    Listener,
    LoggingSettings,
    SiteTlsSettings,
    TlsSettings,
)
from uvhost.config.names import BUILTIN_TARGETS
from uvhost.config.plan import asks_workers, components, normalise_prefix, requested_workers
from uvhost.config.types import BindAddress, SystemdBind, TcpBind, UnixBind

UNIX_PATH_MAX = 107  # sun_path holds 108 bytes including the terminating NUL


def check_config(
    config: HostConfig,
    unvalidated_apps: frozenset[str] = frozenset(),
    unvalidated: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> list[Problem]:
    """All cross-field problems; `unvalidated` listeners and sites (raw tables by section and
    name) get their routes checked, and the targets they name count as served."""
    problems: list[Problem] = []
    known_apps = (
        frozenset(config.apps) | frozenset(config.redirects) | frozenset(config.answers)
    ) | unvalidated_apps
    with_sites = {name for site in config.sites.values() for name in site.listeners}
    for name, listener in config.listeners.items():
        problems.extend(
            check_routing(
                name, listener.app, listener.routes, known_apps, has_sites=name in with_sites
            )
        )
        problems.extend(_check_socket_options(name, listener))
        problems.extend(_check_protocols(name, listener))
        if listener.tls is not None:
            problems.extend(_check_tls(("listeners", name, "tls"), listener.tls))
    for (section, name), raw in (unvalidated or {}).items():
        app, routes = raw.get("app"), raw.get("routes")
        if isinstance(app, str | None) and (routes is None or _is_str_map(routes)):
            problems.extend(
                check_routing(
                    name,
                    app,
                    routes,
                    known_apps,
                    section=section,
                    has_sites=section == "listeners" and name in with_sites,
                )
            )
    for name, site in config.sites.items():
        problems.extend(check_routing(name, site.app, site.routes, known_apps, section="sites"))
        problems.extend(_check_site_listeners(config, name))
        if site.tls is not None:
            problems.extend(_check_site_tls(config, name))
    problems.extend(_check_host_claims(config))
    problems.extend(_check_target_names(config))
    problems.extend(_check_answers(config))
    problems.extend(_check_bind_clashes(config))
    problems.extend(_check_worker_agreement(config))
    problems.extend(_check_unrouted_apps(config, unvalidated or {}))
    problems.extend(_check_app_files(config))
    problems.extend(_check_app_kinds(config))
    problems.extend(_check_host_files(config))
    return problems


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def check_routing(
    name: str,
    app: str | None,
    routes: Mapping[str, str] | None,
    known_apps: frozenset[str],
    *,
    section: str = "listeners",
    has_sites: bool = False,
) -> Iterator[Problem]:
    """What a listener (or a site) serves: exactly one of app/routes, known targets, sound
    prefixes. A listener that sites are served on may have neither: other hosts get 404."""
    here = (section, name)
    what = "site" if section == "sites" else "listener"
    if app is not None and routes is not None:
        yield Problem(
            f'{what} "{name}" has both app and routes',
            "use app to give every path to one app, or routes to mount apps by path, not both",
            (*here, "routes"),
            at="key",
        )
    elif app is None and not routes and (routes is not None or not has_sites):
        yield Problem(
            f'{what} "{name}" serves nothing'
            + (": its routes table is empty" if routes is not None else ""),
            'add app = "NAME" for every path, or routes = { "/" = "NAME" }'
            + (" (or remove routes: hosts no site names then get 404)" if has_sites else ""),
            here if routes is None else (*here, "routes"),
            at="key",
        )
    if app is not None and app not in known_apps:
        yield _missing_app(app, (*here, "app"), known_apps)
    for prefix, target in (routes or {}).items():
        if target not in known_apps and target not in BUILTIN_TARGETS:
            yield _missing_app(target, (*here, "routes", prefix), known_apps)
    yield from _check_prefixes(here, routes or {})


def _missing_app(app: str, path: tuple[str, ...], known_apps: frozenset[str]) -> Problem:
    hint = did_you_mean(app, known_apps) or f"add an [apps.{app}] (or [redirects.{app}]) table"
    return Problem(f'app "{app}" is not defined', hint, path)


def _check_prefixes(here: tuple[str, str], routes: Mapping[str, str]) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for prefix in routes:
        path = (*here, "routes", prefix)
        reason = _malformed_prefix(prefix)
        if reason:
            yield Problem(
                f'route prefix "{prefix}" {reason}',
                'write a path such as "/" or "/api": a leading slash, segments separated by '
                "single slashes",
                path,
                at="key",
            )
            continue
        normal = normalise_prefix(prefix)
        if normal in seen:
            yield Problem(
                f'route prefix "{prefix}" is the same as "{seen[normal]}"',
                "prefixes are compared without a trailing slash and after %-decoding; keep one",
                path,
                at="key",
            )
        seen.setdefault(normal, prefix)


def _malformed_prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        return "does not start with /"
    if any(ch in prefix for ch in "?#"):
        return "contains a query or fragment"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in prefix):
        return "contains whitespace or control characters"
    if "//" in prefix.rstrip("/") or prefix.startswith("//"):
        return "contains an empty segment (//)"
    segments = prefix.strip("/").split("/")
    if any(segment in (".", "..") for segment in segments):
        return "contains a . or .. segment"
    return ""


def _check_site_listeners(config: HostConfig, name: str) -> Iterator[Problem]:
    for index, listener in enumerate(config.sites[name].listeners):
        if listener not in config.listeners:
            hint = did_you_mean(listener, frozenset(config.listeners))
            yield Problem(
                f'listener "{listener}" is not defined',
                hint
                or f"add a [listeners.{listener}] table, or name one of "
                + ", ".join(sorted(config.listeners)),
                ("sites", name, "listeners", index),
            )


def _check_target_names(config: HostConfig) -> Iterator[Problem]:
    """Apps, redirects and answers are route targets by name: one name, one target."""
    seen = dict.fromkeys(config.apps, "apps")
    for section in ("redirects", "answers"):
        for name in getattr(config, section):
            other = seen.setdefault(name, section)
            if other != section:
                yield Problem(
                    f'"{name}" names both [{other}.{name}] and [{section}.{name}]',
                    "routes name their targets, so each name must be one app, redirect or "
                    "answer; rename one",
                    (section, name),
                    at="key",
                )


def _check_answers(config: HostConfig) -> Iterator[Problem]:
    for name, answer in config.answers.items():
        if answer.status in (204, 304) and answer.body:
            yield Problem(
                f"a {answer.status} response has no body (RFC 9110 15.3.5, 15.4.5)",
                "remove body, or choose another status",
                ("answers", name, "body"),
                at="key",
            )


def _check_site_tls(config: HostConfig, name: str) -> Iterator[Problem]:
    site = config.sites[name]
    assert site.tls is not None  # noqa: S101  (the caller checked)
    here = ("sites", name, "tls")
    found = list(_check_tls(here, site.tls))
    yield from found
    tls_listeners = [
        listener
        for listener in site.listeners
        if listener in config.listeners and config.listeners[listener].tls is not None
    ]
    if not tls_listeners:
        yield Problem(
            f'site "{name}" has a certificate, but none of its listeners serves TLS',
            "give one of its listeners a [listeners.NAME.tls] table (its own certificate is "
            "the default), or remove the site's tls",
            here,
            at="key",
            severity="warning",
        )
    if found:
        return
    names = certificate_names(site.tls.certificate)
    for index, host in enumerate(site.hosts):
        if names is not None and not any(covers(pattern, host) for pattern in names):
            yield Problem(
                f'the certificate of site "{name}" is not for "{host}" (it names '
                f"{', '.join(names) or 'no DNS name'})",
                "clients will refuse it for that host: add the name to the certificate, or "
                "serve the host from a site with a certificate for it",
                ("sites", name, "hosts", index),
                severity="warning",
            )


def certificate_names(path: Path) -> list[str] | None:
    """The DNS names and IP addresses a PEM certificate is for (its subjectAltName), or
    None when they cannot be read here (the check is then skipped, never guessed)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        decoded = decode(str(path))
    except (ssl.SSLError, OSError, ValueError):
        return None
    names = []
    for kind, value in decoded.get("subjectAltName", ()):
        text = str(value).lower()
        if kind == "DNS":
            names.append(text)
        elif kind == "IP Address":
            names.append(f"[{ipaddress.IPv6Address(text).compressed}]" if ":" in text else text)
    return names


def covers(pattern: str, host: str) -> bool:
    """Whether a certificate name covers a site host (RFC 6125: a wildcard stands for one
    whole label; a site wildcard needs the same wildcard)."""
    if pattern == host:
        return True
    return (
        pattern.startswith("*.") and not host.startswith("*.") and parent_wildcard(host) == pattern
    )


def _check_host_claims(config: HostConfig) -> Iterator[Problem]:
    """On one listener a host belongs to one site. An exact name that a wildcard of another
    site would also match is fine (exact names win) but worth a word: it is a common
    surprise when a tenant's subdomain stops reaching the wildcard's app."""
    for listener in config.listeners:
        claims: dict[str, str] = {}
        sites = [(n, s) for n, s in config.sites.items() if listener in s.listeners]
        for name, site in sites:
            for index, host in enumerate(site.hosts):
                owner = claims.setdefault(host, name)
                if owner != name:
                    yield Problem(
                        f'host "{host}" is claimed by sites "{owner}" and "{name}" on listener '
                        f'"{listener}"',
                        "a host can belong to one site per listener; remove it from one of them",
                        ("sites", name, "hosts", index),
                    )
        for name, site in sites:
            for index, host in enumerate(site.hosts):
                wildcard = parent_wildcard(host) if not host.startswith("*.") else ""
                owner = claims.get(wildcard, name)
                if owner != name:
                    yield Problem(
                        f'"{host}" goes to site "{name}", not to the wildcard "{wildcard}" of '
                        f'site "{owner}", on listener "{listener}": exact names win',
                        "nothing to do if that is meant; otherwise remove one of them",
                        ("sites", name, "hosts", index),
                        severity="warning",
                    )


def _check_socket_options(name: str, listener: Listener) -> Iterator[Problem]:
    bind = listener.bind
    if listener.unix_mode is not None and not isinstance(bind, UnixBind):
        yield Problem(
            f'unix_mode is set, but listener "{name}" binds {bind}, not a Unix socket',
            "remove unix_mode, or bind to unix:PATH",
            ("listeners", name, "unix_mode"),
            at="key",
        )
    if isinstance(bind, UnixBind):
        length = len(os.fsencode(bind.path))
        if length > UNIX_PATH_MAX:
            yield Problem(
                f"the socket path is {length} bytes long; Unix sockets allow {UNIX_PATH_MAX}",
                "use a shorter path",
                ("listeners", name, "bind"),
            )
        if not bind.path.parent.is_dir():
            yield Problem(
                f"the folder {bind.path.parent} does not exist",
                "create it before starting uvhost, or bind elsewhere",
                ("listeners", name, "bind"),
            )


def _check_protocols(name: str, listener: Listener) -> Iterator[Problem]:
    """An [listeners.NAME.http2] table on a listener that does not speak h2 does nothing."""
    if "http2" in listener.model_fields_set and "h2" not in listener.protocols:
        yield Problem(
            f'the http2 settings of listener "{name}" have no effect: its protocols do not '
            'include "h2"',
            f'add "h2" to protocols, or remove the [listeners.{name}.http2] table',
            ("listeners", name, "http2"),
            at="key",
            severity="warning",
        )


def _bind_key(bind: BindAddress) -> tuple[str, ...] | None:
    if isinstance(bind, TcpBind):
        return None if bind.port == 0 else ("tcp", str(bind.port))
    if isinstance(bind, UnixBind):
        return ("unix", os.path.normpath(bind.path))
    if isinstance(bind, SystemdBind):
        return ("systemd", bind.name)
    return ("fd", str(bind.fd))


_CLASH_HINTS = {
    "tcp": "two listeners cannot share an address; change the port or merge their routes",
    "unix": "two listeners cannot share a socket file; change the path or merge their routes",
    "fd": "an inherited socket can serve one listener; use another fd or merge their routes",
    "systemd": "a socket-activated socket can serve one listener; give the other socket its "
    "own FileDescriptorName= or merge their routes",
}


def _check_bind_clashes(config: HostConfig) -> Iterator[Problem]:
    """Same Unix path, fd or systemd name, or the same TCP port on the same or a wildcard host."""
    taken: list[tuple[str, BindAddress]] = []
    for name, listener in config.listeners.items():
        bind = listener.bind
        key = _bind_key(bind)
        for other_name, other in taken:
            if key is None or key != _bind_key(other):
                continue
            if (
                isinstance(bind, TcpBind)
                and isinstance(other, TcpBind)
                and not (bind.host == other.host or bind.is_wildcard() or other.is_wildcard())
            ):
                continue
            yield Problem(
                f'listener "{name}" binds {bind}, which clashes with listener "{other_name}" '
                f"({other})",
                _CLASH_HINTS[bind.kind],
                ("listeners", name, "bind"),
            )
            break
        taken.append((name, bind))


def _check_worker_agreement(config: HostConfig) -> Iterator[Problem]:
    for listeners, everything in components(config):
        apps = [app for app in everything if asks_workers(config, app)]
        if len(apps) < 2:
            continue
        first = apps[0]
        wanted = requested_workers(config, first)
        for app in apps[1:]:
            other = requested_workers(config, app)
            if other == wanted:
                continue
            explicit = config.apps[app].workers is not None
            hint = "apps on one listener run in the same processes; give them the same workers"
            if not explicit:
                hint = (
                    f'"{app}" takes host.workers ({other}); apps on one listener run in the same '
                    f"processes, so set workers = {_toml_value(wanted)} in [apps.{app}] or make "
                    "them agree"
                )
            yield Problem(
                f'apps "{first}" ({_workers(wanted)}) and "{app}" ({_workers(other)}) share '
                f"listener{'s' if len(listeners) > 1 else ''} {', '.join(listeners)} but want "
                "different worker counts",
                hint,
                ("apps", app, "workers") if explicit else ("apps", app),
                at="value" if explicit else "key",
            )


def _workers(count: int | str) -> str:
    return "1 worker" if count == 1 else f"{count} workers"


def _toml_value(value: int | str) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _check_unrouted_apps(
    config: HostConfig, unvalidated: Mapping[tuple[str, str], Mapping[str, Any]]
) -> Iterator[Problem]:
    """Apps no listener names; a name used by a listener that failed validation counts, and
    so does an app that a route's misspelt target is reported as ("did you mean").
    """
    named: set[str] = set()
    tables = [(listener.app, listener.routes) for listener in config.listeners.values()]
    tables.extend((site.app, site.routes) for site in config.sites.values())
    tables.extend((raw.get("app"), raw.get("routes")) for raw in unvalidated.values())
    for app, routes in tables:
        targets = [app, *(routes.values() if isinstance(routes, Mapping) else ())]
        named.update(target for target in targets if isinstance(target, str))
    misspelt = {
        match
        for target in named - set(config.apps)
        for match in difflib.get_close_matches(target, sorted(config.apps), n=1)
    }
    targets = [("app", "apps", name) for name in config.apps]
    targets += [("redirect", "redirects", name) for name in config.redirects]
    targets += [("answer", "answers", name) for name in config.answers]
    for what, section, name in targets:
        if name not in named and name not in misspelt:
            yield Problem(
                f'{what} "{name}" is not served by any listener',
                "mount it with a listener's or a site's app or routes, or remove it",
                (section, name),
                at="key",
                severity="warning",
            )


def _check_app_files(config: HostConfig) -> Iterator[Problem]:
    for name, app in config.apps.items():
        if app.folder is not None:
            continue  # nothing to import: its keys are judged by _check_app_kinds
        if app.app_dir is not None and not app.app_dir.is_dir():
            exists = "is not a folder" if app.app_dir.exists() else "does not exist"
            yield Problem(
                f"app_dir {_shown(app.app_dir)} {exists}",
                "fix the path (relative paths start at the config's folder)",
                ("apps", name, "app_dir"),
            )
        for index, env_file in enumerate(app.env_files):
            yield from _readable(env_file, ("apps", name, "env_files", index), "env file")


TARGET_ONLY_KEYS = (
    "factory",
    "interface",
    "lifespan",
    "app_dir",
    "env",
    "env_files",
    "max_body_bytes",
    "websocket",
    "threads",
    "max_queued",
)
"""App keys about importing and running Python code: a folder app has none of that."""
WSGI_ONLY_KEYS = ("threads", "max_queued")
"""App keys about the thread pool a WSGI app runs in: an ASGI app runs in the event loop."""
COMPUTED_STATIC_HEADERS = frozenset(
    (
        "content-type",
        "etag",
        "last-modified",
        "content-range",
        "accept-ranges",
        "content-encoding",
        "vary",
        "cache-control",
        "allow",
    )
)
"""Headers a folder app writes per file and response; `static.headers` cannot set them."""


def _check_app_kinds(config: HostConfig) -> Iterator[Problem]:
    """An app is a `target` to import or a `folder` to serve, never both or neither; keys
    of the other kind are errors (they would do nothing), and the folder must be there."""
    for name, app in config.apps.items():
        here = ("apps", name)
        if app.target is None and app.folder is None:
            yield Problem(
                f'app "{name}" has neither target nor folder',
                'add target = "module:attribute" to run an ASGI app, or folder = "PATH" to '
                "serve files",
                here,
                at="key",
            )
            continue
        if app.target is not None and app.folder is not None:
            yield Problem(
                f'app "{name}" has both target and folder',
                "an app is either an ASGI app (target) or a folder of files; make two apps "
                "and mount both",
                (*here, "folder"),
                at="key",
            )
            continue
        if app.target is not None:
            yield from _check_interface_keys(name, app)
            if _set_apart_from_default(app, "static"):
                yield Problem(
                    f'the static settings of app "{name}" have no effect: it has a target, '
                    "not a folder",
                    f"remove the [apps.{name}.static] table, or serve a folder instead",
                    (*here, "static"),
                    at="key",
                )
            continue
        for key in TARGET_ONLY_KEYS:
            if _set_apart_from_default(app, key):
                yield Problem(
                    f'{key} has no effect on app "{name}": it serves a folder, nothing is '
                    "imported or run",
                    f"remove {key}",
                    (*here, key),
                    at="key",
                )
        yield from _check_folder(name, app)


def _check_interface_keys(name: str, app: AppSettings) -> Iterator[Problem]:
    """Thread settings on an app declared ASGI would do nothing; a WSGI app has no lifespan
    protocol to require. With `interface = "auto"` the kind is only known after the import,
    so thread settings are accepted there (they apply if the app turns out to be WSGI)."""
    here = ("apps", name)
    if app.interface in ("asgi3", "asgi2"):
        for key in WSGI_ONLY_KEYS:
            if _set_apart_from_default(app, key):
                yield Problem(
                    f'{key} has no effect on app "{name}": it is an ASGI app '
                    f'(interface = "{app.interface}"), which runs in the event loop',
                    f'remove {key}, or set interface = "wsgi" if the app is a WSGI app',
                    (*here, key),
                    at="key",
                )
    if app.interface == "wsgi" and app.lifespan == "on" and "lifespan" in app.model_fields_set:
        yield Problem(
            f'app "{name}" is a WSGI app: it has no lifespan protocol to require',
            'remove lifespan, or set it to "off"; run start-up code when the module is imported',
            (*here, "lifespan"),
        )


def _set_apart_from_default(app: AppSettings, key: str) -> bool:
    """Written, with a value other than its default: `uvhost config` prints every default,
    and what it prints must load again, so a default written out is no mistake."""
    if key not in app.model_fields_set:
        return False
    default = AppSettings.model_fields[key].get_default(call_default_factory=True)
    return bool(getattr(app, key) != default)


def _check_folder(name: str, app: AppSettings) -> Iterator[Problem]:
    folder = app.folder
    assert folder is not None  # noqa: S101  (the caller checked)
    shown, where = _shown(folder), ("apps", name, "folder")
    if not folder.exists():
        yield Problem(f"folder {shown} does not exist", "fix the path, or create it", where)
        return
    if not folder.is_dir():
        yield Problem(f"{shown} is not a folder", "point folder at a folder of files", where)
        return
    if not os.access(folder, os.R_OK | os.X_OK):
        yield Problem(
            f"folder {shown} is not readable",
            "give the user running uvhost read and search (r-x) access",
            where,
        )
        return
    static = app.static
    if static.fallback is not None:
        fallback = folder / static.fallback
        if not fallback.is_file():
            yield Problem(
                f"the fallback {_shown(fallback)} is not a file in the folder",
                "name a file the folder holds, such as index.html (the build makes it)",
                ("apps", name, "static", "fallback"),
            )
    for header in static.headers:
        if header.lower() in COMPUTED_STATIC_HEADERS:
            key = header.lower().replace("-", "_")
            instead = (
                f"use static.{key}"
                if key in ("cache_control",)
                else "use static.media_types"
                if key == "content_type"
                else "remove it"
            )
            yield Problem(
                f"{header} is set by uvhost for each file",
                instead,
                ("apps", name, "static", "headers", header),
                at="key",
            )


def _check_host_files(config: HostConfig) -> Iterator[Problem]:
    host = config.host
    for key, path in (("pid_file", host.pid_file), ("file", config.logging.file)):
        if path is not None and not path.parent.is_dir():
            section = "logging" if key == "file" else "host"
            yield Problem(
                f"the folder {path.parent} does not exist",
                "create it, or choose a path in an existing folder",
                (section, key),
            )
    socket = host.control_socket
    if isinstance(socket, Path) and len(os.fsencode(socket)) > UNIX_PATH_MAX:
        yield Problem(
            f"the control socket path is longer than {UNIX_PATH_MAX} bytes",
            'use a shorter path, or "auto"',
            ("host", "control_socket"),
        )
    if host.max_requests_jitter and not host.max_requests:
        yield Problem(
            "max_requests_jitter has no effect while max_requests is 0",
            "set max_requests too, or remove max_requests_jitter",
            ("host", "max_requests_jitter"),
            at="key",
            severity="warning",
        )
    yield from _check_dict_config(config.logging)
    if config.logging.access_fields is not None and config.logging.format != "json":
        yield Problem(
            'access_fields has no effect unless format = "json"',
            'set format = "json", or use access_format for the plain line',
            ("logging", "access_fields"),
            at="key",
            severity="warning",
        )


def _check_dict_config(settings: LoggingSettings) -> Iterator[Problem]:
    """Keys of [logging] that a dictConfig with a `root` entry makes idle, said once each."""
    schema = settings.dict_config
    root = schema.get("root") if schema is not None else None
    if not isinstance(root, dict):
        return
    written = settings.model_fields_set
    idle: list[str] = [key for key in ("format", "file") if key in written]
    if "level" in written and "level" in root:
        idle.append("level")
    for key in idle:
        yield Problem(
            f"{key} has no effect: dict_config's root entry sets "
            + ("the root level" if key == "level" else "where logs go and how they look"),
            f"remove {key}, or the root entry of dict_config",
            ("logging", key),
            at="key",
            severity="warning",
        )


def _shown(path: Path) -> str:
    """A resolved path as messages show it: "certs/../x.pem" written relative reads "x.pem"."""
    return os.path.normpath(path)


def _readable(path: Path, key_path: tuple[str | int, ...], what: str) -> Iterator[Problem]:
    shown = _shown(path)
    if not path.exists():
        yield Problem(
            f"{what} {shown} does not exist", "fix the path, or create the file", key_path
        )
    elif not path.is_file():
        yield Problem(f"{what} {shown} is not a file", "point at a file", key_path)
    elif not os.access(path, os.R_OK):
        yield Problem(
            f"{what} {shown} is not readable", "give the user running uvhost read access", key_path
        )


def _check_tls(here: tuple[str, ...], tls: TlsSettings | SiteTlsSettings) -> Iterator[Problem]:
    if isinstance(tls, SiteTlsSettings):  # the pair alone; the rest is the listener's
        tls = TlsSettings.model_construct(
            certificate=tls.certificate, private_key=tls.private_key, password=tls.password
        )
    files = [
        ("certificate", tls.certificate, "certificate file"),
        ("private_key", tls.private_key, "private key file"),
        ("client_ca", tls.client_ca, "client CA file"),
    ]
    unreadable = False
    for key, path, what in files:
        if path is not None:
            found = list(_readable(path, (*here, key), what))
            unreadable = unreadable or bool(found)
            yield from found
    if tls.client_auth != "none" and tls.client_ca is None:
        yield Problem(
            f'client_auth = "{tls.client_auth}" needs client_ca',
            "set client_ca to the CA bundle that signs your client certificates",
            (*here, "client_auth"),
        )
    if unreadable:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    secret = tls.password.get_secret_value() if tls.password else ""
    try:
        # Always a callable: with None, OpenSSL would prompt on the terminal for the
        # password of an encrypted key, and `uvhost check` would hang.
        context.load_cert_chain(tls.certificate, tls.private_key, lambda: secret)
    except ssl.SSLError as error:
        yield _tls_key_problem(here, tls, error)
    except OSError as error:
        yield Problem(
            f"cannot load the certificate: {error.strerror or error}", "", (*here, "certificate")
        )
    if tls.client_ca is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca)
        except (ssl.SSLError, OSError):
            yield Problem(
                f"client CA file {_shown(tls.client_ca)} holds no PEM certificate",
                "client_ca must be a PEM bundle of CA certificates",
                (*here, "client_ca"),
            )
    if tls.ciphers is not None:
        try:
            context.set_ciphers(tls.ciphers)
        except ssl.SSLError:
            yield Problem(
                f'no cipher matches "{tls.ciphers}"',
                'write an OpenSSL cipher list such as "ECDHE+AESGCM"',
                (*here, "ciphers"),
            )


def _tls_key_problem(here: tuple[str, ...], tls: TlsSettings, error: ssl.SSLError) -> Problem:
    reason = (error.reason or str(error)).upper()
    key_at = (*here, "private_key") if tls.private_key is not None else (*here, "certificate")
    if "KEY_VALUES_MISMATCH" in reason:
        return Problem(
            "the private key does not match the certificate",
            "pair the certificate with the key it was issued for",
            key_at,
        )
    # OpenSSL 3 reports a wrong password only as "PEM lib", so look at the key itself.
    encrypted = _is_encrypted_key(tls.private_key or tls.certificate)
    if encrypted and tls.password is None:
        return Problem(
            "the private key is encrypted, and no password is set",
            'set tls.password, preferably from the environment: password = "${TLS_KEY_PASSWORD}"',
            key_at,
        )
    if encrypted or "BAD_DECRYPT" in reason or "BAD PASSWORD" in reason or "DECRYPT" in reason:
        return Problem(
            "the private key cannot be decrypted with this password",
            "set tls.password to the password the key was encrypted with",
            (*here, "password") if tls.password else key_at,
        )
    not_pem = _not_pem(here, tls)
    if not_pem is not None:
        return not_pem
    if tls.private_key is None and ("NO_START_LINE" in reason or "PEM" in reason):
        return Problem(
            "the certificate file holds no private key",
            "set private_key, or append the key to the certificate file",
            (*here, "certificate"),
        )
    return Problem(
        "the certificate or private key is not valid PEM",
        "both files must be PEM: -----BEGIN CERTIFICATE----- / -----BEGIN PRIVATE KEY-----",
        (*here, "certificate"),
    )


def _not_pem(here: tuple[str, ...], tls: TlsSettings) -> Problem | None:
    """The TLS file that is not PEM at all, named, rather than "one of them is bad"."""
    if not _mentions(tls.certificate, "CERTIFICATE-----"):
        return Problem(
            f"certificate file {_shown(tls.certificate)} holds no PEM certificate",
            "a PEM certificate starts with -----BEGIN CERTIFICATE-----",
            (*here, "certificate"),
        )
    if tls.private_key is not None and not _mentions(tls.private_key, "PRIVATE KEY-----"):
        return Problem(
            f"private key file {_shown(tls.private_key)} holds no PEM private key",
            "a PEM private key starts with -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY)",
            (*here, "private_key"),
        )
    return None


def _mentions(path: Path, label: str) -> bool:
    """Whether a PEM file has a "-----BEGIN ...label" line (unreadable files say no)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    lines = (line.strip() for line in text.split("\n"))
    return any(line.startswith("-----BEGIN ") and line.endswith(label) for line in lines)


def _is_encrypted_key(path: Path) -> bool:
    """A PEM private key protected by a password (PKCS#8 or the traditional header)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text
