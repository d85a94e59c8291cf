"""The supervisor: one serialising loop over signals, file changes and worker events.

Invariants:
- Signal handlers and the file watcher only enqueue; `run` handles events
  one at a time, so a reload never races a stop or another reload.
- The supervisor binds every socket and keeps it for as long as the config
  names it; workers come and go on top of them.
- Never imports server/ or anything of HTTP: workers are processes to it.
- A rejected reload changes nothing: the old plan, sockets and workers stay.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from uvhost import __version__, ipc
from uvhost.config.detach import detach
from uvhost.config.diff import ChangeKind, PlanDiff, diff
from uvhost.config.errors import render
from uvhost.config.load import LoadResult, load_config
from uvhost.config.plan import Plan
from uvhost.observe.logs import configure, reopen
from uvhost.observe.metrics import from_book
from uvhost.observe.status import (
    GroupFacts,
    HostFacts,
    ListenerFacts,
    ReloadStatus,
    Status,
    WorkerFacts,
    build,
)
from uvhost.supervisor import control, pidfile, systemd
from uvhost.supervisor.devreload import CodeWatch
from uvhost.supervisor.groups import GroupRunner, discard
from uvhost.supervisor.process import HostServices, WorkerStartError
from uvhost.supervisor.sockets import (
    BindError,
    BoundSocket,
    SocketSet,
    adjust,
    bind,
    close_unless_kept,
)
from uvhost.supervisor.tasks import background
from uvhost.supervisor.watch import fingerprint, watch_files

logger = logging.getLogger("uvhost")
EXIT_OK, EXIT_CANNOT_START = 0, 3
STATS_TICK = 1.0


class Event(enum.Enum):
    STOP = "stop"
    RELOAD = "reload"
    CODE = "code"  # --reload: Python files of some apps changed


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    message: str
    errors: tuple[str, ...] = ()


class Supervisor:
    def __init__(
        self,
        path: Path,
        plan: Plan,
        sockets: SocketSet,
        *,
        watched: tuple[Path, ...] = (),
        reload_code: bool = False,
    ) -> None:
        self.path = path
        self.code = CodeWatch() if reload_code else None
        self.plan = plan
        self.sockets = sockets
        self.groups: dict[str, GroupRunner] = {}
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.stops = 0
        self.reload_waiters: list[asyncio.Future[ReloadOutcome]] = []
        self.control: control.ControlServer | None = None
        self.services = HostServices(metrics=self.metrics)
        self.book = self.services.book
        self.reloads = {"ok": 0, "failed": 0}
        self.watcher: asyncio.Task[None] | None = None
        self.started = time.time()
        self.state = "starting"
        self.last_reload: ReloadStatus | None = None
        # What the watcher compares against: each watched file as the last load read it.
        self.loaded = {**fingerprint(watched or (path.absolute(),)), **plan.file_digests}

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGHUP, self.events.put_nowait, Event.RELOAD)
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        try:
            await self._start_groups(self.plan, [group.name for group in self.plan.groups])
        except WorkerStartError as error:
            logger.error("cannot start: %s", error)
            await self._stop_all()
            return EXIT_CANNOT_START
        self.control = await self._serve_control()  # up before "ready" is announced
        try:
            return await self._serve()
        finally:
            self._close_control()  # every way out: the stop below, an error, a cancel

    async def _serve(self) -> int:
        """From ready to stopped: handle events in order until a stop, then drain."""
        self._log_listening()
        self.state = "running"
        for runner in self.groups.values():
            runner.announce_ready()
        systemd.ready()
        ticker = self._tick_stats()
        self._follow_watch_setting()
        coder = self._watch_code()
        while (event := await self.events.get()) is not Event.STOP:
            if event is Event.CODE:
                await self._reload_code()
            else:
                await self.reload()
        self.state = "stopping"
        for task in (self.watcher, coder, ticker):
            if task is not None:
                task.cancel()
        for waiting in self.reload_waiters:
            if not waiting.done():
                waiting.set_result(ReloadOutcome(False, "the host is stopping"))
        self._close_control()
        systemd.stopping()
        await self._unready_for(self.plan.config.host.drain_delay)
        logger.info("draining (up to %gs)", self.plan.config.host.graceful_timeout)
        await self._stop_all()
        logger.info("stopped")
        return EXIT_OK

    async def _unready_for(self, delay: float | None) -> None:
        """`host.drain_delay`: readiness 503 everywhere while still serving, then return.

        A balancer (a Kubernetes Service's endpoints, a health-checking proxy)
        takes a while to notice a stop; until it does it keeps sending new
        connections, which would queue on sockets nobody accepts from any more
        and be reset when the host exits. Serving on through the delay, while
        readiness says "draining", loses none of them. A second stop signal
        still exits at once.
        """
        if not delay:
            return
        for runner in self.groups.values():
            runner.announce_unready()
        logger.info("not ready: serving %gs more before draining (host.drain_delay)", delay)
        await asyncio.sleep(delay)

    async def _serve_control(self) -> control.ControlServer | None:
        path = control.socket_path(self.plan.config.host, self.path)
        if path is None:
            return None
        default = self.plan.config.host.control_socket == "auto"
        try:
            server = await control.serve(path, self._control, default_location=default)
        except control.ControlError as error:
            logger.warning("no control socket: %s", error)
            return None
        return server

    def _close_control(self) -> None:
        """Stop taking commands and remove the socket; idempotent, synchronous (see os._exit)."""
        if self.control is not None:
            self.control.close()
            self.control = None

    async def _control(self, command: str) -> dict[str, Any]:
        if command == "reload":
            outcome = await self.request_reload()
            return {"ok": outcome.ok, "message": outcome.message, "errors": list(outcome.errors)}
        if command == "stop":
            self.request_stop()
            return {"ok": True, "message": "stopping: draining in-flight requests"}
        return dict(self.status())

    def status(self) -> Status:
        """The snapshot `uvhost status`, the dashboard and @metrics show."""
        return build(self.facts(), self.book)

    def metrics(self) -> str:
        """The Prometheus text a worker serves for `@metrics`."""
        return from_book(self.facts(), self.book, reloads=self.reloads)

    def facts(self) -> HostFacts:
        listeners = self.plan.config.listeners
        apps = {group.name: group.apps for group in self.plan.groups}
        return HostFacts(
            pid=os.getpid(),
            version=__version__,
            config=str(self.path.resolve()),
            started=self.started,
            state=self.state,
            last_reload=self.last_reload,
            listeners=[
                ListenerFacts(bound.name, bound.describe(), listeners[bound.name].tls is not None)
                for bound in self.sockets
                if bound.name in listeners
            ],
            groups=[
                GroupFacts(
                    name,
                    runner.generation,
                    tuple(runner.pids()),
                    runner.failed,
                    apps.get(name, ()),
                )
                for name, runner in self.groups.items()
            ],
            workers=[
                WorkerFacts(worker.pid, name, worker.spec.generation, worker.state, worker.started)
                for name, runner in self.groups.items()
                for worker in [*runner.workers, *runner.retiring]
            ],
        )

    def _tick_stats(self) -> asyncio.Task[None]:
        """Once a second, record the host totals (rates are differences between ticks) and
        judge the workers' memory (max_memory)."""

        async def loop() -> None:
            while True:
                self.book.tick()
                for runner in self.groups.values():
                    runner.check_memory()
                await asyncio.sleep(STATS_TICK)

        return background(loop())

    def reopen_logs(self) -> None:
        """SIGUSR1 (logrotate's postrotate): every process reopens the log file."""
        reopen()
        for runner in self.groups.values():
            runner.broadcast(ipc.ReopenLogs(), retiring=True)
        logger.info("log file reopened (SIGUSR1)")

    def _on_stop_signal(self) -> None:
        self.stops += 1
        if self.stops > 1:
            logger.warning("second stop signal: exiting now")
            for worker in self.services.alive:  # starting ones too: none is left an orphan
                worker.kill()
            # os._exit skips every finally: leave nothing behind that a stopped host would not.
            self._close_control()
            self.sockets.close()
            pidfile.remove(self.plan.config.host.pid_file)
            os._exit(1)
        self.events.put_nowait(Event.STOP)

    def _follow_watch_setting(self) -> None:
        """Watch the files while `host.watch` says so; an applied edit may turn it on or off."""
        wanted = self.plan.config.host.watch
        if wanted and self.watcher is None:
            self.watcher = self._watch()
        elif not wanted and self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None

    def _watch(self) -> asyncio.Task[None]:
        async def loop() -> None:
            async for _ in watch_files(lambda: self.loaded):
                self.events.put_nowait(Event.RELOAD)

        return background(loop())

    def _watch_code(self) -> asyncio.Task[None] | None:
        if self.code is None:
            return None
        return self.code.start(lambda: self.plan, lambda: self.events.put_nowait(Event.CODE))

    async def _reload_code(self) -> None:
        """--reload: roll the groups whose apps' Python files changed, with the current plan."""
        changed = self.code.take(self.plan) if self.code is not None else {}
        counts = {name: count for name, count in changed.items() if name in self.groups}
        if not counts:
            return
        try:
            await self._start_groups(self.plan, list(counts))
        except WorkerStartError as error:
            logger.error("reload failed: %s; the previous generation keeps serving", error)
            return
        for name, count in counts.items():
            logger.info("reloaded group %s: %d file(s) changed", name, count)

    async def _start_groups(self, plan: Plan, names: list[str]) -> None:
        """New generations of the named groups: all ready before any takes over, or none."""
        runners = [
            self.groups.get(name)
            or GroupRunner(name, services=self.services, host_ready=self.state != "starting")
            for name in names
        ]
        sockets = self.sockets.by_name()
        outcomes = await asyncio.gather(
            *(runner.prepare(plan, sockets) for runner in runners), return_exceptions=True
        )
        prepared = [outcome for outcome in outcomes if isinstance(outcome, list)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                await asyncio.gather(*(discard(fresh) for fresh in prepared))
                raise outcome
        for runner, fresh in zip(runners, prepared, strict=True):
            runner.commit(plan, sockets, fresh)
            self.groups[runner.name] = runner

    async def _stop_all(self) -> None:
        await asyncio.gather(*(g.stop(ipc.GOING_AWAY) for g in self.groups.values()))

    def _log_listening(self) -> None:
        for bound in self.sockets:
            scheme = "https" if self.plan.config.listeners[bound.name].tls else "http"
            where = bound.describe()
            shown = where if where.startswith("unix:") else f"{scheme}://{where}"
            logger.info("listening on %s (%s)", shown, bound.name)
        workers = sum(len(g.workers) for g in self.groups.values())
        logger.info("ready: %d group(s), %d worker(s)", len(self.groups), workers)

    # ----------------------------------------------------------------- reload

    async def reload(self) -> ReloadOutcome:
        """One reload, framed for systemd (RELOADING=1 ... READY=1, applied or not)."""
        systemd.reloading()
        self.state = "reloading"
        try:
            outcome = await self._reload()
        finally:
            self.state = "running"
            systemd.ready()
        self.reloads["ok" if outcome.ok else "failed"] += 1
        self._follow_watch_setting()
        self.last_reload = {
            "at": time.time(),
            "ok": outcome.ok,
            "message": outcome.message,
            "errors": list(outcome.errors),
        }
        (logger.info if outcome.ok else logger.error)("%s", outcome.message)
        for waiting in self.reload_waiters:
            if not waiting.done():
                waiting.set_result(outcome)
        self.reload_waiters.clear()
        return outcome

    async def request_reload(self) -> ReloadOutcome:
        """For the control socket: queue a reload like SIGHUP does and wait for its outcome."""
        waiting: asyncio.Future[ReloadOutcome] = asyncio.get_running_loop().create_future()
        self.reload_waiters.append(waiting)
        self.events.put_nowait(Event.RELOAD)
        return await waiting

    def request_stop(self) -> None:
        self.events.put_nowait(Event.STOP)

    async def _reload(self) -> ReloadOutcome:
        started = time.monotonic()
        before = fingerprint(tuple(self.loaded))  # a save racing the read is seen as new
        result = load_config(self.path)
        self._remember(result, before)
        if result.config is None:
            errors = tuple(render(diagnostic, str(self.path)) for diagnostic in result.errors)
            for error in errors:
                logger.error("%s", error)
            return ReloadOutcome(
                False,
                f"reload rejected ({len(errors)} error(s)); still serving the previous config",
                errors,
            )
        new = result.plan()
        changes = diff(self.plan, new)
        if changes.is_empty:
            return ReloadOutcome(True, "reload: no changes")
        try:
            added = self._bind_new_sockets(new, changes)
        except BindError as error:
            return ReloadOutcome(
                False, f"reload rejected: {error}; still serving the previous config"
            )
        old_pid_file = self.plan.config.host.pid_file
        failure = await self._apply(new, changes, added)
        if failure is not None:
            return ReloadOutcome(
                False, f"reload failed: {failure}; the previous generation keeps serving"
            )
        try:  # before the apply is announced: whoever waits for it sees the new file
            pidfile.move(old_pid_file, new.config.host.pid_file)
        except OSError as error:
            logger.error("cannot write the pid file: %s", error.strerror or error)
        elapsed = time.monotonic() - started
        return ReloadOutcome(True, f"applied in {elapsed:.2f}s: {changes.summary()}")

    def _remember(self, result: LoadResult, before: dict[Path, str | None]) -> None:
        """Watch the files this load names (all watched so far, if it was rejected)."""
        paths = result.watched_files
        if result.config is None:
            paths = tuple(dict.fromkeys([*self.loaded, *paths]))
        current = fingerprint(paths)
        kept = {path: digest for path, digest in before.items() if path in current}
        self.loaded = {**current, **kept, **result.file_digests}

    async def _apply(
        self, new: Plan, changes: PlanDiff, added: dict[str, BoundSocket]
    ) -> str | None:
        """New generations, then live settings, then retirements; why a roll failed, if it did.

        A failed roll leaves everything as it was: live settings are pushed only
        once every new generation is ready.
        """
        old_sockets = self.sockets
        self.sockets = SocketSet({**old_sockets.sockets, **added})
        for name in changes.subjects(ChangeKind.LISTENER_REMOVED):
            self.sockets.sockets.pop(name, None)
        to_start = [
            *changes.subjects(ChangeKind.GROUP_ROLLED),
            *changes.subjects(ChangeKind.GROUP_STARTED),
        ]
        try:
            await self._start_groups(new, to_start)
        except WorkerStartError as error:
            close_unless_kept(added.values(), old_sockets)
            self.sockets = old_sockets
            return str(error)
        self._push_live(new, changes, rolled=to_start)
        close_unless_kept(old_sockets, self.sockets)  # draining workers hold their own copies
        self.plan = new
        return None

    def _push_live(self, new: Plan, changes: PlanDiff, *, rolled: list[str]) -> None:
        """Once the new generations are ready: live settings, certificates, retirements."""
        if any(c.subject == "logging" for c in changes.of(ChangeKind.LIVE)):
            configure(new.config.logging)
            for runner in self.groups.values():
                runner.broadcast(ipc.ApplyLogging(detach(new.config.logging)))
        for listener in changes.subjects(ChangeKind.CERTIFICATE_RELOADED):
            group = next(g.name for g in new.groups if listener in g.listeners)
            self.groups[group].broadcast(ipc.ReloadCertificates((listener,)))
        for name in changes.subjects(ChangeKind.GROUP_RETIRED):
            if name in self.groups:
                background(self.groups.pop(name).stop(ipc.SERVICE_RESTART))
        for name, runner in self.groups.items():
            if name not in rolled:
                runner.adopt(new)

    def _bind_new_sockets(self, new: Plan, changes: PlanDiff) -> dict[str, BoundSocket]:
        """Sockets for added listeners and changed binds; all or none.

        An address that stays keeps its socket, even when its listener is
        renamed or another listener takes it over: the old generation still
        accepts on it, so binding the address again would fail, and clients
        must never find it closed between the two generations.
        """
        listeners = new.config.listeners
        released = {  # held sockets whose listener leaves their address
            bound.address: bound
            for name, bound in self.sockets.sockets.items()
            if name not in listeners or listeners[name].bind != bound.address
        }
        added: dict[str, BoundSocket] = {}
        try:
            for name in (
                *changes.subjects(ChangeKind.LISTENER_ADDED),
                *changes.subjects(ChangeKind.LISTENER_CHANGED),
            ):
                listener = listeners[name]
                current = self.sockets.sockets.get(name)
                if current is not None and current.address == listener.bind:
                    adjust(current, listener)
                    continue
                taken_over = released.pop(listener.bind, None)
                if taken_over is not None:
                    adjust(taken_over, listener)
                    added[name] = replace(taken_over, name=name)
                    continue
                added[name] = bind(name, listener)
        except BindError:
            close_unless_kept(added.values(), self.sockets)
            raise
        return added
