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
"""

from __future__ import annotations

import bisect
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
)
REQUESTS, NO_RESPONSE = 0, 1
STATUS_BASE = 1  # FIELDS[STATUS_BASE + status // 100]
BYTES_IN, BYTES_OUT, WEBSOCKETS_OPEN, WEBSOCKETS = 7, 8, 9, 10
LATENCY_BASE = len(FIELDS)
SAMPLE_SIZE = LATENCY_BASE + len(LATENCY_BOUNDS) + 1
GAUGES = (WEBSOCKETS_OPEN,)  # a retired worker's gauges do not add to the host's

Key = tuple[str, str]  # (listener, route); route "" = no route matched or the host answered
Sample = tuple[int, ...]


class RouteStats:
    """One listener's counters for one route, in one worker: a flat list in sample order.

    One list, indexed by the constants above, so a request touches one object
    and `sample` is a single copy. The request path adds to `counts` itself
    (`counts[REQUESTS] += 1` as a request starts); `finish` records its end.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * SAMPLE_SIZE

    def finish(self, status: int, bytes_in: int, bytes_out: int, started_at: float) -> None:
        """One request ended; `status` 0 when no response went out (100-599 otherwise)."""
        counts = self.counts
        counts[STATUS_BASE + status // 100] += 1
        if bytes_in:  # most requests have no body: a compare is cheaper than a big-int add
            counts[BYTES_IN] += bytes_in
        counts[BYTES_OUT] += bytes_out
        counts[LATENCY_BASE + _bucket(LATENCY_BOUNDS, clock() - started_at)] += 1

    def sample(self) -> Sample:
        return tuple(self.counts)


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


@dataclass
class WorkerSample:
    """One worker's last snapshot: counters per (listener, route), connections per listener."""

    routes: dict[Key, Sample]
    connections: dict[str, int]
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
        connections: Mapping[str, int],
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
        open_: dict[str, int] = {}
        for worker in self.live.values():
            for name, count in worker.connections.items():
                open_[name] = open_.get(name, 0) + count
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
