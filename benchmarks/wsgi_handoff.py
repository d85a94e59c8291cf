"""The loop -> thread -> loop hand-off of uvhost's WSGI adapter, alone: µs per request.

Why: a WSGI request on uvhost costs its HTTP work (parse, ASGI, write, done
on the event loop, as for an ASGI app) plus what the adapter adds: passing
the request to a pool thread and the response back, building the environ,
start_response. Granian does the same hand-off in Rust; Gunicorn gthread
does its I/O in the threads. This script measures the adapter's part with
no socket at all, so the WSGI scenarios of wsgi-peers.json can be split into
"HTTP" and "hand-off" without a profiler distorting the threads' timing.

Three levels, each over the code uvhost runs (host/uvhost/server/wsgi.py),
on a uvloop loop, with `--threads` pool threads (8, as the benchmarks):

- `pool`: `WsgiPool.try_submit` of a no-op job and an await of its future:
  one loop -> thread -> loop round trip, the least any request pays.
- `adapter`: the whole `WsgiAdapter` on a hello app (12 bytes, a
  Content-Length) with an ASGI `send` that does nothing: the round trip(s)
  plus building the environ, start_response and the response messages; what
  a WSGI hello costs uvhost beyond an ASGI hello.
- `threadsafe`: `asyncio.run_coroutine_threadsafe(...).result()` of a no-op
  coroutine from a thread, one at a time: the thread -> loop -> thread round
  trip that each body send of a streamed response pays.

Each is run with `--concurrency` requests in flight (1: nothing overlaps, the
latency of one hand-off; 64: as wrk -c64 keeps the server busy, where wake-ups
batch). Reported per request: wall µs, process CPU µs (user + system, all
threads: the number comparable with peerbench's server µs/req) and context
switches (voluntary + involuntary, of the whole process).

    PYTHONPATH=host .venv/bin/python benchmarks/wsgi_handoff.py [--requests N]

Nothing leaves the process: no socket is opened.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import uvloop

from uvhost.server.wsgi import WsgiAdapter, WsgiPool

HELLO = b"Hello, world"
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/hello",
    "raw_path": b"/hello",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8000")],
    "client": ("127.0.0.1", 40000),
    "server": ("127.0.0.1", 8000),
}
"""What the core hands the adapter for wrk's `GET /hello` (wrk sends only a Host header)."""


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """wsgi_apps.py's hello: the app itself is nearly free."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [HELLO]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


async def _noop() -> None:
    return None


def _level(
    name: str, threads: int
) -> tuple[Callable[[asyncio.AbstractEventLoop], Awaitable[None]], WsgiPool]:
    """One request of level `name`, as a coroutine function of the loop, and its pool."""
    if name == "pool":
        pool = WsgiPool(threads, 1 << 20)

        def nothing() -> None:
            return None

        async def one(loop: asyncio.AbstractEventLoop) -> None:
            done = pool.try_submit(nothing, loop)
            assert done is not None  # noqa: S101 - the limit is far above the concurrency
            await done

        return one, pool
    if name == "adapter":
        adapter = WsgiAdapter(hello, threads=threads, max_queued=1 << 20)

        async def one(loop: asyncio.AbstractEventLoop) -> None:
            await adapter(dict(SCOPE), _receive, _send)

        return one, adapter.pool
    raise ValueError(name)


async def _run_level(
    name: str, requests: int, concurrency: int, threads: int
) -> tuple[float, float, float]:
    """Wall µs, CPU µs and context switches per request, `concurrency` requests at a time."""
    loop = asyncio.get_running_loop()
    one, pool = _level(name, threads)
    per_task = requests // concurrency

    async def client() -> None:
        for _ in range(per_task):
            await one(loop)

    await asyncio.gather(*(client() for _ in range(concurrency)))  # warm-up, threads started
    start_wall, start_cpu, start_switches = time.perf_counter(), time.process_time(), _switches()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    switches = _switches() - start_switches
    pool.close()  # its threads leave; the next row starts its own
    count = per_task * concurrency
    return wall / count * 1e6, cpu / count * 1e6, switches / count


def _threadsafe(requests: int) -> tuple[float, float, float]:
    """run_coroutine_threadsafe(...).result() from one thread into a running loop."""
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for _ in range(requests // 10):  # warm-up
            asyncio.run_coroutine_threadsafe(_noop(), loop).result()
        start_wall, start_cpu, start_switches = (
            time.perf_counter(),
            time.process_time(),
            _switches(),
        )
        for _ in range(requests):
            asyncio.run_coroutine_threadsafe(_noop(), loop).result()
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        switches = _switches() - start_switches
        return wall / requests * 1e6, cpu / requests * 1e6, switches / requests
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _switches() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=64_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--concurrency", type=int, action="append", dest="concurrency")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    args = parser.parse_args()
    concurrency = args.concurrency or [1, 64]
    print(f"{args.threads} pool threads, {args.requests} requests per run, median of {args.repeat}")
    print(f"{'level':<11} {'in flight':>9} {'wall µs':>8} {'CPU µs':>8} {'switches':>8}")
    rows: list[tuple[str, int, Callable[[], tuple[float, float, float]]]] = []
    for name in ("pool", "adapter"):
        for level in concurrency:
            rows.append(
                (
                    name,
                    level,
                    lambda name=name, level=level: uvloop.run(
                        _run_level(name, args.requests, level, args.threads)
                    ),
                )
            )
    rows.append(("threadsafe", 1, lambda: _threadsafe(args.requests)))
    for name, level, measure in rows:
        runs = [measure() for _ in range(args.repeat)]
        wall = statistics.median(run[0] for run in runs)
        cpu = statistics.median(run[1] for run in runs)
        switches = statistics.median(run[2] for run in runs)
        print(f"{name:<11} {level:>9} {wall:>8.1f} {cpu:>8.1f} {switches:>8.2f}")


if __name__ == "__main__":
    main()
