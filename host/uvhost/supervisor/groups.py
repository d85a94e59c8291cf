"""One worker group's processes across generations: start, roll, restart, stop.

Invariants:
- A generation replaces the previous one only when every one of its
  workers reported Ready; until then the old generation serves alone, and
  if the new one fails it is stopped and the old one keeps serving.
  `prepare` and `commit` are separate so that a reload rolling several
  groups commits none of them unless all are ready.
- Both generations accept on the same inherited sockets while the old one
  drains, so no connection is refused during a roll.
- A worker that exits on its own is replaced with exponential backoff; a
  group whose replacements keep failing at startup stops retrying and says so.
- A worker that asks to be recycled (max_requests), or whose memory the
  supervisor finds over `max_memory`, is replaced like a roll of one: its
  replacement must be Ready before it drains (1012); if the replacement
  fails, it keeps serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from uvhost import ipc
from uvhost.config.plan import Plan
from uvhost.observe.status import rss_bytes
from uvhost.supervisor.process import HostServices, WorkerProcess, WorkerStartError
from uvhost.supervisor.tasks import background

logger = logging.getLogger("uvhost.supervisor")

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
MAX_STARTUP_FAILURES = 5


@dataclass(eq=False)
class GroupRunner:
    name: str
    generation: int = 0
    workers: list[WorkerProcess] = field(default_factory=list)
    retiring: set[WorkerProcess] = field(default_factory=set)
    plan: Plan | None = None
    sockets: Mapping[str, socket.socket] = field(default_factory=dict)
    failures: int = 0
    failed: str | None = None  # why the group gave up restarting, if it did
    stopping: bool = False
    services: HostServices = field(default_factory=HostServices)  # the host's, shared
    host_ready: bool = False  # the host has started: workers that take over are told so

    async def prepare(
        self, plan: Plan, sockets: Mapping[str, socket.socket]
    ) -> list[WorkerProcess]:
        """A new generation, every worker ready, not yet serving in place of the current one.

        Raises WorkerStartError with none of the new workers left running.
        """
        group = plan.group(self.name)
        generation = self.generation + 1
        timeout = plan.config.host.startup_timeout
        fresh: list[WorkerProcess] = []
        try:
            for index in range(group.workers):
                spec = ipc.WorkerSpec(plan, self.name, generation, index)
                fresh.append(await WorkerProcess.spawn(spec, sockets, self.services))
            await asyncio.gather(*(worker.wait_ready(timeout) for worker in fresh))
        except (WorkerStartError, OSError) as error:
            await discard(fresh)
            raise WorkerStartError(f'group "{self.name}": {error}') from error
        return fresh

    def commit(
        self, plan: Plan, sockets: Mapping[str, socket.socket], fresh: list[WorkerProcess]
    ) -> None:
        """`fresh` (from `prepare`) takes over; the previous generation drains."""
        previous = self.workers
        self.workers, self.generation = fresh, self.generation + 1
        self.plan, self.sockets = plan, sockets
        self.failures, self.failed = 0, None
        for worker in fresh:
            self._follow(worker)
        for worker in previous:
            self._retire(worker, ipc.SERVICE_RESTART)

    def _retire(self, worker: WorkerProcess, code: int) -> None:
        self.retiring.add(worker)
        timeout = self.plan.config.host.graceful_timeout if self.plan else 30.0

        async def drain() -> None:
            await worker.stop(code, timeout)
            worker.close()
            self.retiring.discard(worker)

        background(drain())

    def _follow(self, worker: WorkerProcess) -> None:
        """`worker` now serves in this group: replace it if it exits or asks to be recycled."""
        if self.host_ready:
            worker.send(ipc.HostReady())
        background(self._watch(worker))
        background(self._recycle(worker))

    async def _recycle(self, old: WorkerProcess) -> None:
        asked = asyncio.ensure_future(old.recycle.wait())
        exited = asyncio.ensure_future(old.wait())
        try:
            await asyncio.wait({asked, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()
            exited.cancel()
        if (
            not old.recycle.is_set()
            or self.stopping
            or old.draining
            or old not in self.workers
            or self.plan is None
        ):
            return
        for attempt in range(MAX_STARTUP_FAILURES):
            if attempt:  # the replacement failed to start: the old worker serves meanwhile
                await asyncio.sleep(min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt))
            if self.stopping or old.draining or old not in self.workers or self.plan is None:
                return  # a roll or a stop overtook the recycle
            error = await self._replace_recycled(old, self.plan)
            if error is None:
                return
            logger.error(
                'recycling worker %d of group "%s" failed (attempt %d of %d): %s; it keeps serving',
                old.pid,
                self.name,
                attempt + 1,
                MAX_STARTUP_FAILURES,
                error,
            )
        logger.error('group "%s" stops trying to recycle worker %d', self.name, old.pid)

    async def _replace_recycled(self, old: WorkerProcess, plan: Plan) -> str | None:
        """One try at replacing `old` with a ready worker; why it failed, if it did."""
        try:
            fresh = await WorkerProcess.spawn(self._current(old.spec), self.sockets, self.services)
        except OSError as error:
            return str(error)
        try:
            await fresh.wait_ready(plan.config.host.startup_timeout)
        except WorkerStartError as error:
            await discard([fresh])
            return str(error)
        if self.stopping or old.draining or old not in self.workers:
            await discard([fresh])  # a roll or a stop overtook the recycle
            return None
        self.workers[self.workers.index(old)] = fresh
        self._follow(fresh)
        self._retire(old, ipc.SERVICE_RESTART)
        logger.info(
            'worker %d replaces %d in group "%s" (%s)',
            fresh.pid,
            old.pid,
            self.name,
            old.recycle_reason,
        )
        return None

    async def _watch(self, worker: WorkerProcess) -> None:
        status = await worker.wait()
        if self.stopping or worker.draining or worker not in self.workers:
            return
        logger.error(
            'worker %d of group "%s" exited unexpectedly (status %s)', worker.pid, self.name, status
        )
        worker.close()
        await self._replace(worker)

    async def _replace(self, dead: WorkerProcess) -> None:
        while not self.stopping and dead in self.workers and self.plan is not None:
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**self.failures)
            await asyncio.sleep(delay)
            if self.stopping or dead not in self.workers:
                return
            try:
                worker = await WorkerProcess.spawn(
                    self._current(dead.spec), self.sockets, self.services
                )
                await worker.wait_ready(self.plan.config.host.startup_timeout)
            except (WorkerStartError, OSError) as error:
                self.failures += 1
                logger.error('replacing a worker of group "%s" failed: %s', self.name, error)
                if self.failures >= MAX_STARTUP_FAILURES:
                    self.failed = f"{self.failures} replacements failed; last: {error}"
                    logger.error('group "%s" stops restarting workers: %s', self.name, error)
                    return
                continue
            self.workers[self.workers.index(dead)] = worker
            self.failures = 0
            self._follow(worker)
            logger.info('worker %d replaces %d in group "%s"', worker.pid, dead.pid, self.name)
            return

    def check_memory(self, measure: Callable[[int], int | None] = rss_bytes) -> None:
        """Once a second: recycle serving workers whose RSS is over `max_memory` (the same
        ready-gated replacement as max_requests). A worker is judged again only if its
        recycle gave up, never twice while one is under way."""
        limit = self.plan.config.host.max_memory if self.plan is not None else None
        if not limit or self.stopping:
            return
        for worker in self.workers:
            if worker.draining or worker.recycle.is_set():
                continue
            rss = measure(worker.pid)
            if rss is None or rss <= limit:
                continue
            logger.warning(
                'worker %d of group "%s" uses %d MiB, over max_memory (%d MiB): recycling it',
                worker.pid,
                self.name,
                rss >> 20,
                limit >> 20,
            )
            worker.recycle_reason = "max_memory"
            worker.recycle.set()

    def announce_ready(self) -> None:
        """The host finished starting: this group's workers (and later ones) may say so."""
        self.host_ready = True
        self.broadcast(ipc.HostReady())

    def announce_unready(self) -> None:
        """The host will stop after its drain delay: readiness turns false in every worker
        (and in any replacement started meanwhile), while they all keep serving."""
        self.host_ready = False
        self.broadcast(ipc.Unready())

    def adopt(self, plan: Plan) -> None:
        """A reload left this group as it was: later replacements start from `plan` (its live
        settings, such as logging, included) rather than the plan the group was rolled with."""
        self.plan = plan

    def _current(self, spec: ipc.WorkerSpec) -> ipc.WorkerSpec:
        """A replacement's spec: the same slot, with the plan the group serves now."""
        return spec if self.plan is None else dataclasses.replace(spec, plan=self.plan)

    def broadcast(self, message: ipc.ToWorker, *, retiring: bool = False) -> None:
        """To the serving workers; `retiring` adds those still draining (they log too)."""
        for worker in [*self.workers, *(self.retiring if retiring else ())]:
            worker.send(message)

    async def stop(self, code: int) -> None:
        """Drain every worker (current and retiring) and wait for them all."""
        self.stopping = True
        timeout = self.plan.config.host.graceful_timeout if self.plan else 30.0
        everyone = [*self.workers, *self.retiring]
        await asyncio.gather(*(worker.stop(code, timeout) for worker in everyone))
        for worker in everyone:
            worker.close()
        self.workers = []

    def pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]


async def discard(workers: list[WorkerProcess]) -> None:
    """Stop workers of a generation that never took over."""
    await asyncio.gather(*(worker.stop(ipc.GOING_AWAY, 1.0) for worker in workers))
    for worker in workers:
        worker.close()
