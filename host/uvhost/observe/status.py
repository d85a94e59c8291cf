"""The status snapshot: one JSON-ready dict shared by `uvhost status`, the dashboard and @metrics.

Invariants:
- Pure: built from the supervisor's facts (`HostFacts`) and its `StatsBook`;
  it reads nothing but /proc for worker memory.
- The shape is the documented JSON of `uvhost status --json` (TypedDicts
  below); the dashboard renders exactly this, so what a script sees and what
  a person sees cannot drift apart.
- Counts are totals since the host started (never going backwards across
  rolls); `rps`, percentiles and `error_rate` cover the last few seconds
  (`window_seconds`). Percentiles are null when no request ended in the window.
- Connections and HTTP/2 streams are what is open now (each live worker's
  last sample); the per-protocol figures add up to the unsplit ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from uvhost.observe import stats
from uvhost.observe.stats import Key, Sample, StatsBook


class ReloadStatus(TypedDict):
    at: float  # unix time
    ok: bool
    message: str
    errors: list[str]


class HostStatus(TypedDict):
    pid: int
    version: str
    config: str
    started: float  # unix time
    uptime: float  # seconds
    state: str  # starting | running | reloading | stopping
    last_reload: ReloadStatus | None


class Traffic(TypedDict):
    """Counters (totals) and recent figures, for the host, a listener or an app."""

    requests: int
    requests_by_protocol: dict[str, int]  # "1.1" (HTTP/1.0 and 1.1), "2"; they add up
    responses: dict[str, int]  # "1xx".."5xx" and "none" (ended without a response)
    bytes_in: int
    bytes_out: int
    websockets_open: int
    websockets: int
    proxy_rejected: int  # connections closed before any request for want of a PROXY header
    slow_requests: int  # took [logging] slow_request_threshold or longer
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    error_rate: float  # 5xx / requests ended in the window; 0.0 when none ended


class ListenerStatus(Traffic):
    name: str
    bind: str
    tls: bool
    connections: int
    connections_by_protocol: dict[str, int]  # "1.1", "2", "ws", "closing"; they add up
    http2_streams: int  # open on its HTTP/2 connections (WebSockets over HTTP/2 too)


class AppStatus(Traffic):
    name: str
    group: str
    workers: int


class WorkerStatus(TypedDict):
    pid: int
    group: str
    generation: int
    state: str  # starting | ready | draining
    memory_bytes: int | None
    requests: int
    connections: int
    uptime: float


class GroupStatus(TypedDict):
    name: str
    generation: int
    workers: list[int]
    failed: str | None


class Status(TypedDict):
    ok: bool
    host: HostStatus
    window_seconds: float
    totals: Traffic
    listeners: list[ListenerStatus]
    apps: list[AppStatus]
    workers: list[WorkerStatus]
    groups: list[GroupStatus]


# ------------------------------------------------------------ the facts in


@dataclass(frozen=True)
class ListenerFacts:
    name: str
    bind: str
    tls: bool


@dataclass(frozen=True)
class WorkerFacts:
    pid: int
    group: str
    generation: int
    state: str
    started: float  # monotonic


@dataclass(frozen=True)
class GroupFacts:
    name: str
    generation: int
    workers: tuple[int, ...]
    failed: str | None
    apps: tuple[str, ...]


@dataclass(frozen=True)
class HostFacts:
    """What only the supervisor knows; `build` adds the traffic from the book."""

    pid: int
    version: str
    config: str
    started: float  # unix time
    state: str
    last_reload: ReloadStatus | None
    listeners: Sequence[ListenerFacts] = field(default_factory=tuple)
    groups: Sequence[GroupFacts] = field(default_factory=tuple)
    workers: Sequence[WorkerFacts] = field(default_factory=tuple)


# ------------------------------------------------------------- the status out


def build(facts: HostFacts, book: StatsBook, *, now: float | None = None) -> Status:
    now = time.time() if now is None else now
    mono = time.monotonic()
    totals = book.totals()
    seconds, recent = book.recent()
    opened = book.open()
    listeners: list[ListenerStatus] = []
    for listener in facts.listeners:
        open_ = opened.get(listener.name, stats.NOTHING_OPEN)
        listeners.append(
            {
                "name": listener.name,
                "bind": listener.bind,
                "tls": listener.tls,
                "connections": stats.connections_open(open_),
                "connections_by_protocol": stats.connections_by_kind(open_),
                "http2_streams": open_[stats.OPEN_STREAMS],
                **_traffic(totals, recent, seconds, _listener_is(listener.name)),
            }
        )
    apps: list[AppStatus] = [
        {
            "name": app,
            "group": group.name,
            "workers": len(group.workers),
            **_traffic(totals, recent, seconds, _route_is(app)),
        }
        for group in facts.groups
        for app in group.apps
    ]
    workers: list[WorkerStatus] = []
    for worker in facts.workers:
        sample = book.live.get(worker.pid)
        workers.append(
            {
                "pid": worker.pid,
                "group": worker.group,
                "generation": worker.generation,
                "state": worker.state,
                "memory_bytes": rss_bytes(worker.pid),
                "requests": sum(s[stats.REQUESTS] for s in sample.routes.values()) if sample else 0,
                "connections": (
                    sum(stats.connections_open(o) for o in sample.connections.values())
                    if sample
                    else 0
                ),
                "uptime": max(0.0, mono - worker.started),
            }
        )
    return {
        "ok": True,
        "host": {
            "pid": facts.pid,
            "version": facts.version,
            "config": facts.config,
            "started": facts.started,
            "uptime": max(0.0, now - facts.started),
            "state": facts.state,
            "last_reload": facts.last_reload,
        },
        "window_seconds": round(seconds, 3),
        "totals": _traffic(totals, recent, seconds, lambda key: True),
        "listeners": listeners,
        "apps": apps,
        "workers": workers,
        "groups": [
            {
                "name": group.name,
                "generation": group.generation,
                "workers": list(group.workers),
                "failed": group.failed,
            }
            for group in facts.groups
        ],
    }


def _traffic(
    totals: Mapping[Key, Sample],
    recent: Mapping[Key, Sample],
    seconds: float,
    selects: Callable[[Key], bool],
) -> Traffic:
    total = stats.total(sample for key, sample in totals.items() if selects(key))
    last = stats.total(sample for key, sample in recent.items() if selects(key))
    ended = sum(last[stats.STATUS_BASE : stats.STATUS_BASE + 6])
    buckets = stats.latency_buckets(last)
    return {
        "requests": total[stats.REQUESTS],
        "requests_by_protocol": stats.by_protocol(total),
        "responses": {
            "none": total[stats.NO_RESPONSE],
            **{f"{n}xx": total[stats.STATUS_BASE + n] for n in range(1, 6)},
        },
        "bytes_in": total[stats.BYTES_IN],
        "bytes_out": total[stats.BYTES_OUT],
        "websockets_open": total[stats.WEBSOCKETS_OPEN],
        "websockets": total[stats.WEBSOCKETS],
        "proxy_rejected": total[stats.PROXY_REJECTED],
        "slow_requests": total[stats.SLOW_REQUESTS],
        "rps": round(last[stats.REQUESTS] / seconds, 2) if seconds > 0 else 0.0,
        "p50_ms": _ms(stats.percentile(buckets, 0.50)),
        "p90_ms": _ms(stats.percentile(buckets, 0.90)),
        "p99_ms": _ms(stats.percentile(buckets, 0.99)),
        "error_rate": round(last[stats.STATUS_BASE + 5] / ended, 4) if ended else 0.0,
    }


def _listener_is(name: str) -> Callable[[Key], bool]:
    return lambda key: key[0] == name


def _route_is(name: str) -> Callable[[Key], bool]:
    return lambda key: key[1] == name


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process, from /proc (None where there is no /proc)."""
    try:
        statm = Path(f"/proc/{pid}/statm").read_text(encoding="ascii")
        return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
