"""h2bench: HTTP/2 servers side by side under h2load; medians and ratios (issue 14).

Each measurement starts one server, one worker, pinned to one core (taskset -c
0), on a TLS listener with a throwaway self-signed certificate; waits until a
one-request h2load run gets a 2xx over the expected protocol; warms it up;
loads it from the other core with `h2load -c16 -m32 -t1 -D SECONDS`; samples
the CPU of the server's whole process tree; and stops it by PID (SIGTERM, then
SIGKILL after 5 s). Servers alternate A B C, A B C within every scenario, so
drift on a shared machine hits all of them alike.

Servers (all serve the shared harness's apps.py, ../shared/bench):
  uvhost-h2   `uvhost run` on a TLS listener with protocols = ["http/1.1", "h2"]
  uvhost-h1   the same without `protocols`, driven with `h2load --h1`: HTTP/1.1
              over TLS, -m requests pipelined on each connection
  hypercorn   --worker-class uvloop --workers 1, h2 by ALPN
  granian     --http 2 --workers 1 --runtime-threads 1 --loop uvloop
  bare        h2_bare.py beside this file: uvloop + h2, no ASGI layer (the ceiling)

A server that cannot start, does not speak the expected protocol, or answers
with errors is reported as failed (with its log) and the run carries on.
Needs h2load and the peers venv: benchmarks/setup-peers.sh. Run it with the
project's venv (h2, uvloop and trustme):

    .venv/bin/python benchmarks/h2bench.py                       # ~8 min
    .venv/bin/python benchmarks/h2bench.py --servers bare,hypercorn \\
        --scenarios hello --rounds 1 --seconds 5

The table goes to stdout (and --markdown FILE), progress to stderr, every
run's numbers to --json FILE. Exit status 1 if anything failed. Traffic stays
on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = {"hello": "/hello", "json": "/json"}  # scenario = app name in apps.py -> path
H2 = "h2"
H1 = "http/1.1"


@dataclass(frozen=True)
class Server:
    protocol: str  # what h2load must report as "Application protocol"
    note: str  # one line for the table's legend


SERVERS = {
    "uvhost-h2": Server(H2, 'uvhost run, TLS listener with protocols = ["http/1.1", "h2"]'),
    "uvhost-h1": Server(H1, "uvhost run, TLS listener, HTTP/1.1 (h2load --h1: -m is pipelining)"),
    "hypercorn": Server(
        H2,
        "hypercorn --worker-class uvloop --workers 1, keep_alive_max_requests raised "
        "(its default, 1000, closes each connection after 1000 requests, and h2load -D "
        "does not reconnect)",
    ),
    "granian": Server(H2, "granian --http 2 --workers 1 --runtime-threads 1 --loop uvloop"),
    "bare": Server(H2, "h2_bare.py: uvloop + h2, no ASGI layer, the app's body work per request"),
    "bare-fixed": Server(H2, "h2_bare.py --fixed-body: as bare, the body made once"),
}


class RunError(Exception):
    """A measurement that produced no number; the message says why in one line."""


class WrongProtocolError(RunError):
    """The server completed the TLS handshake with another protocol: waiting cannot help."""


# ---------------------------------------------------------------- set-up
def load_peerbench(bench: Path) -> ModuleType:
    """The shared harness, for its process helpers (free_port, process_tree, sample, stop)."""
    sys.path.insert(0, str(bench))
    return importlib.import_module("peerbench")


def processor() -> str:
    """'model name (N cores)' from /proc/cpuinfo: the project quotes it with every table."""
    names = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    return f"{names[0] if names else 'unknown processor'} ({os.cpu_count()} cores)"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key as PKCS#8 (Granian reads no other)."""
    import trustme  # noqa: PLC0415  # a test dependency in the project's venv
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    private = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


