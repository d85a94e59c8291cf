"""`detach`: the config workers receive reads like the model, pickles without pydantic."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from uvhost.config.detach import Record, Secret, detach
from uvhost.config.model import validate_config
from uvhost.config.plan import build_plan

CONFIG = {
    "listeners": {
        "web": {
            "bind": "127.0.0.1:8000",
            "app": "api",
            "forwarded_allow_ips": ["10.0.0.0/8"],
            "headers": {"x-served-by": "uvhost"},
            "tls": {"certificate": "cert.pem", "private_key": "key.pem", "password": "hunter2"},
            "protocols": ["h2"],
            "http2": {"max_concurrent_streams": 250, "ping_interval": "30s"},
        },
        "sock": {"bind": "unix:/tmp/u.sock", "routes": {"/": "api", "/health": "@health"}},
    },
    "apps": {"api": {"target": "apps:api", "websocket": {"max_message_bytes": "64KiB"}}},
}


@pytest.fixture
def config(tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    return validate_config(CONFIG, tmp_path)


def test_every_field_reads_the_same(config):
    detached = detach(config)
    web, model_web = detached.listeners["web"], config.listeners["web"]
    assert isinstance(detached, Record)
    assert isinstance(web, Record)
    for name in type(model_web).model_fields:
        if name not in ("tls", "bind", "http2"):
            assert getattr(web, name) == getattr(model_web, name), name
    assert isinstance(web.http2, Record)
    for name in type(model_web.http2).model_fields:
        assert getattr(web.http2, name) == getattr(model_web.http2, name), name
    assert web.protocols == ("h2",)
    assert web.http2.max_concurrent_streams == 250
    assert web.http2.ping_interval == 30.0
    assert detached.listeners["sock"].http2.max_frame_size == 16384
    assert web.tls.certificate == model_web.tls.certificate
    assert web.bind.host == model_web.bind.host
    assert web.bind.port == 8000
    assert detached.listeners["sock"].routes == {"/": "api", "/health": "@health"}
    assert detached.apps["api"].websocket.max_message_bytes == 64 * 1024
    assert detached.host.graceful_timeout == config.host.graceful_timeout


def test_a_secret_keeps_its_value_and_hides_it(config):
    password = detach(config).listeners["web"].tls.password
    assert isinstance(password, Secret)
    assert password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(password)
    assert "hunter2" not in repr(detach(config))


def test_detached_config_is_read_only(config):
    detached = detach(config)
    with pytest.raises(AttributeError, match="read-only"):
        detached.host = None


def test_a_detached_plan_unpickles_in_a_process_without_pydantic(config, tmp_path):
    plan = build_plan(config, cpu_count=2, base_dir=tmp_path).detached()
    data = tmp_path / "plan.pickle"
    data.write_bytes(pickle.dumps(plan))
    script = (
        "import pickle, sys\n"
        f"plan = pickle.loads(open({str(data)!r}, 'rb').read())\n"
        "assert plan.config.listeners['web'].tls.password.get_secret_value() == 'hunter2'\n"
        "tops = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(tops & {'pydantic', 'pydantic_core'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    assert out.stdout.strip() == "[]"
