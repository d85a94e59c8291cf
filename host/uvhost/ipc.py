"""Messages between the supervisor and its worker processes, over a duplex pipe.

Invariants:
- Imports only `uvhost.config`: both sides of the pipe can use it, and
  neither `server` nor `supervisor` has to import the other.
- Every message is a small frozen dataclass, pickled with a length prefix
  over a socketpair the supervisor made; a worker is started from a `Hello`
  (its `WorkerSpec` and socket fds) and nothing else. Pickle is safe here:
  both ends are the same program, parent and child.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from uvhost.config.plan import Plan

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import LoggingSettings

# Close codes a draining worker sends to open WebSockets (RFC 6455 / IANA).
GOING_AWAY = 1001  # the host is stopping
SERVICE_RESTART = 1012  # a new generation takes over


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a spawned worker needs: the plan and which group it serves."""

    plan: Plan
    group: str
    generation: int
    index: int


# ---------------------------------------------------------- worker → supervisor


@dataclass(frozen=True, slots=True)
class Ready:
    """Apps imported, lifespan startup done, sockets served."""

    pid: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker cannot serve; `reason` is one line for the operator."""

    pid: int
    reason: str


@dataclass(frozen=True, slots=True)
class Stopping:
    """The worker began draining (asked to, or on its own, e.g. max_requests)."""

    pid: int


@dataclass(frozen=True, slots=True)
class Recycle:
    """The worker reached max_requests (+ jitter): replace it, it keeps serving meanwhile."""

    pid: int


# ---------------------------------------------------------- supervisor → worker


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop accepting, finish in-flight work within `timeout`, close WebSockets with `code`."""

    code: int = GOING_AWAY


@dataclass(frozen=True, slots=True)
class ApplyLogging:
    """New logging settings, applied without a restart."""

    settings: LoggingSettings


@dataclass(frozen=True, slots=True)
class ReloadCertificates:
    """Certificate or key files of these listeners changed on disk: load them in place."""

    listeners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Stats:
    """Once a second and once more at exit: the worker's counters (see `observe.stats`).

    `routes` maps (listener, route) to a sample tuple; `connections` maps each
    listener to its open connections by kind and its open HTTP/2 streams (an
    `observe.stats.Open`). Plain tuples, so this module needs no observe import.
    """

    pid: int
    routes: dict[tuple[str, str], tuple[int, ...]]
    connections: dict[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class MetricsRequest:
    """A scrape of `@metrics` reached this worker: it asks for the host's merged text."""

    id: int


ToSupervisor = Ready | Failed | Stopping | Recycle | Stats | MetricsRequest


@dataclass(frozen=True, slots=True)
class HostReady:
    """The host has started (every group ready): `@health` readiness may answer 200."""


@dataclass(frozen=True, slots=True)
class MetricsReply:
    """The answer to `MetricsRequest(id)`: the Prometheus text, or why there is none."""

    id: int
    text: str | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class ReopenLogs:
    """The supervisor got SIGUSR1 (logrotate moved the log file away): reopen it."""


@dataclass(frozen=True, slots=True)
class Unready:
    """The host is stopping after `host.drain_delay`: `@health` readiness answers 503 from
    now on while the worker keeps serving, so balancers take it out before sockets close."""


ToWorker = (
    Drain | ApplyLogging | ReloadCertificates | HostReady | Unready | MetricsReply | ReopenLogs
)


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message to a new worker: its spec and where its sockets are (fd numbers)."""

    spec: WorkerSpec
    fds: dict[str, int]


# ---------------------------------------------------------------- framing


async def read_message(reader: asyncio.StreamReader) -> object:
    """One length-prefixed pickle; EOFError when the other side is gone."""
    try:
        header = await reader.readexactly(_LENGTH.size)
        (size,) = _LENGTH.unpack(header)
        return pickle.loads(await reader.readexactly(size))  # noqa: S301 - our own child
    except (asyncio.IncompleteReadError, ConnectionError) as error:
        # A reset counts as gone too: a process that exits with our unread message
        # (a Drain sent as it failed) in its buffer makes the kernel reset the pipe.
        raise EOFError("the other end of the pipe closed") from error


def frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


_LENGTH = struct.Struct("!I")
