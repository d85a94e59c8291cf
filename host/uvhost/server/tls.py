"""An `ssl.SSLContext` for a listener's `tls` table.

Invariants:
- Pure with respect to the process: reads the configured files, returns a
  new context, touches no socket and no global state. So a worker can build
  a fresh context when TLS files change and give it to new connections
  while old ones keep theirs.
- Every failure is one `TlsSetupError` whose `message` is one line naming
  the file or setting at fault; `config/checks.py` diagnoses the same
  problems with positions before a worker ever starts, so this is the last
  line of defence (files changed between check and start), not the main one.
- OpenSSL is never allowed to prompt: the private-key password is always
  passed as a callable, so an encrypted key without `password` fails with a
  message instead of blocking the worker on a terminal read.
- Defaults are the conservative server ones: TLS 1.2 or later, no
  compression (CRIME), no renegotiation (a client-triggered CPU sink), the
  server's cipher order. ALPN offers the listener's `protocols`, h2 first
  (OpenSSL takes the first of the server's list that the client offers, so
  the order here is the preference, whatever order the config names them).
"""

from __future__ import annotations

import ssl
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvhost.config.hostnames import HostTable

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import SiteTlsSettings, TlsSettings


__all__ = [
    "ALPN_PROTOCOLS",
    "CertificateChooser",
    "TlsSetupError",
    "build_context",
    "build_site_context",
]

ALPN_PROTOCOLS = ("h2", "http/1.1")  # by preference

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_VERIFY = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


class TlsSetupError(Exception):
    """A TLS table that cannot become a context; `message` is one line."""

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def build_context(settings: TlsSettings, protocols: Collection[str]) -> ssl.SSLContext:
    """A server context for `settings` offering `protocols` by ALPN; raises TlsSetupError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[settings.min_version]
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_DH_USE
        | ssl.OP_SINGLE_ECDH_USE
    )
    context.set_alpn_protocols([name for name in ALPN_PROTOCOLS if name in protocols])
    if settings.ciphers is not None:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError as exc:
            raise TlsSetupError(f'no cipher matches "{settings.ciphers}"') from exc
    _load_chain(context, settings)
    if settings.client_ca is not None:
        try:
            context.load_verify_locations(cafile=settings.client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError(
                f"cannot load client CA file {settings.client_ca}: {_reason(exc)}"
            ) from exc
    elif settings.client_auth != "none":
        raise TlsSetupError(f'client_auth = "{settings.client_auth}" needs client_ca')
    context.verify_mode = _VERIFY[settings.client_auth]
    return context


def build_site_context(
    listener: TlsSettings, site: SiteTlsSettings, protocols: Collection[str]
) -> ssl.SSLContext:
    """The listener's context with the site's certificate: versions, ciphers, client
    certificates and ALPN must be the listener's, since a handshake settles them before
    the SNI callback swaps the context in. Raises TlsSetupError."""
    context = build_context(listener, protocols)
    _load_chain(context, site)
    return context


def reload_certificate(context: ssl.SSLContext, settings: TlsSettings | SiteTlsSettings) -> None:
    """Load a replaced certificate and key into a live context; raises TlsSetupError.

    OpenSSL gives the new pair to handshakes that start afterwards; open
    connections keep theirs. The files are first checked on a scratch
    context, so a bad file leaves the live one untouched.
    """
    _load_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), settings)
    _load_chain(context, settings)


class CertificateChooser:
    """The SNI callback of a listener with site certificates, and the rule that a request
    must name a host its connection's certificate was chosen for (else 421). Both look
    names up in one `HostTable`: exact, then wildcard, then the listener's own context.
    """

    def __init__(self, default: ssl.SSLContext, by_host: dict[str, ssl.SSLContext]) -> None:
        self.table = HostTable(default, by_host)
        self.certificate_for = self.table.for_request
        """The context a request for a host (bytes as sent) must have been made with."""
        default.sni_callback = self.choose

    def choose(self, tls: Any, server_name: str | None, initial: ssl.SSLContext) -> None:
        """OpenSSL's servername callback: swap in the site's context (None: go on). The
        name is text, an IDNA A-label."""
        if server_name is not None:
            chosen = self.table.for_name(server_name.lower().rstrip("."))
            if chosen is not initial:
                tls.context = chosen


def _load_chain(context: ssl.SSLContext, settings: TlsSettings | SiteTlsSettings) -> None:
    secret = settings.password.get_secret_value() if settings.password is not None else ""
    asked: list[bool] = []

    def password() -> str:
        asked.append(True)
        return secret

    key: Path = settings.private_key or settings.certificate
    try:
        context.load_cert_chain(settings.certificate, settings.private_key, password)
    except ssl.SSLError as exc:
        reason = _reason(exc)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            message = f"private key {key} does not match certificate {settings.certificate}"
        elif asked and settings.password is None:
            message = f"private key {key} is encrypted and no password is set"
        elif asked:
            message = f"private key {key} cannot be decrypted with the configured password"
        else:
            message = (
                f"cannot load certificate {settings.certificate} and key {key}: {reason} "
                "(both must be PEM)"
            )
        raise TlsSetupError(message) from exc
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise TlsSetupError(f"cannot read TLS file{where}: {_reason(exc)}") from exc


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return exc.strerror or str(exc)
