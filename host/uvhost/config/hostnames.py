"""Host names as sites name them in the file and as requests name them on the wire.

Why one module for both sides: a site matches a request only if both were
brought to the same form, so the rule is written once. The config side
(`site_host`) runs in the supervisor; the request side (`request_host`) runs
in workers for each new Host value, so this module imports neither pydantic
nor anything of the server.

The common form: lower case ASCII, no port, no trailing dot, Unicode labels
as their punycode A-labels the way browsers and curl make them (UTS 46
non-transitional: "bücher.example" is "xn--bcher-kva.example", and "ß"
stays "ß", so "straße.example" is "xn--strae-oqa.example", where Python's
IDNA 2003 codec would say "strasse"), IPv6 literals in brackets as in a Host
header. A wildcard is "*." followed by a DNS name (never an IP address) and
stands for exactly one more label.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_NAME = 253  # RFC 1035 2.3.4, without the trailing dot
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")  # "_" as in service names


class HostNameError(ValueError):
    """A site host that cannot match any request; `hint` says what to write."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def site_host(text: str) -> str:
    """The common form of a host a site claims: a name, "*.name", or an IP address."""
    value = text.strip().lower().rstrip(".")
    if not value:
        raise HostNameError("an empty host", 'write a name such as "example.com"')
    if any(char in value for char in "/@ \t"):
        raise HostNameError(
            f'"{text}" is not a host name',
            "write the name alone: no scheme, path, port or user",
        )
    if value.startswith("[") or value.count(":") > 1:
        return _ipv6(value, text)
    if ":" in value:
        raise HostNameError(
            f'"{text}" has a port',
            "a site matches its hosts on every port of its listeners; write the name alone",
        )
    wildcard = value.startswith("*.")
    name = value[2:] if wildcard else value
    if "*" in name:
        raise HostNameError(
            f'"{text}" has a * that is not the whole first label',
            'a wildcard is "*." and a name, such as "*.example.com" (one label, any name)',
        )
    if _is_ipv4(name) or (wildcard and all(label.isdigit() for label in name.split("."))):
        if wildcard:
            raise HostNameError(
                f'"{text}" is a wildcard of an IP address',
                "a wildcard is for DNS names; list the addresses one by one",
            )
        return name
    ascii_name = _idna(name, text)
    if len(ascii_name) > MAX_NAME:
        raise HostNameError(f'"{text}" is longer than {MAX_NAME} characters', "")
    bad = next((label for label in ascii_name.split(".") if not _LABEL.match(label)), None)
    if bad is not None:
        raise HostNameError(
            f'"{text}" has the label "{bad}", which no host name has',
            "labels are 1-63 letters, digits and hyphens, not starting or ending with one",
        )
    return "*." + ascii_name if wildcard else ascii_name


def _ipv6(value: str, text: str) -> str:
    inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return f"[{ipaddress.IPv6Address(inner).compressed}]"
    except ValueError:
        raise HostNameError(
            f'"{text}" is not a host name or IP address',
            'an IPv6 address is written as in a URL, such as "[::1]", without a port',
        ) from None


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def _idna(name: str, text: str) -> str:
    """Each non-ASCII label mapped as UTS 46 does for the names people write (compatibility
    forms folded by NFKC, lower case; "ß" and final "ς" kept), then punycode."""
    if name.isascii():
        return name
    labels = []
    for label in name.split("."):
        mapped = unicodedata.normalize("NFKC", label).lower()
        if mapped.isascii():
            labels.append(mapped)
            continue
        if not _valid_unicode_label(mapped):
            raise HostNameError(
                f'"{text}" is not a valid internationalised name',
                "a label is letters, digits, marks and hyphens, and does not mix "
                "right-to-left with left-to-right letters (RFC 5893); or write its "
                "punycode (xn--) form",
            )
        try:
            labels.append("xn--" + mapped.encode("punycode").decode("ascii"))
        except UnicodeError:
            raise HostNameError(
                f'"{text}" is not a valid internationalised name',
                "check the name, or write its punycode (xn--) form",
            ) from None
    return ".".join(labels)


def _valid_unicode_label(label: str) -> bool:
    """Letters, marks, digits and hyphens only (no symbols or punctuation: RFC 5892), and
    the bidi rule's plainest part: no left-to-right letter beside a right-to-left one."""
    if any(not (unicodedata.category(ch)[0] in "LMN" or ch == "-") for ch in label):
        return False
    directions = {unicodedata.bidirectional(ch) for ch in label}
    return not ({"R", "AL"} & directions and "L" in directions)


def request_host(raw: bytes) -> str:
    """The common form of a request's Host (or `:authority`), already checked valid by the
    protocol: the port cut off, lower case, no trailing dot."""
    text = raw.decode("latin-1")
    if text.startswith("["):
        end = text.find("]")
        literal = text[1:end] if end > 0 else text[1:]
        try:
            return f"[{ipaddress.IPv6Address(literal).compressed}]"
        except ValueError:
            return text[: end + 1].lower()
    host, _, _ = text.partition(":")
    return host.lower().rstrip(".")


def parent_wildcard(host: str) -> str:
    """The wildcard that would match `host` ("a.example.com" -> "*.example.com"), or ""
    (an IP address has none)."""
    if host[-1:].isdigit() and _is_ipv4(host):
        return ""
    _, dot, rest = host.partition(".")
    return "*." + rest if dot and rest else ""


class HostTable(Generic[T]):
    """Values by host: exact names, then the wildcard one label up, then a default.

    `for_request` takes a Host (or `:authority`) as sent and remembers the answer
    in a bounded dict keyed by those bytes, so a request naming a host seen
    before costs one dict hit; a client inventing hosts only empties it.
    """

    __slots__ = ("_by_host", "cache", "default")

    CACHE_SIZE = 4096

    def __init__(self, default: T, by_host: dict[str, T]) -> None:
        self.default = default
        self._by_host = by_host
        self.cache: dict[bytes | None, T] = {None: default}
        """Host bytes as sent -> value; read directly by hot paths, filled by `for_request`."""

    def values(self) -> list[T]:
        """The default and every value named for a host, each once."""
        return [self.default, *{id(v): v for v in self._by_host.values()}.values()]

    def for_name(self, name: str) -> T:
        """`name` in this module's form."""
        by_host = self._by_host
        found = by_host.get(name)
        if found is None:
            found = by_host.get(parent_wildcard(name))
        return self.default if found is None else found

    def for_request(self, host: bytes | None) -> T:
        cache = self.cache
        try:
            return cache[host]
        except KeyError:
            if host is None:  # cached, unless a subclass emptied the cache
                return self.default
        value = self.for_name(request_host(host))
        if len(cache) >= self.CACHE_SIZE:
            cache.clear()
            cache[None] = self.default
        cache[host] = value
        return value
