"""The Dockerfile read instruction by instruction, and built when a Docker daemon answers.

The points checked are the ones a production image must get right: several
stages with the final one on a slim Python base, only the built virtualenv
carried over (no compiler, no pip cache, no source tree), a non-root numeric
USER (what Kubernetes' runAsNonRoot can verify), STOPSIGNAL SIGTERM (what
`uvhost run` drains on), tini as PID 1 in exec form (so signals reach it and
orphans are reaped), the default config valid, and a .dockerignore that
keeps local virtualenvs and VCS data out without hiding what COPY needs.

The build itself needs a daemon; without one the test says so and skips.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from uvhost.config.load import load_config

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BUILD_TIMEOUT = 900
"""Seconds a whole image build may take (a base image pull and pip install included)."""

DOCKER_STOP_TIMEOUT = 10
"""Seconds `docker stop` waits after the stop signal before SIGKILL, by default."""

COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|make|build-essential|python3?-dev)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for word, args in self.instructions if word == keyword]


def read_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and the stages; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base, name or None))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        elif keyword == "ARG":
            key, _, value = args.partition("=")
            arguments[key] = value
    return arguments, stages


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], list[Stage]]:
    return read_dockerfile(DOCKERFILE)


def test_the_build_has_stages_and_a_slim_final_one(parsed):
    arguments, stages = parsed
    assert len(stages) >= 2
    final = stages[-1]
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim(-\w+)?", final.base), final.base
    version = arguments["PYTHON_VERSION"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    minimum = project["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))
    assert f"Programming Language :: Python :: {version}" in project["project"]["classifiers"]


def test_the_final_stage_takes_the_virtualenv_and_no_compiler(parsed):
    _, stages = parsed
    build, final = stages[0], stages[-1]
    copies = final.all("COPY")
    assert f"--from={build.name} /opt/uvhost /opt/uvhost" in copies
    assert build.base == final.base  # the virtualenv links to the base image's python
    assert not any(COMPILERS.search(command) for command in final.all("RUN")), final.all("RUN")
    installs = [
        command.split("install", 1)[1] for command in final.all("RUN") if "apt-get" in command
    ]
    assert installs, "tini comes from the distribution"
    packages = {word for part in installs for word in part.split("&&")[0].split()}
    assert packages - {"--yes", "--no-install-recommends"} == {"tini"}
    assert any("rm -rf /var/lib/apt/lists" in command for command in final.all("RUN"))
    assert not any(source.split()[0].rstrip("/") in (".", "host") for source in copies)


def test_it_runs_as_a_numeric_non_root_user(parsed):
    _, stages = parsed
    (user,) = stages[-1].all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) >= 1000  # not root, not a system account of the base image


def test_signals_reach_uvhost_through_tini(parsed):
    _, stages = parsed
    final = stages[-1]
    assert final.all("STOPSIGNAL") == ["SIGTERM"]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["/usr/bin/tini", "--", "uvhost"]  # exec form: no shell
    (command,) = final.all("CMD")
    run, config = json.loads(command)
    assert run == "run"
    assert f"deploy/container/uvhost.toml {config}" in final.all("COPY")


def test_the_default_config_is_valid_and_exposed(parsed, tmp_path):
    _, stages = parsed
    final = stages[-1]
    (app_copy,) = [copy for copy in final.all("COPY") if copy.startswith("examples/")]
    source, target = app_copy.split()
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(ROOT / source, app / Path(target).name)
    text = (ROOT / "deploy" / "container" / "uvhost.toml").read_text(encoding="utf-8")
    image_app = str(Path(target).parent)
    assert f'app_dir = "{image_app}"' in text
    config_file = tmp_path / "uvhost.toml"
    config_file.write_text(text.replace(f'"{image_app}"', f'"{app}"'), encoding="utf-8")
    result = load_config(config_file, environ={})
    assert result.config is not None, [str(d) for d in result.diagnostics]
    ports = {str(listener.bind.port) for listener in result.config.listeners.values()}
    assert set(" ".join(final.all("EXPOSE")).split()) == ports
    host = result.config.host
    assert (host.drain_delay or 0) + host.graceful_timeout < DOCKER_STOP_TIMEOUT


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (or a folder above it) out of the context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
        for pattern in patterns
        for prefix in prefixes
    )


def test_dockerignore_keeps_out_the_clutter_but_not_what_copy_needs(parsed):
    _, stages = parsed
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(pattern.startswith("!") for pattern in patterns)  # this reader's limit
    for unwanted in (".git", ".venv", ".venv-3.12", "tests", "host/uvhost/__pycache__"):
        assert _ignored(unwanted, patterns), unwanted
    sources = [
        word
        for stage in stages
        for copy in stage.all("COPY")
        if not copy.startswith("--from")
        for word in copy.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source.rstrip("/"), patterns), f"{source} is ignored but copied"


def test_the_image_builds_and_runs_uvhost_as_its_user():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on PATH: the image was not built")
    info = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        pytest.skip(f"no Docker daemon answers, so the image was not built: {reason}")
    tag = f"uvhost-test:{uuid.uuid4().hex[:12]}"
    try:
        subprocess.run(
            [docker, "build", "--tag", tag, str(ROOT)],
            check=True,
            timeout=BUILD_TIMEOUT,
            capture_output=True,
        )
        inspect = subprocess.run(
            [docker, "image", "inspect", tag, "--format", "{{json .Config}}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        image = json.loads(inspect.stdout)
        assert image["User"] == "10001:10001"
        assert image["StopSignal"] == "SIGTERM"
        checked = subprocess.run(
            [docker, "run", "--rm", tag, "check", "/etc/uvhost/config/uvhost.toml"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        compilers = subprocess.run(
            [docker, "run", "--rm", "--entrypoint", "sh", tag, "-c", "command -v gcc cc || true"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert compilers.stdout.strip() == ""
    finally:
        subprocess.run(
            [docker, "image", "rm", "--force", tag], capture_output=True, timeout=120, check=False
        )
