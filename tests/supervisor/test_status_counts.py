"""`uvhost status --json` against a real host: the counts of a known mix, exactly.

One listener, two apps in one group of 2 workers: "quick" at /fast (only fast
requests) and "main" at /mixed (fast, 10 held 300 ms, POSTs with bodies, app
exceptions); unrouted paths get the host's 404. Requests go over real
connections to 127.0.0.1; the test polls `uvhost status --json FILE` (a
subprocess, as a script would) until the totals settle, then checks:

- totals, the listener and each app: requests, responses by class,
  bytes_in/bytes_out, exactly;
- the window (rps x window_seconds) holds the whole mix, and the percentiles
  fall in the expected buckets: "quick" p99 < 25 ms; "main" and the totals
  (about 6% slow) p50/p90 < 25 ms and p99 inside the 250-500 ms bucket
  (interpolation never leaves the bucket holding the rank);
- a reload that rolls the group (an env edit) keeps the retired workers'
  counts: the totals stay exactly where they were, then go on from there;
- `kill -9` of one worker right after a burst of 40: the totals never go
  below what they were before the burst, and lose at most the requests the
  killed worker served since its last report (a report leaves every second).
  What is seen (15 runs): the killed worker's whole share of the burst (12 to
  28 of the 40) is lost every time, as the kill comes before its next report;
  the survivor's share and everything reported earlier are kept.

Each request goes on a new connection (no keep-alive), so both workers serve
some; the clients reuse one httpx.Client per thread, as building one costs
~20 ms and the whole mix must fit in the 5 s window of the percentiles.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

CONFIG = """
[host]
control_socket = "{control}"
graceful_timeout = "5s"

