"""The host's counters as Prometheus text (exposition format 0.0.4), for `@metrics`.

Invariants:
- Pure: the text is a function of the merged totals, the open connections
  and a few host and worker facts; nothing here reads a clock or a socket.
  `from_book` is the one convenience that gathers those inputs from the
  supervisor's `StatsBook` and `HostFacts` (and /proc, for memory).
- Every family has HELP and TYPE lines and all its samples in one group, in
  a stable order (sorted label values), so two scrapes of the same state are
  byte-identical and diffs between scrapes are readable.
- Label values are escaped as the format asks (backslash, double quote, line
  feed); names come from the config, which already restricts them, but the
  text stays well-formed whatever a name holds.

Choices a reader of the output should know about:
- The `app` label is the route's app name, a built-in's name ("@health",
  "@metrics"), or "@none" for requests no app took (no route matched, or
  uvhost answered a bad request itself). App names cannot start with "@", so
  "@none" never collides with a real app.
- `uvhost_requests_total` counts requests as they start; the responses and
  the latency histogram count them as they end, so the two differ by the
  requests in flight.
- The protocol is a label of families of its own, beside the unsplit ones
  whose names and labels stay as they were (a query or a dashboard written
  for them keeps working): `uvhost_protocol_requests_total` ("1.1" for
  HTTP/1.0 and 1.1, "2") adds up to `uvhost_requests_total`, and
  `uvhost_protocol_connections_open` ("1.1", "2", "ws", "closing") to
  `uvhost_connections_open`. Every protocol value is written for every
  listener (or route), zeros included, so a series never appears mid-way.
- The latency histogram has `_bucket` and `_count` but no `_sum`: workers
  count latencies into fixed buckets only (an integer add per request), and
  a sum estimated from bucket bounds would be a made-up number. Format 0.0.4
  requires only the `+Inf` bucket and that it equals `_count`; OpenMetrics
  lists the sum as SHOULD, not MUST. `histogram_quantile()` works on the
  buckets; an average latency (`_sum / _count`) is not available.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from uvhost.observe import stats
from uvhost.observe.stats import Key, Open, Sample, StatsBook
from uvhost.observe.status import HostFacts, rss_bytes

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NO_APP = "@none"
"""The `app` label of requests that no app took (route "" in the stats key)."""

_STATUS_CLASSES = (("none", 0), ("1xx", 1), ("2xx", 2), ("3xx", 3), ("4xx", 4), ("5xx", 5))


@dataclass(frozen=True)
class WorkerMetrics:
    """What the metrics say about one live worker process."""

    pid: int
    group: str
    generation: int
    memory_bytes: int | None  # resident set size; None where it cannot be read


@dataclass(frozen=True)
class HostMetrics:
    """Host-wide facts: when it started, what it runs, how its reloads went."""

    started: float  # unix time of the supervisor's start
    version: str
    reloads: Mapping[str, int] | None = None
    """Reload count by result ("ok", "failed"); None leaves the family out (not counted)."""
    listeners: Sequence[str] = field(default_factory=tuple)
    """Listener names whose connection gauge is shown even at zero (none seen yet)."""


def exposition(
    totals: Mapping[Key, Sample],
    connections: Mapping[str, Open],
    workers: Sequence[WorkerMetrics],
    host: HostMetrics,
) -> str:
    """The whole scrape: `totals` and `connections` as `StatsBook.totals()` and
    `StatsBook.open()` give them, merged over workers."""
    rows = [(_labels(key), totals[key]) for key in sorted(totals)]
    out: list[str] = []
    _family(out, "uvhost_info", "gauge", "Always 1; the version label says which uvhost runs.")
    out.append(_sample("uvhost_info", {"version": host.version}, 1))
    _family(out, "uvhost_start_time_seconds", "gauge", "When the host started, in unix time.")
    out.append(_sample("uvhost_start_time_seconds", {}, host.started))
    if host.reloads is not None:
        _family(out, "uvhost_reloads_total", "counter", "Config reloads, by result.")
        for result in sorted(host.reloads):
            out.append(_sample("uvhost_reloads_total", {"result": result}, host.reloads[result]))

    _per_route(out, rows, "uvhost_requests_total", stats.REQUESTS, "Requests started.")
    _family(out, "uvhost_protocol_requests_total", "counter", _PROTOCOL_REQUESTS_HELP)
    for labels, sample in rows:
        for protocol, count in stats.by_protocol(sample).items():
            labelled = {**labels, "protocol": protocol}
            out.append(_sample("uvhost_protocol_requests_total", labelled, count))
    _responses(out, rows)
    _per_route(out, rows, "uvhost_request_bytes_total", stats.BYTES_IN, _BYTES_IN_HELP)
    _per_route(out, rows, "uvhost_response_bytes_total", stats.BYTES_OUT, _BYTES_OUT_HELP)
    _latency(out, rows)
    _per_route(out, rows, "uvhost_slow_requests_total", stats.SLOW_REQUESTS, _SLOW_HELP)
    _per_route(out, rows, "uvhost_websockets_open", stats.WEBSOCKETS_OPEN, _WS_OPEN_HELP)
    _per_route(out, rows, "uvhost_websockets_total", stats.WEBSOCKETS, _WS_HELP)

    listeners = sorted({*host.listeners, *connections})
    opened = [(name, connections.get(name, stats.NOTHING_OPEN)) for name in listeners]
    _family(out, "uvhost_connections_open", "gauge", "Client connections open now, by listener.")
    for name, open_ in opened:
        count = stats.connections_open(open_)
        out.append(_sample("uvhost_connections_open", {"listener": name}, count))
    _family(out, "uvhost_protocol_connections_open", "gauge", _PROTOCOL_CONNECTIONS_HELP)
    for name, open_ in opened:
        for kind, count in stats.connections_by_kind(open_).items():
            labels = {"listener": name, "protocol": kind}
            out.append(_sample("uvhost_protocol_connections_open", labels, count))
    _family(out, "uvhost_http2_streams_open", "gauge", _STREAMS_HELP)
    for name, open_ in opened:
        count = open_[stats.OPEN_STREAMS]
        out.append(_sample("uvhost_http2_streams_open", {"listener": name}, count))
    _family(out, "uvhost_proxy_rejected_total", "counter", _PROXY_REJECTED_HELP)
    for name in listeners:
        refused = (sample[stats.PROXY_REJECTED] for key, sample in totals.items() if key[0] == name)
        count = sum(refused)
        out.append(_sample("uvhost_proxy_rejected_total", {"listener": name}, count))
    _workers(out, workers)
    return "".join(out)


def from_book(
    facts: HostFacts, book: StatsBook, *, reloads: Mapping[str, int] | None = None
) -> str:
    """The scrape the supervisor answers: its facts and book, worker memory from /proc."""
    workers = [
        WorkerMetrics(worker.pid, worker.group, worker.generation, rss_bytes(worker.pid))
        for worker in facts.workers
    ]
    host = HostMetrics(
        started=facts.started,
        version=facts.version,
        reloads=reloads,
        listeners=tuple(listener.name for listener in facts.listeners),
    )
    return exposition(book.totals(), book.open(), workers, host)


# ------------------------------------------------------------ the families

Row = tuple[dict[str, str], Sample]  # the listener and app labels of one stats key, its sample

_BYTES_IN_HELP = "Bytes received in requests."
_BYTES_OUT_HELP = "Bytes sent in responses."
_WS_OPEN_HELP = "WebSocket sessions open now."
_WS_HELP = "WebSocket sessions accepted."
_RESPONSES_HELP = (
    'Requests ended, by status class; class "none" ended without a response '
    "(the client left first, or the connection was closed on an app error)."
)
_PROTOCOL_REQUESTS_HELP = (
    'Requests started, by protocol: "1.1" (HTTP/1.0 and 1.1) or "2"; '
    "a WebSocket handshake counts under the protocol that carried it."
)
_PROTOCOL_CONNECTIONS_HELP = (
    'Client connections open now, by listener and protocol: "1.1", "2", '
    '"ws" (an HTTP/1.1 connection upgraded to a WebSocket), "closing" (the last response '
    "is out, waiting for the client to close)."
)
_STREAMS_HELP = (
    "HTTP/2 streams open now, by listener: requests in flight and WebSockets over HTTP/2."
)
_LATENCY_HELP = (
    "Time from the request head parsed to the last response byte handed to the socket "
    "(no _sum: only bucket counts are kept)."
)


_SLOW_HELP = "Requests that took [logging] slow_request_threshold or longer (each logged once)."
_PROXY_REJECTED_HELP = (
    "Connections closed before any request on a proxy_protocol listener: not from an allowed "
    "address, or without a valid PROXY header in time."
)


def _per_route(out: list[str], rows: Sequence[Row], name: str, index: int, help_: str) -> None:
    """One sample per (listener, app) from one slot of the sample; a gauge unless `_total`."""
    _family(out, name, "counter" if name.endswith("_total") else "gauge", help_)
    for labels, sample in rows:
        out.append(_sample(name, labels, sample[index]))


def _responses(out: list[str], rows: Sequence[Row]) -> None:
    _family(out, "uvhost_responses_total", "counter", _RESPONSES_HELP)
    for labels, sample in rows:
        for status_class, index in _STATUS_CLASSES:
            value = sample[stats.STATUS_BASE + index]
            out.append(_sample("uvhost_responses_total", {**labels, "class": status_class}, value))


def _latency(out: list[str], rows: Sequence[Row]) -> None:
    """Cumulative buckets from the per-bucket counts; the last bucket is the +Inf one."""
    name = "uvhost_request_duration_seconds"
    _family(out, name, "histogram", _LATENCY_HELP)
    bounds = (*stats.LATENCY_BOUNDS, math.inf)
    for labels, sample in rows:
        seen = 0
        for bound, count in zip(bounds, stats.latency_buckets(sample), strict=True):
            seen += count
            out.append(_sample(f"{name}_bucket", {**labels, "le": _number(bound)}, seen))
        out.append(_sample(f"{name}_count", labels, seen))


def _workers(out: list[str], workers: Sequence[WorkerMetrics]) -> None:
    per_group: dict[str, int] = {}
    generation: dict[str, int] = {}
    for worker in workers:
        per_group[worker.group] = per_group.get(worker.group, 0) + 1
        generation[worker.group] = max(generation.get(worker.group, 0), worker.generation)
    _family(out, "uvhost_workers", "gauge", "Worker processes alive, by worker group.")
    for group in sorted(per_group):
        out.append(_sample("uvhost_workers", {"group": group}, per_group[group]))
    _family(out, "uvhost_group_generation", "gauge", "Newest worker generation of each group.")
    for group in sorted(generation):
        out.append(_sample("uvhost_group_generation", {"group": group}, generation[group]))
    _family(out, "uvhost_worker_resident_memory_bytes", "gauge", "Resident memory of each worker.")
    for worker in sorted(workers, key=lambda w: (w.group, w.pid)):
        if worker.memory_bytes is not None:
            labels = {"pid": str(worker.pid), "group": worker.group}
            out.append(_sample("uvhost_worker_resident_memory_bytes", labels, worker.memory_bytes))


# ------------------------------------------------------------------ the format


def _labels(key: Key) -> dict[str, str]:
    listener, route = key
    return {"listener": listener, "app": route or NO_APP}


def _family(out: list[str], name: str, kind: str, help_: str) -> None:
    out.append(f"# HELP {name} {escape_help(help_)}\n# TYPE {name} {kind}\n")


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}\n"
    inner = ",".join(f'{label}="{escape_label(text)}"' for label, text in labels.items())
    return f"{name}{{{inner}}} {_number(value)}\n"


def _number(value: float) -> str:
    """Integers as integers; floats in Python's shortest round-trip form; +Inf spelled out."""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


def escape_label(text: str) -> str:
    """A label value as the format wants it: backslash, double quote and line feed escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes only backslash and line feed (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")
