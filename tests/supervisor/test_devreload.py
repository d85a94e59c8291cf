"""`uvhost run --reload`: editing a Python file under one app's folder rolls only that
app's group, and the new code is what answers next."""

from pathlib import Path

from uvhost.config.plan import Plan
from uvhost.supervisor import devreload

CONFIG = """
[logging]
format = "plain"
access_log = false

[listeners.a]
bind = "fd:{fd_a}"
app = "a"

[listeners.b]
bind = "fd:{fd_b}"
app = "b"

[apps.a]
target = "a_app:app"
app_dir = "a"

[apps.b]
target = "b_app:app"
app_dir = "b"
"""


def app_source(kit, label: str) -> str:
    return f"{kit.APPS}\napp = make({label!r})\n"


def test_editing_an_apps_file_rolls_only_its_group(tmp_path, launch, listener, kit):
    sock_a, sock_b = listener(), listener()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}_app.py").write_text(app_source(kit, f"{name}-v1"))
    config = tmp_path / "uvhost.toml"
    config.write_text(CONFIG.format(fd_a=sock_a.fileno(), fd_b=sock_b.fileno()), encoding="utf-8")
    host = launch(config, pass_fds=(sock_a.fileno(), sock_b.fileno()), args=("--reload",))
    host.wait_for("ready: 2 group(s), 2 worker(s)")
    host.wait_for("--reload: watching")
    a, b = ("127.0.0.1", kit.port_of(sock_a)), ("127.0.0.1", kit.port_of(sock_b))
    before_a, before_b = kit.who(a), kit.who(b)
    assert (before_a["app"], before_b["app"]) == ("a-v1", "b-v1")

    mark = host.mark()
    kit.save(tmp_path / "a" / "a_app.py", app_source(kit, "a-v2"))
    (tmp_path / "a" / "notes.txt").write_text("not code")  # ignored: not *.py
    line = host.wait_for("reloaded group", since=mark)
    assert "file(s) changed" in line
    after_a = kit.wait_until(lambda: (w := kit.who(a))["app"] == "a-v2" and w, "the new code")
    assert after_a["pid"] != before_a["pid"]
    after_b = kit.who(b)
    assert after_b == before_b  # same pid, same code: B's group was left alone
    assert host.output(mark).count("reloaded group") == 1


def test_changes_map_to_the_groups_whose_apps_live_under_them(tmp_path, kit):
    from uvhost.config.load import load_config  # noqa: PLC0415

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    config = tmp_path / "uvhost.toml"
    config.write_text(CONFIG.format(fd_a=3, fd_b=4), encoding="utf-8")
    plan: Plan = load_config(config).plan()
    a_dir, b_dir = (tmp_path / "a").resolve(), (tmp_path / "b").resolve()
    changed = {a_dir / "x.py", a_dir / "pkg" / "y.py", tmp_path.resolve() / "other.py"}
    groups = devreload.affected_groups(plan, changed)
    (name,) = groups  # one group: a's
    assert plan.group(name).apps == ("a",)
    assert groups[name] == 2
    assert set(devreload.watched_folders(plan)) == {a_dir, b_dir}


def test_the_filter_takes_python_files_outside_virtualenvs_only(tmp_path):
    keep = devreload.CodeFilter()
    added = devreload.watchfiles.Change.added
    assert keep(added, str(tmp_path / "app" / "views.py"))
    assert not keep(added, str(tmp_path / "app" / "notes.txt"))
    assert not keep(added, str(tmp_path / "app" / "__pycache__" / "views.cpython-311.pyc"))
    for venv in (".venv", "venv", "site-packages"):
        assert not keep(added, str(tmp_path / venv / "lib" / "mod.py"))
    assert isinstance(Path(tmp_path), Path)
