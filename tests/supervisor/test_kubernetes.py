"""What Kubernetes does to a uvhost pod, played with real `uvhost run` processes.

A "pod" here is one host whose config, TLS files and `${VAR}` env file sit in
volumes laid out and swapped exactly as the kubelet does it
(tests/kubelet.py): `config/uvhost.toml` is a ConfigMap, `tls/` a
`kubernetes.io/tls` Secret, `env/uvhost.env` an Opaque Secret; the config
names the others relatively (`../tls/tls.crt`), as deploy/kubernetes does.
Each pod has a `web` listener (the app) and an `admin` one (`@health` at
/healthz, `@metrics` at /metrics), both passed down as fd:N.

- A ConfigMap edit goes live under load with 0 failed requests, and a bad
  edit is rejected (with its position) while the previous config serves on.
- A Secret update of the certificate is served to new connections, under
  load, with no worker restarted and 0 failed requests.
- A rolling update: a new pod becomes ready, the old one gets SIGTERM;
  readiness answers 503 at once while the old pod still accepts and
  serves for `drain_delay`, so a Service that follows readiness (probing
  like the kubelet, every 0.1 s here) stops sending before the sockets
  close. No request is lost, an in-flight one finishes, and the old pod
  exits 0.

Every load is bounded (Load's limit, TIMEOUT on every wait) and the counts
are printed.
"""

from __future__ import annotations

import itertools
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trustme
from tests.kubelet import Volume

CONFIG = """
[host]
graceful_timeout = "10s"
{drain_delay}
env_files = ["../env/uvhost.env"]

[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "fd:{web}"
app = "{app}"
{tls}

[listeners.admin]
bind = "fd:{admin}"
routes = {{ "/healthz" = "@health", "/metrics" = "@metrics" }}

[apps.main]
target = "apps:main"
app_dir = "{apps}"
workers = 2

[apps.main.env]
GREETING = "${{GREETING}}"
"""

TLS = """
[listeners.web.tls]
certificate = "../tls/tls.crt"
private_key = "../tls/tls.key"
"""


@dataclass
class Pod:
    """One host in the kubelet's volume layout; `render` gives its config text."""

    host: Any
    config: Volume
    env: Volume
    tls: Volume | None
    web: tuple[str, int]
    admin: tuple[str, int]
    render: Callable[..., str]

    def ready(self) -> int:
        """The readiness probe's status (what the kubelet sees at /healthz)."""
        return _status(self.admin, "/healthz")


def _status(address: tuple[str, int], path: str) -> int:
    sock = socket.create_connection(address, timeout=2)
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def tls_files(leaf: trustme.LeafCert) -> dict[str, bytes]:
    """A `kubernetes.io/tls` Secret's two keys."""
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return {"tls.crt": chain, "tls.key": leaf.private_key_pem.bytes()}


def der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


@pytest.fixture
def pods(tmp_path, launch, listener, kit):
    """`pods(name, greeting=..., leaf=None, drain_delay=None)`: a started, serving Pod."""
    apps = tmp_path / "app"
    apps.mkdir()
    kit.write_apps(apps)

    def start(
        name: str,
        greeting: str = "one",
        leaf: trustme.LeafCert | None = None,
        drain_delay: str | None = None,
    ) -> Pod:
        web, admin = listener(), listener()
        root = tmp_path / name

        def render(app: str = "main") -> str:
            return CONFIG.format(
                web=web.fileno(),
                admin=admin.fileno(),
                apps=apps,
                app=app,
                tls=TLS if leaf is not None else "",
                drain_delay=f'drain_delay = "{drain_delay}"' if drain_delay else "",
            )

        env = Volume(root / "env", {"uvhost.env": f"GREETING={greeting}\n"})
        tls = Volume(root / "tls", tls_files(leaf)) if leaf is not None else None
        config = Volume(root / "config", {"uvhost.toml": render()})
        host = launch(config.folder / "uvhost.toml", pass_fds=(web.fileno(), admin.fileno()))
        host.wait_for("ready:")
        pod = Pod(
            host,
            config,
            env,
            tls,
            ("127.0.0.1", kit.port_of(web)),
            ("127.0.0.1", kit.port_of(admin)),
            render,
        )
        kit.wait_until(lambda: pod.ready() == 200, f"pod {name} ready")
        return pod

    return start


