"""A guard over the whole run: tests leave no control sockets and no processes behind.

Why: a host that a test stops without cleanup (SIGKILL) leaves its control
socket in the default folder (`$XDG_RUNTIME_DIR/uvhost`, else
`/tmp/uvhost-$UID`) and may leave workers running; both outlive the run on
a developer's machine and pile up. Nothing fails when that happens, so it
has to be checked.

How:
- The run gets a default folder of its own: `XDG_RUNTIME_DIR` points at a
  fresh 0700 folder, inherited by every `uvhost run` the tests start. Runs
  on the same machine at the same time (other engineers, other checkouts)
  then cannot see each other's sockets, so the check is exact, and the
  user's real runtime folder never gets a test's socket.
- Every test runs with `UVHOST_TEST_ORIGIN` naming the run and the test, and
  every process the test starts inherits it (the supervisor passes its
  environment on to its workers). A process that still carries this run's
  origin at the end was started by this run, even once orphaned, and its
  origin names the test that started it.
- After each test, new files in the default folder are noted with the test's
  id. At the end of the run, leftover files and processes fail the run
  (as an error in the teardown of the last test), naming the tests. The
  leftover processes are then SIGKILLed by PID (they carry our origin, so
  they are ours) and the folder is removed, so one bad run does not break
  the next.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ORIGIN = "UVHOST_TEST_ORIGIN"
RUN = uuid.uuid4().hex[:12]
"""This run's mark in `UVHOST_TEST_ORIGIN`; unique, so concurrent runs never match."""

SETTLE = 15.0
"""Seconds a process may take to finish exiting (a drain, an orphan noticing) before it counts."""

_left_by: dict[str, str] = {}
"""Each file seen in the default folder, by name, with the test after which it appeared."""


def default_folder(runtime: Path) -> Path:
    """The control sockets' default folder under `runtime`, as `control.socket_path` makes it."""
    return runtime / "uvhost"


def _files(folder: Path) -> set[str]:
    try:
        return {entry.name for entry in folder.iterdir()}
    except FileNotFoundError:
        return set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Run each test, fixtures included, with `UVHOST_TEST_ORIGIN` naming it."""
    previous = os.environ.get(ORIGIN)
    os.environ[ORIGIN] = f"{RUN} {item.nodeid}"
    try:
        return (yield)
    finally:
        if previous is None:
            os.environ.pop(ORIGIN, None)
        else:
            os.environ[ORIGIN] = previous


@pytest.fixture(autouse=True)
def note_leftover_files(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test (and, being autouse, after its other fixtures' teardown): note new files."""
    yield
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        for name in _files(default_folder(Path(runtime))) - _left_by.keys():
            _left_by[name] = request.node.nodeid


def _state(pid: int) -> str:
    """The process's state letter ("Z" for a zombie), "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


def _ours() -> dict[int, str]:
    """Live processes of this run other than pytest itself: PID to origin (or a note)."""
    found: dict[int, str] = {}
    me = os.getpid()
    mark = f"{ORIGIN}={RUN} ".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(mark):
                found[int(entry.name)] = variable[len(mark) :].decode(errors="replace")
    for task in Path(f"/proc/{me}/task").iterdir():  # children started with an env of their own
        with contextlib.suppress(OSError):
            for pid in (task / "children").read_text().split():
                found.setdefault(int(pid), "(a child of pytest, origin unknown)")
    return {pid: origin for pid, origin in found.items() if _state(pid) not in ("", "Z")}


def _describe(pid: int, origin: str) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        command = "?"
    return f"  pid {pid} ({command}), started by {origin}"


def leftovers(folder: Path) -> list[str]:
    """What this run left: files in `folder`, processes still alive after SETTLE; one line each.

    Kills the processes it reports (by PID; they carry this run's origin).
    """
    problems = [
        f"  {folder / name}, first seen after {_left_by.get(name, '(unknown test)')}"
        for name in sorted(_files(folder))
    ]
    deadline = time.monotonic() + SETTLE
    while (alive := _ours()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid, origin in sorted(alive.items()):
        problems.append(_describe(pid, origin))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return problems


@pytest.fixture(scope="session", autouse=True)
def leaves_nothing_behind() -> Iterator[None]:
    """Fail the run if its tests leave control sockets or processes behind (see the module)."""
    runtime = Path(tempfile.mkdtemp(prefix="uvh-run-"))  # 0700, short: under sun_path's limit
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(runtime))
        yield
    problems = leftovers(default_folder(runtime))
    shutil.rmtree(runtime, ignore_errors=True)
    if problems:
        pytest.fail(
            "the tests left these behind (a host stopped without cleanup?):\n"
            + "\n".join(problems),
            pytrace=False,
        )
