"""One worker: import the apps, run their lifespans, serve the sockets, drain on stop.

Invariants:
- Never binds, forks or signals: the sockets arrive already listening (the
  supervisor owns them, so they outlive this worker), and stopping is an
  event set by whoever runs us. The same code serves `uvhost run` in one
  process and, later, each spawned worker process.
- Startup is all or nothing: an app that fails to import or whose lifespan
  startup fails raises `WorkerStartupError` before any socket is served.
- Draining stops accepting first, lets in-flight requests finish (idle
  keep-alive connections close at once), and cuts what is left at
  `graceful_timeout`; lifespan shutdown runs last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uvhost.config.plan import Plan, WorkerGroup

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import LoggingSettings, SiteTlsSettings, TlsSettings
from uvhost.observe import stats
from uvhost.observe.stats import Key, Open, Sample
from uvhost.server.access_format import access_logger
from uvhost.server.answers import built_in_answers
from uvhost.server.apps import AppLoadError, WsgiAdapter, load_app
from uvhost.server.asgi_types import ASGIApp
from uvhost.server.context import AccessLog, ListenerContext, RequestBudget
from uvhost.server.http import HttpProtocol
from uvhost.server.http2 import Http2Protocol
from uvhost.server.lifespan import Lifespan, LifespanFailure
from uvhost.server.proxy import TrustedProxies
from uvhost.server.proxy_intake import ProxyHeaderReader, ProxyIntake
from uvhost.server.router import Router
from uvhost.server.static_files import StaticFiles
from uvhost.server.tls import (
    CertificateChooser,
    TlsSetupError,
    build_context,
    build_site_context,
    reload_certificate,
)
from uvhost.server.websocket import WebSocketProtocol
from uvhost.server.ws_h2 import StreamTransport

logger = logging.getLogger("uvhost.worker")
TICK = 0.5  # seconds between Date refreshes and timeout checks


class WorkerStartupError(Exception):
    """The worker cannot serve: an app failed to import or to start. One line."""


@dataclass
class Worker:
    plan: Plan
    groups: Sequence[WorkerGroup]
    sockets: Mapping[str, socket.socket]
    builtins: Mapping[str, ASGIApp] = field(default_factory=dict)
    lifespans: dict[str, Lifespan] = field(default_factory=dict)
    contexts: list[ListenerContext] = field(default_factory=list)
    servers: list[asyncio.AbstractServer] = field(default_factory=list)
    budget: RequestBudget = field(default_factory=RequestBudget)
    certificates: dict[str, ssl.SSLContext] = field(default_factory=dict)
    site_certificates: list[tuple[str, str, ssl.SSLContext]] = field(default_factory=list)
    """(listener, site, context) for each site certificate served by SNI."""
    wsgi_apps: list[WsgiAdapter] = field(default_factory=list)
    """The WSGI apps' adapters, whose thread pools the drain stops."""
    _clock: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        config = self.plan.config
        apps = self._load_apps()
        timeout = config.host.startup_timeout
        for name, app in apps.items():
            lifespan = Lifespan(app, name=name, mode=config.apps[name].lifespan)
            self.lifespans[name] = lifespan
            try:
                await lifespan.startup(timeout)
            except LifespanFailure as failure:
                await self._shutdown_lifespans()
                raise WorkerStartupError(failure.message) from failure  # names the app
        loop = asyncio.get_running_loop()
        states = {name: lifespan.state for name, lifespan in self.lifespans.items()}
        access = access_logger(config.logging)
        served = {**apps, **self._folder_apps()}
        for group in self.groups:
            for listener_name in group.listeners:
                await self._serve_listener(loop, listener_name, served, states, access)
        self.set_slow_threshold(config.logging.slow_request_threshold)
        self._tick()

    def _built_ins(self) -> dict[str, ASGIApp]:
        """@health and @metrics (given by whoever runs us), the config's redirects and fixed
        answers: every route target that is not an app."""
        config = self.plan.config
        return {**built_in_answers(config.redirects, config.answers), **self.builtins}

    def _folder_apps(self) -> dict[str, ASGIApp]:
        """The folder apps of this worker's groups, each built once (one file cache per app,
        shared by every listener it is mounted on). No import, no lifespan."""
        config = self.plan.config
        return {
            name: StaticFiles(config.apps[name])
            for group in self.groups
            for name in group.apps
            if config.apps[name].folder is not None
        }

    def _load_apps(self) -> dict[str, ASGIApp]:
        """Import the ASGI apps (those with a `target`) of this worker's groups."""
        config = self.plan.config
        apps: dict[str, ASGIApp] = {}
        for group in self.groups:
            for name in group.apps:
                settings = config.apps[name]
                if settings.target is None:
                    continue  # a folder: `_folder_apps`
                os.environ.update(self.plan.app_environments.get(name, {}))
                try:
                    app = load_app(
                        settings.target,
                        app_dir=self.plan.app_dir(name),
                        factory=settings.factory,
                        interface=settings.interface,
                        threads=settings.threads,
                        max_queued=settings.max_queued,
                    )
                except AppLoadError as error:
                    raise WorkerStartupError(f'app "{name}": {error.message}') from error
                apps[name] = app
                if isinstance(app, WsgiAdapter):
                    self.wsgi_apps.append(app)
        return apps

    async def _serve_listener(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str,
        apps: Mapping[str, ASGIApp],
        states: Mapping[str, dict[str, Any]],
        access: AccessLog | None,
    ) -> None:
        settings = self.plan.config.listeners[name]
        router = Router.compile(
            self.plan.route_tables[name], settings, apps, self.plan.config.apps, self._built_ins()
        )
        tls: ssl.SSLContext | None = None
        sni: CertificateChooser | None = None
        if settings.tls is not None:
            try:
                tls = build_context(settings.tls, settings.protocols)
                self.certificates[name] = tls
                sni = self._site_certificates(name, settings.tls, tls)
            except TlsSetupError as error:
                raise WorkerStartupError(f'listener "{name}": {error}') from error
        context = ListenerContext(
            name,
            settings,
            router,
            "https" if tls is not None else "http",
            states,
            access_log=access,
            budget=self.budget,
            sni=sni,
        )
        context.next_tick = loop.time() + TICK  # before the first tick, which comes later
        self.contexts.append(context)
        if settings.proxy_protocol is not None:  # TLS, if any, starts after the header
            intake = ProxyIntake(context, loop, tls, TrustedProxies(settings.proxy_protocol.allow))
            server = await loop.create_server(
                intake.protocol, sock=self.sockets[name], backlog=settings.backlog
            )
        else:
            server = await loop.create_server(
                lambda: HttpProtocol(context, loop),
                sock=self.sockets[name],
                ssl=tls,
                # A TLS handshake is part of reading the request head: the same limit, not
                # uvloop's silent 60 s, for a client that stalls before saying anything.
                ssl_handshake_timeout=settings.header_timeout if tls is not None else None,
                backlog=settings.backlog,
            )
        self.servers.append(server)

    def stats_sample(self) -> tuple[dict[Key, Sample], dict[str, Open]]:
        """Counters per (listener, route) and open connections per listener, right now.

        Two mounts of one app on a listener share its key: their counts add up.
        Connections are sampled by their kind (`stats.CONNECTION_KINDS`) with the
        HTTP/2 streams open on them: a look at each live connection, once a second.
        """
        routes: dict[Key, Sample] = {}
        connections: dict[str, Open] = {}
        for context in self.contexts:
            name = context.name
            kinds = [0] * stats.OPEN_SIZE
            for connection in context.connections:
                if isinstance(connection, HttpProtocol):
                    kinds[stats.OPEN_HTTP1] += 1
                elif isinstance(connection, Http2Protocol):
                    kinds[stats.OPEN_HTTP2] += 1
                    kinds[stats.OPEN_STREAMS] += len(connection.streams)
                elif isinstance(connection, WebSocketProtocol):
                    # Over HTTP/2 it is one of its connection's streams, counted there.
                    if not isinstance(connection.transport, StreamTransport):
                        kinds[stats.OPEN_WEBSOCKET] += 1
                elif isinstance(connection, ProxyHeaderReader):
                    continue  # not yet HTTP (its header or handshake), as a TLS handshake
                else:  # a Lingering close (linger.py), after either protocol
                    kinds[stats.OPEN_CLOSING] += 1
            other = connections.get(name)  # another context of this listener's name
            connections[name] = tuple(kinds) if other is None else stats.add(other, kinds)
            counted = [("", context.unrouted)]
            counted += [(endpoint.name, endpoint.stats) for endpoint in context.router.endpoints]
            for route, route_stats in counted:
                key = (name, route)
                sample = route_stats.sample()
                routes[key] = stats.add(routes[key], sample) if key in routes else sample
        return routes, connections

    def switch_access_log(self, settings: LoggingSettings) -> None:
        """Live: the access log on or off, and its layout, for every listener, without a
        restart."""
        access = access_logger(settings)
        for context in self.contexts:
            context.access_log = access
        self.set_slow_threshold(settings.slow_request_threshold)

    def set_slow_threshold(self, seconds: float | None) -> None:
        """Live: from how long a request is slow (logged and counted); None: never."""
        for context in self.contexts:
            stats.watch_slow(context.unrouted, seconds)
            for endpoint in context.router.endpoints:
                stats.watch_slow(endpoint.stats, seconds)

    def _tick(self) -> None:
        """Twice a second: rebuild the shared Date line, enforce connection timeouts."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for context in self.contexts:
            context.refresh_preamble()
            context.next_tick = now + TICK
            for connection in list(context.connections):
                connection.check_timeouts(now)
        self._clock = loop.call_later(TICK, self._tick)

    def _site_certificates(
        self, listener: str, tls: TlsSettings, default: ssl.SSLContext
    ) -> CertificateChooser | None:
        """One context per site certificate on this TLS listener, chosen by SNI; None when
        no site here has a certificate of its own. Raises TlsSetupError.

        Sites that name the same pair of files share one context: a connection made
        for one of them may then carry requests for the other (no 421), as the client
        was shown a certificate for both."""
        config = self.plan.config
        protocols = config.listeners[listener].protocols
        by_host: dict[str, ssl.SSLContext] = {}
        by_files: dict[tuple[object, object], ssl.SSLContext] = {}
        for site_name, site in config.sites.items():
            if site.tls is None or listener not in site.listeners:
                continue
            files = (site.tls.certificate, site.tls.private_key)
            context = by_files.get(files)
            if context is None:
                try:
                    context = build_site_context(tls, site.tls, protocols)
                except TlsSetupError as error:
                    raise TlsSetupError(f'site "{site_name}": {error}') from error
                by_files[files] = context
                self.site_certificates.append((listener, site_name, context))
            by_host.update(dict.fromkeys(site.hosts, context))
        return CertificateChooser(default, by_host) if by_host else None

    def reload_certificates(self, listeners: Sequence[str]) -> None:
        """New certificate and key files, loaded in place; a bad pair keeps the old one.
        A listener's sites reload theirs with it (unchanged files load the same pair)."""
        config = self.plan.config
        for name in listeners:
            context, settings = self.certificates.get(name), config.listeners[name].tls
            if context is None or settings is None:
                continue
            pairs: list[tuple[str, ssl.SSLContext, TlsSettings | SiteTlsSettings | None]] = [
                (f'listener "{name}"', context, settings)
            ]
            pairs += [
                (f'site "{site}" on listener "{name}"', site_context, config.sites[site].tls)
                for listener, site, site_context in self.site_certificates
                if listener == name
            ]
            for who, live, files in pairs:
                if files is None:  # the site lost its certificate: that edit rolls the group
                    continue
                try:
                    reload_certificate(live, files)
                except TlsSetupError as error:
                    logger.error("%s keeps its certificate: %s", who, error)
                else:
                    logger.info("%s: certificate reloaded", who)

    async def drain(self, code: int = 1001) -> None:
        """`code` closes open WebSockets: 1001 when the host stops, 1012 on a roll."""
        timeout = self.plan.config.host.graceful_timeout
        started = asyncio.get_running_loop().time()
        # Every transport, including connections still in their TLS handshake (which
        # `context.connections` does not know yet): wait_closed must be registered
        # before close(), after which uvloop's (and Python 3.11's) returns at once.
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(server.wait_closed()) for server in self.servers
        ]
        await asyncio.sleep(0)
        for server in self.servers:
            server.close()
        for context in self.contexts:
            context.draining = True
            context.drained = asyncio.Event()
            if not context.connections:
                context.drained.set()
            for connection in list(context.connections):
                connection.shutdown(code)
            waits.append(asyncio.ensure_future(context.drained.wait()))
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for waiter in pending:
                waiter.cancel()
            if pending:
                left = sum(len(context.connections) for context in self.contexts)
                logger.warning("graceful timeout: closing %d connection(s) still open", left)
        for context in self.contexts:
            for connection in list(context.connections):
                connection.abort()
        if self._clock is not None:
            self._clock.cancel()
        # WSGI threads still running a request (their connection was cut above, so their
        # next send fails) get what is left of the graceful timeout, then are left behind.
        remaining = max(0.0, timeout - (asyncio.get_running_loop().time() - started))
        for wsgi in self.wsgi_apps:
            await wsgi.aclose(remaining)
        await self._shutdown_lifespans()

    async def _shutdown_lifespans(self) -> None:
        timeout = self.plan.config.host.graceful_timeout
        for lifespan in reversed(list(self.lifespans.values())):
            await lifespan.shutdown(timeout)
