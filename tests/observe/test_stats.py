"""observe/stats.py on its own: RouteStats.finish, percentile and StatsBook, with exact numbers.

- `finish` puts a status in its class slot (0 = no response, 600+ in 5xx),
  adds the bytes, and puts the duration in the first bucket whose bound is
  >= it (bisect_left: a duration exactly on a bound is in that bound's
  bucket, as Prometheus' `le` means); it does not count the request (the
  request path does, when the request starts);
- `percentile` interpolates inside the bucket holding the rank, reports the
  unbounded last bucket as its lower bound (10 s), and None with no requests;
- `StatsBook` keeps each worker's last sample, folds an exited worker's
  counts (not its open-WebSocket gauge) into `retired`, and `tick`/`recent`
  give the counts of the last `window` seconds from explicit clock values.
"""

from __future__ import annotations

import pytest

from uvhost.observe import stats
from uvhost.observe.stats import LATENCY_BOUNDS, RouteStats, StatsBook, opened

LAST = len(LATENCY_BOUNDS)  # index of the unbounded bucket


@pytest.fixture
def clock(monkeypatch):
    """`clock.now = t` sets what `finish` reads as the time; requests start at 0.0."""

    class Clock:
        now = 0.0

    fake = Clock()
    monkeypatch.setattr(stats, "clock", lambda: fake.now)
    return fake


def finished_after(clock, seconds: float) -> list[int]:
    """The latency buckets of one request that took `seconds`."""
    route = RouteStats()
    clock.now = seconds
    route.finish(200, 0, 0, 0.0)
    return latency(route)


def latency(route: RouteStats) -> list[int]:
    return list(stats.latency_buckets(route.sample()))


def statuses(route: RouteStats) -> list[int]:
    return list(route.sample()[stats.STATUS_BASE : stats.STATUS_BASE + 6])


def buckets(**counts: int) -> list[int]:
    """Latency buckets from `b<index>=count` keywords, e.g. buckets(b6=10)."""
    result = [0] * (LAST + 1)
    for name, count in counts.items():
        result[int(name[1:])] = count
    return result


# ------------------------------------------------------------ RouteStats


def test_a_fresh_route_samples_as_zero():
    sample = RouteStats().sample()
    assert sample == stats.ZERO
    assert len(sample) == stats.SAMPLE_SIZE == len(stats.FIELDS) + len(LATENCY_BOUNDS) + 1


@pytest.mark.parametrize(
    ("status", "slot"),
    [
        (0, 0),
        (100, 1),
        (101, 1),
        (199, 1),
        (200, 2),
        (204, 2),
        (299, 2),
        (301, 3),
        (304, 3),
        (400, 4),
        (404, 4),
        (413, 4),
        (499, 4),
        (500, 5),
        (503, 5),
        (599, 5),
    ],
)
def test_finish_counts_the_status_class(clock, status, slot):
    route = RouteStats()
    route.finish(status, 0, 0, 0.0)
    expected = [0] * 6
    expected[slot] = 1
    assert statuses(route) == expected
    sample = route.sample()
    assert sample[stats.STATUS_BASE + slot] == 1
    if slot == 0:
        assert sample[stats.NO_RESPONSE] == 1
    assert sum(latency(route)) == 1


def test_finish_adds_bytes_and_does_not_count_the_request(clock):
    route = RouteStats()
    route.counts[stats.REQUESTS] += 3  # what the request path does when three requests start
    route.finish(200, 10, 200, 0.0)
    route.finish(404, 0, 9, 0.0)
    route.finish(0, 7, 0, 0.0)
    assert statuses(route) == [1, 0, 1, 0, 1, 0]
    sample = route.sample()
    assert sample[: stats.LATENCY_BASE] == (3, 1, 0, 1, 0, 1, 0, 17, 209, 0, 0, 0, 0, 0)
    assert sum(stats.latency_buckets(sample)) == 3


def test_requests_by_protocol_are_the_h2_slot_and_the_rest():
    """The HTTP/2 path adds to REQUESTS_H2 beside REQUESTS; HTTP/1.x adds nothing more."""
    route = RouteStats()
    route.counts[stats.REQUESTS] += 5  # five requests start, two of them on HTTP/2 streams
    route.counts[stats.REQUESTS_H2] += 2
    assert stats.by_protocol(route.sample()) == {"1.1": 3, "2": 2}
    assert list(stats.by_protocol(stats.ZERO)) == list(stats.REQUEST_PROTOCOLS)
    assert stats.by_protocol(stats.ZERO) == {"1.1": 0, "2": 0}


