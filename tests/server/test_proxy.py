"""Trusted proxies: X-Forwarded-For / X-Forwarded-Proto, believed only from trusted peers."""

from ipaddress import ip_network

import pytest

from uvhost.server.proxy import TrustedProxies, forwarded_client, parse_address

PROXIES = TrustedProxies(
    [ip_network("127.0.0.1"), ip_network("10.0.0.0/8"), ip_network("fd00::/8")]
)


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("10.1.2.3", True),
        ("11.0.0.1", False),
        ("fd12::1", True),
        ("fe80::1", False),
        ("::1", False),
        ("::ffff:10.0.0.7", True),  # IPv4-mapped, from a dual-stack listener
        ("::ffff:192.168.0.1", False),
        ("[fd00::1]", True),
        ("not an ip", False),
        ("", False),
        (None, True),  # a Unix-socket peer is local
    ],
)
def test_trusts(host, trusted):
    assert PROXIES.trusts(host) is trusted
    assert PROXIES.trusts(host) is trusted  # and again, from the cache


def test_trust_cache_stays_bounded():
    proxies = TrustedProxies([ip_network("10.0.0.0/8")])
    for i in range(5000):
        proxies.trusts(f"192.0.{i // 256}.{i % 256}")
    assert len(proxies._cache) <= 512
    assert proxies.trusts("10.9.9.9")


def test_nothing_trusted():
    proxies = TrustedProxies([])
    assert not proxies.trusts("127.0.0.1")
    assert proxies.trusts(None)


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in pairs]


def resolve(pairs, client=("10.0.0.1", 5000), scheme="http"):
    return forwarded_client(headers(*pairs), client, scheme, PROXIES)


def test_trusted_peer_forwards_client_and_scheme():
    got = resolve([("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")])
    assert got == (("203.0.113.9", 0), "https")


def test_untrusted_peer_is_ignored():
    pairs = [("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]
    assert resolve(pairs, client=("198.51.100.7", 4000)) == (("198.51.100.7", 4000), "http")


def test_no_headers_changes_nothing():
    assert resolve([("host", "example.com")]) == (("10.0.0.1", 5000), "http")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # the right-most untrusted address wins; left of it is the client's own claim
        ("203.0.113.9, 10.0.0.2", "203.0.113.9"),
        ("1.1.1.1, 203.0.113.9, 10.0.0.2, 10.0.0.3", "203.0.113.9"),
        ("6.6.6.6, 203.0.113.9", "203.0.113.9"),  # spoofed left-most value
        ("127.0.0.1, 203.0.113.9", "203.0.113.9"),  # spoofed "trusted" value left of it
        # all trusted: the left-most is the origin
        ("10.0.0.5, 10.0.0.2", "10.0.0.5"),
        # IPv6, bracketed forms and ports
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:4711, fd00::9", "2001:db8::1"),
        ("203.0.113.9:51000", "203.0.113.9"),
        ("2001:DB8:0:0::1", "2001:db8::1"),  # reported in canonical form
    ],
)
def test_x_forwarded_for_from_the_right(value, expected):
    client, _ = resolve([("x-forwarded-for", value)])
    assert client == (expected, 0)


def test_multiple_header_lines_are_combined_in_order():
    pairs = [("x-forwarded-for", "1.1.1.1, 203.0.113.9"), ("x-forwarded-for", "10.0.0.2")]
    assert resolve(pairs)[0] == ("203.0.113.9", 0)
    pairs = [("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "198.51.100.1")]
    assert resolve(pairs)[0] == ("198.51.100.1", 0)


@pytest.mark.parametrize(
    "value",
    [
        "unknown",
        "",
        "203.0.113.9, garbage",
        "203.0.113.9,,10.0.0.2",
        "203.0.113.9:http",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "1.2.3.4.5",
    ],
)
def test_malformed_x_forwarded_for_keeps_the_peer(value):
    assert resolve([("x-forwarded-for", value)])[0] == ("10.0.0.1", 5000)


def test_malformed_entry_left_of_the_client_does_not_matter():
    assert resolve([("x-forwarded-for", "garbage, 203.0.113.9")])[0] == ("203.0.113.9", 0)


@pytest.mark.parametrize(
    ("proto", "scheme", "expected"),
    [
        ("https", "http", "https"),
        ("HTTPS", "http", "https"),
        (" https ", "http", "https"),
        ("http", "https", "http"),
        ("wss", "http", "https"),
        ("https", "ws", "wss"),
        ("wss", "ws", "wss"),
        ("http", "wss", "ws"),
        ("ws", "wss", "ws"),
        ("https, http", "http", "https"),  # the first value
        ("ftp", "http", "http"),
        ("", "https", "https"),
        ("javascript", "ws", "ws"),
    ],
)
def test_x_forwarded_proto(proto, scheme, expected):
    assert resolve([("x-forwarded-proto", proto)], scheme=scheme)[1] == expected


def test_x_forwarded_proto_first_line_wins():
    pairs = [("x-forwarded-proto", "https"), ("x-forwarded-proto", "http")]
    assert resolve(pairs)[1] == "https"


def test_unix_socket_peer_is_trusted():
    pairs = [("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]
    assert resolve(pairs, client=None) == (("203.0.113.9", 0), "https")
    assert resolve([], client=None) == (None, "http")


def test_ipv6_peer():
    pairs = [("x-forwarded-for", "203.0.113.9")]
    assert resolve(pairs, client=("fd00::2", 1)) == (("203.0.113.9", 0), "http")
    assert resolve(pairs, client=("2001:db8::5", 1)) == (("2001:db8::5", 1), "http")


def test_latin1_bytes_do_not_raise():
    raw = [(b"x-forwarded-for", b"\xff\xfe, 203.0.113.9"), (b"x-forwarded-proto", b"\xe9")]
    assert forwarded_client(raw, ("10.0.0.1", 1), "http", PROXIES) == (
        ("203.0.113.9", 0),
        "http",
    )


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("[::1]:80", "::1"),
        ("::1", "::1"),
        ("x", None),
        ("[]", None),
        ("1.2.3.4:\uff11\uff12", None),
    ],  # fullwidth digits are not a port
)
def test_parse_address(text, parsed):
    address = parse_address(text)
    assert (str(address) if address else None) == parsed
