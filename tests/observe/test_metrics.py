"""@metrics text: parsed by Prometheus' own parser, numbers exact against a known StatsBook."""

from __future__ import annotations

import math
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from uvhost.observe import metrics, stats
from uvhost.observe.metrics import HostMetrics, WorkerMetrics
from uvhost.observe.stats import RouteStats, StatsBook
from uvhost.observe.status import GroupFacts, HostFacts, ListenerFacts, WorkerFacts

ODD = 'we"ird\\na\nme'  # a quote, a backslash, a line feed: everything the format escapes
BOUNDS = [*(repr(bound) for bound in stats.LATENCY_BOUNDS), "+Inf"]


def counts(
    *,
    requests=0,
    h2=0,
    statuses=(0, 0, 0, 0, 0, 0),
    bytes_in=0,
    bytes_out=0,
    ws_open=0,
    ws=0,
    slow=0,
    latency=(),
):
    """A worker's sample for one route, built through the real RouteStats; `h2` of the
    `requests` came over HTTP/2."""
    route = RouteStats()
    counted = route.counts
    counted[stats.REQUESTS] = requests
    counted[stats.REQUESTS_H2] = h2
    counted[stats.STATUS_BASE : stats.STATUS_BASE + 6] = statuses
    counted[stats.BYTES_IN], counted[stats.BYTES_OUT] = bytes_in, bytes_out
    counted[stats.WEBSOCKETS_OPEN], counted[stats.WEBSOCKETS] = ws_open, ws
    counted[stats.SLOW_REQUESTS] = slow
    for index, count in latency:
        counted[stats.LATENCY_BASE + index] += count
    return route.sample()


@pytest.fixture
def book():
    """Two live workers and one retired one, on two listeners; one app with an odd name."""
    book = StatsBook()
    book.update(
        101,
        {
            ("public", "site"): counts(
                requests=10,
                h2=4,
                statuses=(1, 0, 7, 1, 1, 0),
                bytes_in=100,
                bytes_out=5000,
                latency=((0, 3), (4, 4), (15, 2)),  # 9 ended: 3 fast, 4 mid, 2 past 10 s
            ),
            ("public", ""): counts(requests=2, statuses=(0, 0, 0, 0, 2, 0), latency=((1, 2),)),
        },
        {"public": stats.opened(http1=1, http2=1, closing=1, streams=4)},
    )
    book.update(
        102,
        {
            ("public", "site"): counts(
                requests=5,
                statuses=(0, 0, 4, 0, 0, 1),
                bytes_out=700,
                slow=2,
                latency=((4, 5),),
            ),
            ("admin", ODD): counts(requests=1, h2=1, statuses=(0, 1, 0, 0, 0, 0), ws_open=1, ws=1),
        },
        {"public": stats.opened(http1=1), "admin": stats.opened(websocket=1)},
    )
    book.update(
        99,
        {
            ("public", "site"): counts(
                requests=4,
                h2=1,
                statuses=(0, 0, 4, 0, 0, 0),
                ws_open=2,
                ws=2,
                latency=((14, 4),),
            )
        },
        {"public": stats.opened(http1=9)},
    )
    book.retire(99)  # its counts stay, its open WebSockets and connections do not
    return book


WORKERS = [
    WorkerMetrics(pid=101, group="web", generation=2, memory_bytes=50_000_000),
    WorkerMetrics(pid=102, group="web", generation=3, memory_bytes=None),
    WorkerMetrics(pid=103, group=ODD, generation=1, memory_bytes=7),
]
HOST = HostMetrics(started=1_700_000_000.25, version="9.9.9", reloads={"ok": 3, "failed": 1})


def scrape(book, workers=WORKERS, host=HOST):
    text = metrics.exposition(book.totals(), book.open(), workers, host)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return text, families


