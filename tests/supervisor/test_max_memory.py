"""max_memory: the supervisor reads each worker's RSS once a second and recycles a worker
over the limit through a ready-gated roll of one, as max_requests does; no request fails
while the pid changes. The limit is a supervisor key: an edit applies without a roll."""

from __future__ import annotations

import threading
import time

import pytest

from uvhost.observe.status import rss_bytes

CONFIG = """
[host]
graceful_timeout = "10s"
{max_memory}

[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "fd:{fd}"
app = "main"

[apps.main]
target = "apps:main"
"""


@pytest.fixture
def started(tmp_path, launch, listener, kit):
    """One worker, no max_memory yet: (host, its address, config path, render(max_memory))."""
    sock = listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"

    def render(max_memory: str = "") -> str:
        return CONFIG.format(fd=sock.fileno(), max_memory=max_memory)

    config.write_text(render(), encoding="utf-8")
    host = launch(config, pass_fds=(sock.fileno(),))
    host.wait_for("ready: 1 group(s), 1 worker(s)")
    return host, ("127.0.0.1", kit.port_of(sock)), config, render


def test_a_worker_over_max_memory_is_replaced_and_no_request_fails(started, kit):
    host, address, config, render = started
    first = kit.who(address)["pid"]
    baseline = rss_bytes(first)
    assert baseline is not None

    # a limit 48 MiB above what the worker holds now: set live, no roll
    mark = host.mark()
    limit = (baseline >> 20) + 48
    kit.save(config, render(f'max_memory = "{limit}MiB"'))
    assert "host.max_memory" in host.wait_applied(mark)
    assert host.workers() == {first}
    for _ in range(5):
        assert kit.who(address)["pid"] == first  # under the limit: it keeps serving

    pids: list[int] = []
    lock = threading.Lock()

    def request() -> None:
        served = kit.who(address)
        with lock:
            pids.append(served["pid"])

    with kit.Load(limit=400) as load:
        load.add("client", request, pause=0.02)
        kit.who(address, "/grow?mb=96")  # over the limit from now on
        kit.wait_until(lambda: any(pid != first for pid in pids), "a new worker", timeout=30)
    assert load.failures == []
    output = host.output(mark)
    assert f"worker {first} of group" in output
    assert "over max_memory" in output
    assert f"replaces {first} in group" in output
    assert "(max_memory)" in output
    host.wait_workers(1, excluding={first})  # the old one drained and exited


def test_without_max_memory_a_large_worker_stays(started, kit):
    host, address, _, _ = started
    first = kit.who(address, "/grow?mb=64")["pid"]
    time.sleep(2.5)  # a few of the supervisor's once-a-second looks
    for _ in range(3):
        assert kit.who(address)["pid"] == first
    assert "max_memory" not in host.output()
