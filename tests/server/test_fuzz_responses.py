"""Fuzzing what apps send: random ASGI message sequences, checked on the wire.

The app runs a generated program: `http.response.start` with random statuses
and headers (content-length right and wrong, transfer-encoding, connection,
server, date, duplicates, bad characters), `http.response.body` chunks with
and without `more_body`, messages out of order or of the wrong type,
exceptions, early returns, and sends after the client left. A second,
well-behaved request is pipelined behind it on the same connection. Per
example, on one reused host with a new connection:

- the bytes on the wire parse (h11 as a client, plus one Content-Length, never
  beside Transfer-Encoding, one Server, one Date) as exactly one response to
  the program's request, or as nothing or a 500 and a close;
- the framing is what the head promises: the body matches its length or its
  chunks, and HEAD, 204 and 304 carry none;
- a response cut short, or one that says `connection: close`, ends the
  connection, and nothing follows it;
- when the connection is kept, the pipelined request behind it is answered
  correctly, and nothing else is written;
- a program the ASGI spec allows gets exactly its status, headers and body;
  one that faults before its head was written gets a 500 (or a close), one
  that faults after it a cut-short response and a close;
- nothing but app faults is logged.

Any finding fails the test: there is no allow-list here.
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # removed again below
try:
    import fuzzkit
finally:
    sys.path.pop(0)

from fuzzkit import Draw, Outcome, chance, pick

APPS = r'''
import asyncio

programs = {}  # key -> (steps, swallow): what /p/KEY runs
calls = {}  # client port -> [call, ...]


async def script(scope, receive, send):
    """Runs the program its path names; /ok is the well-behaved request behind it."""
    log = calls.setdefault(scope["client"][1], [])
    call = {"index": len(log), "conn": id(scope["client"]), "state": "run", "events": []}
    log.append(call)
    try:
        if scope["path"] == "/ok":
            await _ok(receive, send)
        else:
            steps, swallow = programs.pop(scope["path"].rsplit("/", 1)[-1])
            await _run(steps, swallow, call, receive, send)
    finally:
        call["state"] = "done"


async def _ok(receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _run(steps, swallow, call, receive, send):
    events = call["events"]
    for step in steps:
        kind = step[0]
        if kind == "raise":
            raise RuntimeError("the program raises")
        if kind == "return":
            return
        if kind == "sleep":
            await asyncio.sleep(0)
        elif kind in ("receive", "wait"):
            call["state"] = "receive"
            message = await receive()
            while kind == "wait" and message["type"] != "http.disconnect":
                message = await receive()
            call["state"] = "run"
            events.append(("received", message["type"]))
        else:  # a message to send
            try:
                await send(step[1])
            except Exception as error:
                events.append(("raised", type(error).__name__))
                if not swallow:
                    raise
            else:
                events.append(("sent", step[1]["type"]))
'''

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
app = "script"

[apps.script]
target = "apps:script"
lifespan = "off"
"""

# --------------------------------------------------------------- the programs