def test_latency_is_measured_from_started_at(clock):
    route = RouteStats()
    clock.now = 100.030
    route.finish(200, 0, 0, 100.0)  # 30 ms: the 25-50 ms bucket
    assert latency(route) == buckets(b7=1)


@pytest.mark.parametrize("index", range(len(LATENCY_BOUNDS)))
def test_a_duration_exactly_on_a_bound_lands_in_that_bounds_bucket(clock, index):
    bound = LATENCY_BOUNDS[index]
    assert finished_after(clock, bound) == buckets(**{f"b{index}": 1})  # le: <= bound


@pytest.mark.parametrize("index", range(len(LATENCY_BOUNDS)))
def test_a_duration_just_past_a_bound_lands_in_the_next_bucket(clock, index):
    bound = LATENCY_BOUNDS[index]
    just_past = bound * (1 + 1e-9)
    assert finished_after(clock, just_past) == buckets(**{f"b{index + 1}": 1})


def test_latency_edges_zero_and_beyond_the_last_bound(clock):
    assert finished_after(clock, 0.0) == buckets(b0=1)
    assert finished_after(clock, 0.0001) == buckets(b0=1)
    assert finished_after(clock, 10.0) == buckets(b14=1)
    assert finished_after(clock, 10.5) == buckets(b15=1)
    assert finished_after(clock, 3600.0) == buckets(b15=1)


def test_the_real_clock_is_the_one_finish_reads():
    """`started_at` values come from `stats.clock`; a request just begun is in bucket 0 or 1."""
    route = RouteStats()
    route.finish(200, 0, 0, stats.clock())
    assert sum(latency(route)) == 1
    assert latency(route).index(1) <= 1  # well under 0.5 ms, even on a loaded machine


# ------------------------------------------------------------ percentile


def test_no_requests_no_percentile():
    assert stats.percentile([0] * (LAST + 1), 0.5) is None
    assert stats.percentile([0] * (LAST + 1), 0.99) is None


def test_one_bucket_interpolates_linearly_inside_it():
    only = buckets(b6=10)  # (10 ms, 25 ms]
    assert stats.percentile(only, 0.0) == pytest.approx(0.010)
    assert stats.percentile(only, 0.5) == pytest.approx(0.0175)
    assert stats.percentile(only, 0.9) == pytest.approx(0.0235)
    assert stats.percentile(only, 0.99) == pytest.approx(0.010 + 0.015 * 0.99)
    assert stats.percentile(only, 1.0) == pytest.approx(0.025)


def test_the_first_bucket_starts_at_zero():
    assert stats.percentile(buckets(b0=4), 0.5) == pytest.approx(0.000125)
    assert stats.percentile(buckets(b0=4), 0.25) == pytest.approx(0.0000625)


def test_interpolation_in_the_bucket_that_holds_the_rank():
    mixed = buckets(b2=50, b9=50)  # 50 in (0.5 ms, 1 ms], 50 in (100 ms, 250 ms]
    assert stats.percentile(mixed, 0.5) == pytest.approx(0.001)  # the rank ends bucket 2
    assert stats.percentile(mixed, 0.51) == pytest.approx(0.1 + 0.15 * 1 / 50)
    assert stats.percentile(mixed, 0.9) == pytest.approx(0.1 + 0.15 * 40 / 50)
    assert stats.percentile(mixed, 0.99) == pytest.approx(0.1 + 0.15 * 49 / 50)


def test_empty_buckets_between_are_skipped():
    spread = buckets(b1=1, b12=1)
    # rank 1 of 2 ends bucket 1; anything above is in bucket 12 (1 s, 2.5 s]
    assert stats.percentile(spread, 0.5) == pytest.approx(0.0005)
    assert stats.percentile(spread, 0.75) == pytest.approx(1.0 + 1.5 * 0.5)


