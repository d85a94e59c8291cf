"""The ASGI lifespan protocol (spec 2.0+) for one app in one worker.

Invariants:
- The app runs as one task for the worker's whole life; it talks to us only
  through `receive` (an asyncio.Queue we fill) and `send` (which resolves a
  future per phase). Nothing polls: startup and shutdown wait on a future
  that either the app's message or the task's end resolves, bounded by
  `asyncio.wait`'s timeout.
- The task never ends with an exception, so asyncio never logs "exception
  was never retrieved": `_run` catches what the app raises, hands it to the
  waiting phase (startup turns it into a LifespanFailure or, in "auto", into
  "no lifespan") and logs it with its traceback exactly once if startup had
  already completed.
- `startup` raises only LifespanFailure, with a one-line `message` naming
  the app (an app's multi-line message, such as the traceback Starlette
  sends, is kept whole in `detail`). `shutdown` never raises: by then the
  worker is leaving anyway, so problems are logged on "uvhost.lifespan" and
  the task is made to end, cancelled if it outlives the timeout.
- "auto" treats an app that raises or returns before sending anything as an
  app without lifespan support (ASGI says such apps raise on the unknown
  scope type) and logs it at debug; if it had already taken the startup
  message it does speak lifespan and crashed, so "auto" still carries on but
  says so as a warning with the traceback. "on" treats either as a failure;
  "off" never calls the app.
- `state` is the dict the app sees as `scope["state"]`; the server copies it
  (shallow) into every request scope, so what startup stores is visible to
  requests and a request's changes are not visible to the next.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any, Literal

from uvhost.server.asgi_types import ASGIApp, Message

__all__ = ["Lifespan", "LifespanFailure"]

logger = logging.getLogger("uvhost.lifespan")

_CANCEL_GRACE = 1.0
"""How long a cancelled lifespan task may take to unwind before we give up on it."""


class LifespanFailure(Exception):  # noqa: N818 - "failure": the app failed, not our code
    """Lifespan startup failed; `message` is one line for the operator."""

    message: str
    detail: str

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


class _Phase(enum.Enum):
    IDLE = "idle"
    STARTING = "startup"
    STARTED = "started"
    FAILED = "failed startup"
    STOPPING = "shutdown"
    STOPPED = "stopped"


_WHEN = {
    _Phase.STARTED: "after startup",
    _Phase.STOPPING: "during shutdown",
    _Phase.STOPPED: "after shutdown",
}


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How a phase ended: the app's message, or its task ending first."""

    kind: Literal["complete", "failed", "raised", "returned", "invalid"]
    message: str = ""
    error: BaseException | None = None


_EXPECTED: dict[_Phase, tuple[str, ...]] = {
    _Phase.STARTING: ("lifespan.startup.complete", "lifespan.startup.failed"),
    _Phase.STOPPING: ("lifespan.shutdown.complete", "lifespan.shutdown.failed"),
}


