"""deploy/kubernetes rendered by `kubectl kustomize`, and checked against uvhost's own rules.

The manifests and the config in their ConfigMap must agree: the probes on
the paths where the config mounts `@health`, the ports where it binds, the
grace period covering preStop + drain_delay + graceful_timeout, the volumes
where the config's relative paths lead. Reading the numbers from both sides
(the config through uvhost's loader) means an edit of one that breaks the
other fails here.

Rendering needs only kubectl (kustomize is built in), offline; its YAML is
turned into JSON by `kubectl annotate --local`, which needs no cluster
either, so no YAML library is needed.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.kubelet import Volume

from uvhost.config.load import load_config
from uvhost.config.model import HostConfig

ROOT = Path(__file__).parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
CONFIG = MANIFESTS / "uvhost.toml"
MARK = "uvhost.test/rendered"

Object = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (Debian: apt-get install kubernetes-client)")
    return found


@pytest.fixture(scope="module")
def rendered() -> dict[str, Object]:
    """Every object `kubectl kustomize deploy/kubernetes` renders, as "Kind/name"."""
    tool = kubectl()
    yaml = subprocess.run(
        [tool, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    converted = subprocess.run(
        [tool, "annotate", "--local", "-f", "-", "-o", "json", f"{MARK}=1"],
        input=yaml,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    decoder, objects, at = json.JSONDecoder(), {}, 0
    while at < len(converted.strip()):
        found, end = decoder.raw_decode(converted, at)
        found["metadata"]["annotations"].pop(MARK)
        objects[f"{found['kind']}/{found['metadata']['name']}"] = found
        at = end + len(converted[end:]) - len(converted[end:].lstrip())
    return objects


def pod_layout(tmp_path: Path, env: str = "API_TOKEN=t0ken\n") -> Path:
    """The ConfigMap's file in the pod's volume layout: config/, tls/, env/ side by side,
    as the Deployment mounts them; the app folder points at a copy of the image's app."""
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(ROOT / "examples" / "hello.py", app)
    text = CONFIG.read_text(encoding="utf-8")
    assert 'app_dir = "/app"' in text
    leaf = trustme.CA().issue_cert("uvhost.example")
    root = tmp_path / "etc" / "uvhost"
    Volume(
        root / "tls",
        {
            "tls.crt": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
            "tls.key": leaf.private_key_pem.bytes(),
        },
    )
    Volume(root / "env", {"uvhost.env": env})
    config = Volume(root / "config", {"uvhost.toml": text.replace('"/app"', f'"{app}"')})
    return config.folder / "uvhost.toml"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> HostConfig:
    """The ConfigMap's config as a pod loads it (valid, or this fixture fails)."""
    path = pod_layout(tmp_path_factory.mktemp("pod"))
    result = load_config(path, environ={})
    assert result.config is not None, [str(d) for d in result.diagnostics]
    return result.config