def uvhost_config(args: argparse.Namespace, name: str, app: str, port: int) -> Path:
    """A one-worker uvhost config for this run, written into the temp folder."""
    protocols = 'protocols = ["http/1.1", "h2"]\n' if name == "uvhost-h2" else ""
    path = args.tmp / f"{name}-{app}.toml"
    path.write_text(
        "# generated by benchmarks/h2bench.py\n"
        "[host]\nworkers = 1\n\n"
        '[logging]\nlevel = "warning"\naccess_log = false\n\n'
        f'[listeners.bench]\nbind = "127.0.0.1:{port}"\napp = "bench"\n{protocols}\n'
        f'[listeners.bench.tls]\ncertificate = "{args.cert}"\nprivate_key = "{args.key}"\n\n'
        f'[apps.bench]\ntarget = "apps:{app}"\napp_dir = "{args.bench}"\nlifespan = "off"\n'
    )
    return path


def server_argv(args: argparse.Namespace, name: str, app: str, port: int) -> list[str]:
    peers, cert, key = args.peers, str(args.cert), str(args.key)
    if name in ("uvhost-h2", "uvhost-h1"):
        return [str(args.uvhost), "run", str(uvhost_config(args, name, app, port))]
    if name == "hypercorn":
        config = args.tmp / "hypercorn.toml"
        config.write_text("keep_alive_max_requests = 1000000000\n")
        return [
            f"{peers}/bin/hypercorn",
            *("--config", str(config)),
            *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "uvloop"),
            *("--certfile", cert, "--keyfile", key, "--log-level", "warning", f"apps:{app}"),
        ]
    if name == "granian":
        return [
            f"{peers}/bin/granian",
            *("--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--http", "2"),
            *("--workers", "1", "--runtime-threads", "1", "--blocking-threads", "1"),
            *("--loop", "uvloop", "--no-access-log", "--log-level", "warning"),
            *("--ssl-certificate", cert, "--ssl-keyfile", key, f"apps:{app}"),
        ]
    if name in ("bare", "bare-fixed"):
        return [
            sys.executable,
            str(HERE / "h2_bare.py"),
            *("--bind", f"127.0.0.1:{port}", "--scenario", app, "--certfile", cert),
            *("--keyfile", key),
            *(["--fixed-body"] if name == "bare-fixed" else []),
        ]
    raise ValueError(name)


# ---------------------------------------------------------------- h2load
def h2load_argv(
    args: argparse.Namespace, server: Server, port: int, path: str, load: str
) -> list[str]:
    """h2load on the client core; load is 'probe' (one request), or 'warmup'/'measure' (-D)."""
    argv = [args.taskset, "-c", str(args.client_cpu), args.h2load]
    argv += ["--h1"] if server.protocol == H1 else ["--npn-list", H2]  # no silent fallback
    if load == "probe":
        argv += ["-n1", "-c1", "-m1"]
    else:
        seconds = args.warmup if load == "warmup" else args.seconds
        argv += [
            f"-c{args.connections}",
            f"-m{args.streams}",
            f"-t{args.threads}",
            "-D",
            str(seconds),
        ]
    return [*argv, f"https://127.0.0.1:{port}{path}"]


def parse_h2load(text: str) -> dict:
    """Numbers from h2load's summary; KeyError/AttributeError if it has none."""

    def number(pattern: str) -> float:
        return float(re.search(pattern, text, re.MULTILINE).group(1))  # type: ignore[union-attr]

    protocol = re.search(r"^Application protocol: (\S+)", text, re.MULTILINE)
    tls = re.search(r"^TLS Protocol: (\S+)", text, re.MULTILINE)
    mean = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", text, re.MULTILINE)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": number(r"^finished in [\d.]+m?s, ([\d.]+) req/s"),
        "requests": int(number(r"^requests: (\d+) total")),
        "succeeded": int(number(r" (\d+) succeeded")),
        "failed": int(number(r" (\d+) failed")),
        "errored": int(number(r" (\d+) errored")),
        "timeout": int(number(r" (\d+) timeout")),
        "non2xx": int(sum(number(rf"(\d+) {c}xx") for c in "345")),
        "protocol": protocol.group(1) if protocol else None,
        "tls": tls.group(1) if tls else None,
        "mean_ms": float(mean.group(1)) * scale[mean.group(2)] if mean else None,
    }


