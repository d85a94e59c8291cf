"""The PROXY protocol header (HAProxy's spec, v1 text and v2 binary), sans I/O.

A TCP load balancer (AWS NLB, HAProxy, many Kubernetes ingresses) that does
not speak HTTP tells the server who the client is by sending one header
before the client's own bytes. `HeaderParser.feed` is given bytes as they
arrive and answers None (need more), a `ProxyHeader` (the addresses and the
bytes left after the header), or raises `ProxyHeaderError`.

Invariants:
- Pure: no socket, no clock, no logging. The connection that owns the parser
  (`proxy_intake.py`) applies the timeout and decides what a failure costs.
- Strict. The header comes from our own load balancer, never from a client,
  so anything not exactly per spec is a misconfiguration (a client reaching
  the port directly, a balancer not set to send the header) and is refused
  rather than guessed at: v1 with one space between fields, addresses of the
  family it names, ports without leading zeros, CRLF, at most 107 bytes; v2
  with version 2, command LOCAL or PROXY, a family the spec defines, and a
  length that holds that family's addresses and TLVs that tile the rest.
- Refused as early as the bytes allow: the first byte that is neither "P"
  nor "\\r" ends a plain `GET /`, and a v2 length beyond `V2_MAX_LENGTH` is
  refused as soon as its two bytes arrive, before anything is buffered.
- Bounded memory: at most `V1_MAX` or 16 + `V2_MAX_LENGTH` bytes are held.
- LOCAL (v2), UNKNOWN (v1) and UNSPEC (v2) carry no client: the answer's
  `addresses` is None and the connection's own addresses stand (the spec
  says so: these are the balancer's own health checks). A v2 UNIX header
  names socket paths, not hosts: the addresses are (None, None), as the
  ASGI scope has them for a Unix socket.
- TLVs are skipped after their framing is checked; none changes anything
  (a CRC32C TLV is not verified: the header came over TCP from a trusted
  address).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = [
    "V1_MAX",
    "V2_MAX_LENGTH",
    "V2_SIGNATURE",
    "Address",
    "HeaderParser",
    "ProxyHeader",
    "ProxyHeaderError",
]

V1_PREFIX = b"PROXY "
V1_MAX = 107
"""The longest v1 header, CRLF included (spec 2.1: "PROXY UNKNOWN" with two IPv6
addresses and ports at their longest)."""
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version/command, family/protocol, length
V2_MAX_LENGTH = 4096 - V2_FIXED
"""The most address-and-TLV bytes accepted after v2's 16 fixed bytes (the spec allows
65535). The largest address block is 216 bytes (two Unix paths); the TLVs balancers
send (ALPN, authority, unique ID of at most 128 bytes, SSL facts, AWS's VPC endpoint,
Azure's link ID) add a few hundred more. 4 KiB in all is ten times what is seen, and
keeps a misbehaving sender from making every connection hold 64 KiB before any
request."""

Address = tuple[str, int]

_V2_LOCAL, _V2_PROXY = 0x20, 0x21
_V2_UNSPEC = 0x00
# family/protocol byte → (size of its address block, address size or 0 for Unix paths)
_V2_FAMILIES = {0x11: (12, 4), 0x21: (36, 16), 0x31: (216, 0)}
_V2_DATAGRAM = frozenset((0x12, 0x22, 0x32))
_TLV_HEAD = 3  # type, 2-byte length

_DIGITS = frozenset(b"0123456789")
_V4_CHARS = frozenset(b"0123456789.")
_V6_CHARS = frozenset(b"0123456789abcdefABCDEF:.")


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY header; the message says what is wrong, in one line."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int
    """1 (text) or 2 (binary)."""
    addresses: tuple[Address | None, Address | None] | None
    """(client, server) from the header; None: the connection's own stand (LOCAL,
    UNKNOWN, UNSPEC)."""
    rest: bytes
    """Bytes after the header, from the same reads: the start of the client's stream."""


