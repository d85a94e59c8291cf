"""Starting `uvhost run`: every group's workers, where it listens, exit 3 when it cannot start.

Also socket activation's basics: an inherited listening fd (`fd:N`) is served.
"""

import signal

import pytest


def test_every_group_starts_and_the_log_says_where_it_listens(
    tmp_path, launch, listener, sockets_dir, kit
):
    web, api = listener(), listener()
    unix = sockets_dir / "api.sock"
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    config.write_text(
        f"""
[host]
graceful_timeout = "5s"

[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "fd:{web.fileno()}"
app = "main"

[listeners.api]
bind = "fd:{api.fileno()}"
app = "other"

[listeners.api-unix]
bind = "unix:{unix}"
app = "other"

[apps.main]
target = "apps:main"
workers = 2

[apps.other]
target = "apps:other"
workers = 1
""",
        encoding="utf-8",
    )
    host = launch(config, pass_fds=(web.fileno(), api.fileno()))
    host.wait_for("ready: 2 group(s), 3 worker(s)")
    output = host.output()
    assert f"listening on http://127.0.0.1:{kit.port_of(web)} (web)" in output
    assert f"listening on http://127.0.0.1:{kit.port_of(api)} (api)" in output
    assert f"listening on unix:{unix} (api-unix)" in output
    workers = host.workers()
    assert len(workers) == 3

    main_pids = {kit.who(("127.0.0.1", kit.port_of(web)))["pid"] for _ in range(10)}
    served_api = kit.who(("127.0.0.1", kit.port_of(api)))
    served_unix = kit.who(str(unix))
    assert served_api["app"] == served_unix["app"] == "other"
    assert served_api["pid"] == served_unix["pid"]  # one group: one worker serves both
    assert main_pids <= workers - {served_api["pid"]}

    host.signal(signal.SIGTERM)
    assert host.wait_exit() == 0, host.output()
    assert not unix.exists()
    assert "Traceback" not in host.output()


CANNOT_START = {
    "import": ('target = "apps:nowhere"', 'has no attribute "nowhere"'),
    "lifespan": (
        'target = "apps:main"\nenv = { FAIL_STARTUP = "cannot reach the database" }',
        "cannot reach the database",
    ),
}


@pytest.mark.parametrize("failure", sorted(CANNOT_START))
def test_an_app_that_cannot_start_exits_3_with_its_message(
    tmp_path, launch, listener, kit, failure
):
    app, message = CANNOT_START[failure]
    sock = listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    config.write_text(
        f"""
[logging]
format = "plain"

[listeners.web]
bind = "fd:{sock.fileno()}"
app = "main"

[apps.main]
{app}
workers = 2
""",
        encoding="utf-8",
    )
    host = launch(config, pass_fds=(sock.fileno(),))
    assert host.wait_exit() == 3, host.output()
    output = host.output()
    assert "cannot start" in output
    assert message in output
    assert "Traceback" not in output


def test_an_address_in_use_exits_3(tmp_path, launch, listener, kit):
    taken = listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    config.write_text(
        f"""
[logging]
format = "plain"

[listeners.web]
bind = "127.0.0.1:{kit.port_of(taken)}"
app = "main"

[apps.main]
target = "apps:main"
""",
        encoding="utf-8",
    )
    host = launch(config)
    assert host.wait_exit() == 3, host.output()
    output = host.output()
    assert f'listener "web" cannot listen on 127.0.0.1:{kit.port_of(taken)}' in output
    assert "in use" in output.lower()
    assert not host.seen_workers  # nothing was spawned
    assert not host.workers()


def test_an_inherited_fd_is_served_before_and_after_a_reload(tmp_path, launch, listener, kit):
    """Socket activation's basics: the fd is adopted, served, and kept across generations."""
    sock = listener()
    address = ("127.0.0.1", kit.port_of(sock))
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    template = """
[logging]
format = "plain"

[listeners.web]
bind = "fd:{fd}"
app = "main"

[apps.main]
target = "apps:main"
env = {{ GREETING = "{greeting}" }}
"""
    config.write_text(template.format(fd=sock.fileno(), greeting="before"), encoding="utf-8")
    host = launch(config, pass_fds=(sock.fileno(),))
    fd = sock.fileno()
    sock.close()  # only the host holds the socket now
    first = kit.who(address)  # queued by the kernel until the worker is ready
    assert first["greeting"] == "before"
    host.wait_for(f"listening on http://{address[0]}:{address[1]} (web)")

    mark = host.mark()
    kit.save(config, template.format(fd=fd, greeting="after"))
    host.wait_applied(mark)
    kit.wait_until(lambda: kit.who(address)["greeting"] == "after", "the new generation")
    host.signal(signal.SIGTERM)
    assert host.wait_exit() == 0, host.output()