def report(capsys: pytest.CaptureFixture[str], what: str, load: Any) -> None:
    with capsys.disabled():
        counts = ", ".join(f"{name} {count}" for name, count in sorted(load.served.items()))
        print(f"\n{what}: {load.total()} served ({counts}), {len(load.failures)} failed")


# ------------------------------------------------------------------ ConfigMap


def test_a_configmap_edit_goes_live_under_load_and_a_bad_one_is_rejected(pods, kit, capsys):
    pod = pods("a", greeting="one")
    before = pod.host.wait_workers(3)  # main's 2 and the admin listener's 1
    greetings: set[str] = set()

    def request() -> None:
        greetings.add(kit.who(pod.web)["greeting"])

    def probe() -> None:
        assert pod.ready() == 200, "readiness dropped during a reload"

    with kit.Load(limit=8000) as load:
        load.add("web 1", request, pause=0.002)
        load.add("web 2", request, pause=0.002)
        load.add("readiness", probe, pause=0.05)
        kit.wait_until(lambda: load.total() > 200 or load.failures, "requests before the edit")

        # A good edit, in the env Secret and the ConfigMap at once (the app's env rolls it).
        mark = pod.host.mark()
        pod.env.update({"uvhost.env": "GREETING=two\n"})
        applied = pod.host.wait_applied(mark)
        assert "main" in applied, applied
        kit.wait_until(lambda: kit.who(pod.web)["greeting"] == "two", "the edit served")
        after = kit.wait_until(  # main's two rolled, the admin group's one left alone
            lambda: len(now := pod.host.workers()) == 3 and len(now & before) == 1 and now,
            "main's new generation alone",
        )

        # A bad ConfigMap edit: rejected with its position, the old config serves on.
        mark = pod.host.mark()
        pod.config.update({"uvhost.toml": pod.render(app="mian")})
        rejected = pod.host.wait_for("reload rejected", since=mark)
        assert "still serving the previous config" in rejected
        errors = pod.host.output(mark)
        assert 'uvhost.toml:13:7: error: app "mian" is not defined' in errors, errors
        assert 'did you mean "main"?' in errors
        served = load.total()
        kit.wait_until(lambda: load.total() > served + 300 or load.failures, "serving after it")
    report(capsys, "ConfigMap swap under load", load)
    assert not load.failures, load.failures[:5]
    assert greetings == {"one", "two"}
    assert pod.host.workers() == after  # the rejected edit changed nothing
    assert kit.who(pod.web)["greeting"] == "two"


# --------------------------------------------------------------------- Secret


def test_a_secret_certificate_update_is_served_under_load(pods, kit, capsys):
    ca = trustme.CA()
    first, second = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1", "localhost")
    pod = pods("b", leaf=first)
    assert pod.tls is not None
    client = ssl.create_default_context()
    ca.configure_trust(client)
    workers = pod.host.wait_workers(3)
    seen: list[bytes] = []

    def request() -> None:
        status, body, peer = kit.raw_request(pod.web, tls=client)
        assert status == 200, body
        assert peer is not None
        seen.append(peer)

    with kit.Load(limit=4000) as load:
        load.add("https 1", request, pause=0.002)
        load.add("https 2", request, pause=0.002)
        kit.wait_until(lambda: load.total() > 30 or load.failures, "requests before the update")
        mark = pod.host.mark()
        pod.tls.update(tls_files(second))
        pod.host.wait_for("certificate reloaded", since=mark)
        kit.wait_until(lambda: seen[-1] == der(second), "the new certificate served")
        served = load.total()
        kit.wait_until(lambda: load.total() > served + 150 or load.failures, "serving after it")
    report(capsys, "Secret certificate swap under load", load)
    assert not load.failures, load.failures[:5]
    assert {der(first), der(second)} == set(seen)
    assert seen[-20:] == [der(second)] * 20  # new connections get the new one, for good
    assert pod.host.workers() == workers  # no worker was restarted


# ------------------------------------------------------------ rolling update


