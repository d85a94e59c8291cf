"""A property: for any valid config, `uvhost config` prints a config that loads back, from
another folder, to an equal `HostConfig` (defaults filled, paths absolute, `$` kept)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uvhost.commands.check import show_config
from uvhost.config.fields import FRAMING_HEADERS
from uvhost.config.load import LoadResult, load_config
from uvhost.config.plan import normalise_prefix
from uvhost.config.types import MAX_DURATION

NAMES = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,8}\Z")
ENV_NAMES = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z")
HEADER_NAMES = st.from_regex(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}\Z").filter(
    lambda name: name.lower() not in FRAMING_HEADERS
)
# Any text a value may hold: `$`, `${X}`, quotes, unicode; never CR, LF or NUL.
TEXT = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=12
) | st.sampled_from(["${HOME}", "$$", "$", "a$b", "${X:-y}", "price: $5"])
# A header value: Latin-1 text but control characters (a tab is fine).
HEADER_VALUES = st.text(
    st.characters(codec="latin-1", exclude_categories=("Cc",)) | st.just("\t"), max_size=12
)

DURATIONS = st.one_of(
    st.sampled_from(["500ms", "30s", "2m", "1h", ".5s", "1.5m"]),
    st.integers(min_value=1, max_value=int(MAX_DURATION)),
    st.floats(min_value=0.001, max_value=MAX_DURATION, allow_nan=False),
    st.floats(min_value=1e-9, max_value=1e-3),
)
SIZES = st.one_of(
    st.integers(min_value=1, max_value=2**40),
    st.sampled_from(["1B", "64KiB", "16MiB", "1GiB", "3KB", "2MB", "1GB"]),
)
LEVELS = st.sampled_from(["critical", "error", "warning", "info", "debug"])
NETWORKS = st.lists(
    st.sampled_from(["127.0.0.1", "10.0.0.0/8", "10.1.2.3/8", "::1", "fd00::/8", "192.168.1.7"]),
    min_size=1,
    max_size=3,
)
SEGMENTS = st.sampled_from(["a", "api", "v2", "x-y", "caf%C3%A9", "é", "_s", "~u"])
PREFIXES = st.builds(
    lambda parts, slash: "/" + "/".join(parts) + ("/" if slash and parts else ""),
    st.lists(SEGMENTS, max_size=3),
    st.booleans(),
)
UNIX_MODES = st.one_of(st.integers(min_value=0, max_value=0o7777), st.sampled_from(["660", "0600"]))


def written(value: str) -> str:
    """`value` as it must be written in a config so that it loads as `value`."""
    return value.replace("$", "$$")


def some_of(draw: st.DrawFn, strategies: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """A table holding a random subset of the keys, each drawn from its strategy."""
    return {key: draw(strategy) for key, strategy in strategies.items() if draw(st.booleans())}


HOST = {
    "workers": st.integers(min_value=1, max_value=8) | st.just("auto"),
    "graceful_timeout": DURATIONS,
    "startup_timeout": DURATIONS,
    "watch": st.booleans(),
    "control_socket": st.sampled_from(["auto", "off", "ctl.sock"]),
    "pid_file": st.just("uvhost.pid"),
    "env_files": st.just(["host.env"]),
    "max_requests": st.integers(min_value=0, max_value=10**6),
    "max_requests_jitter": st.integers(min_value=0, max_value=1000),
}
LOGGING = {
    "level": LEVELS,
    "format": st.sampled_from(["auto", "plain", "json"]),
    "access_log": st.booleans(),
    "file": st.just("logs.txt"),
    "loggers": st.dictionaries(TEXT, LEVELS, max_size=3),  # keys are never interpolated
}
LISTENER = {
    "backlog": st.integers(min_value=1, max_value=65535),
    "keep_alive_timeout": DURATIONS,
    "header_timeout": DURATIONS,
    "max_header_bytes": SIZES,
    "limit_concurrency": st.integers(min_value=1, max_value=10**5),
    "proxy_headers": st.booleans(),
    "forwarded_allow_ips": NETWORKS,
    "server_header": st.booleans(),
    "date_header": st.booleans(),
    "headers": st.dictionaries(HEADER_NAMES, HEADER_VALUES.map(written), max_size=3),
    "root_path": st.sampled_from(["", "/app", "/a/b"]),
}
APP = {
    "factory": st.booleans(),
    "interface": st.sampled_from(["auto", "asgi3", "asgi2"]),
    "lifespan": st.sampled_from(["auto", "on", "off"]),
    "app_dir": st.just("src"),
    "env": st.dictionaries(
        ENV_NAMES, TEXT.map(written) | st.integers() | st.booleans(), max_size=3
    ),
    "env_files": st.just(["app.env"]),
    "max_body_bytes": SIZES,
    "root_path": st.sampled_from(["", "/v1"]),
}
WEBSOCKET = {
    "enabled": st.booleans(),
    "max_message_bytes": SIZES,
    "max_queue": st.integers(min_value=1, max_value=65536),
    "ping_interval": DURATIONS,
    "ping_timeout": DURATIONS,
    "per_message_deflate": st.booleans(),
}


def listener_table(draw: st.DrawFn, name: str, port: int, app_names: list[str]) -> dict[str, Any]:
    listener: dict[str, Any] = {}
    kind = draw(st.sampled_from(["v4", "v6", "host", "unix", "fd"]))
    if kind == "unix":
        listener["bind"] = f"unix:sockets/{name}.sock"
        if draw(st.booleans()):
            listener["unix_mode"] = draw(UNIX_MODES)
    elif kind == "fd":
        listener["bind"] = f"fd:{port + 2}"
    else:
        host = {"v4": "127.0.0.1", "v6": "[::1]", "host": "localhost"}[kind]
        listener["bind"] = f"{host}:{port}"
    if draw(st.booleans()):
        listener["app"] = draw(st.sampled_from(app_names))
    else:
        targets = st.sampled_from([*app_names, "@health", "@metrics"])
        listener["routes"] = draw(
            st.dictionaries(PREFIXES, targets, min_size=1, max_size=4).filter(
                lambda routes: len({normalise_prefix(p) for p in routes}) == len(routes)
            )
        )
    return {**listener, **some_of(draw, LISTENER)}


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    app_names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    listener_names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    ports = draw(
        st.lists(
            st.integers(min_value=1, max_value=65535),
            min_size=len(listener_names),
            max_size=len(listener_names),
            unique=True,
        )
    )
    # Apps that share a listener must agree on workers: one count for every app, or none.
    app_workers = draw(st.none() | st.integers(min_value=1, max_value=8) | st.just("auto"))
    apps: dict[str, Any] = {}
    for name in app_names:
        app: dict[str, Any] = {"target": draw(st.sampled_from(["m:app", "pkg.mod:factory.app"]))}
        app.update(some_of(draw, APP))
        if app_workers is not None:
            app["workers"] = app_workers
        if websocket := some_of(draw, WEBSOCKET):
            app["websocket"] = websocket
        apps[name] = app
    data: dict[str, Any] = {
        "listeners": {
            name: listener_table(draw, name, port, app_names)
            for name, port in zip(listener_names, ports, strict=True)
        },
        "apps": apps,
    }
    if host := some_of(draw, HOST):
        data["host"] = host
    if logging := some_of(draw, LOGGING):
        data["logging"] = logging
    return data


def prepare(folder: Path) -> None:
    """The files and folders the generated configs may refer to."""
    (folder / "sockets").mkdir()
    (folder / "src").mkdir()
    (folder / "host.env").write_text("FROM_HOST_FILE=1\n")
    (folder / "app.env").write_text("FROM_APP_FILE=1\n")


def assert_valid(result: LoadResult) -> None:
    errors = [f"{d.span}: {d.message}" for d in result.errors]
    assert result.ok, errors


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    original = tmp_path_factory.mktemp("original")
    prepare(original)
    return original, tmp_path_factory.mktemp("printed")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=configs())
def test_printed_config_loads_back_equal(data: dict[str, Any], folders: tuple[Path, Path]) -> None:
    original_folder, printed_folder = folders
    original = original_folder / "uvhost.toml"
    original.write_text(tomli_w.dumps(data), encoding="utf-8")
    first = load_config(original, environ={})
    assert_valid(first)

    out, err = StringIO(), StringIO()
    assert show_config(original, out=out, err=err) == 0, err.getvalue()
    printed = printed_folder / "uvhost.toml"
    printed.write_text(out.getvalue(), encoding="utf-8")
    second = load_config(printed, environ={})
    assert_valid(second)

    assert second.config == first.config
    assert second.app_environments == first.app_environments


def test_relative_paths_survive_the_move(tmp_path: Path) -> None:
    original_folder, printed_folder = tmp_path / "a", tmp_path / "b"
    original_folder.mkdir()
    printed_folder.mkdir()
    prepare(original_folder)
    original = original_folder / "uvhost.toml"
    original.write_text(
        '[host]\nenv_files = ["host.env"]\n'
        '[listeners.l]\nbind = "unix:sockets/l.sock"\napp = "a"\n'
        '[apps.a]\ntarget = "m:app"\napp_dir = "src"\nenv_files = ["app.env"]\n'
    )
    out = StringIO()
    assert show_config(original, out=out, err=StringIO()) == 0
    assert str(original_folder / "src") in out.getvalue()
    printed = printed_folder / "uvhost.toml"
    printed.write_text(out.getvalue())
    second = load_config(printed, environ={})
    assert second.config is not None
    assert second.config.apps["a"].app_dir == original_folder / "src"
    assert str(second.config.listeners["l"].bind) == f"unix:{original_folder}/sockets/l.sock"
    assert second.app_environments == {"a": {"FROM_APP_FILE": "1"}}


@pytest.mark.parametrize("value", ["${HOME}", "$$", "a$b", "${NOPE:?boom}"])
def test_dollars_in_values_survive(tmp_path: Path, value: str) -> None:
    original = tmp_path / "uvhost.toml"
    original.write_text(
        tomli_w.dumps(
            {
                "listeners": {"l": {"bind": "127.0.0.1:0", "app": "a"}},
                "apps": {"a": {"target": "m:app", "env": {"V": written(value)}}},
            }
        )
    )
    first = load_config(original, environ={})
    assert first.config is not None
    assert first.config.apps["a"].env == {"V": value}
    out = StringIO()
    assert show_config(original, out=out, err=StringIO()) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(out.getvalue())
    second = load_config(printed, environ={"HOME": "/elsewhere"})
    assert second.config is not None
    assert second.config.apps["a"].env == {"V": value}