def run_h2load(argv: list[str], timeout: float) -> tuple[dict, float]:
    """(numbers, the client's CPU seconds); RunError if h2load could not produce a summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RunError(f"h2load did not finish within {timeout:.0f} s") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    try:
        return parse_h2load(done.stdout), cpu
    except (AttributeError, KeyError, ValueError):
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-2:]
        raise RunError(
            f"h2load exited {done.returncode} without a summary: {' / '.join(tail)}"
        ) from None


def problem(numbers: dict, server: Server) -> str | None:
    """Why a run does not count: the wrong protocol, or any request that did not get a 2xx."""
    if numbers["protocol"] != server.protocol:
        got = numbers["protocol"] or "none negotiated"
        return f"application protocol {got}, wanted {server.protocol}"
    if not numbers["requests"]:
        return "no request completed"
    bad = numbers["failed"] + numbers["errored"] + numbers["timeout"] + numbers["non2xx"]
    if bad:
        return (
            f"{numbers['failed']} failed, {numbers['errored']} errored, "
            f"{numbers['timeout']} timed out, {numbers['non2xx']} non-2xx of {numbers['requests']}"
        )
    return None


# ---------------------------------------------------------------- one measurement
def log_tail(path: Path, lines: int = 3) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").splitlines()
        text = [line for line in text if line.strip() and not line.startswith("=== ")]
        return " | ".join(text[-lines:])
    return ""


def wait_ready(
    args: argparse.Namespace, proc: subprocess.Popen, server: Server, port: int, path: str
) -> None:
    """Return once one request gets a 2xx over the server's protocol; RunError otherwise."""
    deadline, last = time.monotonic() + args.start_timeout, "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunError(f"exited with code {proc.returncode} before answering")
        try:
            numbers, _ = run_h2load(h2load_argv(args, server, port, path, "probe"), 10)
            last = problem(numbers, server) or ""
            if not last:
                return
            if numbers["tls"]:  # it answered the handshake: the protocol will not change
                raise WrongProtocolError(f"answered the TLS handshake, but {last}")
        except WrongProtocolError:
            raise
        except RunError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RunError(f"not ready after {args.start_timeout:.0f} s: {last}")


