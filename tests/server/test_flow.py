"""TurnWriter: writes held to the end of a loop turn, one callback for every connection."""

import asyncio

from uvhost.server.flow import TurnWriter


class Connection:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def flush(self) -> None:
        self.log.append(self.name)


def test_connections_held_in_one_turn_flush_together_in_order_on_the_next():
    log: list[str] = []

    async def main() -> list[list[str]]:
        writer = TurnWriter()
        for name in ("a", "b", "c"):
            writer.flush_later(Connection(name, log))
        seen_before = list(log)
        await asyncio.sleep(0)
        seen_after = list(log)
        await asyncio.sleep(0)
        return [seen_before, seen_after, list(log)]

    before, after, later = asyncio.run(main())
    assert before == []  # nothing is written while the turn is still running
    assert after == ["a", "b", "c"]
    assert later == ["a", "b", "c"]  # flushed once


def test_a_connection_held_after_a_flush_gets_a_new_one():
    log: list[str] = []

    async def main() -> None:
        writer = TurnWriter()
        writer.flush_later(Connection("first", log))
        await asyncio.sleep(0)
        writer.flush_later(Connection("second", log))
        await asyncio.sleep(0)

    asyncio.run(main())
    assert log == ["first", "second"]
