"""Regenerate the TEST-ONLY TLS fixtures in this folder (see README.txt).

Run from the repository root: .venv/bin/python tests/configs/certs/generate.py
The files are checked in, so the tests never generate keys; rerun this only to
replace them (the golden outputs do not depend on their contents).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

HERE = Path(__file__).parent
PASSWORD = b"test-only-password"  # also in README.txt and the configs that use it


def main() -> None:
    ca = trustme.CA(organization_name="uvhost test CA (TEST ONLY)")
    server = ca.issue_cert(
        "localhost",
        "127.0.0.1",
        "::1",
        not_after=datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC),
    )
    ca.cert_pem.write_to_path(str(HERE / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(HERE / "server.pem"))
    server.private_key_pem.write_to_path(str(HERE / "server.key"))

    other = ec.generate_private_key(ec.SECP256R1())
    (HERE / "other.key").write_bytes(_pem(other))

    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    (HERE / "server-encrypted.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD),
        )
    )
    (HERE / "garbage.pem").write_text(
        "This is not a certificate: a TEST-ONLY fixture for unreadable PEM.\n", encoding="utf-8"
    )


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


if __name__ == "__main__":
    main()
