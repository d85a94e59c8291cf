"""[logging] dict_config in real worker processes: a dictConfig from a JSON file routes the
access log through its own formatter and handler in every worker, and an edit of that file
is applied live (no roll) in all of them; uvhost's own output carries on beside it."""

from __future__ import annotations

import json

import pytest

CONFIG = """
[host]
graceful_timeout = "5s"

[logging]
format = "plain"
access_log = true
dict_config = "logging.json"

[listeners.web]
bind = "fd:{fd}"
app = "main"

[apps.main]
target = "apps:main"
workers = 2
"""


def schema(tag: str, log: str) -> dict[str, object]:
    return {
        "version": 1,
        "formatters": {"tagged": {"format": f"{tag} %(process)d %(message)s"}},
        "handlers": {
            "access_file": {"class": "logging.FileHandler", "filename": log, "formatter": "tagged"}
        },
        "loggers": {"uvhost.access": {"handlers": ["access_file"], "propagate": False}},
    }


@pytest.fixture
def started(tmp_path, launch, listener, kit):
    """A host of 2 workers whose logging.json routes access lines to access.log, tagged v1:
    (host, its address, the dictConfig file, the access log)."""
    sock = listener()
    kit.write_apps(tmp_path)
    log = tmp_path / "access.log"
    logging_file = tmp_path / "logging.json"
    logging_file.write_text(json.dumps(schema("v1", str(log))), encoding="utf-8")
    config = tmp_path / "uvhost.toml"
    config.write_text(CONFIG.format(fd=sock.fileno()), encoding="utf-8")
    host = launch(config, pass_fds=(sock.fileno(),))
    host.wait_for("ready: 1 group(s), 2 worker(s)")  # uvhost's own handler still writes
    return host, ("127.0.0.1", kit.port_of(sock)), logging_file, log


def test_a_dict_config_file_is_used_by_every_worker_and_applied_live(started, kit):
    host, address, logging_file, log = started
    workers = host.wait_workers(2)

    def lines_by(tag: str) -> set[int]:
        """The worker pids that wrote an access line with `tag` to the dictConfig's file."""
        text = log.read_text(encoding="utf-8") if log.exists() else ""
        return {int(line.split()[1]) for line in text.splitlines() if line.startswith(tag + " ")}

    def every_worker_wrote(tag: str, path: str) -> bool:
        kit.who(address, path)
        return lines_by(tag) == workers

    kit.wait_until(lambda: every_worker_wrote("v1", "/one"), "v1 lines from both workers")
    assert '"GET /one HTTP/1.1" 200' in log.read_text(encoding="utf-8")
    assert "GET /one" not in host.output()  # propagate = false: not on uvhost's handler

    mark = host.mark()
    kit.save(logging_file, json.dumps(schema("v2", str(log))))
    assert "logging.dict_config" in host.wait_applied(mark)
    kit.wait_until(lambda: every_worker_wrote("v2", "/two"), "v2 lines from both workers")
    assert host.workers() == workers  # live: no roll


def test_a_broken_dict_config_edit_is_rejected_and_the_old_one_stays(started, kit):
    host, address, logging_file, log = started
    mark = host.mark()
    broken = schema("v2", str(log))
    broken["loggers"] = {"uvhost.access": {"handlers": ["acess_file"]}}
    kit.save(logging_file, json.dumps(broken))
    rejected = host.wait_for("is not one of this dictConfig's handlers", since=mark)
    assert "logging.json, loggers.uvhost.access.handlers.0" in rejected
    kit.who(address, "/after")
    kit.wait_until(lambda: "GET /after" in log.read_text(encoding="utf-8"), "the old handler")
    assert "v2 " not in log.read_text(encoding="utf-8")
