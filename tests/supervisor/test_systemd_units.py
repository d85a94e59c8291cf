"""deploy/systemd's units, checked by systemd's own tools and run the way systemd runs them.

- `systemd-analyze verify` accepts both units with no warning (the unit's
  ExecStart binary swapped for this interpreter, which verify requires to
  exist), and `systemd-analyze security --offline` rates the service's
  hardening at most EXPOSURE.
- The service's ExecStart is run as the socket unit activates it: the
  socket bound by the "manager" (the test), passed at fd 3 under the
  .socket's FileDescriptorName, LISTEN_PID naming the process, and
  NOTIFY_SOCKET pointing at a datagram socket the test reads. Type=notify
  needs READY=1 from the main pid (NotifyAccess=main); ExecReload's command,
  run as written with $MAINPID filled in, must reload (the config has
  watch = false, so only the signal can); the KillSignal drains and the
  process exits 0 well within TimeoutStopSec.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from uvhost.config.model import HostSettings

UNITS = Path(__file__).parents[2] / "deploy" / "systemd"
EXPOSURE = 20
"""The worst `systemd-analyze security` exposure accepted, in tenths (0 best, 100 worst;
the service rates 1.4, i.e. 14, today)."""

CONFIG = """
[host]
watch = false
graceful_timeout = "5s"

[logging]
format = "plain"
access_log = false

[listeners.public]
bind = "systemd:{name}"
app = "main"

[apps.main]
target = "apps:main"

[apps.main.env]
GREETING = "{greeting}"
"""

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections of a unit file, each key with all its values in order (keys may repeat)."""
    sections: Unit = {}
    current: dict[str, list[str]] = defaultdict(list)
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), defaultdict(list))
            continue
        key, _, value = line.partition("=")
        current[key.strip()].append(value.strip())
    return sections


def one(unit: Unit, section: str, key: str) -> str:
    (value,) = unit[section][key]
    return value


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """Copies of both units, ExecStart running this interpreter's uvhost (verify wants it)."""
    folder = tmp_path / "units"
    folder.mkdir()
    shutil.copy(UNITS / "uvhost.socket", folder)
    service = (UNITS / "uvhost.service").read_text(encoding="utf-8")
    binary = shlex.split(one(parse_unit(UNITS / "uvhost.service"), "Service", "ExecStart"))[0]
    (folder / "uvhost.service").write_text(service.replace(binary, f"{sys.executable} -m uvhost"))
    return folder


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_systemd_analyze_verifies_both_units_without_a_warning(units):
    done = analyze("verify", str(units / "uvhost.socket"), str(units / "uvhost.service"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys and bad values only warn


def test_the_service_is_hardened(units):
    done = analyze(
        "security", "--offline=true", f"--threshold={EXPOSURE}", str(units / "uvhost.service")
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    service = parse_unit(UNITS / "uvhost.service")["Service"]
    for key, value in {
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == [value], key
    # AF_UNIX stays: the notify socket and the control socket need it.
    assert "AF_UNIX" in service["RestrictAddressFamilies"][0].split()


def test_the_units_agree_with_uvhost():
    socket_unit = parse_unit(UNITS / "uvhost.socket")
    service = parse_unit(UNITS / "uvhost.service")
    assert one(service, "Service", "Type") == "notify"
    assert one(service, "Service", "NotifyAccess") == "main"  # READY=1 comes from the supervisor
    assert one(service, "Service", "KillMode") == "mixed"  # SIGTERM to the supervisor only
    assert one(service, "Service", "KillSignal") == "SIGTERM"
    assert "uvhost.socket" in one(service, "Unit", "Requires").split()
    stop_after = float(one(service, "Service", "TimeoutStopSec"))
    assert stop_after > HostSettings().graceful_timeout + 5, "a default drain could be cut"
    argv = shlex.split(one(service, "Service", "ExecStart"))
    assert argv[1:] == ["run", "/etc/uvhost/uvhost.toml"]
    assert shlex.split(one(service, "Service", "ExecReload")) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert one(socket_unit, "Socket", "FileDescriptorName") == "web"
    assert one(socket_unit, "Socket", "ListenStream").isdigit()


def test_the_service_runs_as_its_socket_unit_starts_it(
    tmp_path, launch, listener, kit, *, notifications, monkeypatch
):
    unit = parse_unit(UNITS / "uvhost.service")
    service = unit["Service"]
    name = one(parse_unit(UNITS / "uvhost.socket"), "Socket", "FileDescriptorName")
    sock = listener()  # the socket unit's ListenStream=, bound by "systemd"
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    config.write_text(CONFIG.format(name=name, greeting="before"), encoding="utf-8")
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", name)
    monkeypatch.setenv("ACTIVATE_FD", str(sock.fileno()))
    args = tuple(shlex.split(service["ExecStart"][0])[2:-1])  # options between run and FILE
    host = launch(config, pass_fds=(sock.fileno(),), args=args, activate=True)

    ready = notifications.until("READY")
    assert ready["MAINPID"] == str(host.pid)
    assert set(notifications.senders) == {host.pid}  # NotifyAccess=main accepts it
    address = ("127.0.0.1", kit.port_of(sock))
    assert kit.who(address)["greeting"] == "before"

    kit.save(config, CONFIG.format(name=name, greeting="after"))  # not watched: no reload yet
    reload = [
        word.replace("$MAINPID", str(host.pid))
        for word in shlex.split(one(unit, "Service", "ExecReload"))
    ]
    subprocess.run(reload, check=True, timeout=10)  # `systemctl reload uvhost`
    assert notifications.until("RELOADING")["RELOADING"] == "1"
    assert notifications.until("READY")["READY"] == "1"
    kit.wait_until(lambda: kit.who(address)["greeting"] == "after", "the reloaded config")

    host.signal(getattr(signal, one(unit, "Service", "KillSignal")))
    assert notifications.until("STOPPING")["STOPPING"] == "1"
    assert host.wait_exit(timeout=float(one(unit, "Service", "TimeoutStopSec"))) == 0
    assert set(notifications.senders) == {host.pid}