def deployment(rendered: dict[str, Object]) -> tuple[Object, Object]:
    """The pod spec and its one container."""
    pod = rendered["Deployment/uvhost"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def port_of(bind: object) -> int:
    """The port of a TCP bind (the config's `TcpBind`)."""
    port = getattr(bind, "port", None)
    assert isinstance(port, int), bind
    return port


def route_to(config: HostConfig, endpoint: str) -> tuple[str, str]:
    """The listener and path where the config mounts a built-in (`@health`, `@metrics`)."""
    for name, listener in config.listeners.items():
        for path, target in (listener.routes or {}).items():
            if target == endpoint:
                return name, path
    pytest.fail(f"the config does not mount {endpoint}")


# ------------------------------------------------------------------ the tests


def test_the_kustomization_renders_every_object(rendered):
    assert set(rendered) == {
        "ConfigMap/uvhost-config",
        "Secret/uvhost-env",
        "Service/uvhost",
        "Service/uvhost-metrics",
        "Deployment/uvhost",
        "PodDisruptionBudget/uvhost",
        "HorizontalPodAutoscaler/uvhost",
        "ServiceMonitor/uvhost",
    }


def test_the_configmap_is_the_config_file_under_a_fixed_name(rendered):
    configmap = rendered["ConfigMap/uvhost-config"]  # no hash suffix: edits are followed live
    assert configmap["data"] == {"uvhost.toml": CONFIG.read_text(encoding="utf-8")}
    pod, container = deployment(rendered)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert volumes["config"]["configMap"]["name"] == "uvhost-config"
    assert all("subPath" not in mount for mount in mounts.values()), "subPath is never updated"
    config_path = posixpath.join(mounts["config"]["mountPath"], "uvhost.toml")
    assert container["args"] == ["run", config_path]


def test_the_config_is_valid_in_the_pod_layout_and_needs_its_secret(config, tmp_path):
    assert config.listeners["web"].tls is not None
    missing = load_config(pod_layout(tmp_path, env="OTHER=1\n"), environ={})
    assert missing.config is None
    assert "set API_TOKEN in the Secret uvhost-env" in str(missing.diagnostics)


def test_the_config_finds_its_secrets_where_the_deployment_mounts_them(rendered, config):
    pod, container = deployment(rendered)
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    here = mounts["config"]
    tls = config.listeners["web"].tls
    assert tls is not None
    text = CONFIG.read_text(encoding="utf-8")
    named = dict(re.findall(r'(certificate|private_key|env_files) = \[?"([^"]+)"', text))
    for key, secret_file in [
        ("certificate", "tls/tls.crt"),
        ("private_key", "tls/tls.key"),
        ("env_files", "env/uvhost.env"),
    ]:
        volume, file = secret_file.split("/")
        assert posixpath.normpath(posixpath.join(here, named[key])) == posixpath.join(
            mounts[volume], file
        ), key
    assert volumes["tls"]["secret"]["secretName"] == "uvhost-tls"
    assert volumes["env"]["secret"]["secretName"] == "uvhost-env"
    assert "uvhost.env" in rendered["Secret/uvhost-env"]["stringData"]


def test_the_probes_ask_health_where_the_config_mounts_it(rendered, config):
    _, container = deployment(rendered)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    listener, path = route_to(config, "@health")
    assert ports[listener] == port_of(config.listeners[listener].bind)
    assert ports["web"] == port_of(config.listeners["web"].bind)
    readiness = container["readinessProbe"]
    assert readiness["httpGet"] == {"path": path, "port": listener}
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": f"{path}/live", "port": listener}
    # Readiness must see the 503 well within the drain delay, while the pod still serves.
    noticed = readiness["periodSeconds"] * readiness["failureThreshold"]
    assert config.host.drain_delay is not None
    assert noticed < config.host.drain_delay


def test_the_grace_period_covers_prestop_drain_delay_and_graceful_timeout(rendered, config):
    pod, container = deployment(rendered)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    needed = pre_stop + (config.host.drain_delay or 0) + config.host.graceful_timeout
    assert pod["terminationGracePeriodSeconds"] >= needed + 1, "the kubelet would cut the drain"
    strategy = rendered["Deployment/uvhost"]["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_the_pod_runs_as_the_image_user_without_privileges(rendered):
    pod, container = deployment(rendered)
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user
    assert security["fsGroup"] == security["runAsGroup"]  # Secrets readable at 0440
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # With a read-only root, the control socket needs a writable folder of its own.
    runtime = {env["name"]: env["value"] for env in container["env"]}["XDG_RUNTIME_DIR"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[runtime]]


def test_service_pdb_and_hpa_select_the_pods(rendered):
    labels = rendered["Deployment/uvhost"]["spec"]["template"]["metadata"]["labels"]
    _, container = deployment(rendered)
    names = {port["name"] for port in container["ports"]}
    service = rendered["Service/uvhost"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert [port["targetPort"] for port in service["ports"]] == ["web"]  # admin stays inside
    metrics = rendered["Service/uvhost-metrics"]["spec"]
    assert metrics["selector"].items() <= labels.items()
    assert metrics["clusterIP"] == "None"
    assert {port["targetPort"] for port in metrics["ports"]} <= names
    pdb = rendered["PodDisruptionBudget/uvhost"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1
    hpa = rendered["HorizontalPodAutoscaler/uvhost"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "uvhost",
    }
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container["resources"]["requests"]  # utilization is against the request
    assert hpa["minReplicas"] >= 2  # with the PDB, one pod always serves


def test_prometheus_scrapes_metrics_where_the_config_mounts_it(rendered, config):
    listener, path = route_to(config, "@metrics")
    port = port_of(config.listeners[listener].bind)
    annotations = rendered["Deployment/uvhost"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == path
    monitor = rendered["ServiceMonitor/uvhost"]["spec"]
    service = rendered["Service/uvhost-metrics"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    public = rendered["Service/uvhost"]["metadata"]["labels"]
    assert not monitor["selector"]["matchLabels"].items() <= public.items()
    (endpoint,) = monitor["endpoints"]
    by_name = {entry["name"]: entry for entry in service["spec"]["ports"]}
    assert by_name[endpoint["port"]]["targetPort"] == listener
    assert endpoint["path"] == path