class Service:
    """A Service's endpoints as readiness probes make them, and a client picking among them.

    A prober thread asks each pod's /healthz every PERIOD (a kubelet probes
    every periodSeconds; kube-proxy follows) and keeps the ready ones;
    `request()` sends one request, on a new connection, to the next ready pod.
    """

    PERIOD = 0.1

    def __init__(self, kit: Any) -> None:
        self.kit = kit
        self.pods: list[Pod] = []
        self.ready: list[Pod] = []
        self.served: dict[tuple[str, int], int] = {}
        self.unready_at: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.turn = itertools.count()
        self.stopping = threading.Event()
        self.prober = threading.Thread(target=self._probe, daemon=True)
        self.prober.start()

    def _probe(self) -> None:
        while not self.stopping.wait(self.PERIOD):
            ready = []
            for pod in list(self.pods):
                try:
                    ok = pod.ready() == 200
                except OSError:
                    ok = False
                if ok:
                    ready.append(pod)
                else:
                    self.unready_at.setdefault(pod.web, time.monotonic())
            with self.lock:
                self.ready = ready

    def request(self) -> None:
        with self.lock:
            pod = self.ready[next(self.turn) % len(self.ready)]
        self.kit.who(pod.web)
        with self.lock:
            self.served[pod.web] = self.served.get(pod.web, 0) + 1

    def stop(self) -> None:
        self.stopping.set()
        self.prober.join(5)


def test_a_rolling_update_loses_no_request(pods, kit, capsys):
    old = pods("old", greeting="v1", drain_delay="2s")
    service = Service(kit)
    service.pods.append(old)
    kit.wait_until(lambda: service.ready == [old], "the old pod in the endpoints")
    try:
        with kit.Load(limit=8000) as load:
            for index in range(3):
                load.add(f"client {index}", service.request, pause=0.002)
            kit.wait_until(lambda: load.total() > 50 or load.failures, "traffic on the old pod")

            new = pods("new", greeting="v2")  # maxSurge: the new pod first, then readiness
            service.pods.append(new)
            kit.wait_until(lambda: new in service.ready, "the new pod in the endpoints")
            kit.wait_until(lambda: service.served.get(new.web, 0) > 20, "traffic on the new pod")

            slow = socket.create_connection(old.web, timeout=10)  # in flight at SIGTERM
            slow.sendall(b"GET /slow?s=1 HTTP/1.1\r\nHost: k\r\n\r\n")
            kit.read_until(slow, b"begin")
            mark = old.host.mark()
            terminated = time.monotonic()
            old.host.signal(signal.SIGTERM)  # what the kubelet sends after preStop
            kit.wait_until(lambda: old.web in service.unready_at, "readiness 503 after SIGTERM")
            unready = service.unready_at[old.web] - terminated
            assert old.ready() == 503
            assert kit.who(old.web)["greeting"] == "v1"  # unready, yet still serving
            old.host.wait_for("not ready: serving 2s more", since=mark)
            assert old.host.wait_exit() == 0
            closed = time.monotonic() - terminated
            assert b"end" in kit.read_until(slow, b"0\r\n\r\n")  # the whole chunked body
            slow.close()
            served = service.served.get(new.web, 0)
            kit.wait_until(lambda: service.served[new.web] > served + 50, "the new pod alone")
    finally:
        service.stop()
    with capsys.disabled():
        print(
            f"\nrolling update: {load.total()} served "
            f"(old pod {service.served.get(old.web, 0)}, new pod {service.served[new.web]}), "
            f"{len(load.failures)} failed; readiness 503 {unready:.2f}s after SIGTERM, "
            f"old pod gone {closed:.2f}s after it"
        )
    assert not load.failures, load.failures[:5]
    assert unready < 1.5 < closed  # out of the endpoints well before the sockets closed


def test_a_second_sigterm_during_the_drain_delay_exits_at_once(pods):
    pod = pods("impatient", drain_delay="60s")
    mark = pod.host.mark()
    pod.host.signal(signal.SIGTERM)
    pod.host.wait_for("not ready: serving 60s more", since=mark)
    assert pod.ready() == 503
    started = time.monotonic()
    pod.host.signal(signal.SIGTERM)  # `docker stop` timing out, an operator's second Ctrl-C
    assert pod.host.wait_exit() == 1
    assert time.monotonic() - started < 5
    assert "second stop signal: exiting now" in pod.host.output(mark)
