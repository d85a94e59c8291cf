"""The PROXY header parser, byte by byte: every rule of v1 and v2, every split point."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from uvhost.server.proxy_protocol import (
    V1_MAX,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    HeaderParser,
    ProxyHeader,
    ProxyHeaderError,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(
    command: int = 0x21,
    family: int = 0x11,
    block: bytes | None = None,
    tlvs: bytes = b"",
    length: int | None = None,
) -> bytes:
    """A v2 header; by default PROXY TCP4 203.0.113.7:51000 → 10.0.0.1:443."""
    if block is None:
        block = v4_block("203.0.113.7", "10.0.0.1", 51000, 443)
    body = block + tlvs
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes((command, family)) + struct.pack("!H", size) + body


def v4_block(source: str, destination: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(source).packed
        + ipaddress.IPv4Address(destination).packed
        + struct.pack("!HH", sport, dport)
    )


def v6_block(source: str, destination: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(source).packed
        + ipaddress.IPv6Address(destination).packed
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes((kind,)) + struct.pack("!H", len(value)) + value


def parse(data: bytes) -> ProxyHeader | None:
    return HeaderParser().feed(data)


def parsed(data: bytes) -> ProxyHeader:
    header = parse(data)
    assert header is not None
    return header


def refused(data: bytes) -> str:
    with pytest.raises(ProxyHeaderError) as caught:
        parse(data)
    return str(caught.value)


# ------------------------------------------------------------------- v1


V1_TCP4 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n"


def test_v1_tcp4_gives_both_addresses_and_the_rest():
    header = parsed(V1_TCP4 + REQUEST)
    assert header == ProxyHeader(1, (("203.0.113.7", 51000), ("10.0.0.1", 443)), REQUEST)


def test_v1_tcp6_addresses_are_in_their_usual_spelling():
    header = parsed(b"PROXY TCP6 2001:DB8:0:0::7 2001:db8::1 0 65535\r\n")
    assert header.addresses == (("2001:db8::7", 0), ("2001:db8::1", 65535))
    assert header.rest == b""


@pytest.mark.parametrize(
    "line",
    [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"],
)
def test_v1_unknown_leaves_the_connection_addresses(line: bytes):
    assert parsed(line + REQUEST) == ProxyHeader(1, None, REQUEST)


def test_v1_longest_header_is_accepted():
    longest = b"PROXY UNKNOWN " + b"x" * (V1_MAX - 16) + b"\r\n"
    assert len(longest) == V1_MAX
    assert parsed(longest).addresses is None


def test_v1_longest_tcp6_header_fits():
    widest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {widest} {widest} 65535 65535\r\n".encode()
    assert len(line) == 104
    assert parsed(line).addresses == ((widest, 65535), (widest, 65535))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"PROXY UNKNOWN " + b"x" * (V1_MAX - 15) + b"\r\n", "longer than 107"),
        (b"PROXY TCP4 " + b"1" * 200, "longer than 107"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "LF without CR"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n", "CR not followed by LF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", None),  # not yet an error: LF may follow
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "6 fields"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "6 fields"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "6 fields"),
        (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY UNKNOWNX\r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY\r\n", "not a PROXY protocol header"),
        (b"PROXY \r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "valid IPv4"),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "valid IPv4"),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "valid IPv4"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "valid IPv4"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "valid IPv6"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "valid IPv6"),
        (b"PROXY TCP6 [::1] ::1 1 2\r\n", "valid IPv6"),
        (b"PROXY TCP6 ::1::2 ::1 1 2\r\n", "valid IPv6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xd9\xa1\r\n", "port"),  # Arabic-Indic digit one
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 000001\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "port"),
    ],
)
def test_v1_is_strict(data: bytes, why: str | None):
    if why is None:
        assert parse(data) is None
    else:
        assert why in refused(data)


def test_v1_port_zero_and_largest_are_ports():
    assert parsed(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n").addresses == (
        ("0.0.0.0", 0),
        ("255.255.255.255", 65535),
    )


# ------------------------------------------------------------------- v2


def test_v2_tcp4():
    header = parsed(v2() + REQUEST)
    assert header == ProxyHeader(2, (("203.0.113.7", 51000), ("10.0.0.1", 443)), REQUEST)


def test_v2_tcp6():
    block = v6_block("2001:db8::7", "2001:db8::1", 1, 2)
    header = parsed(v2(family=0x21, block=block))
    assert header.addresses == (("2001:db8::7", 1), ("2001:db8::1", 2))


def test_v2_local_uses_the_connection_addresses_whatever_its_block():
    assert parsed(v2(command=0x20, family=0x00, block=b"") + b"x") == ProxyHeader(2, None, b"x")
    # spec 2.2: LOCAL discards the protocol block, family included
    assert parsed(v2(command=0x20, block=b"\x01\x02")).addresses is None


def test_v2_unspec_proxy_leaves_the_connection_addresses():
    assert parsed(v2(family=0x00, block=b"", tlvs=tlv(0x04, b""))).addresses is None


def test_v2_unix_has_no_host_addresses():
    block = b"/run/lb.sock".ljust(108, b"\0") + b"/run/app.sock".ljust(108, b"\0")
    assert parsed(v2(family=0x31, block=block)).addresses == (None, None)


def test_v2_tlvs_are_skipped():
    tlvs = tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0xEA, b"\x01vpce-0123") + tlv(4, b"")
    header = parsed(v2(tlvs=tlvs) + REQUEST)
    assert header.addresses == (("203.0.113.7", 51000), ("10.0.0.1", 443))
    assert header.rest == REQUEST


def test_v2_largest_accepted_and_one_more_refused():
    room = V2_MAX_LENGTH - 12 - 3
    assert parsed(v2(tlvs=tlv(0xE0, b"x" * room))).rest == b""
    assert "more than" in refused(v2(tlvs=tlv(0xE0, b"x" * (room + 1))))


def test_v2_oversize_is_refused_from_its_length_alone():
    """No waiting for 64 KiB that will be refused anyway."""
    assert "more than" in refused(v2()[:14] + struct.pack("!H", 65535))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (v2(command=0x11), "version 1, not 2"),
        (v2(command=0x31), "version 3, not 2"),
        (v2(command=0x22), "command 2 is neither LOCAL nor PROXY"),
        (v2(command=0x2F), "command 15"),
        (v2(family=0x12), "datagram"),
        (v2(family=0x22), "datagram"),
        (v2(family=0x41), "0x41 is not defined"),
        (v2(family=0x13), "0x13 is not defined"),
        (v2(family=0x01), "0x01 is not defined"),
        (v2(length=11), "cannot hold its 12-byte addresses"),
        (v2(family=0x21, block=b"\0" * 35), "cannot hold its 36-byte addresses"),
        (v2(family=0x31, block=b"\0" * 215), "cannot hold its 216-byte addresses"),
        (v2(tlvs=b"\x01\x00"), "inside a TLV"),
        (v2(tlvs=tlv(1, b"ab")[:-1]), "past the end"),
        (v2(tlvs=tlv(1, b"ab") + b"\x02\x00\x09x"), "past the end"),
        (V2_SIGNATURE[:5] + b"X", "not a PROXY protocol header"),
        (b"\r\n\r\n\x00\r\nQUIT\r", "not a PROXY protocol header"),
    ],
)
def test_v2_is_strict(data: bytes, why: str):
    assert why in refused(data)


def test_v2_lying_length_waits_for_bytes_that_never_come():
    """Length bigger than what follows: need more (the connection's timeout ends it)."""
    assert parse(v2(length=200)) is None


# -------------------------------------------------------- anything else


@pytest.mark.parametrize(
    "data",
    [
        REQUEST,
        b"PRI * HTTP/2.0\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"proxy TCP4",
        b"\0",
        b"PROX\n",
        b" ",
    ],
)
def test_anything_else_is_refused(data: bytes):
    assert "not a PROXY protocol header" in refused(data)


def test_a_plain_request_is_refused_at_its_first_byte():
    assert "not a PROXY" in refused(b"G")


def test_nothing_yet_needs_more():
    parser = HeaderParser()
    assert parser.feed(b"") is None
    assert parser.feed(b"") is None


# ------------------------------------------------------ every split point

VALID = [
    V1_TCP4 + REQUEST,
    V1_TCP6 + REQUEST,
    b"PROXY UNKNOWN\r\n" + REQUEST,
    v2() + REQUEST,
    v2(family=0x21, block=v6_block("::1", "::2", 3, 4), tlvs=tlv(1, b"h2")) + REQUEST,
    v2(command=0x20, family=0x00, block=b"") + REQUEST,
]


@pytest.mark.parametrize("data", VALID, ids=range(len(VALID)))
def test_every_split_gives_the_same_answer(data: bytes):
    whole = parsed(data)
    header_size = len(data) - len(REQUEST)
    for split in range(len(data) + 1):
        parser = HeaderParser()
        first = parser.feed(data[:split])
        if split >= header_size:
            assert first is not None, split
            assert first.addresses == whole.addresses
            assert first.rest + data[split:] == REQUEST
        else:
            assert first is None, split
            assert parser.feed(data[split:]) == whole, split


@pytest.mark.parametrize("data", VALID, ids=range(len(VALID)))
def test_byte_by_byte_gives_the_same_answer(data: bytes):
    parser = HeaderParser()
    header_size = len(data) - len(REQUEST)
    for index in range(header_size - 1):
        assert parser.feed(data[index : index + 1]) is None, index
    assert parser.feed(data[header_size - 1 :]) == parse(data)


@pytest.mark.parametrize(
    ("data", "at"),
    [
        (REQUEST, 1),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", len(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")),
        (b"PROXY TCP4 " + b"1" * 200, V1_MAX),
        (v2(command=0x11), 13),
        (v2(family=0x41), 14),
        (v2()[:14] + struct.pack("!H", 65535), 16),
        (v2(length=11), 16),
    ],
)
def test_byte_by_byte_refuses_as_soon_as_it_can(data: bytes, at: int):
    parser = HeaderParser()
    for index in range(at - 1):
        assert parser.feed(data[index : index + 1]) is None, index
    with pytest.raises(ProxyHeaderError):
        parser.feed(data[at - 1 : at])