[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "fd:{web}"
routes = {{ "/fast" = "quick", "/mixed" = "main" }}

[apps.quick]
target = "apps:quick"
workers = 2

[apps.main]
target = "apps:main"
workers = 2
env = {{ GREETING = "{greeting}" }}
"""

APPS = r"""
import asyncio
import os
from urllib.parse import parse_qs

BODY = b"x" * 50


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


def make(name):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path.endswith("/boom"):
            raise RuntimeError("boom (on purpose)")
        if path.endswith("/slow"):
            await asyncio.sleep(float(parse_qs(scope["query_string"].decode())["s"][0]))
        answer = body if scope["method"] == "POST" else BODY
        headers = [
            (b"content-length", b"%d" % len(answer)),
            (b"x-pid", str(os.getpid()).encode()),
            (b"x-greeting", os.environ.get("GREETING", "").encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


quick = make("quick")
main = make("main")
"""

SETTLE = 10.0  # seconds: reports leave workers every second and are ticked every second
CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")


def responses(**counts: int) -> dict[str, int]:
    """Responses by class, e.g. responses(c2xx=3): every class present, zero unless given."""
    return {name: counts.get(f"c{name}", 0) for name in CLASSES}


def counts(traffic):
    keys = ("requests", "responses", "bytes_in", "bytes_out", "websockets", "websockets_open")
    return {key: traffic[key] for key in keys}


def expected(requests, by_class, bytes_in, bytes_out):
    """What `counts` should give (no WebSockets in this mix)."""
    return {
        "requests": requests,
        "responses": by_class,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "websockets": 0,
        "websockets_open": 0,
    }


@pytest.fixture
def host(tmp_path, launch, listener, kit, sockets_dir):
    web = listener()
    (tmp_path / "apps.py").write_text(APPS, encoding="utf-8")
    config = tmp_path / "uvhost.toml"

    def render(greeting):
        return CONFIG.format(control=sockets_dir / "c.sock", web=web.fileno(), greeting=greeting)

    config.write_text(render("one"), encoding="utf-8")
    host = launch(config, pass_fds=(web.fileno(),))
    host.wait_for("ready:")
    host.url = f"http://127.0.0.1:{kit.port_of(web)}"
    host.render = render
    return host


def status(host):
    """What a script gets from `uvhost status --json FILE`."""
    answer = subprocess.run(
        [sys.executable, "-m", "uvhost", "status", "--json", str(host.config)],
        cwd=host.config.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def poll(host, ready, what):
    """`uvhost status --json` until `ready(snapshot)` (bounded); fails showing the last one."""
    deadline = time.monotonic() + SETTLE
    while True:
        snapshot = status(host)
        if ready(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            shown = {key: snapshot[key] for key in ("window_seconds", "totals", "workers")}
            pytest.fail(f"{what}: not within {SETTLE:g}s; last status: {shown}")
        time.sleep(0.05)


def app_named(snapshot, name):
    (found,) = [app for app in snapshot["apps"] if app["name"] == name]
    return found


def ended(traffic):
    return sum(traffic["responses"].values())


def in_window(snapshot):
    """Requests started within the window: rps is rounded to 1/100, so this is exact."""
    return round(snapshot["totals"]["rps"] * snapshot["window_seconds"])


def fetch_all(url, work, threads):
    """`work` (method, path, body, status) from client threads, each request on a new
    connection (so both workers get some); asserts each status, returns the responses."""

    def run(part):
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=url, timeout=10, limits=fresh) as client:
            answers = []
            for method, path, body, status_code in part:
                response = client.request(method, path, content=body)
                assert response.status_code == status_code, (path, response.status_code)
                answers.append(response)
            return answers

    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = pool.map(run, [work[start::threads] for start in range(threads)])
        return [response for part in parts for response in part]


MIX = (
    [("GET", "/fast/x", None, 200)] * 60
    + [("GET", "/mixed/x", None, 200)] * 90
    + [("GET", "/mixed/slow?s=0.3", None, 200)] * 10  # consecutive: one per thread
    + [("POST", "/mixed/post", b"p" * 100, 200)] * 5
    + [("GET", "/mixed/boom", None, 500)] * 3
    + [("GET", "/nowhere", None, 404)] * 5
)
EVERYTHING = expected(
    173,
    responses(c2xx=165, c4xx=5, c5xx=3),
    bytes_in=5 * 100,
    bytes_out=60 * 50 + 100 * 50 + 5 * 100 + 5 * len(b"Not Found\n"),
)


def send_the_mix_and_check_it(host):
    # Two ticks before the mix: the window starts before it.
    poll(host, lambda snapshot: snapshot["window_seconds"] > 0, "two stats ticks")
    fetch_all(host.url, MIX, threads=12)

    def settled(snapshot):
        # The clients' closes reach the workers after their last responses: wait for
        # those too, or a tick taken in between still counts a connection open.
        totals = snapshot["totals"]
        closed = all(listener["connections"] == 0 for listener in snapshot["listeners"])
        ended_all = totals["requests"] == ended(totals) >= len(MIX)
        return ended_all and closed and in_window(snapshot) >= len(MIX)

    snapshot = poll(host, settled, "the mix counted and ticked")
    totals = snapshot["totals"]
    assert counts(totals) == EVERYTHING
    assert in_window(snapshot) == len(MIX) == 173  # the window holds exactly the mix
    (web,) = snapshot["listeners"]
    assert (web["name"], web["connections"]) == ("web", 0)
    assert counts(web) == EVERYTHING
    quick, main = app_named(snapshot, "quick"), app_named(snapshot, "main")
    assert (quick["workers"], main["workers"]) == (2, 2)
    assert counts(quick) == expected(60, responses(c2xx=60), 0, 60 * 50)
    assert counts(main) == expected(108, responses(c2xx=105, c5xx=3), 500, 100 * 50 + 500)
    # The host's 404s belong to no app: totals = the apps + route "".
    assert totals["requests"] - quick["requests"] - main["requests"] == 5
    assert main["error_rate"] == round(3 / 108, 4)
    assert totals["error_rate"] == round(3 / 173, 4)
    # Percentiles: fast requests take well under 25 ms; 10 of 108 (of 173) took ~300 ms.
    assert quick["p99_ms"] < 25, quick
    for traffic in (main, totals):
        assert traffic["p50_ms"] < 25, traffic
        assert traffic["p90_ms"] < 25, traffic
        assert 250 < traffic["p99_ms"] <= 500, traffic
    assert sum(worker["requests"] for worker in snapshot["workers"]) == 173
    return snapshot


def roll_and_check(host, kit, snapshot):
    """An env edit rolls the group; the totals stay exactly where they were."""
    before = counts(snapshot["totals"])
    old = {worker["pid"] for worker in snapshot["workers"]}
    assert old == host.workers()
    mark = host.mark()
    kit.save(host.config, host.render("two"))
    host.wait_applied(mark)
    new = host.wait_workers(2, excluding=old)
    after = poll(
        host,
        lambda snapshot: {worker["pid"] for worker in snapshot["workers"]} == new,
        "only the new workers in status",
    )
    assert counts(after["totals"]) == before
    assert sum(worker["requests"] for worker in after["workers"]) == 0
    (answer,) = fetch_all(host.url, [("GET", "/mixed/x", None, 200)], threads=1)
    assert answer.headers["x-greeting"] == "two"
    after_one = poll(
        host,
        lambda snapshot: snapshot["totals"]["requests"] >= 174,
        "the request after the roll",
    )
    assert counts(after_one["totals"]) == expected(
        174, responses(c2xx=166, c4xx=5, c5xx=3), 500, EVERYTHING["bytes_out"] + 50
    )
    return after_one, new


def kill_after_a_burst_and_check(host, snapshot, workers):
    """kill -9 right after a burst: at most the victim's unreported requests are lost."""
    before = counts(snapshot["totals"])
    burst = fetch_all(host.url, [("GET", "/fast/x", None, 200)] * 40, threads=4)
    served_by = Counter(int(response.headers["x-pid"]) for response in burst)
    victim, share = served_by.most_common(1)[0]
    assert victim in workers
    assert victim in host.workers()  # our supervisor's child, alive
    mark = host.mark()
    os.kill(victim, signal.SIGKILL)
    host.wait_for(f"replaces {victim}", since=mark)

    def replaced(snapshot):
        pids = {worker["pid"] for worker in snapshot["workers"]}
        survivor_in = snapshot["totals"]["requests"] >= before["requests"] + 40 - share
        return victim not in pids and len(pids) == 2 and survivor_in

    totals = poll(host, replaced, "the victim replaced, the survivor reported")["totals"]
    lost = before["requests"] + 40 - totals["requests"]
    assert 0 <= lost <= share, (lost, served_by)
    assert totals["requests"] == ended(totals)  # nothing was in flight when it died
    assert totals["responses"] == {
        **before["responses"],
        "2xx": before["responses"]["2xx"] + 40 - lost,
    }
    assert (totals["bytes_in"], totals["bytes_out"]) == (
        before["bytes_in"],
        before["bytes_out"] + (40 - lost) * 50,
    )


def test_status_json_counts_a_known_mix_and_keeps_counts_across_roll_and_kill(host, kit):
    snapshot = send_the_mix_and_check_it(host)
    snapshot, workers = roll_and_check(host, kit, snapshot)
    kill_after_a_burst_and_check(host, snapshot, workers)