STATUSES: list[Any] = [200] * 6 + [201, 204, 206, 301, 304, 400, 404, 418, 500, 503, 299, 599]
BAD_STATUSES: list[Any] = [100, 101, 103, 199, 600, 0, -1, 1000, "200", "abc", None]
HEADERS: list[tuple[Any, Any]] = [
    (b"content-type", b"text/plain"),
    (b"x-a", b"1"),
    (b"X-Mixed-Case", b"Value"),
    (b"x-tab", b"a\tb"),
    (b"x-obs", b"\xe9t\xe9"),
    (b"x-empty", b""),
    (b"set-cookie", b"a=1"),
    (b"set-cookie", b"b=2"),
    (b"server", b"app-server"),
    (b"Date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
    (b"connection", b"close"),
    (b"connection", b"keep-alive"),
    (b"Connection", b"Upgrade, Close"),
    (b"transfer-encoding", b"chunked"),
    (b"transfer-encoding", b"gzip"),
    (b"content-length", b"abc"),
    (b"content-length", b"-1"),
    (b"content-length", b" 7 "),
]
BAD_HEADERS: list[tuple[Any, Any]] = [
    (b"x-bad", b"a\r\nset-cookie: injected=1"),
    (b"x-bad", b"a\nb"),
    (b"x-bad", b"\x00"),
    (b"x-bad", b"a\x7fb"),
    (b"bad name", b"1"),
    (b"", b"empty name"),
    (b"x:colon", b"1"),
    ("x-str", "str, not bytes"),
    (b"x-int", 1),
]
CHUNKS = [b"", b"a", b"hello", b"\r\n", b"0\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 70000]
WRONG_MESSAGES: list[dict[str, Any]] = [
    {"type": "http.response.bogus"},
    {"type": "http.request"},
    {"type": "websocket.send", "text": "hi"},
    {"type": "http.response.body", "body": "a str body"},
    {"type": "http.response.body", "body": b"x", "more_body": "yes"},
    {"type": "http.response.start", "status": 200, "headers": [(b"x", b"y", b"z")]},
    {"type": "http.response.start", "status": 200, "headers": None},
    {"type": "http.response.start"},
    {"type": "http.response.trailers", "headers": []},
]


@dataclass
class Program:
    """What the app does for one request, and what the request was."""

    method: bytes
    version: bytes
    steps: list[tuple[Any, ...]]
    swallow: bool  # the app catches what send raises and goes on
    pipelined: bool  # a well-behaved GET /ok follows on the same connection
    split: bool  # the two requests arrive in two reads
    key: str = ""
    events: list[tuple[str, str]] = field(default_factory=list)  # what the app saw, once run


def _start(draw: Draw, body_size: int) -> dict[str, Any]:
    status = pick(draw, STATUSES) if not chance(draw, 10) else pick(draw, BAD_STATUSES)
    headers = [pick(draw, HEADERS) for _ in range(draw.integer(0, 4))]
    if chance(draw, 40):  # a content-length, right most of the time
        length = body_size if not chance(draw, 25) else max(0, body_size + draw.integer(-3, 3))
        headers.insert(draw.integer(0, len(headers)), (b"content-length", b"%d" % length))
        if chance(draw, 10):
            headers.append((b"Content-Length", b"%d" % (length + draw.integer(0, 1))))
    if chance(draw, 8):
        headers.append(pick(draw, BAD_HEADERS))
    return {"type": "http.response.start", "status": status, "headers": headers}


def program(draw: Draw) -> Program:
    """A mostly valid response program, then damage: extra, missing or wrong messages,
    exceptions, early returns, waits for the disconnect."""
    chunks = [pick(draw, CHUNKS[:-1]) for _ in range(draw.integer(1, 4))]
    if chance(draw, 5):
        chunks.append(CHUNKS[-1])
    steps: list[tuple[Any, ...]] = [("receive",)] if chance(draw, 60) else []
    steps.append(("send", _start(draw, sum(map(len, chunks)))))
    for index, chunk in enumerate(chunks):
        more = index < len(chunks) - 1
        message: dict[str, Any] = {"type": "http.response.body", "body": chunk}
        if more or chance(draw, 50):
            message["more_body"] = more
        steps.append(("send", message))
        if chance(draw, 15):
            steps.append(("sleep",))
    for _ in range(draw.integer(0, 2) if chance(draw, 35) else 0):
        at = draw.integer(0, len(steps))
        damage = draw.integer(0, 5)
        if damage == 0:
            steps.insert(at, ("raise",))
        elif damage == 1:
            steps.insert(at, ("return",))
        elif damage == 2:
            steps.insert(at, ("send", pick(draw, WRONG_MESSAGES)))
        elif damage == 3 and at < len(steps):
            del steps[at]
        elif damage == 4 and at < len(steps):
            steps.insert(at, steps[at])  # a message sent twice
        else:  # the client leaves mid-response; the app sends after it noticed
            steps.insert(min(at, len(steps) - 1) or 1, ("wait",))
    return Program(
        method=pick(draw, [b"GET"] * 4 + [b"HEAD", b"POST"]),
        version=b"HTTP/1.1" if not chance(draw, 15) else b"HTTP/1.0",
        steps=steps,
        swallow=chance(draw, 20),
        pipelined=chance(draw, 70),
        split=chance(draw, 30),
    )


# ------------------------------------------------------------------ the model

CLEAN, BEFORE_HEAD, AFTER_HEAD, AFTER_DONE, UNKNOWN = (
    "clean",
    "fault before the head",
    "fault after the head",
    "fault after the response",
    "unknown",
)


@dataclass
class Expected:
    kind: str
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    waits: bool = False  # the program waits for the client to leave before it ends


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _status(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        status = int(value)
    except ValueError:
        return None
    return status if 200 <= status <= 599 else None


def _headers_fault(headers: Any) -> bool:
    """Whether the head cannot be written: bad names or values, lengths that disagree,
    a length beside transfer-encoding (wire.py's rules)."""
    lengths = set()
    encoded = False
    for pair in headers:
        if len(pair) != 2 or not all(isinstance(part, bytes) for part in pair):
            return True
        name, value = pair
        if not _TOKEN.fullmatch(name) or _CTL.search(value):
            return True
        if name.lower() == b"content-length":
            if not value.strip().isdigit():
                return True
            lengths.add(int(value))
        elif name.lower() == b"transfer-encoding":
            encoded = True
    return len(lengths) > 1 or bool(lengths and encoded)


def expect(prog: Program) -> Expected:  # noqa: PLR0911, PLR0912 - one branch per ASGI rule
    """What a correct server writes for this program: the ASGI spec and wire.py's rules,
    walked message by message. UNKNOWN where the app goes on after an error it caught
    or the client left first."""
    phase, status, headers, declared = "start", 0, [], -1
    body: list[bytes] = []
    waits = delivered = bad_head = False
    for step in prog.steps:
        kind = step[0]
        if kind == "receive" and phase != "done" and not delivered:
            delivered = True  # the request's body (small: one message)
            continue
        if kind in ("receive", "wait"):  # blocks until the client leaves, unless done
            waits = True
            if phase != "done":
                return Expected(UNKNOWN, waits=True)
            continue
        if kind == "return":
            break
        if kind == "raise":
            if phase == "done":
                return Expected(AFTER_DONE, status, headers, b"".join(body), waits)
            return _fault(phase, status, headers, body)
        if kind != "send":
            continue
        message = step[1]
        if phase == "done":  # anything sent after the end raises in the app
            if prog.swallow:
                continue
            return Expected(AFTER_DONE, status, headers, b"".join(body), waits)
        wanted = "http.response.start" if phase == "start" else "http.response.body"
        if message.get("type") != wanted:
            return Expected(UNKNOWN) if prog.swallow else _fault(phase, status, headers, body)
        if phase == "start":
            status = _status(message.get("status")) or 0
            if not status:  # checked at once
                return Expected(UNKNOWN) if prog.swallow else Expected(BEFORE_HEAD)
            headers = message.get("headers") or []
            bad_head = not isinstance(headers, list) or _headers_fault(headers)
            if bad_head:  # checked with the first body, when the head is built
                headers = []
            phase = "head"
            continue
        if bad_head:
            return Expected(UNKNOWN) if prog.swallow else Expected(BEFORE_HEAD)
        if phase == "head":
            lengths = [int(v) for n, v in headers if n.lower() == b"content-length"]
            declared = lengths[0] if lengths else -1
        chunk, more = message.get("body", b""), message.get("more_body", False)
        if not isinstance(chunk, bytes) or not isinstance(more, bool):
            return Expected(UNKNOWN)
        allowed = prog.method != b"HEAD" and status not in (204, 304)
        if allowed:
            body.append(chunk)
        total = sum(map(len, body))
        if allowed and declared >= 0 and total > declared:
            return Expected(UNKNOWN) if prog.swallow else _fault(phase, status, headers, body)
        phase = "body"
        if not more:
            if allowed and 0 <= declared != total:
                return Expected(AFTER_HEAD, status, waits=waits)  # written short, then closed
            phase = "done"
    if phase != "done":
        return _fault(phase, status, headers, body)
    return Expected(CLEAN, status, headers, b"".join(body), waits)


def _fault(phase: str, status: int, headers: Any, body: list[bytes]) -> Expected:
    if phase in ("start", "head"):
        return Expected(BEFORE_HEAD)
    return Expected(AFTER_HEAD, status, headers, b"".join(body))


# ---------------------------------------------------------------- the checks


@dataclass
class Finding:
    invariant: str
    detail: str


APP_FAULTS = (  # what uvhost logs for an app's fault: expected here, and nothing else
    "exception in ASGI app",
    "invalid response",
    "ASGI app returned",
    "ASGI app sent",
    "response ended after",
    "response body longer than",
)
PROGRAM_END_LIMIT = 1.0
"""Seconds a program may take to end once its client left (it has nothing left to wait
for but the http.disconnect). Generous for a loaded CI machine; a program still
running after it is a finding."""


def check(prog: Program, outcome: Outcome, call: dict[str, Any] | None) -> list[Finding]:
    """Every invariant for one example (uncovered and covered alike)."""
    prog.events = list(call["events"]) if call is not None else []
    findings = [
        Finding("log", fuzzkit.describe(record))
        for record in outcome.logs
        if not record.getMessage().startswith(APP_FAULTS)
    ]
    if not outcome.quiet:
        findings.append(Finding("quiet", "the server was not quiet in time"))
    methods = [prog.method, b"GET"]
    expected = expect(prog)
    waiting = bool(outcome.calls) and outcome.calls[0]["state"] == "receive"
    try:
        responses, rest = fuzzkit.read_responses(
            outcome.wire,
            outcome.closed,
            lambda index, head: (methods[min(index, 1)],),
            in_progress=waiting,
        )
    except fuzzkit.WireError as error:
        findings.append(Finding("wire", str(error)))
        return findings
    if rest:
        findings.append(Finding("wire", f"bytes after the last response: {rest[:200]!r}"))
    findings += _check_sequence(prog, outcome, responses, waiting)
    findings += _check_model(prog, outcome, responses)
    if call is not None and call["state"] != "done":
        findings.append(Finding("disconnect", "the app never saw http.disconnect once we left"))
    if call is not None and expected.kind == UNKNOWN and expected.waits:
        events = call["events"]
        waited = [i for i, event in enumerate(events) if event == ("received", "http.disconnect")]
        if waited and any(event[0] == "sent" for event in events[waited[0] :]):
            findings.append(Finding("disconnect", f"send after the disconnect returned: {events}"))
    return findings


def _check_sequence(
    prog: Program, outcome: Outcome, responses: list[fuzzkit.Response], waiting: bool
) -> list[Finding]:
    """One answer to the program's request; the pipelined one after it only if kept."""
    findings = []
    if len(responses) > 1 + prog.pipelined:
        findings.append(Finding("count", f"{len(responses)} responses to {1 + prog.pipelined}"))
    if responses:
        first = responses[0]
        if (not first.complete or not first.keep_alive) and not outcome.closed and not waiting:
            findings.append(Finding("close", "a cut-short or closing response, left open"))
        if (not first.complete or not first.keep_alive) and len(responses) > 1:
            findings.append(Finding("count", "a response after a closing one"))
        if len(responses) > 1:
            second = responses[1]
            if (second.status, second.body, second.complete) != (200, b"ok", True):
                findings.append(Finding("pipelined", f"second response {second.status}"))
    return findings


def _check_model(  # noqa: PLR0911 - one return per kind of expected outcome
    prog: Program, outcome: Outcome, responses: list[fuzzkit.Response]
) -> list[Finding]:
    """The first response against what the program should produce."""
    expected = expect(prog)
    first = responses[0] if responses else None
    if expected.kind == UNKNOWN or (first is not None and not first.complete and expected.waits):
        return []
    if expected.kind == BEFORE_HEAD:
        if first is None and outcome.closed:
            return []
        if first is None or first.status != 500 or not outcome.closed:
            got = first and first.status
            return [Finding("model", f"{expected.kind}: wanted a 500 and a close, got {got}")]
        return []
    if first is None:
        return [Finding("model", f"{expected.kind}: no response at all")]
    findings = []
    if first.status != expected.status:
        findings.append(Finding("model", f"status {first.status}, wanted {expected.status}"))
    if expected.kind == AFTER_HEAD:
        if not outcome.closed:
            findings.append(Finding("model", "a faulty response, and the connection kept"))
        if first.complete and first.keep_alive and len(responses) > 1:
            findings.append(Finding("model", "a faulty response read as whole, and more"))
        return findings
    if not first.complete or first.body != expected.body:
        findings.append(
            Finding("model", f"body {first.body[:60]!r}, wanted {expected.body[:60]!r}")
        )
    findings += _check_headers(expected, first)
    keep = not any(
        name.lower() == b"connection" and b"close" in value.lower()
        for name, value in expected.headers
    )
    if keep and prog.version == b"HTTP/1.1" and not first.keep_alive:
        findings.append(Finding("model", "connection closed though nobody asked"))
    if (
        expected.kind == CLEAN
        and prog.pipelined
        and first.keep_alive
        and not expected.waits
        and len(responses) < 2
    ):
        findings.append(Finding("pipelined", "the pipelined request was not answered"))
    return findings


OURS = (b"content-length", b"transfer-encoding", b"connection", b"server", b"date")


def _check_headers(expected: Expected, got: fuzzkit.Response) -> list[Finding]:
    """The app's own headers come out as sent (names lower-cased by h11, order kept);
    its Server and Date replace ours."""
    wanted = [(n.lower(), v) for n, v in expected.headers if n.lower() not in OURS]
    have = [(n, v) for n, v in got.headers if n not in OURS]
    findings = []
    if have != wanted:
        findings.append(Finding("headers", f"app headers {have}, wanted {wanted}"))
    for name in (b"server", b"date"):
        own = [v for n, v in expected.headers if n.lower() == name]
        if own and got.header(name) != own[0]:
            findings.append(Finding("headers", f"{name!r} is {got.header(name)!r}, not {own[0]!r}"))
    return findings


# ----------------------------------------------------------------- a run


_keys = itertools.count()


def run_example(host: fuzzkit.FuzzHost, draw: Draw) -> tuple[Outcome, list[Finding]]:
    """One program on one new connection: run it, wait for the app, check it all."""
    prog = program(draw)
    prog.key = f"k{next(_keys)}"
    host.host.module.programs[prog.key] = (prog.steps, prog.swallow)
    body = b"0123456789" if prog.method == b"POST" else b""
    first = b"%s /p/%s %s\r\nHost: fuzz\r\n" % (prog.method, prog.key.encode(), prog.version)
    if body:
        first += b"Content-Length: %d\r\n" % len(body)
    first += b"\r\n" + body
    second = b"GET /ok HTTP/1.1\r\nHost: fuzz\r\n\r\n" if prog.pipelined else b""
    pieces = [first, second] if prog.split else [first + second]
    outcome = host.exchange([piece for piece in pieces if piece])
    outcome.note = f"program: {prog.steps!r} swallow={prog.swallow}"
    call = _program_call(host, outcome)
    return outcome, check(prog, outcome, call)


def _program_call(host: fuzzkit.FuzzHost, outcome: Outcome) -> dict[str, Any] | None:
    """The program's call once it has ended (the client has gone by now), bounded."""
    deadline = time.monotonic() + PROGRAM_END_LIMIT
    while True:
        calls = [c for c in host.calls().get(outcome.port, []) if c["conn"] == host.connection]
        if not calls:
            return None
        if calls[0]["state"] == "done" or time.monotonic() > deadline:
            return {**calls[0], "events": list(calls[0]["events"])}
        time.sleep(0.001)


def report(outcome: Outcome, findings: list[Finding]) -> str:
    lines = [outcome.note, f"pieces: {outcome.pieces!r}", f"wire: {outcome.wire[:2000]!r}"]
    lines += [f"closed: {outcome.closed}", f"calls: {outcome.calls}"]
    lines += [f"{f.invariant}: {f.detail}" for f in findings]
    return "\n".join(lines)


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def fuzz_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzzkit.FuzzHost]:
    with fuzzkit.serving(tmp_path_factory.mktemp("fuzz") / "host", CONFIG, APPS) as running:
        yield running


FUZZ = fuzzkit.ci_settings(600)


def test_response_programs(fuzz_host: fuzzkit.FuzzHost) -> None:
    """Random ASGI message sequences: every invariant, every example."""

    @FUZZ
    @given(st.data())
    def one(data: st.DataObject) -> None:
        outcome, findings = run_example(fuzz_host, fuzzkit.HypothesisDraw(data))
        assert not findings, report(outcome, findings)

    one()
    assert fuzz_host.settle(1.0) == 0, "connections left open after their clients left"


def test_known_programs(fuzz_host: fuzzkit.FuzzHost) -> None:
    """Fixed programs, so every check is seen to bite (and the harness to work)."""
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]}
    good = Program(
        b"GET",
        b"HTTP/1.1",
        [("send", start), ("send", {"type": "http.response.body", "body": b"hi"})],
        swallow=False,
        pipelined=True,
        split=False,
    )
    assert expect(good) == Expected(CLEAN, 200, [(b"x-a", b"1")], b"hi")
    outcome, findings = _run_fixed(fuzz_host, good)
    assert not findings, report(outcome, findings)
    assert outcome.wire.count(b"HTTP/1.1 200 OK") == 2
    broken = Program(b"GET", b"HTTP/1.1", [("send", start), ("raise",)], False, True, False)
    outcome, findings = _run_fixed(fuzz_host, broken)
    assert not findings, report(outcome, findings)
    assert outcome.wire.startswith(b"HTTP/1.1 500 ")
    assert outcome.closed


def _run_fixed(host: fuzzkit.FuzzHost, prog: Program) -> tuple[Outcome, list[Finding]]:
    prog.key = f"k{next(_keys)}"
    host.host.module.programs[prog.key] = (prog.steps, prog.swallow)
    request = b"GET /p/%s HTTP/1.1\r\nHost: fuzz\r\n\r\n" % prog.key.encode()
    request += b"GET /ok HTTP/1.1\r\nHost: fuzz\r\n\r\n" if prog.pipelined else b""
    outcome = host.exchange([request])
    return outcome, check(prog, outcome, _program_call(host, outcome))
