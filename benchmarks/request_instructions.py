"""Instructions per request on uvhost's request path, counted by callgrind.

Why: wall-clock benchmarks on this shared machine move by a few percent from
run to run (see docs/performance.md), so a change that costs or saves 1-2% of
a request cannot be seen with them, and `perf stat`'s instruction counter is
not available here. An instruction count is a proxy for CPU time (it ignores
cache misses, branch mispredictions and the kernel), but it repeats to well
under 1% and it compares two builds of uvhost on the same interpreter and
libraries exactly, in one invocation.

How:
- The server is one uvhost `Worker` in-process on a uvloop loop, as
  tests/server/conftest.py runs it (load_config, plan, bind_all, Worker), one
  listener on 127.0.0.1 with an ephemeral port, access log off, lifespan off,
  serving an app of ../shared/bench/apps.py. It runs under
  `valgrind --tool=callgrind --instr-atstart=no`: start-up and a warm-up
  window run uninstrumented, then the counting is switched on through
  valgrind's gdbserver (`vgdb`, what `callgrind_control` drives).
- The client is this script's own process, not under valgrind: C
  connections at once, each sending its share of the requests one after the
  other on one keep-alive connection (or D at a time with --pipeline D), each
  request `GET /path HTTP/1.1` with a Host header, as wrk sends it. Every
  response must be a 200 with a content-length body.
- Per run: window A sends N/2 requests, window B sends N, each on C fresh
  connections and each ended by a callgrind dump (which also zeroes the
  counters). Per request = (I(B) - I(A)) / (N - N/2): the cost of accepting
  and closing the connections, the first-window effects and the counting
  switch cancel out; what remains is the keep-alive request path, app
  included (hello: nearly nothing; json: one json.dumps of ~1 KB).
- What does not cancel: work done per unit of time rather than per request
  (the worker's half-second tick that rebuilds the Date line and checks
  timeouts). Measured idle with 16 open connections it is ~90k instructions
  a second; under valgrind a request takes ~100x longer than natively, so it
  adds ~0.1-0.2% to a request here, and a loaded machine (a slower run)
  moves it by about as much: most of the spread between runs.
- PYTHONHASHSEED is fixed, so dict and set layouts repeat between runs.
- Not counted: the supervisor, and the once-a-second stats report a spawned
  worker sends it (`uvhost.child`); neither runs per request.

Time: one server run is 30-90 s; the default comparison below (two targets,
hello and json, two runs each) takes 5-7 minutes on the 2-core machine.

Usage (the interpreter running this script needs only the standard library;
each --python is a venv with uvhost installed, optionally @REV to run that
git revision of the checkout uvhost is imported from, exported to the temp
folder and put first on PYTHONPATH):

    python3 benchmarks/request_instructions.py \\
        --python /work/base-13/.venv/bin/python --python /work/main/.venv/bin/python@HEAD

Traffic goes only to 127.0.0.1. Every file goes to one temp folder, removed
at the end (--keep keeps it); the server stops itself after --server-seconds
even if this script dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_APPS_DIR = HERE.parent.parent / "shared" / "bench"
SCENARIOS = {"hello": "/hello", "json": "/json", "file": "/static/small.bin"}
"""Paths by scenario; "file" is a 1 KiB file of a folder app (the static scenarios' small.bin)."""
IO_TIMEOUT = 120.0  # seconds: any one read, write or connect of the client (valgrind is slow)
VGDB_TIMEOUT = 120.0  # seconds: one monitor command to the server under valgrind
START_TIMEOUT = 180.0  # seconds: the server under valgrind to print its port


# --------------------------------------------------------------------------- server side


_SERVER = """\
[host]
workers = 1
graceful_timeout = "2s"

[logging]
level = "warning"
access_log = false

[listeners.bench]
bind = "127.0.0.1:0"
"""

CONFIG = (
    _SERVER
    + """\
app = "bench"

[apps.bench]
target = "apps:{app}"
app_dir = "{apps_dir}"
lifespan = "off"
"""
)

FILE_CONFIG = (
    _SERVER
    + """\
routes = {{ "/static" = "files" }}

[apps.files]
folder = "{files}"
"""
)


def serve(
    app: str, apps_dir: Path, folder: Path, seconds: float, config: Path | None = None
) -> None:
    """Run one Worker on a uvloop loop until SIGTERM or `seconds`; write the port to a file.

    Runs under valgrind, in the interpreter being measured; uvhost is imported here only.
    `config` replaces the built-in one: a peerbench-style file (benchmarks/uvhost-bench*.toml)
    whose ${PEERBENCH_PORT} becomes 0 and ${PEERBENCH_APP} the scenario's app.
    """
    import uvloop  # noqa: PLC0415 (the measured interpreter's, not the client's)

    import uvhost  # noqa: PLC0415
    from uvhost.config.load import load_config  # noqa: PLC0415
    from uvhost.server.worker import Worker  # noqa: PLC0415
    from uvhost.supervisor.sockets import bind_all  # noqa: PLC0415

    config_path = folder / "uvhost.toml"
    if app == "file":
        files = folder / "files"
        files.mkdir()
        (files / "small.bin").write_bytes((bytes(range(256)) * 4)[:1024])
        config_path.write_text(FILE_CONFIG.format(files=files), encoding="utf-8")
    elif config is None:
        config_path.write_text(CONFIG.format(app=app, apps_dir=apps_dir), encoding="utf-8")
    else:
        os.environ.update(PEERBENCH_PORT="0", PEERBENCH_APP=app)
        sys.path.insert(0, str(apps_dir))
        config_path.write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    result = load_config(config_path)
    if result.config is None:
        raise SystemExit("\n".join(str(d) for d in result.diagnostics))
    plan = result.plan(cpu_count=1)
    if plan.config.logging.access_log:  # the access log as `uvhost run` sets it up and writes it
        from uvhost.observe.logs import configure  # noqa: PLC0415

        configure(plan.config.logging)
    sockets = bind_all(plan.config.listeners.items())
    worker = Worker(plan, plan.groups, sockets.by_name())
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)

    async def main() -> None:
        await worker.start()
        port = next(iter(sockets)).sock.getsockname()[1]
        ready = folder / "port.tmp"
        ready.write_text(f"{port} {uvhost.__file__}", encoding="utf-8")
        ready.rename(folder / "port")
        stop: asyncio.Future[None] = loop.create_future()

        def on_term() -> None:
            if not stop.done():
                stop.set_result(None)

        loop.add_signal_handler(signal.SIGTERM, on_term)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop, seconds)
        await worker.drain()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        sockets.close()


