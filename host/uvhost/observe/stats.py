"""Request counters and latency histograms: counted in workers, merged by the supervisor.

Invariants:
- Counting costs integer adds on the request path: a `RouteStats` is found
  once per request (it hangs off the route's endpoint) and updated with
  `+=` on slots and list items; no dict lookup, no allocation.
- A sample is a flat tuple of ints in `FIELDS` order followed by one count
  per latency bucket; merging is element-wise addition, so a worker's
  sample, a host total and a windowed delta all have the same shape.
- Host totals never go backwards: when a worker exits, its last sample is
  folded into `retired`, so a roll or a crash does not lose counts.
- Latency is time from the request head parsed to the last response byte
  handed to the transport (a WebSocket counts as one request whose latency
  is the handshake).
- The protocol of a request costs HTTP/1.x nothing: only the HTTP/2 path
  adds to `REQUESTS_H2` (beside `REQUESTS`), and HTTP/1.x requests are the
  difference (`by_protocol`). A WebSocket handshake is a request of the
  protocol that carried it.
- Open connections are sampled, not counted: once a second the worker looks
  at each live connection's kind (`Open`, per listener), so connections and
  streams cost the request path nothing either.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Upper bounds of the latency buckets, in seconds; one more bucket holds the rest.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Status slots: index = status // 100; slot 0 counts requests that ended without a
# response (the client went away first, or the connection was closed on an app error).
FIELDS = (
    "requests",
    "no_response",
    "status_1xx",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "bytes_in",
    "bytes_out",
    "websockets_open",
    "websockets",
    "requests_h2",
    "proxy_rejected",
    "slow_requests",
)
REQUESTS, NO_RESPONSE = 0, 1
STATUS_BASE = 1  # FIELDS[STATUS_BASE + status // 100]
BYTES_IN, BYTES_OUT, WEBSOCKETS_OPEN, WEBSOCKETS = 7, 8, 9, 10
REQUESTS_H2 = 11
"""Requests that came on HTTP/2 streams (counted in `REQUESTS` too)."""
PROXY_REJECTED = 12
"""Connections closed before any request on a `proxy_protocol` listener: from an address
not allowed, or with a missing, malformed, oversized, truncated or late PROXY header.
Counted on the listener's unrouted stats (route ""): no request was made."""
SLOW_REQUESTS = 13
"""Requests that took `[logging] slow_request_threshold` or longer (each also logged once)."""
LATENCY_BASE = len(FIELDS)
SAMPLE_SIZE = LATENCY_BASE + len(LATENCY_BOUNDS) + 1
GAUGES = (WEBSOCKETS_OPEN,)  # a retired worker's gauges do not add to the host's

Key = tuple[str, str]  # (listener, route); route "" = no route matched or the host answered
Sample = tuple[int, ...]

REQUEST_PROTOCOLS = ("1.1", "2")
"""The protocols a request is counted under: "1.1" holds HTTP/1.0 and HTTP/1.1 (one
connection class, one parser; telling them apart would cost every request a branch)."""

# Open connections of one listener, as the worker samples them: one count per kind
# in `CONNECTION_KINDS` order, then the HTTP/2 streams open on its HTTP/2 connections.
CONNECTION_KINDS = ("1.1", "2", "ws", "closing")
"""HTTP/1.x; HTTP/2; an HTTP/1.1 connection upgraded to a WebSocket (a WebSocket over
HTTP/2 is a stream of its HTTP/2 connection); closing: the last response is out and the
connection waits for its client to close (linger.py), whichever protocol it spoke."""
OPEN_HTTP1, OPEN_HTTP2, OPEN_WEBSOCKET, OPEN_CLOSING = 0, 1, 2, 3
OPEN_STREAMS = len(CONNECTION_KINDS)
OPEN_SIZE = OPEN_STREAMS + 1
Open = tuple[int, ...]
NOTHING_OPEN: Open = (0,) * OPEN_SIZE