class Lifespan:
    """Drives one app's lifespan: `await startup(t)` before serving, `shutdown(t)` after."""

    state: dict[str, Any]

    def __init__(self, app: ASGIApp, *, name: str, mode: Literal["auto", "on", "off"]) -> None:
        self.app = app
        self.name = name
        self.mode = mode
        self.state = {}
        self._phase = _Phase.IDLE
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outcome: asyncio.Future[_Outcome] | None = None
        self._task: asyncio.Task[None] | None = None
        self._received = False

    @property
    def running(self) -> bool:
        """True from a completed startup until shutdown: the app speaks lifespan."""
        task = self._task
        return self._phase is _Phase.STARTED and task is not None and not task.done()

    async def startup(self, timeout: float) -> None:
        """Send lifespan.startup and wait for the app's answer; raises LifespanFailure."""
        if self.mode == "off" or self._phase is not _Phase.IDLE:
            return
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        loop = asyncio.get_running_loop()
        outcome = self._begin(_Phase.STARTING)
        self._task = loop.create_task(self._run(scope), name=f"lifespan {self.name}")
        self._inbox.put_nowait({"type": "lifespan.startup"})
        await asyncio.wait([outcome], timeout=timeout)
        if not outcome.done():
            self._phase = _Phase.FAILED
            await self._finish(0.0)
            raise LifespanFailure(
                f'app "{self.name}": lifespan startup did not complete within {timeout:g}s'
            )
        result = outcome.result()
        if result.kind == "complete":
            return  # `_send` moved to STARTED as the message arrived
        self._phase = _Phase.FAILED
        unsupported = result.kind in ("raised", "returned")
        if unsupported and self.mode == "auto":
            if self._received and result.error is not None:
                # It took the startup message, so it does speak lifespan and then crashed:
                # "auto" still carries on, but this must not hide at debug level.
                logger.warning(
                    'app "%s" raised during lifespan startup; running without lifespan '
                    '(set lifespan = "on" to make this fatal)',
                    self.name,
                    exc_info=result.error,
                )
            else:
                logger.debug(
                    'app "%s" does not support lifespan (%s); running without it',
                    self.name,
                    _describe(result),
                    exc_info=result.error,
                )
            await self._finish(_CANCEL_GRACE)
            return
        await self._finish(_CANCEL_GRACE)
        failure = LifespanFailure(
            f'app "{self.name}": lifespan startup {_describe(result)}', result.message
        )
        if result.error is not None:
            raise failure from result.error
        raise failure

    async def shutdown(self, timeout: float) -> None:
        """Send lifespan.shutdown, wait for the answer, make sure the task ends."""
        task = self._task
        if self._phase is not _Phase.STARTED or task is None:
            return
        if task.done():  # the app left after startup; `_run` said whatever there was to say
            self._phase = _Phase.STOPPED
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        outcome = self._begin(_Phase.STOPPING)
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait([outcome], timeout=timeout)
        if not outcome.done():
            logger.warning(
                'app "%s": lifespan shutdown did not complete within %gs; cancelling it',
                self.name,
                timeout,
            )
        else:
            result = outcome.result()
            if result.kind in ("failed", "invalid"):
                logger.error('app "%s": lifespan shutdown %s', self.name, _describe(result))
            elif result.kind == "returned":
                logger.warning('app "%s": lifespan shutdown %s', self.name, _describe(result))
        self._phase = _Phase.STOPPED
        await self._finish(max(0.0, deadline - loop.time()))

    def _begin(self, phase: _Phase) -> asyncio.Future[_Outcome]:
        self._phase = phase
        self._outcome = asyncio.get_running_loop().create_future()
        return self._outcome

    def _settle(self, outcome: _Outcome) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(outcome)

    async def _run(self, scope: Message) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = _Outcome("raised", _exception_line(exc), exc)
            if self._phase in (_Phase.STARTING, _Phase.FAILED):
                self._settle(outcome)  # startup reports it, or already reported its failure
                return
            logger.error(
                'app "%s" raised in its lifespan %s',
                self.name,
                _WHEN.get(self._phase, ""),
                exc_info=exc,
            )
            self._settle(outcome)
        else:
            self._settle(_Outcome("returned"))

    async def _receive(self) -> Message:
        message = await self._inbox.get()
        self._received = True
        return message

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        expected = _EXPECTED.get(self._phase, ())
        if kind not in expected:
            self._settle(_Outcome("invalid", f"sent {kind!r}"))
            phase = self._phase.value
            raise RuntimeError(f"unexpected ASGI message {kind!r} during lifespan {phase}")
        starting = self._phase is _Phase.STARTING
        if kind == expected[0]:
            self._phase = _Phase.STARTED if starting else _Phase.STOPPED
            self._settle(_Outcome("complete"))
        else:
            self._phase = _Phase.FAILED if starting else _Phase.STOPPED
            self._settle(_Outcome("failed", str(message.get("message") or "")))

    async def _finish(self, wait: float) -> None:
        """Give the task `wait` seconds to end by itself, then cancel it."""
        task = self._task
        if task is None or task.done():
            return
        if wait > 0:
            await asyncio.wait([task], timeout=wait)
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=_CANCEL_GRACE)
            if not task.done():
                logger.warning('app "%s": lifespan task ignored cancellation', self.name)


def _describe(outcome: _Outcome) -> str:
    """The end of a one-line sentence: "failed: db down", "raised ValueError: x", ..."""
    if outcome.kind == "failed":
        return f"failed: {_last_line(outcome.message)}" if outcome.message else "failed"
    if outcome.kind == "raised":
        return f"raised {outcome.message}"
    if outcome.kind == "returned":
        return "ended without completing"
    if outcome.kind == "invalid":
        return f"is not lifespan protocol: the app {outcome.message}"
    return "completed"


def _exception_line(exc: BaseException) -> str:
    """ "ValueError: first line of the message", for a one-line report."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _last_line(text: str) -> str:
    """The last non-blank line: for a traceback, the exception itself."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