def test_ten_percent_slow_puts_p99_inside_the_slow_bucket():
    """The shape the supervisor test relies on: 90 fast, 10 at ~300 ms."""
    mix = buckets(b3=90, b10=10)  # (1 ms, 2.5 ms] and (250 ms, 500 ms]
    p50 = stats.percentile(mix, 0.5)
    p99 = stats.percentile(mix, 0.99)
    assert p50 is not None
    assert p99 is not None
    assert 0.001 < p50 <= 0.0025
    assert 0.25 < p99 <= 0.5
    assert p99 == pytest.approx(0.25 + 0.25 * 9 / 10)


def test_the_unbounded_last_bucket_reports_its_lower_bound():
    assert stats.percentile(buckets(b15=3), 0.5) == 10.0
    assert stats.percentile(buckets(b15=3), 0.99) == 10.0
    tail = buckets(b0=99, b15=1)
    assert stats.percentile(tail, 0.99) == pytest.approx(0.00025)  # rank 99 ends bucket 0
    assert stats.percentile(tail, 0.995) == 10.0


# ------------------------------------------------------------- StatsBook


def sample(requests: int = 0, *, ok: int = 0, none: int = 0, ws_open: int = 0, ws: int = 0):
    """A sample with `requests`, `ok` 2xx and `none` no-response, all fast (bucket 0)."""
    route = RouteStats()
    counted = route.counts
    counted[stats.REQUESTS] = requests
    counted[stats.NO_RESPONSE], counted[stats.STATUS_BASE + 2] = none, ok
    counted[stats.BYTES_IN], counted[stats.BYTES_OUT] = 10 * requests, 100 * ok
    counted[stats.WEBSOCKETS_OPEN], counted[stats.WEBSOCKETS] = ws_open, ws
    counted[stats.LATENCY_BASE] = ok + none
    return route.sample()


WEB_A, WEB_B, WEB_NONE = ("web", "a"), ("web", "b"), ("web", "")


def test_update_keeps_each_workers_last_sample():
    book = StatsBook()
    book.update(1, {WEB_A: sample(1, ok=1)}, {"web": opened(http1=1)}, now=5.0)
    both = opened(http1=1, http2=1, streams=3)
    book.update(1, {WEB_A: sample(3, ok=2)}, {"web": both}, now=6.0)  # replaces, does not add
    book.update(2, {WEB_B: sample(4, ok=4)}, {"web": opened(), "admin": opened(closing=1)}, now=6.5)
    assert book.live[1].routes == {WEB_A: sample(3, ok=2)}
    assert book.live[1].received == 6.0
    assert book.live[2].received == 6.5
    assert book.totals() == {WEB_A: sample(3, ok=2), WEB_B: sample(4, ok=4)}
    assert book.connections() == {"web": 2, "admin": 1}


def test_open_connections_add_up_by_kind_and_streams_are_not_connections():
    book = StatsBook()
    book.update(1, {}, {"web": opened(http1=2, http2=1, streams=7)}, now=0.0)
    book.update(2, {}, {"web": opened(http2=2, websocket=1, closing=1, streams=3)}, now=0.0)
    book.update(3, {}, {"admin": opened(http1=1)}, now=0.0)
    assert book.open() == {
        "web": opened(http1=2, http2=3, websocket=1, closing=1, streams=10),
        "admin": opened(http1=1),
    }
    assert book.connections() == {"web": 7, "admin": 1}
    assert stats.connections_by_kind(book.open()["web"]) == {
        "1.1": 2,
        "2": 3,
        "ws": 1,
        "closing": 1,
    }
    book.retire(2)  # what was open in a worker that exited is not open any more
    assert book.open()["web"] == opened(http1=2, http2=1, streams=7)


def test_totals_add_up_workers_element_by_element():
    book = StatsBook()
    book.update(1, {WEB_A: sample(2, ok=2), WEB_NONE: sample(1, none=1)}, {}, now=0.0)
    book.update(2, {WEB_A: sample(3, ok=1, none=1)}, {}, now=0.0)
    totals = book.totals()
    assert totals[WEB_A] == sample(5, ok=3, none=1)
    assert totals[WEB_NONE] == sample(1, none=1)
    assert totals[WEB_A][stats.LATENCY_BASE] == 4


