"""Importing apps: targets, factories, ASGI 2/3 detection and the errors users see."""

import asyncio
import functools
import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from uvhost.server.apps import (
    AppLoadError,
    ASGI2Adapter,
    WsgiAdapter,
    detect_interface,
    load_app,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def isolated_imports(tmp_path):
    """Undo what importing test modules and examples did to sys.path and sys.modules."""
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file.startswith((str(tmp_path), str(EXAMPLES))):
            del sys.modules[name]


def write(tmp_path: Path, source: str, name: str = "") -> str:
    """Write a module into tmp_path under a name unique to this test; return the name."""
    name = name or f"m_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    return name


def load(tmp_path: Path, target: str, **options: Any):
    options = {"factory": False, "interface": "auto", **options}
    return load_app(target, app_dir=tmp_path, **options)


def error(tmp_path: Path, target: str, **options: Any) -> AppLoadError:
    with pytest.raises(AppLoadError) as caught:
        load(tmp_path, target, **options)
    assert "\n" not in caught.value.message
    assert "\n" not in caught.value.hint
    return caught.value


def serve(app, path: str = "/") -> list[dict[str, Any]]:
    """Run one HTTP connection through an ASGI 3 app in memory; return what it sent."""
    sent: list[dict[str, Any]] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "GET", "path": path}, receive, send))
    return sent


ECHO = """
async def app(scope, receive, send):
    await send({"type": "echo", "path": scope["path"], "got": (await receive())["type"]})
"""


def test_asgi3_function_is_returned_as_is(tmp_path):
    name = write(tmp_path, ECHO)
    app = load(tmp_path, f"{name}:app")
    assert app is sys.modules[name].app
    assert serve(app, "/x") == [{"type": "echo", "path": "/x", "got": "http.request"}]


def test_asgi3_instance_with_async_call(tmp_path):
    name = write(
        tmp_path,
        """
        class App:
            async def __call__(self, scope, receive, send):
                await send({"type": "echo", "path": scope["path"]})

        app = App()
    """,
    )
    app = load(tmp_path, f"{name}:app")
    assert app is sys.modules[name].app
    assert serve(app) == [{"type": "echo", "path": "/"}]


def test_asgi2_class_is_adapted_and_runs(tmp_path):
    name = write(
        tmp_path,
        """
        class App:
            def __init__(self, scope):
                self.scope = scope

            async def __call__(self, receive, send):
                message = await receive()
                await send({"type": "echo", "path": self.scope["path"], "got": message["type"]})
    """,
    )
    app = load(tmp_path, f"{name}:App")
    assert isinstance(app, ASGI2Adapter)
    assert serve(app, "/two") == [{"type": "echo", "path": "/two", "got": "http.request"}]


async def _three(scope, receive, send): ...
def _sync_three(scope, receive, send): ...
def _one(scope): ...
def _two(scope, receive): ...
def _wsgi(environ, start_response): ...
def _falcon_style(env, start_response): ...
async def _async_wsgi_names(environ, start_response): ...


class _WsgiObject:  # Flask, Django's WSGIHandler, Bottle, Pyramid name them so
    def __call__(self, environ, start_response): ...


class _Asgi2: ...


class _AwaitableAsgi3:
    def __init__(self, scope, receive, send): ...
    def __await__(self): ...


class _AsyncCall:
    async def __call__(self, scope, receive, send): ...


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (_three, "asgi3"),
        (_sync_three, "asgi3"),
        (functools.partial(_three), "asgi3"),
        (_AsyncCall(), "asgi3"),
        (_AwaitableAsgi3, "asgi3"),
        (_one, "asgi2"),
        (_Asgi2, "asgi2"),
        (_wsgi, "wsgi"),
        (_falcon_style, "wsgi"),
        (_WsgiObject(), "wsgi"),
        (functools.partial(_wsgi), "wsgi"),
        (_async_wsgi_names, "asgi3"),  # a coroutine is never WSGI, whatever the names
    ],
)
def test_detect_interface(app, expected):
    assert detect_interface(app) == expected


def test_detect_interface_refuses_to_guess():
    with pytest.raises(AppLoadError) as caught:
        detect_interface(_two, "m:app")
    assert caught.value.kind == "interface"
    assert caught.value.message == (
        '"m:app" takes 2 positional parameters (scope, receive), not named '
        "(environ, start_response)"
    )
    assert caught.value.hint == 'if it is a WSGI app, set interface = "wsgi"'


def test_an_explicit_wsgi_interface_wraps_the_app_with_its_pool(tmp_path):
    name = write(tmp_path, "def app(a, b):\n    return []\n")
    assert error(tmp_path, f"{name}:app").kind == "interface"  # auto does not guess
    app = load(tmp_path, f"{name}:app", interface="wsgi", threads=3, max_queued=2)
    assert isinstance(app, WsgiAdapter)
    assert app.app is sys.modules[name].app
    assert (app.pool.size, app.pool.limit) == (3, 5)
    assert app.pool._threads == []  # started by requests, not by loading (the probe)
    assert WsgiAdapter(app.app, threads=2, max_queued=None).pool.limit == 2 + 4 * 2


def test_wsgi_must_fit_the_signature(tmp_path):
    name = write(tmp_path, ECHO)
    assert "does not fit wsgi" in error(tmp_path, f"{name}:app", interface="wsgi").message


def test_a_flask_app_is_detected_as_wsgi(tmp_path):
    name = write(tmp_path, "import flask\napp = flask.Flask(__name__)\n")
    assert isinstance(load(tmp_path, f"{name}:app"), WsgiAdapter)


