"""The long fuzz of uvhost's HTTP/1.1 path, by hand: requests, responses, or both.

Why: the CI tests (`tests/server/test_fuzz_requests.py`,
`test_fuzz_responses.py`) run a few hundred examples each; bugs that need
a particular path through the parser and the exchange need millions. This
runs the same generators and the same checks against one real host on
127.0.0.1 (no other traffic), for `--seconds`:

- `--engine atheris` (default when installed: `pip install -e '.[fuzz]'`):
  coverage-guided. uvhost's server modules are instrumented; libFuzzer
  mutates the bytes that drive the grammar's choices and keeps inputs that
  reach new code in `--corpus` (a folder; reused across runs).
- `--engine random`: the same grammar from `random.Random(--seed)`, no
  coverage feedback. Needs nothing beyond the test extra.

Every `--report` seconds it prints inputs executed, inputs/s, the corpus and
coverage (atheris) or the distinct outcomes seen (random), the process RSS and
the findings so far. A finding is an invariant that failed with no
STRICTER entry covering it; each distinct one is printed
once, with the pieces sent and the bytes written back, and appended to
`--findings` (default `fuzz-findings.txt` in the current folder).

    .venv/bin/python benchmarks/fuzz_http.py --seconds 1800 --target both
    .venv/bin/python benchmarks/fuzz_http.py --engine random --seconds 60 --seed 7
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "server"))
sys.path.insert(0, str(ROOT / "host"))

import fuzzkit  # noqa: E402  - found through the path set just above

MEMORY_BOUND_MIB = 512  # RSS growth beyond this is a finding (memory must stay bounded)


class Run:
    """One host per target, the checks, and the running tally."""

    def __init__(self, targets: list[str], findings_path: Path) -> None:
        self.harness = fuzzkit.load("conftest")
        self.requests = fuzzkit.load("test_fuzz_requests")
        self.responses = fuzzkit.load("test_fuzz_responses") if "responses" in targets else None
        self.directory = Path(tempfile.mkdtemp(prefix="uvhost-fuzz-"))
        self.hosts: dict[str, Any] = {}
        self.fuzz: dict[str, fuzzkit.FuzzHost] = {}
        for target in targets:
            module = self.requests if target == "requests" else self.responses
            assert module is not None
            host = self.harness.start_host(self.directory / target, module.CONFIG, module.APPS)
            self.hosts[target] = host
            apps = host.module
            self.fuzz[target] = fuzzkit.FuzzHost(host, lambda apps=apps: apps.calls)
        self.targets = targets
        self.executed = 0
        self.covered = 0  # covered by STRICTER entries
        self.seen: Counter[str] = Counter()
        self.findings: dict[str, str] = {}
        self.findings_path = findings_path
        self.rss_start = _rss_mib()
        self.started = time.monotonic()

    def one(self, draw: fuzzkit.Draw) -> None:
        target = self.targets[0] if len(self.targets) == 1 else fuzzkit.pick(draw, self.targets)
        try:
            if target == "requests":
                outcome = self.fuzz[target].exchange(self.requests.request_stream(draw))
                findings = self.requests.check(outcome)
                text = self.requests.report
            else:
                assert self.responses is not None
                outcome, findings = self.responses.run_example(self.fuzz[target], draw)
                text = self.responses.report
        except Exception:  # noqa: BLE001 - the harness's own failure is a finding, not a stop
            key = f"{target}:harness:{traceback.format_exc().splitlines()[-1]}"
            if key not in self.findings:
                self.findings[key] = traceback.format_exc()
                self._write(key, self.findings[key])
            return
        self.executed += 1
        for finding in findings:
            covered_by = getattr(finding, "covered_by", "")  # only the request test allows any
            self.seen[f"{target}:{finding.invariant}:{covered_by}"] += 1
            if covered_by:
                self.covered += 1
                continue
            key = f"{target}:{finding.invariant}:{_shape(finding.detail)}"
            if key not in self.findings:
                self.findings[key] = text(outcome, findings)
                self._write(key, self.findings[key])
        grown = _rss_mib() - self.rss_start
        if grown > MEMORY_BOUND_MIB and "memory" not in self.findings:
            self.findings["memory"] = f"RSS grew by {grown} MiB after {self.executed} inputs"
            self._write("memory", self.findings["memory"])

    def _write(self, key: str, text: str) -> None:
        print(f"\n*** finding {key}\n{text}\n", flush=True)
        with self.findings_path.open("a", encoding="utf-8") as out:
            out.write(f"## {key}\n\n```\n{text}\n```\n\n")

    def progress(self, extra: str = "") -> None:
        elapsed = time.monotonic() - self.started
        rate = self.executed / elapsed if elapsed else 0.0
        print(
            f"[{elapsed:7.0f}s] inputs {self.executed} ({rate:.0f}/s) {extra}"
            f" rss {_rss_mib()} MiB (+{_rss_mib() - self.rss_start})"
            f" covered {self.covered} findings {len(self.findings)}",
            flush=True,
        )

    def close(self) -> None:
        for fuzz in self.fuzz.values():
            fuzz.close()
        for host in self.hosts.values():
            host.stop()


def _shape(detail: str) -> str:
    """A finding's kind without its particulars, so one bug is reported once."""
    words = detail.split(";")[0].split()
    return " ".join(word for word in words[:8] if not any(ch.isdigit() for ch in word))[:120]


