"""Reload triggers besides saving the config: SIGHUP, and an edit of an env file it names."""

import signal
import time

CONFIG = """
[host]
watch = {watch}
env_files = [".env"]

[listeners.web]
bind = "fd:{web}"
app = "main"

[apps.main]
target = "apps:main"
env = {{ GREETING = "${{GREETING}}" }}
"""


def start(tmp_path, launch, listener, kit, *, watch):
    web = listener()
    kit.write_apps(tmp_path)
    (tmp_path / ".env").write_text("GREETING=one\n", encoding="utf-8")
    config = tmp_path / "uvhost.toml"
    config.write_text(CONFIG.format(watch=watch, web=web.fileno()), encoding="utf-8")
    host = launch(config, pass_fds=(web.fileno(),))
    host.wait_for("ready:")
    address = ("127.0.0.1", kit.port_of(web))
    assert kit.who(address)["greeting"] == "one"
    return host, address


def test_sighup_applies_an_edit_when_watching_is_off(tmp_path, launch, listener, kit):
    host, address = start(tmp_path, launch, listener, kit, watch="false")
    kit.save(tmp_path / ".env", "GREETING=two\n")
    assert kit.who(address)["greeting"] == "one"  # not watched: nothing happens by itself
    mark = host.mark()
    host.signal(signal.SIGHUP)
    host.wait_applied(mark)
    kit.wait_until(lambda: kit.who(address)["greeting"] == "two", "the SIGHUP reload")


def test_editing_an_env_file_reloads(tmp_path, launch, listener, kit):
    host, address = start(tmp_path, launch, listener, kit, watch="true")
    mark = host.mark()
    kit.save(tmp_path / ".env", "GREETING=three\n")
    host.wait_applied(mark)
    kit.wait_until(lambda: kit.who(address)["greeting"] == "three", "the env file edit")


def test_turning_watch_on_and_off_is_applied(tmp_path, launch, listener, kit):
    host, address = start(tmp_path, launch, listener, kit, watch="false")
    config = tmp_path / "uvhost.toml"
    text = config.read_text(encoding="utf-8")
    kit.save(config, text.replace("watch = false", "watch = true"))
    mark = host.mark()
    host.signal(signal.SIGHUP)  # watching was off: this edit needs a signal
    host.wait_applied(mark)

    mark = host.mark()
    kit.save(tmp_path / ".env", "GREETING=two\n")  # now watched: applied by itself
    host.wait_applied(mark)
    kit.wait_until(lambda: kit.who(address)["greeting"] == "two", "the watched edit")

    mark = host.mark()
    kit.save(config, text)  # watch = false again, applied by the watcher itself
    host.wait_applied(mark)
    kit.save(tmp_path / ".env", "GREETING=three\n")
    time.sleep(3)  # longer than the watcher's debounce and its 2 s recheck
    assert kit.who(address)["greeting"] == "two"
    mark = host.mark()
    host.signal(signal.SIGHUP)
    host.wait_applied(mark)
    kit.wait_until(lambda: kit.who(address)["greeting"] == "three", "the SIGHUP reload")
