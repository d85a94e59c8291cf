"""@health and @metrics called directly as ASGI apps (socket tests come with the wiring)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from uvhost.observe.builtins import Health, Metrics, MetricsUnavailable, MetricsUnavailableError

EXPOSITION = "# HELP uvhost_info x\n# TYPE uvhost_info gauge\nuvhost_info 1\n"


def call(app, path="/healthz", *, method="GET", root_path="/healthz", kind="http"):
    """Run `app` on one request; returns (status, headers as a dict, body)."""
    scope = {
        "type": kind,
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [],
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    if kind != "http":
        assert sent == []
        return None
    start, body = sent
    assert start["type"] == "http.response.start"
    assert body["type"] == "http.response.body"
    assert not body.get("more_body", False)
    return start["status"], dict(start["headers"]), body["body"]


# ---------------------------------------------------------------- @health


@pytest.mark.parametrize(
    ("state", "status", "body"),
    [("ready", 200, b"ok\n"), ("starting", 503, b"starting\n"), ("draining", 503, b"draining\n")],
)
def test_readiness_follows_the_state(state, status, body):
    health = Health(lambda: state)
    for path in ("/healthz", "/healthz/", "/healthz/ready"):
        got, headers, text = call(health, path)
        assert (got, text) == (status, body), path
        assert headers[b"content-type"] == b"text/plain; charset=utf-8"
        assert headers[b"cache-control"] == b"no-store"
        assert headers[b"content-length"] == str(len(body)).encode()


@pytest.mark.parametrize("state", ["starting", "ready", "draining"])
def test_liveness_is_200_whatever_the_readiness(state):
    assert call(Health(lambda: state), "/healthz/live")[::2] == (200, b"alive\n")


def test_readiness_flips_when_the_worker_starts_draining():
    state = ["starting"]
    health = Health(lambda: state[0])
    assert call(health)[0] == 503
    state[0] = "ready"
    assert call(health)[0] == 200
    state[0] = "draining"
    assert call(health)[::2] == (503, b"draining\n")
    assert call(health, "/healthz/live")[0] == 200


def test_the_older_bool_probe_still_works():
    assert call(Health(lambda: True))[::2] == (200, b"ok\n")
    assert call(Health(lambda: False))[::2] == (503, b"draining\n")


def test_mounted_on_a_whole_port_and_behind_a_proxy_prefix():
    health = Health(lambda: "ready")
    assert call(health, "/", root_path="")[0] == 200  # app = "@health": root_path is ""
    assert call(health, "/live", root_path="")[2] == b"alive\n"
    proxied = call(health, "/myapp/healthz/live", root_path="/myapp/healthz")
    assert proxied[2] == b"alive\n"


def test_unknown_subpaths_are_404_and_other_methods_405():
    health = Health(lambda: "ready")
    assert call(health, "/healthz/livez")[0] == 404
    assert call(health, "/healthz/x/live")[0] == 404
    status, headers, _ = call(health, method="POST")
    assert status == 405
    assert headers[b"allow"] == b"GET, HEAD"


def test_head_has_the_headers_and_no_body():
    status, headers, body = call(Health(lambda: "draining"), method="HEAD")
    assert (status, body) == (503, b"")
    assert headers[b"content-length"] == b"9"  # as a GET would say


def test_non_http_scopes_are_ignored():
    call(Health(lambda: "ready"), kind="lifespan")
    call(Metrics(_fetch_ok), kind="lifespan")


# --------------------------------------------------------------- @metrics


async def _fetch_ok():
    return EXPOSITION


def test_metrics_serves_the_fetched_text():
    status, headers, body = call(Metrics(_fetch_ok), "/metrics", root_path="/metrics")
    assert status == 200
    assert body == EXPOSITION.encode()
    assert headers[b"content-type"] == b"text/plain; version=0.0.4; charset=utf-8"
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"cache-control"] == b"no-store"


def test_metrics_head_and_methods():
    metrics = Metrics(_fetch_ok)
    status, headers, body = call(metrics, "/metrics", method="HEAD", root_path="/metrics")
    assert (status, body) == (200, b"")
    assert headers[b"content-length"] == str(len(EXPOSITION)).encode()
    assert call(metrics, "/metrics", method="DELETE", root_path="/metrics")[0] == 405
    assert call(metrics, "/metrics/x", root_path="/metrics")[0] == 404


def test_metrics_unavailable_is_a_503_with_the_reason():
    async def fetch():
        raise MetricsUnavailableError("the supervisor is stopping")

    status, headers, body = call(Metrics(fetch), "/metrics", root_path="/metrics")
    assert status == 503
    assert body == b"metrics unavailable: the supervisor is stopping\n"
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"


def test_a_slow_fetch_times_out_into_a_503():
    async def fetch():
        await asyncio.sleep(30)
        return EXPOSITION

    status, _, body = call(Metrics(fetch, timeout=0.05), "/metrics", root_path="/metrics")
    assert status == 503
    assert body == b"metrics unavailable: the supervisor did not answer within 0.05s\n"


def test_a_failing_fetch_is_logged_and_answered_503(caplog):
    async def fetch():
        raise RuntimeError("a bug in fetch")

    caplog.set_level(logging.ERROR, logger="uvhost.error")
    status, _, body = call(Metrics(fetch), "/metrics", root_path="/metrics")
    assert status == 503
    assert b"see the host's log" in body
    assert any(r.exc_info and "a bug in fetch" in str(r.exc_info[1]) for r in caplog.records)


def test_the_placeholder_is_still_an_honest_503():
    assert call(MetricsUnavailable(), "/metrics", root_path="/metrics")[0] == 503
