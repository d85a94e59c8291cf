"""Import the app a config target names and hand it back as an ASGI 3 callable.

Invariants: every failure is an ``AppLoadError`` with a one-line ``message``
and ``hint`` (the original exception kept as ``__cause__``), so a worker and
``uvhost check --import`` describe a broken app in the same words. No event
loop is touched here, so the probe subprocess reuses this module as is.

Why ``interface = "auto"`` decides as it does:

1. A class is ASGI 2: calling a class only constructs an object, so a class
   is useful only as the double callable ``Cls(scope)`` then
   ``await instance(receive, send)``. Except when its instances are awaitable
   (``__await__``): then ``Cls(scope, receive, send)`` is the ASGI 3 awaitable.
2. A coroutine function, or an object whose ``__call__`` is one, is ASGI 3:
   ASGI 2 hands back its per-connection instance synchronously, so an async
   outer call can only be the connection's work itself.
3. Anything else (functions returning coroutines, partials, sync wrappers) is
   decided by its positional parameters: 3 is ASGI 3, 1 is ASGI 2.
4. Two positional parameters are WSGI (PEP 3333's ``app(environ, start_response)``)
   only when nothing else is possible and the names say so: a plain (not async)
   callable whose parameters are named ``environ`` (or ``env``) and
   ``start_response``, as Flask, Django's ``WSGIHandler``, Bottle, Pyramid, Falcon
   and hand-written WSGI apps name them. Two parameters named otherwise could be
   a wrapper of anything, so they are refused, as are other counts: we refuse
   rather than guess, and ``interface`` settles it. The hint names "wsgi".

Whatever was chosen, the signature must accept that call, so a wrong explicit
``interface`` fails at load time rather than on the first request.
"""

import difflib
import importlib
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, cast

from uvhost.server.asgi_types import ASGI2App, ASGIApp, Receive, Scope, Send
from uvhost.server.wsgi import WsgiAdapter, WSGIApp

__all__ = [
    "ASGI2Adapter",
    "ASGIApp",
    "AppLoadError",
    "WsgiAdapter",
    "detect_interface",
    "load_app",
]

ErrorKind = Literal["module", "attribute", "not_callable", "factory", "interface"]
Interface = Literal["asgi3", "asgi2", "wsgi"]
_SHAPES = (
    "ASGI 3 is app(scope, receive, send), ASGI 2 is app(scope)(receive, send), "
    "WSGI is app(environ, start_response)"
)
_ARGUMENTS = {"asgi3": 3, "asgi2": 1, "wsgi": 2}
_WSGI_FIRST = ("environ", "env")
_WSGI_SECOND = "start_response"


class AppLoadError(Exception):
    """An app that cannot be served; ``kind`` names the step that failed."""

    kind: ErrorKind
    message: str
    hint: str

    def __init__(self, kind: ErrorKind, message: str, hint: str) -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


class ASGI2Adapter:
    """Serves an ASGI 2 app as ASGI 3: ``app(scope)``, then ``instance(receive, send)``."""

    __slots__ = ("app",)

    def __init__(self, app: ASGI2App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope)(receive, send)


def load_app(
    target: str,
    *,
    app_dir: Path | None,
    factory: bool,
    interface: Literal["auto", "asgi3", "asgi2", "wsgi"],
    threads: int = 8,
    max_queued: int | None = None,
) -> ASGIApp:
    """Import ``target`` (``"package.module:attr.path"``) and return it as ASGI 3.

    A WSGI app comes back wrapped in a `WsgiAdapter` with a pool of `threads` (started
    only as requests come, so the probe that loads an app to check it starts none)."""
    module_name, _, attr = target.partition(":")
    if not all(part.isidentifier() for part in [*module_name.split("."), *attr.split(".")]):
        raise AppLoadError(
            "attribute",
            f'target "{target}" is not "module:attribute"',
            'write it as "package.module:app"',
        )
    if app_dir is not None and str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    obj = _resolve(_import(module_name, app_dir), attr)
    if factory:
        obj = _call_factory(obj, target)
    elif (inspect.isfunction(obj) or inspect.ismethod(obj)) and not _signature(obj).parameters:
        raise AppLoadError(
            "interface", f'"{target}" takes no arguments, like an app factory', "set factory = true"
        )
    if not callable(obj):
        raise AppLoadError(
            "not_callable",
            f'"{target}" is {_a(type(obj).__name__)}, not an app',
            "point target at the ASGI app object",
        )
    chosen = detect_interface(obj, target) if interface == "auto" else interface
    try:
        _signature(obj).bind(*range(_ARGUMENTS[chosen]))
    except ValueError:  # no introspectable signature (some C callables): trust the choice
        pass
    except TypeError as exc:
        raise AppLoadError(
            "interface", f'"{target}" does not fit {chosen}: {exc}', f"{_SHAPES}; check interface"
        ) from exc
    if chosen == "wsgi":
        return WsgiAdapter(cast(WSGIApp, obj), threads=threads, max_queued=max_queued)
    return cast(ASGIApp, obj) if chosen == "asgi3" else ASGI2Adapter(cast(ASGI2App, obj))