def measure(args: argparse.Namespace, pb: ModuleType, name: str, scenario: str) -> dict:
    """Start, wait, warm up, load, sample, stop. The numbers, or {'failure': ...}."""
    server, path, port = SERVERS[name], SCENARIOS[scenario], pb.free_port()
    log = args.tmp / f"{name}-{scenario}.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(args.bench), os.environ.get("PYTHONPATH")])
        ),
    }
    result: dict = {"server": name, "scenario": scenario, "port": port, "log": str(log)}
    try:
        argv = server_argv(args, name, scenario, port)
    except OSError as exc:
        return {**result, "failure": f"cannot prepare: {exc}"}
    result["cmd"] = " ".join(argv)
    with log.open("ab") as out:
        out.write(f"\n=== {result['cmd']}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                [args.taskset, "-c", str(args.server_cpu), *argv],
                cwd=args.bench,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            return {**result, "failure": f"cannot start: {exc}"}
    try:
        wait_ready(args, proc, server, port, path)
        time.sleep(0.3)
        if args.warmup:
            run_h2load(h2load_argv(args, server, port, path, "warmup"), args.warmup + 60)
        pids = pb.process_tree(proc.pid)
        core_before = pb.core_ticks(args.server_cpu)
        cpu_before, t0 = pb.sample(pids)[1], time.monotonic()
        numbers, client_cpu = run_h2load(
            h2load_argv(args, server, port, path, "measure"), args.seconds + 60
        )
        elapsed, server_cpu = time.monotonic() - t0, pb.sample(pids)[1] - cpu_before
        busy = pb.core_ticks(args.server_cpu)[0] - core_before[0]
        # busy time of the server's core not charged to the server: other processes on a shared
        # machine (or ksoftirqd); runs above 10% are listed as noisy under the table
        result["core_other_pct"] = round(100 * max(busy - server_cpu, 0) / elapsed, 1)
        result.update(numbers)
        result["server_cpu_pct"] = round(100 * server_cpu / elapsed, 1)
        result["client_cpu_pct"] = round(100 * client_cpu / elapsed, 1)
        result["server_us_per_req"] = round(1e6 * server_cpu / max(numbers["requests"], 1), 1)
        result["processes"] = len(pids)
        why = problem(numbers, server)
        if proc.poll() is not None:
            why = f"exited with code {proc.returncode} during the run"
        if why:
            result["failure"] = why
    except RunError as exc:
        result["failure"] = str(exc)
    finally:
        pb.stop(proc)
    if "failure" in result:
        tail = log_tail(log)
        result["failure"] += f"; log {log}" + (f": {tail}" if tail else "")
    return result


# ---------------------------------------------------------------- report
def median_of(runs: list[dict], name: str, scenario: str) -> float | None:
    rps = [
        r["rps"]
        for r in runs
        if r["server"] == name and r["scenario"] == scenario and "failure" not in r
    ]
    return statistics.median(rps) if rps else None


def report(args: argparse.Namespace, runs: list[dict], cpu: str) -> tuple[str, dict]:
    """The markdown table, with medians and ratios of medians, and the summary for --json."""
    head = (
        "| server | scenario | protocol | req/s median | min-max | x hypercorn | x bare "
        "| server µs/req | server CPU % | client CPU % |"
    )
    lines = [
        f"h2load -c{args.connections} -m{args.streams} -t{args.threads} -D {args.seconds} "
        "over TLS, "
        f"one worker per server on core {args.server_cpu}, client on core {args.client_cpu}, "
        f"{args.rounds} rounds; processor: {cpu}",
        "",
        head,
        "|---" * head.count(" | ") + "|---|",
    ]
    summary: dict = {}
    dash = "—"
    for scenario in args.scenarios:
        base_h, base_b = median_of(runs, "hypercorn", scenario), median_of(runs, "bare", scenario)
        for name in args.servers:
            mine = [r for r in runs if r["server"] == name and r["scenario"] == scenario]
            ok = [r for r in mine if "failure" not in r]
            proto = SERVERS[name].protocol
            if not ok:
                why = mine[0]["failure"] if mine else "not run"
                lines.append(f"| {name} | {scenario} | {proto} | failed: {why} |" + " |" * 6)
                continue
            med = statistics.median(r["rps"] for r in ok)
            row = {
                "rps_median": med,
                "rps_min": min(r["rps"] for r in ok),
                "rps_max": max(r["rps"] for r in ok),
                "rounds_ok": len(ok),
                "rounds_failed": len(mine) - len(ok),
                "x_hypercorn": med / base_h if base_h else None,
                "x_bare": med / base_b if base_b else None,
            }
            for key in ("server_us_per_req", "server_cpu_pct", "client_cpu_pct"):
                row[key] = statistics.median(r[key] for r in ok)
            summary.setdefault(scenario, {})[name] = row
            flag = " ⚑" if row["client_cpu_pct"] >= 95 and row["server_cpu_pct"] < 90 else ""
            cells = [
                name,
                scenario,
                proto,
                f"{med:,.0f}{flag}",
                f"{row['rps_min']:,.0f}-{row['rps_max']:,.0f}",
                dash if row["x_hypercorn"] is None else f"{row['x_hypercorn']:.2f}",
                dash if row["x_bare"] is None else f"{row['x_bare']:.2f}",
                f"{row['server_us_per_req']:.1f}",
                f"{row['server_cpu_pct']:.0f}",
                f"{row['client_cpu_pct']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {name}: {SERVERS[name].note}" for name in args.servers]
    noisy = [
        f"{r['server']}/{r['scenario']} r{r['round']} ({r['core_other_pct']:.0f}%)"
        for r in runs
        if r.get("core_other_pct", 0) > 10
    ]
    if noisy:
        lines.append(
            "- noisy: the server core was >10% busy with work not charged to the server in "
            + ", ".join(noisy)
        )
    lines.append(
        "- ⚑ h2load saturated its core (≥95%) while the server did not (<90%): "
        "that req/s is a lower bound; compare server µs/req."
    )
    return "\n".join(lines), summary


# ---------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma list (default: %(default)s)"
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="hello,json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="measured h2load -D (default 10)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of load first, discarded (0: none)"
    )
    parser.add_argument("--connections", type=int, default=16, help="h2load -c (default 16)")
    parser.add_argument("--streams", type=int, default=32, help="h2load -m (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="h2load -t (default 1)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--start-timeout", type=float, default=30.0)
    parser.add_argument("--peers", type=Path, default=Path(os.environ.get("PEERS", "/opt/peers")))
    parser.add_argument(
        "--bench",
        type=Path,
        default=Path(os.environ.get("BENCH", ROOT.parent / "shared" / "bench")),
    )
    parser.add_argument(
        "--uvhost",
        type=Path,
        default=Path(os.environ.get("UVHOST", ROOT / ".venv" / "bin" / "uvhost")),
    )
    parser.add_argument("--h2load", default="h2load")
    parser.add_argument("--markdown", type=Path, help="write the table here too")
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (configs, certificate, logs)"
    )
    args = parser.parse_args()
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in args.servers if s not in SERVERS] + [
        s for s in args.scenarios if s not in SCENARIOS
    ]
    if unknown or not args.servers or not args.scenarios:
        parser.error(
            f"unknown or no servers/scenarios: {unknown}; servers are {', '.join(SERVERS)}"
        )
    args.h2load, args.taskset = shutil.which(args.h2load), shutil.which("taskset")
    if args.h2load is None or args.taskset is None:
        parser.error("h2load or taskset not found: run benchmarks/setup-peers.sh")
    args.bench = args.bench.resolve()
    return args


