"""The lifespan protocol against hand-written apps and real Starlette / FastAPI apps."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette

from uvhost.server.lifespan import Lifespan, LifespanFailure


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class Recorder:
    """A well-behaved lifespan app that records what it saw."""

    def __init__(self, *, fail_startup: str = "", fail_shutdown: str = "") -> None:
        self.events: list[str] = []
        self.fail_startup, self.fail_shutdown = fail_startup, fail_shutdown
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        assert scope["type"] == "lifespan"
        message = await receive()
        self.events.append(message["type"])
        if self.fail_startup:
            await send({"type": "lifespan.startup.failed", "message": self.fail_startup})
            return
        scope["state"]["db"] = "connected"
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        self.events.append(message["type"])
        if self.fail_shutdown:
            await send({"type": "lifespan.shutdown.failed", "message": self.fail_shutdown})
        else:
            await send({"type": "lifespan.shutdown.complete"})


async def no_lifespan(scope, receive, send) -> None:
    """An HTTP-only app, as ASGI expects: it raises on a scope type it does not know."""
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope type {scope['type']}\nsecond line")


def test_startup_and_shutdown_with_state():
    app = Recorder()
    lifespan = Lifespan(app, name="site", mode="on")

    async def main() -> None:
        await lifespan.startup(1)
        assert lifespan.running
        assert lifespan.state == {"db": "connected"}
        await lifespan.shutdown(1)
        assert not lifespan.running

    run(main())
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]
    assert app.scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}
    assert app.scope["state"] is lifespan.state


def test_startup_failed_message_becomes_the_failure():
    lifespan = Lifespan(Recorder(fail_startup="database unreachable"), name="api", mode="auto")
    with pytest.raises(LifespanFailure) as caught:
        run(lifespan.startup(1))
    assert caught.value.message == 'app "api": lifespan startup failed: database unreachable'


def test_multi_line_failure_message_keeps_one_line_and_the_detail():
    text = "Traceback (most recent call last):\n  File x\nValueError: no db\n"
    lifespan = Lifespan(Recorder(fail_startup=text), name="api", mode="on")
    with pytest.raises(LifespanFailure) as caught:
        run(lifespan.startup(1))
    assert caught.value.message == 'app "api": lifespan startup failed: ValueError: no db'
    assert caught.value.detail == text


def test_auto_runs_an_app_without_lifespan_support(caplog):
    caplog.set_level(logging.DEBUG, "uvhost.lifespan")
    lifespan = Lifespan(no_lifespan, name="plain", mode="auto")

    async def main() -> None:
        await lifespan.startup(1)
        assert not lifespan.running
        await lifespan.shutdown(1)  # a no-op

    run(main())
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert "does not support lifespan" in record.getMessage()


def test_on_requires_lifespan_support():
    lifespan = Lifespan(no_lifespan, name="plain", mode="on")
    with pytest.raises(LifespanFailure) as caught:
        run(lifespan.startup(1))
    assert caught.value.message == (
        'app "plain": lifespan startup raised ValueError: unsupported scope type lifespan'
    )
    assert isinstance(caught.value.__cause__, ValueError)


async def returns_at_once(scope, receive, send) -> None:
    return None


async def returns_after_receiving(scope, receive, send) -> None:
    await receive()


@pytest.mark.parametrize("app", [returns_at_once, returns_after_receiving])
def test_app_returning_without_completing_startup(app, caplog):
    caplog.set_level(logging.DEBUG, "uvhost.lifespan")
    run(Lifespan(app, name="quiet", mode="auto").startup(1))  # quietly off
    with pytest.raises(LifespanFailure, match="lifespan startup ended without completing"):
        run(Lifespan(app, name="quiet", mode="on").startup(1))


def test_off_never_calls_the_app():
    called = []

    async def app(scope, receive, send) -> None:
        called.append(scope)

    async def main() -> None:
        lifespan = Lifespan(app, name="x", mode="off")
        await lifespan.startup(1)
        await lifespan.shutdown(1)

    run(main())
    assert called == []


def test_startup_timeout_fails_and_cancels_the_app():
    cancelled = []

    async def slow(scope, receive, send) -> None:
        await receive()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        lifespan = Lifespan(slow, name="slow", mode="auto")
        with pytest.raises(LifespanFailure) as caught:
            await lifespan.startup(0.05)
        assert caught.value.message == (
            'app "slow": lifespan startup did not complete within 0.05s'
        )
        await lifespan.shutdown(1)  # nothing left to do

    run(main())
    assert cancelled == [True]


def test_invalid_message_fails_startup_in_auto_too():
    async def confused(scope, receive, send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})

    with pytest.raises(LifespanFailure, match=r"sent 'http\.response\.start'"):
        run(Lifespan(confused, name="c", mode="auto").startup(1))


def test_shutdown_failed_is_logged_not_raised(caplog):
    lifespan = Lifespan(Recorder(fail_shutdown="flush failed"), name="api", mode="on")

    async def main() -> None:
        await lifespan.startup(1)
        await lifespan.shutdown(1)

    run(main())
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == 'app "api": lifespan shutdown failed: flush failed'


def test_shutdown_timeout_cancels_the_task(caplog):
    cancelled = []

    async def stubborn(scope, receive, send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> float:
        lifespan = Lifespan(stubborn, name="stubborn", mode="on")
        await lifespan.startup(1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await lifespan.shutdown(0.05)
        return loop.time() - started

    took = run(main())
    assert cancelled == [True]
    assert took < 1
    [record] = caplog.records
    assert "did not complete within 0.05s" in record.getMessage()


def test_app_lingering_after_shutdown_complete_is_cancelled_at_the_deadline():
    async def lingering(scope, receive, send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        await asyncio.sleep(60)

    async def main() -> bool:
        lifespan = Lifespan(lingering, name="l", mode="on")
        await lifespan.startup(1)
        await lifespan.shutdown(0.05)
        assert lifespan._task is not None
        return lifespan._task.done()

    assert run(main()) is True


def test_exception_after_startup_is_logged_once(caplog):
    async def crashing(scope, receive, send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await asyncio.sleep(0)
        raise RuntimeError("background worker died")

    async def main() -> None:
        lifespan = Lifespan(crashing, name="bg", mode="on")
        await lifespan.startup(1)
        assert lifespan._task is not None
        await asyncio.wait([lifespan._task])
        assert not lifespan.running
        await lifespan.shutdown(1)

    run(main())
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == 'app "bg" raised in its lifespan after startup'
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "background worker died"


# ----------------------------------------------------------- real frameworks


def test_starlette_lifespan_context_manager_and_state():
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("start")
        yield {"pool": "ready"}
        events.append("stop")

    lifespan_runner = Lifespan(Starlette(lifespan=lifespan), name="site", mode="on")

    async def main() -> None:
        await lifespan_runner.startup(2)
        assert lifespan_runner.state == {"pool": "ready"}
        assert events == ["start"]
        await lifespan_runner.shutdown(2)

    run(main())
    assert events == ["start", "stop"]


def test_starlette_startup_error_is_one_line(caplog):
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise ConnectionError("database at db:5432 refused")
        yield

    runner = Lifespan(Starlette(lifespan=lifespan), name="site", mode="auto")
    with pytest.raises(LifespanFailure) as caught:
        run(runner.startup(2))
    message = caught.value.message
    assert "\n" not in message
    assert message.endswith("ConnectionError: database at db:5432 refused")
    assert "Traceback" in caught.value.detail
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # reported once


def test_fastapi_app_runs_through_lifespan():
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("start")
        yield {"models": ["m1"]}
        events.append("stop")

    api = FastAPI(lifespan=lifespan)

    @api.get("/")
    async def index() -> dict[str, str]:
        return {"ok": "yes"}

    runner = Lifespan(api, name="api", mode="auto")

    async def main() -> None:
        await runner.startup(2)
        assert runner.running
        assert runner.state == {"models": ["m1"]}
        await runner.shutdown(2)

    run(main())
    assert events == ["start", "stop"]


def test_fastapi_without_a_lifespan_still_completes():
    runner = Lifespan(FastAPI(), name="api", mode="on")

    async def main() -> None:
        await runner.startup(2)
        assert runner.running
        await runner.shutdown(2)

    run(main())


def test_auto_warns_when_an_app_crashes_after_taking_the_startup_message(caplog):
    async def crashes(scope, receive, send) -> None:
        await receive()
        raise OSError("cache directory missing")

    run(Lifespan(crashes, name="c", mode="auto").startup(1))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert 'app "c" raised during lifespan startup' in record.getMessage()
    assert record.exc_info is not None


def test_app_returning_during_shutdown_is_a_warning(caplog):
    async def leaves(scope, receive, send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()

    async def main() -> None:
        lifespan = Lifespan(leaves, name="l", mode="on")
        await lifespan.startup(1)
        await lifespan.shutdown(1)

    run(main())
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == 'app "l": lifespan shutdown ended without completing'
