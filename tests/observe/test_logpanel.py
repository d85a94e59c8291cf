"""The log panel: bounded, whole lines only, control characters made visible."""

import logging

from uvhost.observe.logpanel import LogPanel


def test_keeps_only_the_last_lines():
    panel = LogPanel(capacity=3)
    for number in range(10):
        panel.write(f"line {number}\n")
    assert panel.tail(5) == ["line 7", "line 8", "line 9"]
    assert panel.tail(1) == ["line 9"]
    assert panel.tail(0) == ()


def test_partial_writes_wait_for_their_newline():
    panel = LogPanel()
    panel.write("first ha")
    assert panel.tail(5) == []
    panel.write("lf\nsecond\nthi")
    assert panel.tail(5) == ["first half", "second"]


def test_escapes_terminal_control_characters():
    panel = LogPanel()
    panel.add("evil \x1b[2J\x1b[31mred\x07 bell\r")
    assert panel.tail(1) == ["evil \\x1b[2J\\x1b[31mred\\x07 bell"]


def test_stands_in_for_stderr_in_a_logging_handler():
    panel = LogPanel()
    assert not panel.isatty()
    handler = logging.StreamHandler(panel)  # type: ignore[arg-type]
    logger = logging.getLogger("uvhost.test.panel")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("one\ntwo")
    finally:
        logger.removeHandler(handler)
    assert panel.tail(5) == ["one", "two"]
