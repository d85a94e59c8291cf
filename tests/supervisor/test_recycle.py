"""max_requests: a worker that has served its share asks to be recycled, and is replaced
through a ready-gated roll of one: no request fails while pids change."""

import random
import threading

import pytest

from uvhost.server.context import RequestBudget, recycle_threshold

CONFIG = """
[host]
max_requests = {max_requests}
max_requests_jitter = 0
graceful_timeout = "10s"

[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "fd:{fd}"
app = "main"

[apps.main]
target = "apps:main"
workers = {workers}
"""


def test_the_threshold_is_max_plus_a_jitter_chosen_once():
    rng = random.Random(5)  # noqa: S311 - not for secrets
    chosen = {recycle_threshold(100, 10, rng) for _ in range(500)}
    assert chosen <= set(range(100, 111))
    assert len(chosen) > 5  # really random, not always the same end
    assert recycle_threshold(100, 0, rng) == 100
    assert recycle_threshold(0, 50, rng) == 0  # 0 = never


@pytest.mark.parametrize("limit", [0, 3])
def test_the_budget_fires_once_at_its_limit(limit):
    fired: list[int] = []
    budget = RequestBudget(limit)
    budget.on_spent = lambda: fired.append(budget.count)
    for _ in range(10):  # what HttpProtocol._start does, inline
        budget.count += 1
        if budget.count == budget.limit:
            budget.spent()
    assert fired == ([limit] if limit else [])


def test_max_requests_recycles_workers_and_no_request_fails(tmp_path, launch, listener, kit):
    sock = listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    config.write_text(CONFIG.format(fd=sock.fileno(), workers=1, max_requests=20), encoding="utf-8")
    host = launch(config, pass_fds=(sock.fileno(),))
    host.wait_for("ready: 1 group(s), 1 worker(s)")
    address = ("127.0.0.1", kit.port_of(sock))
    pids: list[int] = []
    lock = threading.Lock()

    def request() -> None:
        served = kit.who(address)
        with lock:
            pids.append(served["pid"])

    for _ in range(25):  # sequential: crosses the first threshold
        request()
    with kit.Load(limit=150) as load:
        for index in range(2):
            load.add(f"client {index}", request, pause=0.03)
        kit.wait_until(lambda: len(set(pids)) >= 3, "three worker pids", timeout=30)
    assert load.failures == []
    assert len(set(pids)) >= 3
    assert host.output().count("(max_requests)") >= 2
    host.wait_workers(1, excluding=set(pids[:1]))  # the recycled ones drained and exited


RETRIED = """
[host]
max_requests = 5
max_requests_jitter = 0
graceful_timeout = "5s"

[logging]
format = "plain"

[listeners.web]
bind = "fd:{fd}"
app = "main"

[apps.main]
target = "apps:main"
env = {{ FAIL_STARTUP_WHILE = "{flag}" }}
"""


def test_a_failed_recycle_is_retried_while_the_old_worker_serves(tmp_path, launch, listener, kit):
    sock = listener()
    kit.write_apps(tmp_path)
    flag = tmp_path / "database-down"
    config = tmp_path / "uvhost.toml"
    config.write_text(RETRIED.format(fd=sock.fileno(), flag=flag), encoding="utf-8")
    host = launch(config, pass_fds=(sock.fileno(),))
    host.wait_for("ready:")
    address = ("127.0.0.1", kit.port_of(sock))
    first = kit.who(address)["pid"]
    flag.write_text("")  # replacements cannot start from now on
    for _ in range(5):
        assert kit.who(address)["pid"] == first  # the fifth asks for the recycle
    host.wait_for("failed (attempt 1 of 5)")
    assert kit.who(address)["pid"] == first  # still serving
    flag.unlink()
    host.wait_for("(max_requests)")  # a later attempt succeeds
    kit.wait_until(lambda: kit.who(address)["pid"] != first, "the recycled worker")