def values(family, name=None):
    """{labels as a sorted tuple: value} for the samples named `name` (default: all)."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for sample in family.samples
        if name is None or sample.name == name
    }


def route(listener, app, **more):
    return tuple(sorted({"listener": listener, "app": app, **more}.items()))


def test_counters_match_the_book_exactly(book):
    _, families = scrape(book)
    assert values(families["uvhost_requests"]) == {
        route("public", "site"): 19,
        route("public", "@none"): 2,
        route("admin", ODD): 1,
    }
    responses = values(families["uvhost_responses"])
    assert len(responses) == 3 * 6
    assert responses[route("public", "site", **{"class": "none"})] == 1
    assert responses[route("public", "site", **{"class": "2xx"})] == 15
    assert responses[route("public", "site", **{"class": "3xx"})] == 1
    assert responses[route("public", "site", **{"class": "4xx"})] == 1
    assert responses[route("public", "site", **{"class": "5xx"})] == 1
    assert responses[route("public", "@none", **{"class": "4xx"})] == 2
    assert responses[route("admin", ODD, **{"class": "1xx"})] == 1
    assert sum(responses.values()) == 22
    assert values(families["uvhost_request_bytes"])[route("public", "site")] == 100
    assert values(families["uvhost_response_bytes"])[route("public", "site")] == 5700
    assert values(families["uvhost_websockets"]) == {
        route("public", "site"): 2,  # the retired worker's sessions still count
        route("public", "@none"): 0,
        route("admin", ODD): 1,
    }
    assert values(families["uvhost_websockets_open"]) == {
        route("public", "site"): 0,  # ...but they are no longer open
        route("public", "@none"): 0,
        route("admin", ODD): 1,
    }
    assert values(families["uvhost_slow_requests"]) == {
        route("public", "site"): 2,
        route("public", "@none"): 0,
        route("admin", ODD): 0,
    }
    assert values(families["uvhost_connections_open"]) == {
        (("listener", "admin"),): 1,
        (("listener", "public"),): 4,
    }


def test_protocol_families_split_the_unsplit_ones_exactly(book):
    """Requests by protocol add up to uvhost_requests_total, connections by protocol to
    uvhost_connections_open; every protocol is written, zeros too; streams per listener."""
    _, families = scrape(book)
    by_protocol = values(families["uvhost_protocol_requests"])
    assert by_protocol == {
        route("public", "site", protocol="1.1"): 14,  # 19 requests, 5 of them on HTTP/2
        route("public", "site", protocol="2"): 5,  # the retired worker's one included
        route("public", "@none", protocol="1.1"): 2,
        route("public", "@none", protocol="2"): 0,
        route("admin", ODD, protocol="1.1"): 0,
        route("admin", ODD, protocol="2"): 1,
    }
    assert families["uvhost_protocol_requests"].type == "counter"
    for key, total in values(families["uvhost_requests"]).items():
        labels = dict(key)
        listener, app = labels["listener"], labels["app"]
        split = [by_protocol[route(listener, app, protocol=p)] for p in ("1.1", "2")]
        assert sum(split) == total
    assert values(families["uvhost_protocol_connections_open"]) == {
        (("listener", "admin"), ("protocol", "1.1")): 0,
        (("listener", "admin"), ("protocol", "2")): 0,
        (("listener", "admin"), ("protocol", "closing")): 0,
        (("listener", "admin"), ("protocol", "ws")): 1,
        (("listener", "public"), ("protocol", "1.1")): 2,
        (("listener", "public"), ("protocol", "2")): 1,
        (("listener", "public"), ("protocol", "closing")): 1,
        (("listener", "public"), ("protocol", "ws")): 0,  # the retired worker's are gone
    }
    assert values(families["uvhost_http2_streams_open"]) == {
        (("listener", "admin"),): 0,
        (("listener", "public"),): 4,
    }


def test_histogram_buckets_are_cumulative_and_end_with_the_count(book):
    _, families = scrape(book)
    histogram = families["uvhost_request_duration_seconds"]
    assert histogram.type == "histogram"
    site = [
        (s.labels["le"], s.value)
        for s in histogram.samples
        if s.name.endswith("_bucket") and s.labels["app"] == "site"
    ]
    # site: 3 in bucket 0, 4 + 5 in bucket 4, 4 (retired) in bucket 14, 2 past the last bound
    expected = [3, 3, 3, 3, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 16, 18]
    assert site == list(zip(BOUNDS, expected, strict=True))
    count = values(histogram, "uvhost_request_duration_seconds_count")
    assert count == {
        route("public", "site"): 18,
        route("public", "@none"): 2,
        route("admin", ODD): 0,
    }
    les = [
        float(s.labels["le"])
        for s in histogram.samples
        if s.labels.get("app") == "@none" and s.name.endswith("_bucket")
    ]
    assert les == sorted(les)
    assert les[-1] == math.inf
    assert not any(s.name.endswith("_sum") for s in histogram.samples)


def test_workers_host_and_reloads(book):
    _, families = scrape(book)
    assert values(families["uvhost_workers"]) == {(("group", "web"),): 2, (("group", ODD),): 1}
    assert values(families["uvhost_group_generation"]) == {
        (("group", "web"),): 3,
        (("group", ODD),): 1,
    }
    assert values(families["uvhost_worker_resident_memory_bytes"]) == {
        (("group", "web"), ("pid", "101")): 50_000_000,
        (("group", ODD), ("pid", "103")): 7,  # 102's memory is unknown: no sample, not a 0
    }
    assert values(families["uvhost_start_time_seconds"]) == {(): 1_700_000_000.25}
    assert values(families["uvhost_info"]) == {(("version", "9.9.9"),): 1}
    assert values(families["uvhost_reloads"]) == {
        (("result", "failed"),): 1,
        (("result", "ok"),): 3,
    }


def test_odd_names_are_escaped_on_one_line_and_read_back_whole(book):
    text, families = scrape(book)
    assert 'app="we\\"ird\\\\na\\nme"' in text
    assert ODD not in text
    for line in text.splitlines():
        assert line.startswith(("# HELP uvhost_", "# TYPE uvhost_", "uvhost_")), line
    assert route("admin", ODD) in values(families["uvhost_requests"])


def test_every_family_has_help_and_type_and_the_text_ends_with_a_newline(book):
    text, families = scrape(book)
    assert text.endswith("\n")
    for name, family in families.items():
        assert family.documentation, name
        full = name + "_total" if family.type == "counter" else name
        assert text.count(f"# TYPE {full} ") == 1
        assert text.count(f"# HELP {full} ") == 1
        assert text.index(f"# TYPE {full} ") < text.index(f"\n{full}")


def test_same_state_same_bytes(book):
    first, _ = scrape(book)
    second, _ = scrape(book)
    assert first == second


def test_an_empty_host_still_parses_and_leaves_out_uncounted_reloads():
    text, families = scrape(StatsBook(), workers=[], host=HostMetrics(started=1.0, version="0"))
    assert "uvhost_reloads" not in families
    assert families["uvhost_requests"].samples == []
    assert families["uvhost_start_time_seconds"].samples[0].value == 1.0
    assert text.endswith("\n")


def test_from_book_reads_the_supervisor_facts(book):
    facts = HostFacts(
        pid=os.getpid(),
        version="1.2.3",
        config="uvhost.toml",
        started=1000.0,
        state="running",
        last_reload=None,
        listeners=(
            ListenerFacts("public", "127.0.0.1:8000", tls=False),
            ListenerFacts("quiet", "127.0.0.1:8001", tls=False),
        ),
        groups=(GroupFacts("web", 1, (os.getpid(),), None, ("site",)),),
        workers=(WorkerFacts(os.getpid(), "web", 1, "ready", 0.0),),
    )
    text = metrics.from_book(facts, book, reloads={"ok": 0})
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert values(families["uvhost_connections_open"])[(("listener", "quiet"),)] == 0
    quiet = values(families["uvhost_protocol_connections_open"])
    assert [quiet[(("listener", "quiet"), ("protocol", p))] for p in ("1.1", "2", "ws")] == [0] * 3
    assert values(families["uvhost_http2_streams_open"])[(("listener", "quiet"),)] == 0
    memory = values(families["uvhost_worker_resident_memory_bytes"])
    assert memory[(("group", "web"), ("pid", str(os.getpid())))] > 1_000_000  # this process
    assert values(families["uvhost_info"]) == {(("version", "1.2.3"),): 1}
    assert values(families["uvhost_reloads"]) == {(("result", "ok"),): 0}


def test_escaping_functions():
    assert metrics.escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert metrics.escape_help('a\\b"c\nd') == 'a\\\\b"c\\nd'