def detect_interface(app: object, target: str = "app") -> Interface:
    """Apply the ``auto`` rule of the module docstring to a callable."""
    if inspect.isclass(app):
        return "asgi3" if hasattr(app, "__await__") else "asgi2"
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__):
        return "asgi3"
    try:
        params = _signature(app).parameters.values()
    except (TypeError, ValueError) as exc:
        raise AppLoadError(
            "interface",
            f'cannot read the signature of "{target}"',
            'set interface = "asgi3", "asgi2" or "wsgi"',
        ) from exc
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    positional = len(names)
    if positional == 2:
        if names[0] in _WSGI_FIRST and names[1] == _WSGI_SECOND:
            return "wsgi"
        raise AppLoadError(
            "interface",
            f'"{target}" takes 2 positional parameters ({", ".join(names)}), not named '
            "(environ, start_response)",
            'if it is a WSGI app, set interface = "wsgi"',
        )
    if positional not in (1, 3):
        raise AppLoadError(
            "interface",
            f'"{target}" takes {positional} positional parameters',
            f"{_SHAPES}; set interface",
        )
    return "asgi3" if positional == 3 else "asgi2"


def _signature(obj: object) -> inspect.Signature:
    return inspect.signature(cast(Any, obj))


def _import(name: str, app_dir: Path | None) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            where = f"app_dir: {app_dir}" if app_dir is not None else "no app_dir set"
            raise AppLoadError(
                "module",
                f'module "{name}" not found ({where})',
                "check the module name in target, or set app_dir",
            ) from exc
        hint = f'install "{missing.partition(".")[0]}"' if missing else "fix that import"
        raise AppLoadError(
            "module",
            f'module "{name}" failed to import: {exc}{_importer(exc, name)}',
            f"{hint} where uvhost runs",
        ) from exc
    except (Exception, SystemExit) as exc:
        raise AppLoadError(
            "module",
            f'module "{name}" failed to import: {_describe(exc)}',
            "fix the module; the cause's traceback shows where",
        ) from exc


def _importer(exc: BaseException, name: str) -> str:
    """Which module ran the failing import statement, when it is not the target itself."""
    names = [f.f_globals.get("__name__", "") for f, _ in traceback.walk_tb(exc.__traceback__)]
    ours = [n for n in names if n and n.partition(".")[0] != "importlib"]
    return f' (imported by "{ours[-1]}")' if ours and ours[-1] not in (name, __name__) else ""


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _resolve(module: ModuleType, attr: str) -> object:
    obj: object = module
    parts = attr.split(".")
    for depth, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            owner = (
                f'"{module.__name__}:{".".join(parts[:depth])}"'
                if depth
                else (f'module "{module.__name__}"')
            )
            raise AppLoadError(
                "attribute",
                f'{owner} has no attribute "{part}"',
                _suggest(obj, part, module.__name__),
            ) from exc
    return obj


def _suggest(owner: object, wanted: str, module_name: str) -> str:
    names = [
        name
        for name, value in inspect.getmembers_static(owner)
        if not name.startswith("_") and _looks_like_app(value, module_name)
    ]
    close = difflib.get_close_matches(wanted, names, n=1)
    listed = ", ".join([*close, *(n for n in names if n not in close)][:5])
    if close:
        return f'did you mean "{close[0]}"? app-like names here: {listed}'
    return f"app-like names here: {listed}" if names else "nothing here looks like an app"


def _looks_like_app(value: object, module_name: str) -> bool:
    if not callable(value) or isinstance(value, ModuleType):
        return False
    if inspect.isclass(value) or inspect.isroutine(value):  # imported helpers are not apps
        return getattr(value, "__module__", None) == module_name
    return type(value).__module__ != "typing"  # instances such as FastAPI(), not typing forms


def _call_factory(obj: object, target: str) -> object:
    if not callable(obj):
        raise AppLoadError(
            "not_callable",
            f'factory "{target}" is {_a(type(obj).__name__)}',
            "point target at a function that returns the app",
        )
    try:
        app = obj()
    except (Exception, SystemExit) as exc:
        raise AppLoadError(
            "factory",
            f'factory "{target}" raised {_describe(exc)}',
            "it is called with no arguments and must return the app",
        ) from exc
    if inspect.iscoroutine(app):
        app.close()
        raise AppLoadError(
            "factory",
            f'factory "{target}" is async and returned a coroutine',
            "make the factory a plain function that returns the app",
        )
    return app


def _a(noun: str) -> str:
    """`noun` with its indefinite article, for messages ("an int", "a str")."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