def test_explicit_interface_must_fit_the_signature(tmp_path):
    name = write(tmp_path, ECHO)
    assert error(tmp_path, f"{name}:app", interface="asgi2").kind == "interface"
    assert load(tmp_path, f"{name}:app", interface="asgi3") is sys.modules[name].app


def test_factory_is_called(tmp_path):
    name = write(tmp_path, ECHO + "\ndef create_app():\n    return app\n")
    assert load(tmp_path, f"{name}:create_app", factory=True) is sys.modules[name].app


def test_factory_raising(tmp_path):
    name = write(tmp_path, "def create_app():\n    raise RuntimeError('no database url')\n")
    exc = error(tmp_path, f"{name}:create_app", factory=True)
    assert exc.kind == "factory"
    assert exc.message == f'factory "{name}:create_app" raised RuntimeError: no database url'
    assert isinstance(exc.__cause__, RuntimeError)


def test_async_factory_is_rejected(tmp_path):
    name = write(tmp_path, ECHO + "\nasync def create_app():\n    return app\n")
    assert error(tmp_path, f"{name}:create_app", factory=True).kind == "factory"


def test_zero_argument_function_without_factory(tmp_path):
    name = write(tmp_path, ECHO + "\ndef create_app():\n    return app\n")
    exc = error(tmp_path, f"{name}:create_app")
    assert (exc.kind, exc.hint) == ("interface", "set factory = true")


def test_missing_module(tmp_path):
    exc = error(tmp_path, f"absent_{tmp_path.name}:app")
    assert exc.kind == "module"
    assert exc.message == f'module "absent_{tmp_path.name}" not found (app_dir: {tmp_path})'
    assert exc.hint == "check the module name in target, or set app_dir"


def test_missing_submodule_of_existing_package(tmp_path):
    package = tmp_path / f"p_{tmp_path.name}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    exc = error(tmp_path, f"{package.name}.absent:app")
    assert exc.message.startswith(f'module "{package.name}.absent" not found')


def test_missing_dependency_is_not_a_missing_module(tmp_path):
    helper = write(tmp_path, "import not_installed_dep_xyz.sub\n", name=f"h_{tmp_path.name}")
    name = write(tmp_path, f"import {helper}\n")
    exc = error(tmp_path, f"{name}:app")
    assert exc.kind == "module"
    assert exc.message == (
        f'module "{name}" failed to import: '
        f"No module named 'not_installed_dep_xyz' (imported by \"{helper}\")"
    )
    assert exc.hint == 'install "not_installed_dep_xyz" where uvhost runs'
    assert isinstance(exc.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize(
    ("source", "described"),
    [
        ("raise ValueError('bad setting\\nsecond line')", "ValueError: bad setting"),
        ("import sys\nsys.exit(3)", "SystemExit: 3"),
        ("def broken(:\n", "SyntaxError: "),
    ],
)
def test_module_raising_at_import(tmp_path, source, described):
    name = write(tmp_path, source)
    exc = error(tmp_path, f"{name}:app")
    assert exc.kind == "module"
    assert exc.message.startswith(f'module "{name}" failed to import: {described}')
    assert exc.__cause__ is not None
    assert exc.__cause__.__traceback__ is not None


def test_missing_attribute_suggests_app_like_names(tmp_path):
    name = write(tmp_path, "from pathlib import Path\n" + ECHO + "\ndef create_app(): ...\n")
    exc = error(tmp_path, f"{name}:ap")
    assert exc.kind == "attribute"
    assert exc.message == f'module "{name}" has no attribute "ap"'
    assert exc.hint == 'did you mean "app"? app-like names here: app, create_app'
    assert error(tmp_path, f"{name}:zzz").hint == "app-like names here: app, create_app"


def test_dotted_attribute(tmp_path):
    name = write(tmp_path, "import types\n" + ECHO + "\nholder = types.SimpleNamespace(app=app)\n")
    assert load(tmp_path, f"{name}:holder.app") is sys.modules[name].app
    exc = error(tmp_path, f"{name}:holder.apq")
    assert exc.message == f'"{name}:holder" has no attribute "apq"'
    assert exc.hint.startswith('did you mean "app"?')


def test_not_callable(tmp_path):
    name = write(tmp_path, "app = {'not': 'an app'}\n")
    exc = error(tmp_path, f"{name}:app")
    assert (exc.kind, exc.message) == ("not_callable", f'"{name}:app" is a dict, not an app')


@pytest.mark.parametrize("target", ["nocolon", "m:", ":app", "m:a..b", "m-x:app"])
def test_malformed_target(tmp_path, target):
    assert error(tmp_path, target).kind == "attribute"


def test_app_dir_is_put_first_once(tmp_path):
    name = write(tmp_path, ECHO)
    load(tmp_path, f"{name}:app")
    load(tmp_path, f"{name}:app")
    assert sys.path[0] == str(tmp_path)
    assert sys.path.count(str(tmp_path)) == 1


@pytest.mark.parametrize(
    ("target", "factory"),
    [
        ("hello:app", False),
        ("pages:app", False),
        ("api:app", False),
        ("api:create_app", True),
        ("chat:app", False),
    ],
)
def test_examples_load(target, factory):
    app = load_app(target, app_dir=EXAMPLES, factory=factory, interface="auto")
    assert detect_interface(app) == "asgi3"


def test_hello_example_answers(tmp_path):
    app = load_app("hello:app", app_dir=EXAMPLES, factory=False, interface="auto")
    start, body = serve(app)
    assert start["status"] == 200
    assert body["body"] == b"Hello, world!\n"
    assert serve(app, "/elsewhere")[0]["status"] == 404