def main() -> int:
    args = parse_args()
    pb = load_peerbench(args.bench)
    os.sched_setaffinity(0, {args.client_cpu})  # keep this process off the server's core
    args.tmp = Path(tempfile.mkdtemp(prefix="h2bench-"))
    args.cert, args.key = make_certificate(args.tmp)
    cpu = processor()
    print(
        f"h2bench: {len(args.servers)} servers x {len(args.scenarios)} scenarios "
        f"x {args.rounds} rounds "
        f"on {cpu}; configs and logs in {args.tmp}",
        file=sys.stderr,
    )
    runs: list[dict] = []
    dead: set[tuple[str, str]] = set()
    for scenario in args.scenarios:
        for rnd in range(1, args.rounds + 1):
            for name in args.servers:  # A B C, A B C, ...
                if (name, scenario) in dead:
                    continue
                res = {"round": rnd, **measure(args, pb, name, scenario)}
                runs.append(res)
                if "failure" in res:
                    dead.add((name, scenario))  # not retried in later rounds
                    status = f"FAILED: {res['failure']}"
                else:
                    status = (
                        f"{res['rps']:>9,.0f} req/s  {res['server_us_per_req']:.1f} µs/req  "
                        f"cpu {res['server_cpu_pct']:.0f}%/{res['client_cpu_pct']:.0f}%  "
                        f"other {res['core_other_pct']:.0f}%  {res['protocol']}"
                    )
                print(f"  [{scenario} r{rnd}] {name:<10} {status}", file=sys.stderr, flush=True)
    table, summary = report(args, runs, cpu)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        meta = {
            "processor": cpu,
            "uname": " ".join(os.uname()),
            "argv": sys.argv,
            "tmp": str(args.tmp),
        }
        args.json.write_text(
            json.dumps({"meta": meta, "runs": runs, "summary": summary}, indent=1, default=str)
        )
    failures = [r for r in runs if "failure" in r]
    for r in failures:
        print(
            f"h2bench: FAILED {r['server']} / {r['scenario']} round {r['round']}: {r['failure']}",
            file=sys.stderr,
        )
    if not args.keep and not failures:
        shutil.rmtree(args.tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