class HeaderParser:
    """Feed it bytes until it answers; one parser per connection, used once."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> ProxyHeader | None:
        """The header once it is complete; None while more bytes are needed.

        Raises ProxyHeaderError as soon as the bytes cannot start a valid header.
        """
        buffer = self.buffer + data if self.buffer else data
        self.buffer = buffer
        if buffer[:1] == b"P":
            return _feed_v1(buffer)
        if buffer[:1] == b"\r":
            return _feed_v2(buffer)
        if not buffer:
            return None
        raise ProxyHeaderError("not a PROXY protocol header")


# ----------------------------------------------------------------------- v1


def _feed_v1(buffer: bytes) -> ProxyHeader | None:
    if buffer[: len(V1_PREFIX)] != V1_PREFIX[: len(buffer)]:
        raise ProxyHeaderError("not a PROXY protocol header")
    end = buffer.find(b"\n", 0, V1_MAX)
    if end < 0:
        if len(buffer) >= V1_MAX:
            raise ProxyHeaderError(f"v1 header longer than {V1_MAX} bytes")
        if b"\r" in buffer[:-1]:
            raise ProxyHeaderError("v1 header has a CR not followed by LF")
        return None
    if end == 0 or buffer[end - 1] != 0x0D:
        raise ProxyHeaderError("v1 header ends in LF without CR")
    return ProxyHeader(1, _v1_addresses(buffer[: end - 1]), buffer[end + 1 :])


def _v1_addresses(line: bytes) -> tuple[Address, Address] | None:
    if b"\r" in line:
        raise ProxyHeaderError("v1 header has a CR not followed by LF")
    fields = line.split(b" ")
    protocol = fields[1] if len(fields) > 1 else b""
    if protocol == b"UNKNOWN":
        # spec 2.1: whatever follows UNKNOWN up to the CRLF is to be ignored
        return None
    if protocol not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("v1 protocol is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 6:
        raise ProxyHeaderError("v1 header does not have 6 fields separated by single spaces")
    _, _, source, destination, source_port, destination_port = fields
    six = protocol == b"TCP6"
    client = (_v1_ip(source, six=six), _v1_port(source_port))
    server = (_v1_ip(destination, six=six), _v1_port(destination_port))
    return client, server


def _v1_ip(text: bytes, *, six: bool) -> str:
    """An address of the stated family, in its usual spelling (no zone, no brackets)."""
    allowed = _V6_CHARS if six else _V4_CHARS
    if text and allowed.issuperset(text):
        try:
            address = (ipaddress.IPv6Address if six else ipaddress.IPv4Address)(
                text.decode("ascii")
            )
        except ValueError:
            pass
        else:
            return str(address)
    family = "IPv6" if six else "IPv4"
    raise ProxyHeaderError(f"v1 address is not a valid {family} address")


def _v1_port(text: bytes) -> int:
    if (
        0 < len(text) <= 5
        and _DIGITS.issuperset(text)
        and (text[:1] != b"0" or text == b"0")
        and int(text) <= 65535
    ):
        return int(text)
    raise ProxyHeaderError("v1 port is not a number from 0 to 65535 without leading zeros")


# ----------------------------------------------------------------------- v2


def _feed_v2(buffer: bytes) -> ProxyHeader | None:
    if buffer[: len(V2_SIGNATURE)] != V2_SIGNATURE[: len(buffer)]:
        raise ProxyHeaderError("not a PROXY protocol header")
    if len(buffer) >= 13 and buffer[12] not in (_V2_LOCAL, _V2_PROXY):
        if buffer[12] >> 4 != 2:
            raise ProxyHeaderError(f"v2 header with version {buffer[12] >> 4}, not 2")
        raise ProxyHeaderError(f"v2 command {buffer[12] & 0xF} is neither LOCAL nor PROXY")
    if len(buffer) >= 14 and buffer[13] not in _V2_FAMILIES and buffer[13] != _V2_UNSPEC:
        if buffer[13] in _V2_DATAGRAM:
            raise ProxyHeaderError("v2 header for a datagram connection on a stream socket")
        raise ProxyHeaderError(f"v2 address family/protocol 0x{buffer[13]:02x} is not defined")
    if len(buffer) < V2_FIXED:
        return None
    length = int.from_bytes(buffer[14:16], "big")
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"v2 header of {length} bytes, more than {V2_MAX_LENGTH}")
    command, family = buffer[12], buffer[13]
    block_size, ip_size = _V2_FAMILIES.get(family, (0, 0))
    if command == _V2_PROXY and length < block_size:
        raise ProxyHeaderError(f"v2 length {length} cannot hold its {block_size}-byte addresses")
    end = V2_FIXED + length
    if len(buffer) < end:
        return None
    rest = buffer[end:]
    if command == _V2_LOCAL:
        # spec 2.2: the receiver uses the real endpoints and discards the whole block
        return ProxyHeader(2, None, rest)
    _check_tlvs(buffer[V2_FIXED + block_size : end])
    if family == _V2_UNSPEC:
        return ProxyHeader(2, None, rest)
    if not ip_size:  # AF_UNIX: paths, which the scope does not carry
        return ProxyHeader(2, (None, None), rest)
    block = buffer[V2_FIXED : V2_FIXED + block_size]
    make = ipaddress.IPv4Address if ip_size == 4 else ipaddress.IPv6Address
    ports = 2 * ip_size
    client = (str(make(block[:ip_size])), int.from_bytes(block[ports : ports + 2], "big"))
    server = (
        str(make(block[ip_size:ports])),
        int.from_bytes(block[ports + 2 : ports + 4], "big"),
    )
    return ProxyHeader(2, (client, server), rest)


def _check_tlvs(tlvs: bytes) -> None:
    """Each TLV's length must fit what is left: a broken list means a broken sender."""
    at = 0
    while at < len(tlvs):
        if len(tlvs) - at < _TLV_HEAD:
            raise ProxyHeaderError("v2 header ends inside a TLV's type and length")
        at += _TLV_HEAD + int.from_bytes(tlvs[at + 1 : at + 3], "big")
        if at > len(tlvs):
            raise ProxyHeaderError("v2 TLV runs past the end of the header")