# --------------------------------------------------------------------------- client side


class BadResponseError(Exception):
    """The server answered something other than a 200 with a content-length body."""


async def _connection(port: int, request: bytes, count: int, depth: int) -> int:
    """Send `count` requests on one keep-alive connection, `depth` in flight; return bytes read."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
    received = 0
    try:
        left = count
        while left:
            batch = min(depth, left)
            writer.write(request * batch)
            for _ in range(batch):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
                status_line, _, fields = head.partition(b"\r\n")
                if not status_line.startswith(b"HTTP/1.1 200 "):
                    raise BadResponseError(f"status line {status_line!r}")
                match = re.search(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*\r?$", fields)
                if match is None:
                    raise BadResponseError(f"no content-length in {head!r}")
                if re.search(rb"(?im)^connection:[ \t]*close", fields):
                    raise BadResponseError("the server closes the connection")
                body = await asyncio.wait_for(reader.readexactly(int(match.group(1))), IO_TIMEOUT)
                received += len(head) + len(body)
            left -= batch
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(writer.wait_closed(), IO_TIMEOUT)
    return received


async def _window(port: int, path: str, connections: int, per_connection: int, depth: int) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii")
    await asyncio.gather(
        *(_connection(port, request, per_connection, depth) for _ in range(connections))
    )


def send_window(port: int, path: str, connections: int, requests: int, depth: int) -> None:
    """Exactly `requests` requests, spread evenly over `connections` fresh connections."""
    asyncio.run(_window(port, path, connections, requests // connections, depth))


# --------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class Target:
    """One interpreter to measure and, optionally, the git revision of uvhost it runs."""

    label: str
    python: str
    revision: str | None


@dataclass
class Measurement:
    target: Target
    scenario: str
    small: int  # instructions in window A
    large: int  # instructions in window B
    per_request: float
    seconds: float


def parse_target(text: str) -> Target:
    python, _, revision = text.partition("@")
    return Target(label=text, python=python, revision=revision or None)


def describe(target: Target) -> tuple[Path, str]:
    """Where the target imports uvhost from (its import root) and which commit that is."""
    probe = subprocess.run(
        [
            target.python,
            "-c",
            "import uvhost, pathlib; print(pathlib.Path(uvhost.__file__).parent)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    package = Path(probe.stdout.strip())

    def git(*args: str) -> str:
        return subprocess.run(
            [tool("git"), "-C", str(package), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    if target.revision is None:
        return package.parent, git("describe", "--always", "--dirty", "--abbrev=7")
    return package.parent, git("rev-parse", "--short=7", target.revision)


def export(target: Target, root: Path, into: Path) -> Path:
    """`git archive` the target's revision of the import root into `into`; return the new root."""
    if target.revision is None:
        raise ValueError(f"{target.label} names no revision")
    top, prefix = subprocess.run(
        [tool("git"), "-C", str(root), "rev-parse", "--show-toplevel", "--show-prefix"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    into.mkdir(parents=True)
    tree = f"{target.revision}:{prefix.rstrip('/')}"
    archive = subprocess.run(
        [tool("git"), "-C", top, "archive", "--format=tar", tree],
        capture_output=True,
        check=True,
        timeout=120,
    )
    subprocess.run(
        [tool("tar"), "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=120
    )
    return into


def tool(name: str) -> str:
    """The full path of a program this script runs."""
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed")
    return found


def vgdb(prefix: Path, pid: int, command: str) -> str:
    done = subprocess.run(
        [
            tool("vgdb"),
            f"--vgdb-prefix={prefix}",
            f"--pid={pid}",
            f"--cmd-time-out={int(VGDB_TIMEOUT)}",
            *command.split(),
        ],
        capture_output=True,
        text=True,
        timeout=VGDB_TIMEOUT + 10,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"vgdb {command!r} failed: {done.stdout}{done.stderr}")
    return done.stdout


def read_total(out_file: Path) -> int:
    """The Ir total of one callgrind dump."""
    for line in out_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def measure(
    target: Target,
    source: Path | None,
    scenario: str,
    args: argparse.Namespace,
    folder: Path,
) -> Measurement:
    """One server under callgrind: warm-up, then windows A (N/2) and B (N), one dump each."""
    folder.mkdir(parents=True)
    prefix = folder / "vgdb-pipe"
    out = folder / "callgrind.out"
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    command = [
        tool("valgrind"),
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--vgdb-prefix={prefix}",
        f"--callgrind-out-file={out}",
        f"--log-file={folder / 'valgrind.log'}",
        target.python,
        str(Path(__file__).resolve()),
        "_serve",
        "--app",
        scenario,
        "--apps-dir",
        str(args.apps_dir),
        "--folder",
        str(folder),
        "--server-seconds",
        str(args.server_seconds),
        *(["--config", str(args.config.resolve())] if args.config else []),
    ]
    started = time.monotonic()
    with (folder / "server.log").open("wb") as log:
        server = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
        )
    try:
        port_file = folder / "port"
        while not port_file.exists():
            if server.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(
                    f"the server did not start; see {folder}/server.log:\n"
                    + (folder / "server.log").read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)
        port_text, _, imported = port_file.read_text(encoding="utf-8").partition(" ")
        port = int(port_text)
        if source is not None and not imported.startswith(f"{source}/"):
            raise RuntimeError(f"the server imported uvhost from {imported}, not from {source}")
        path = SCENARIOS[scenario]
        small, large = args.requests // 2, args.requests
        send_window(port, path, args.connections, args.warmup, args.pipeline)
        vgdb(prefix, server.pid, "instrumentation on")
        vgdb(prefix, server.pid, "zero")
        totals = []
        measured = time.monotonic()
        for count in (small, large):
            send_window(port, path, args.connections, count, args.pipeline)
            before = set(folder.glob("callgrind.out.*"))
            vgdb(prefix, server.pid, "dump")
            (dump,) = set(folder.glob("callgrind.out.*")) - before
            totals.append(read_total(dump))
        seconds = time.monotonic() - measured
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
    if server.returncode != 0:
        raise RuntimeError(
            f"the server exited with {server.returncode}; see {folder}/server.log:\n"
            + (folder / "server.log").read_text(errors="replace")[-2000:]
        )
    per_request = (totals[1] - totals[0]) / (large - small)
    return Measurement(target, scenario, totals[0], totals[1], per_request, seconds)


def check_args(args: argparse.Namespace) -> None:
    unit = args.connections * args.pipeline
    for name in ("requests", "warmup"):
        value = getattr(args, name)
        if value <= 0 or value % unit or (name == "requests" and (value // 2) % unit):
            raise SystemExit(
                f"--{name} must be a positive multiple of connections x pipeline ({unit})"
                + (", and so must half of it" if name == "requests" else "")
            )


Results = dict[tuple[str, str], list[Measurement]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--python",
        action="append",
        dest="pythons",
        metavar="PY[@REV]",
        help="interpreter with uvhost installed; @REV runs that git revision of its checkout "
        "(repeat to compare; the first is the baseline)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        dest="scenarios",
        choices=SCENARIOS,
        help="hello and json when not given",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=8192,
        help="requests in the larger window (the smaller one sends half)",
    )
    parser.add_argument("--warmup", type=int, default=512, help="uncounted requests first")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pipeline", type=int, default=1, help="requests in flight per connection")
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="independent server runs per target and scenario (the table shows their mean "
        "and spread)",
    )
    parser.add_argument("--apps-dir", type=Path, default=DEFAULT_APPS_DIR)
    parser.add_argument(
        "--server-seconds",
        type=float,
        default=1800.0,
        help="the server stops itself after this long, whatever happens here",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (dumps, logs)")
    parser.add_argument(
        "--config",
        type=Path,
        help="serve with this peerbench-style uvhost.toml (e.g. benchmarks/uvhost-bench-sites"
        ".toml) instead of one whole-port app; the client's Host is 127.0.0.1",
    )
    sub = parser.add_subparsers(dest="mode")
    serve_parser = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve_parser.add_argument("--app", required=True)
    serve_parser.add_argument("--apps-dir", type=Path, required=True)
    serve_parser.add_argument("--folder", type=Path, required=True)
    serve_parser.add_argument("--server-seconds", type=float, required=True)
    serve_parser.add_argument("--config", type=Path)
    return parser.parse_args(argv)


def run_all(
    targets: Sequence[Target], scenarios: Sequence[str], args: argparse.Namespace
) -> Results:
    """Every target on every scenario, --repeat rounds, each in its own server under valgrind."""
    temp = Path(tempfile.mkdtemp(prefix="uvhost-instructions-"))
    results: Results = {}
    try:
        sources: dict[str, Path | None] = {}
        for number, target in enumerate(targets):
            root, commit = describe(target)
            sources[target.label] = (
                export(target, root, temp / f"src{number}") if target.revision else None
            )
            print(f"# {target.label}: uvhost from {root} at {commit}", flush=True)
        for round_number in range(args.repeat):
            for scenario in scenarios:
                for number, target in enumerate(targets):
                    folder = temp / f"run-{round_number}-{scenario}-{number}"
                    found = measure(target, sources[target.label], scenario, args, folder)
                    results.setdefault((target.label, scenario), []).append(found)
                    print(
                        f"# run {round_number + 1} {scenario:5} {target.label}: "
                        f"{found.per_request:,.0f} instructions/request "
                        f"(A {found.small:,}, B {found.large:,}; {found.seconds:.0f} s counted)",
                        flush=True,
                    )
    finally:
        if args.keep:
            print(f"# kept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)
    return results


def print_table(
    targets: Sequence[Target],
    scenarios: Sequence[str],
    results: Results,
    args: argparse.Namespace,
) -> None:
    print()
    print(
        f"instructions per request (callgrind Ir, server process), {args.requests // 2} "
        f"requests counted per run as B - A, {args.connections} keep-alive connections, "
        f"pipeline {args.pipeline}, {args.repeat} run(s) each"
    )
    print()
    base = targets[0].label
    header = [
        "scenario",
        *(t.label for t in targets),
        *(f"ratio {t.label}" for t in targets[1:]),
        "spread",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for scenario in scenarios:
        runs = [[m.per_request for m in results[(t.label, scenario)]] for t in targets]
        means = [statistics.fmean(values) for values in runs]
        spreads = [(max(v) - min(v)) / statistics.fmean(v) * 100 for v in runs]
        row = [
            scenario,
            *(f"{mean:,.0f}" for mean in means),
            *(f"{mean / means[0]:.3f}" for mean in means[1:]),
            " / ".join(f"{spread:.2f}%" for spread in spreads),
        ]
        print("| " + " | ".join(row) + " |")
    print()
    if len(targets) > 1:
        print(f"ratio: that target's mean over the first's ({base})")
    print("spread: (max - min) / mean of each target's runs, in the order of the columns")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "_serve":
        serve(args.app, args.apps_dir, args.folder, args.server_seconds, args.config)
        return 0
    check_args(args)
    for name in ("valgrind", "vgdb", "git", "tar"):
        tool(name)
    targets = [parse_target(text) for text in (args.pythons or [sys.executable])]
    scenarios = args.scenarios or list(SCENARIOS)
    results = run_all(targets, scenarios, args)
    print_table(targets, scenarios, results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