class RouteStats:
    """One listener's counters for one route, in one worker: a flat list in sample order.

    One list, indexed by the constants above, so a request touches one object
    and `sample` is a single copy. The request path adds to `counts` itself
    (`counts[REQUESTS] += 1` as a request starts); `finish` records its end.
    """

    __slots__ = ("counts", "slow_after")

    def __init__(self) -> None:
        self.counts = [0] * SAMPLE_SIZE
        self.slow_after = math.inf
        """Seconds from which a request is slow (`watch_slow` sets it from the config)."""

    def finish(self, status: int, bytes_in: int, bytes_out: int, started_at: float) -> bool:
        """One request ended; `status` 0 when no response went out (100-599 otherwise).
        True when it was slow (never here: see `SlowWatchedRouteStats`)."""
        counts = self.counts
        counts[STATUS_BASE + status // 100] += 1
        if bytes_in:  # most requests have no body: a compare is cheaper than a big-int add
            counts[BYTES_IN] += bytes_in
        counts[BYTES_OUT] += bytes_out
        counts[LATENCY_BASE + _bucket(LATENCY_BOUNDS, clock() - started_at)] += 1
        return False

    def sample(self) -> Sample:
        return tuple(self.counts)


class SlowWatchedRouteStats(RouteStats):
    """A `RouteStats` while `[logging] slow_request_threshold` is set: `finish` also counts
    the requests at or past `slow_after` and says so, for the caller to log.

    `watch_slow` switches a live object's class (the same slots, so the counts stay
    where they are): without a threshold, the request path does not pay for the
    compare at all.
    """

    __slots__ = ()

    def finish(self, status: int, bytes_in: int, bytes_out: int, started_at: float) -> bool:
        counts = self.counts
        counts[STATUS_BASE + status // 100] += 1
        if bytes_in:
            counts[BYTES_IN] += bytes_in
        counts[BYTES_OUT] += bytes_out
        elapsed = clock() - started_at
        counts[LATENCY_BASE + _bucket(LATENCY_BOUNDS, elapsed)] += 1
        if elapsed < self.slow_after:
            return False
        counts[SLOW_REQUESTS] += 1
        return True


def watch_slow(route: RouteStats, seconds: float | None) -> None:
    """Judge `route`'s requests against a threshold from now on (None: stop judging)."""
    route.__class__ = RouteStats if seconds is None else SlowWatchedRouteStats
    route.slow_after = math.inf if seconds is None else seconds


clock = time.perf_counter
"""The clock `started_at` values come from (the same one `finish` reads)."""
_bucket = bisect.bisect_left


def add(total: Sequence[int], sample: Sequence[int]) -> Sample:
    return tuple(a + b for a, b in zip(total, sample, strict=True))


def subtract(later: Sequence[int], earlier: Sequence[int]) -> Sample:
    return tuple(a - b for a, b in zip(later, earlier, strict=True))


ZERO: Sample = (0,) * SAMPLE_SIZE


def total(samples: Iterable[Sample]) -> Sample:
    result = ZERO
    for sample in samples:
        result = add(result, sample)
    return result


def merge(samples: Iterable[Mapping[Key, Sample]]) -> dict[Key, Sample]:
    merged: dict[Key, Sample] = {}
    for mapping in samples:
        for key, sample in mapping.items():
            merged[key] = add(merged.get(key, ZERO), sample)
    return merged


def percentile(buckets: Sequence[int], fraction: float) -> float | None:
    """The latency below which `fraction` of requests fell, in seconds; None with no requests.

    Interpolated linearly inside the bucket that holds the rank (as Prometheus'
    `histogram_quantile` does); the last, unbounded bucket reports its lower bound.
    """
    count = sum(buckets)
    if count == 0:
        return None
    rank = fraction * count
    seen = 0
    for index, in_bucket in enumerate(buckets):
        if in_bucket and seen + in_bucket >= rank:
            if index == len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            low = LATENCY_BOUNDS[index - 1] if index else 0.0
            high = LATENCY_BOUNDS[index]
            return low + (high - low) * (rank - seen) / in_bucket
        seen += in_bucket
    return LATENCY_BOUNDS[-1]


def latency_buckets(sample: Sequence[int]) -> Sequence[int]:
    return sample[LATENCY_BASE:]


def by_protocol(sample: Sequence[int]) -> dict[str, int]:
    """Requests started, by protocol (`REQUEST_PROTOCOLS`); they add up to `REQUESTS`."""
    h2 = sample[REQUESTS_H2]
    return {"1.1": sample[REQUESTS] - h2, "2": h2}


def opened(
    http1: int = 0, http2: int = 0, websocket: int = 0, closing: int = 0, streams: int = 0
) -> Open:
    """An `Open` from its parts by name."""
    return (http1, http2, websocket, closing, streams)


def connections_open(open_: Sequence[int]) -> int:
    """Every connection of an `Open`, whatever its kind (streams are not connections)."""
    return sum(open_[:OPEN_STREAMS])


def connections_by_kind(open_: Sequence[int]) -> dict[str, int]:
    return dict(zip(CONNECTION_KINDS, open_[:OPEN_STREAMS], strict=True))


@dataclass
class WorkerSample:
    """One worker's last snapshot: counters per (listener, route), connections per listener."""

    routes: dict[Key, Sample]
    connections: dict[str, Open]
    received: float


@dataclass
class StatsBook:
    """The supervisor's view: each live worker's last sample, the retired, and a short history.

    `tick` (once a second) records the host totals, so rates and windowed
    percentiles are differences between two recorded points.
    """

    window: float = 5.0
    live: dict[int, WorkerSample] = field(default_factory=dict)
    retired: dict[Key, Sample] = field(default_factory=dict)
    history: deque[tuple[float, dict[Key, Sample]]] = field(default_factory=deque)

    def update(
        self,
        pid: int,
        routes: Mapping[Key, Sample],
        connections: Mapping[str, Open],
        now: float | None = None,
    ) -> None:
        self.live[pid] = WorkerSample(
            dict(routes), dict(connections), time.monotonic() if now is None else now
        )

    def retire(self, pid: int) -> None:
        """The worker exited: keep its counts (not its gauges) in the host totals."""
        gone = self.live.pop(pid, None)
        if gone is None:
            return
        counts = {
            key: tuple(0 if index in GAUGES else value for index, value in enumerate(sample))
            for key, sample in gone.routes.items()
        }
        self.retired = merge((self.retired, counts))

    def totals(self) -> dict[Key, Sample]:
        return merge((self.retired, *(worker.routes for worker in self.live.values())))

    def connections(self) -> dict[str, int]:
        """Connections open now per listener, every kind together."""
        return {name: connections_open(open_) for name, open_ in self.open().items()}

    def open(self) -> dict[str, Open]:
        """Connections by kind and HTTP/2 streams open now, per listener (live workers)."""
        open_: dict[str, Open] = {}
        for worker in self.live.values():
            for name, counts in worker.connections.items():
                open_[name] = add(open_[name], counts) if name in open_ else tuple(counts)
        return open_

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.history.append((now, self.totals()))
        while len(self.history) > 2 and now - self.history[1][0] >= self.window:
            self.history.popleft()

    def recent(self) -> tuple[float, dict[Key, Sample]]:
        """Seconds covered and the counts added in the window (totals minus its oldest point)."""
        if len(self.history) < 2:
            return 0.0, {}
        (start, first), (end, last) = self.history[0], self.history[-1]
        return end - start, {key: subtract(last[key], first.get(key, ZERO)) for key in last}