def _rss_mib() -> int:
    resident = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE") // (1 << 20)


def run_random(run: Run, seconds: float, seed: int, every: float) -> None:
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    next_report = time.monotonic() + every
    while time.monotonic() < deadline:
        run.one(fuzzkit.RandomDraw(rng))
        if time.monotonic() >= next_report:
            run.progress(f"outcomes {len(run.seen)}")
            next_report += every


class AtherisDraw:
    """Choices from libFuzzer's bytes: mutating them walks the grammar's branches."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def integer(self, low: int, high: int) -> int:
        return int(self.provider.ConsumeIntInRange(low, high))

    def raw(self, max_size: int) -> bytes:
        size = self.provider.ConsumeIntInRange(0, max_size)
        return bytes(self.provider.ConsumeBytes(size))


def run_atheris(run: Run, seconds: float, corpus: Path, every: float, seed: int) -> None:
    import atheris  # the fuzz extra

    corpus.mkdir(parents=True, exist_ok=True)
    next_report = [time.monotonic() + every]
    deadline = time.monotonic() + seconds

    def one_input(data: bytes) -> None:
        run.one(AtherisDraw(atheris.FuzzedDataProvider(data)))
        now = time.monotonic()
        if now >= next_report[0]:
            run.progress()
            next_report[0] += every
        if now >= deadline:  # libFuzzer ends with exit(), past our summary: end here
            finish(run)
            sys.stdout.flush()
            os._exit(1 if run.findings else 0)

    argv = [
        sys.argv[0],
        f"-max_total_time={int(seconds) + 60}",
        f"-seed={seed}",
        "-max_len=4096",
        "-timeout=30",
        "-print_final_stats=1",
        "-print_pcs=0",
        str(corpus),
    ]
    atheris.Setup(argv, one_input)
    with contextlib.suppress(SystemExit):
        atheris.Fuzz()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--target", choices=["requests", "responses", "both"], default="both")
    parser.add_argument("--engine", choices=["atheris", "random"], default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=Path("fuzz-corpus"))
    parser.add_argument("--findings", type=Path, default=Path("fuzz-findings.txt"))
    parser.add_argument("--report", type=float, default=10.0, help="seconds between lines")
    options = parser.parse_args()
    engine = options.engine
    if engine is None:
        try:
            import atheris
        except ImportError:
            engine = "random"
        else:
            engine = "atheris"
    targets = ["requests", "responses"] if options.target == "both" else [options.target]
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["uvhost", "h11"]):
            import_server: Callable[[], None] = _import_server
            import_server()
    run = Run(targets, options.findings)
    print(f"engine {engine}, targets {targets}, {options.seconds:.0f} s", flush=True)
    try:
        if engine == "atheris":
            run_atheris(run, options.seconds, options.corpus, options.report, options.seed)
        else:
            run_random(run, options.seconds, options.seed, options.report)
    finally:
        finish(run)
    sys.exit(1 if run.findings else 0)


def finish(run: Run) -> None:
    """The last progress line, every outcome seen, the findings; the hosts stopped."""
    run.progress(f"outcomes {dict(run.seen)}")
    run.close()
    print(f"findings: {len(run.findings)} (written to {run.findings_path})")
    for key in run.findings:
        print(f"  {key}")


def _import_server() -> None:
    """uvhost's server modules, imported under atheris's instrumentation."""
    import uvhost.server.exchange
    import uvhost.server.http
    import uvhost.server.wire
    import uvhost.server.worker  # noqa: F401


if __name__ == "__main__":
    main()