def test_retire_keeps_counts_but_not_the_open_websockets():
    book = StatsBook()
    book.update(1, {WEB_A: sample(5, ok=4, ws_open=2, ws=3)}, {"web": opened(websocket=3)}, now=0.0)
    book.update(2, {WEB_A: sample(1, ok=1, ws_open=1, ws=1)}, {"web": opened(websocket=1)}, now=0.0)
    before = book.totals()[WEB_A]
    assert before[stats.WEBSOCKETS_OPEN] == 3
    book.retire(1)
    assert 1 not in book.live
    assert book.retired == {WEB_A: sample(5, ok=4, ws_open=0, ws=3)}
    after = book.totals()[WEB_A]
    assert after[stats.WEBSOCKETS_OPEN] == 1  # only the live worker's
    assert after[stats.WEBSOCKETS] == 4  # sessions accepted stay counted
    assert after[: stats.WEBSOCKETS_OPEN] == before[: stats.WEBSOCKETS_OPEN]
    assert after[stats.LATENCY_BASE :] == before[stats.LATENCY_BASE :]
    assert book.connections() == {"web": 1}


def test_retire_of_an_unknown_or_already_retired_worker_changes_nothing():
    book = StatsBook()
    book.update(1, {WEB_A: sample(2, ok=2)}, {}, now=0.0)
    book.retire(1)
    book.retire(1)  # e.g. an EOF after the exit was already handled
    book.retire(99)
    assert book.totals() == {WEB_A: sample(2, ok=2)}


def test_totals_span_retired_and_live_workers_and_never_go_backwards():
    book = StatsBook()
    book.update(1, {WEB_A: sample(3, ok=3)}, {}, now=0.0)
    book.retire(1)
    book.update(2, {WEB_A: sample(2, ok=2), WEB_B: sample(1, ok=1)}, {}, now=1.0)
    book.retire(2)
    book.update(3, {WEB_B: sample(4, ok=3, none=1)}, {}, now=2.0)  # a fresh worker: from zero
    assert book.totals() == {
        WEB_A: sample(5, ok=5),
        WEB_B: sample(5, ok=4, none=1),
    }


def test_recent_needs_two_ticks():
    book = StatsBook()
    assert book.recent() == (0.0, {})
    book.update(1, {WEB_A: sample(1, ok=1)}, {}, now=0.0)
    book.tick(now=0.0)
    assert book.recent() == (0.0, {})


def test_recent_is_the_difference_between_the_oldest_and_newest_tick():
    book = StatsBook()
    book.update(1, {WEB_A: sample(2, ok=2)}, {}, now=0.0)
    book.tick(now=10.0)
    book.update(1, {WEB_A: sample(5, ok=4, none=1)}, {}, now=10.5)
    book.update(2, {WEB_B: sample(1, ok=1)}, {}, now=10.5)  # a key the first tick lacks
    book.tick(now=11.0)
    seconds, recent = book.recent()
    assert seconds == 1.0
    assert recent == {
        WEB_A: stats.subtract(sample(5, ok=4, none=1), sample(2, ok=2)),
        WEB_B: sample(1, ok=1),
    }
    assert recent[WEB_A][: stats.STATUS_BASE + 3] == (3, 1, 0, 2)


def test_a_worker_retiring_inside_the_window_adds_no_negative_counts():
    book = StatsBook()
    book.update(1, {WEB_A: sample(4, ok=4)}, {}, now=0.0)
    book.tick(now=0.0)
    book.retire(1)
    book.update(2, {WEB_A: sample(1, ok=1)}, {}, now=0.5)
    book.tick(now=1.0)
    _, recent = book.recent()
    assert recent == {WEB_A: sample(1, ok=1)}


def test_tick_keeps_the_newest_point_at_least_a_window_old():
    book = StatsBook(window=5.0)
    for second in range(11):
        book.update(1, {WEB_A: sample(second * 10, ok=second * 10)}, {}, now=float(second))
        book.tick(now=float(second))
        times = [at for at, _ in book.history]
        assert times == [float(t) for t in range(max(0, second - 5), second + 1)]
    seconds, recent = book.recent()
    assert seconds == 5.0
    assert recent[WEB_A][stats.REQUESTS] == 50  # ticks 5..10: 100 - 50


def test_tick_after_a_long_pause_keeps_two_points():
    book = StatsBook(window=5.0)
    for now in (0.0, 1.0, 2.0, 30.0):
        book.tick(now=now)
    assert [at for at, _ in book.history] == [2.0, 30.0]
    assert book.recent() == (28.0, {})
