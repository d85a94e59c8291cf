"""TurnWriter: writes held to the end of a loop turn, one callback for every connection;
WriteFlow's clock for clients that take nothing (send_timeout)."""

import asyncio
import contextlib
import socket
import time

from uvhost.server.flow import TurnWriter, WriteFlow, delivery_mark


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


def test_stuck_for_counts_only_while_paused_and_restarts_when_the_client_takes_bytes():
    async def main() -> list[float]:
        flow = WriteFlow(asyncio.get_running_loop())
        seen = [flow.stuck_for(10.0, 5)]  # not paused: never stuck
        flow.pause()
        seen += [flow.stuck_for(10.0, 5), flow.stuck_for(11.5, 5)]  # paused, nothing taken
        seen += [flow.stuck_for(12.0, 6), flow.stuck_for(13.0, 6)]  # took a byte at 12
        flow.resume()
        flow.pause()
        seen += [flow.stuck_for(20.0, 6), flow.stuck_for(21.0, 6)]  # a new pause, a new clock
        return seen

    assert asyncio.run(main()) == [0.0, 0.0, 1.5, 0.0, 1.0, 0.0, 1.0]


class Transport:
    """What delivery_mark asks of a transport: its socket and its buffer."""

    def __init__(self, sock: socket.socket | None, buffered: int = 0) -> None:
        self.sock, self.buffered = sock, buffered

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None

    def get_write_buffer_size(self) -> int:
        return self.buffered


def test_delivery_mark_grows_as_a_tcp_client_reads():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        served, _ = server.accept()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with client, served:
            served.setblocking(False)
            before = delivery_mark(Transport(served))
            with contextlib.suppress(BlockingIOError):
                while True:  # fill the client's window and our send queue
                    served.send(b"x" * 65536)
            full = delivery_mark(Transport(served))
            assert full > before
            assert delivery_mark(Transport(served)) == full  # nothing read: no progress
            client.recv(65536)
            deadline = time.monotonic() + 5
            while delivery_mark(Transport(served)) == full:
                assert time.monotonic() < deadline, "the read never showed"
                time.sleep(0.01)


def test_delivery_mark_of_a_unix_socket_is_what_is_still_queued():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(b"y" * 1000)
        queued = delivery_mark(Transport(ours, buffered=500))
        assert queued <= -1500  # the kernel's queue and the transport's buffer
        theirs.recv(1000)
        assert delivery_mark(Transport(ours, buffered=500)) == -500
        assert delivery_mark(Transport(None, buffered=7)) == -7
