"""Tests for `uvhost.config.checks`: every cross-field rule, on real files loaded with
`load_config`, asserting the message, the severity and where in the file it points."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from uvhost.config.checks import UNIX_PATH_MAX
from uvhost.config.load import LoadResult, load_config

Found = tuple[str, str, int | None, int | None]  # severity, message, line, column


def load(folder: Path, text: str, environ: dict[str, str] | None = None) -> LoadResult:
    path = folder / "uvhost.toml"
    # Test snippets are indented by 8 spaces, or not at all (APPS): strip those 8.
    path.write_text(re.sub(r"^ {8}", "", text, flags=re.M).lstrip("\n"), encoding="utf-8")
    return load_config(path, environ={} if environ is None else environ)


def found(result: LoadResult) -> list[Found]:
    return [
        (
            d.severity,
            d.message,
            d.span.line if d.span else None,
            d.span.column if d.span else None,
        )
        for d in result.diagnostics
    ]


def hints(result: LoadResult) -> list[str]:
    return [d.hint for d in result.diagnostics]


APPS = """
[apps.site]
target = "site:app"

[apps.api]
target = "api:app"
"""


# ---------------------------------------------------------------- routing


def test_a_valid_config_has_no_diagnostics(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api", "/healthz" = "@health" }
        """
        + APPS,
    )
    assert found(result) == []
    assert result.ok


def test_both_app_and_routes(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"
        routes = { "/api" = "api" }
        """
        + APPS,
    )
    assert found(result) == [
        ("error", 'listener "public" has both app and routes', 4, 1),
    ]
    assert "not both" in hints(result)[0]
    assert not result.ok


def test_neither_app_nor_routes(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        """
        + APPS,
    )
    assert found(result)[0] == ("error", 'listener "public" serves nothing', 1, 12)
    assert 'routes = { "/" = "NAME" }' in hints(result)[0]


def test_empty_routes_serve_nothing(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = {}
        """
        + APPS,
    )
    assert found(result)[0] == (
        "error",
        'listener "public" serves nothing: its routes table is empty',
        3,
        1,
    )


def test_missing_app_with_did_you_mean(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "sit"
        """
        + APPS,
    )
    assert found(result)[:1] == [("error", 'app "sit" is not defined', 3, 7)]
    assert hints(result)[0] == 'did you mean "site"?'


def test_missing_route_target_points_at_its_value(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "apii", "/x" = "zzz" }
        """
        + APPS,
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [
        ("error", 'app "apii" is not defined', 3, 35),
        ("error", 'app "zzz" is not defined', 3, 50),
    ]
    assert hints(result)[:2] == ['did you mean "api"?', "expected one of: api, site"]


def test_missing_app_when_there_are_no_apps(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"
        """,
    )
    assert found(result) == [("error", 'app "site" is not defined', 3, 7)]
    assert hints(result) == ["add an [apps.site] (or [redirects.site]) table"]


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("api", "does not start with /"),
        ("/a?b", "contains a query or fragment"),
        ("/a#b", "contains a query or fragment"),
        ("/a b", "contains whitespace or control characters"),
        ("/a\\tb", "contains whitespace or control characters"),
        ("//a", "contains an empty segment (//)"),
        ("/a//b", "contains an empty segment (//)"),
        ("/a/../b", "contains a . or .. segment"),
        ("/.", "contains a . or .. segment"),
    ],
)
def test_malformed_prefixes(tmp_path: Path, prefix: str, reason: str) -> None:
    result = load(
        tmp_path,
        f"""
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = {{ "/" = "site", "{prefix}" = "api" }}
        """
        + APPS,
    )
    shown = prefix.replace("\\t", "\t")
    assert found(result) == [("error", f'route prefix "{shown}" {reason}', 3, 26)]
    assert "leading slash" in hints(result)[0]


@pytest.mark.parametrize(("first", "second"), [("/api", "/api/"), ("/caf%C3%A9", "/café")])
def test_overlapping_prefixes(tmp_path: Path, first: str, second: str) -> None:
    result = load(
        tmp_path,
        f"""
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = {{ "{first}" = "site", "{second}" = "api" }}
        """
        + APPS,
    )
    column = len(f'routes = {{ "{first}" = "site", ') + 1
    assert found(result) == [
        ("error", f'route prefix "{second}" is the same as "{first}"', 3, column)
    ]


def test_trailing_slashes_are_fine_alone(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api/" = "api" }
        """
        + APPS,
    )
    assert found(result) == []


# ------------------------------------------------------------------ binds


def two_listeners(first: str, second: str) -> str:
    return f"""
        [listeners.a]
        bind = "{first}"
        app = "site"

        [listeners.b]
        bind = "{second}"
        app = "site"
        """ + APPS.replace('[apps.api]\ntarget = "api:app"\n', "")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("127.0.0.1:8000", "127.0.0.1:8000"),
        ("0.0.0.0:8000", "127.0.0.1:8000"),
        ("127.0.0.1:8000", "0.0.0.0:8000"),
        ("[::]:8000", "127.0.0.1:8000"),
        ("localhost:8000", "localhost:8000"),
        ("unix:a.sock", "unix:./a.sock"),
        ("fd:3", "fd:3"),
        ("systemd:web", "systemd:web"),
    ],
)
def test_bind_clashes(tmp_path: Path, first: str, second: str) -> None:
    result = load(tmp_path, two_listeners(first, second))
    errors = [f for f in found(result) if f[0] == "error"]
    shown_first = first.replace("unix:", f"unix:{tmp_path}/")
    shown_second = second.replace("unix:./", f"unix:{tmp_path}/")
    assert errors == [
        (
            "error",
            f'listener "b" binds {shown_second}, which clashes with listener "a" ({shown_first})',
            6,
            8,
        )
    ]
    assert "merge their routes" in hints(result)[0]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("127.0.0.1:8000", "127.0.0.1:8001"),
        ("127.0.0.1:8000", "127.0.0.2:8000"),
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("0.0.0.0:0", "127.0.0.1:0"),
        ("unix:a.sock", "unix:b.sock"),
        ("fd:3", "fd:4"),
        ("fd:3", "127.0.0.1:3"),
        ("systemd:web", "systemd:api"),
        ("systemd:3", "fd:3"),
    ],
)
def test_binds_that_do_not_clash(tmp_path: Path, first: str, second: str) -> None:
    result = load(tmp_path, two_listeners(first, second))
    assert found(result) == []


def test_unix_mode_on_tcp(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:8000"
        app = "site"
        unix_mode = "660"
        """
        + APPS,
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [
        (
            "error",
            'unix_mode is set, but listener "public" binds 127.0.0.1:8000, not a Unix socket',
            4,
            1,
        )
    ]


# ------------------------------------------------------------------ HTTP/2

HTTP2_WARNING = (
    'the http2 settings of listener "public" have no effect: its protocols do not include "h2"'
)


@pytest.mark.parametrize(
    ("written", "line", "column"),
    [
        ("\n[listeners.public.http2]\nmax_concurrent_streams = 50", 6, 19),
        ('http2 = { ping_interval = "30s" }', 5, 1),
        ('http2.max_frame_size = "32KiB"', 5, 1),
        ("http2 = {}", 5, 1),
    ],
    ids=["table", "inline", "dotted", "empty"],
)
def test_http2_settings_without_h2_are_a_warning(
    tmp_path: Path, written: str, line: int, column: int
) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api" }
        protocols = ["http/1.1"]
        """
        + written
        + "\n"
        + APPS,
    )
    assert found(result) == [("warning", HTTP2_WARNING, line, column)]
    assert hints(result) == ['add "h2" to protocols, or remove the [listeners.public.http2] table']
    assert result.ok


@pytest.mark.parametrize("protocols", ['["h2"]', '["http/1.1", "h2"]', None])
def test_http2_settings_with_h2_are_fine(tmp_path: Path, protocols: str | None) -> None:
    result = load(
        tmp_path,
        f"""
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = {{ "/" = "site", "/api" = "api" }}
        {"" if protocols is None else f"protocols = {protocols}"}

        [listeners.public.http2]
        max_concurrent_streams = 50
        ping_interval = "1m"
        """
        + APPS,
    )
    assert found(result) == []


def test_http1_only_without_http2_settings_is_fine(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api" }
        protocols = ["http/1.1"]
        """
        + APPS,
    )
    assert found(result) == []


def test_protocol_errors_point_at_the_entry(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api" }
        protocols = ["h2", "h2c", "h2"]

        [listeners.other]
        bind = "127.0.0.1:1"
        app = "site"
        protocols = []
        """
        + APPS,
    )
    assert found(result) == [
        ("error", '"h2c" is not a protocol name', 4, 20),
        ("error", "a listener must speak at least one protocol", 9, 13),
    ]
    assert 'write "h2"' in hints(result)[0]
    fixed = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api" }
        protocols = ["h2", "http/1.1", "h2"]
        """
        + APPS,
    )
    assert found(fixed) == [("error", '"h2" is listed twice', 4, 32)]


def test_unix_mode_on_a_unix_socket_is_fine(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "unix:app.sock"
        app = "site"
        unix_mode = 0o660
        """
        + APPS,
    )
    assert [f for f in found(result) if f[0] == "error"] == []


def test_unix_path_too_long(tmp_path: Path) -> None:
    name = "s" * (UNIX_PATH_MAX - len(str(tmp_path)))  # one byte over, with the "/"
    result = load(
        tmp_path,
        f"""
        [listeners.public]
        bind = "unix:{name}"
        app = "site"
        """
        + APPS,
    )
    length = len(str(tmp_path / name))
    assert length == UNIX_PATH_MAX + 1
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [
        (
            "error",
            f"the socket path is {length} bytes long; Unix sockets allow {UNIX_PATH_MAX}",
            2,
            8,
        )
    ]


def test_unix_path_at_the_limit_is_fine(tmp_path: Path) -> None:
    name = "s" * (UNIX_PATH_MAX - 1 - len(str(tmp_path)))
    result = load(
        tmp_path,
        f"""
        [listeners.public]
        bind = "unix:{name}"
        app = "site"
        """
        + APPS,
    )
    assert [f for f in found(result) if f[0] == "error"] == []


def test_unix_socket_folder_missing(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "unix:run/app.sock"
        app = "site"
        """
        + APPS,
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [("error", f"the folder {tmp_path / 'run'} does not exist", 2, 8)]


# -------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """site.pem + site.key, other.key, a PKCS#8 and a traditional encrypted key, a CA."""
    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    site = ca.issue_cert("localhost")
    site.cert_chain_pems[0].write_to_path(str(folder / "site.pem"))
    site.private_key_pem.write_to_path(str(folder / "site.key"))
    site.private_key_and_cert_chain_pem.write_to_path(str(folder / "combined.pem"))
    ca.issue_cert("other").private_key_pem.write_to_path(str(folder / "other.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    key = serialization.load_pem_private_key(site.private_key_pem.bytes(), password=None)
    for name, layout in [
        ("encrypted.key", serialization.PrivateFormat.PKCS8),
        ("traditional.key", serialization.PrivateFormat.TraditionalOpenSSL),
    ]:
        (folder / name).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                layout,
                serialization.BestAvailableEncryption(b"s3cret"),
            )
        )
    (folder / "garbage.pem").write_text("not a certificate\n")
    return folder


def tls_config(certs: Path, tls: str) -> str:
    return (
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"

        [listeners.public.tls]
"""
        + textwrap.indent(textwrap.dedent(tls).strip(), " " * 8)
        + "\n"
        + APPS
    ).replace("CERTS", str(certs))


def test_tls_valid_pair(tmp_path: Path, certs: Path) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            """
            certificate = "CERTS/site.pem"
            private_key = "CERTS/site.key"
            client_ca = "CERTS/ca.pem"
            client_auth = "required"
            ciphers = "ECDHE+AESGCM"
            """,
        ),
    )
    assert [f for f in found(result) if f[0] == "error"] == []
    assert result.ok


def test_tls_key_inside_the_certificate_file(tmp_path: Path, certs: Path) -> None:
    result = load(tmp_path, tls_config(certs, 'certificate = "CERTS/combined.pem"'))
    assert [f for f in found(result) if f[0] == "error"] == []


def test_tls_certificate_without_its_key(tmp_path: Path, certs: Path) -> None:
    result = load(tmp_path, tls_config(certs, 'certificate = "CERTS/site.pem"'))
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [("error", "the certificate file holds no private key", 6, 15)]


def test_tls_mismatched_key(tmp_path: Path, certs: Path) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            """
            certificate = "CERTS/site.pem"
            private_key = "CERTS/other.key"
            """,
        ),
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [("error", "the private key does not match the certificate", 7, 15)]


def test_tls_missing_files(tmp_path: Path, certs: Path) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            """
            certificate = "missing.pem"
            private_key = "CERTS/site.key"
            client_ca = "missing-ca.pem"
            """,
        ),
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [
        ("error", f"certificate file {tmp_path / 'missing.pem'} does not exist", 6, 15),
        ("error", f"client CA file {tmp_path / 'missing-ca.pem'} does not exist", 8, 13),
    ]


def test_tls_certificate_is_a_folder(tmp_path: Path, certs: Path) -> None:
    result = load(tmp_path, tls_config(certs, 'certificate = "CERTS"'))
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [("error", f"certificate file {certs} is not a file", 6, 15)]


def test_tls_garbage(tmp_path: Path, certs: Path) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            """
            certificate = "CERTS/garbage.pem"
            private_key = "CERTS/site.key"
            """,
        ),
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [
        ("error", f"certificate file {certs / 'garbage.pem'} holds no PEM certificate", 6, 15)
    ]


@pytest.mark.parametrize("key", ["encrypted.key", "traditional.key"])
def test_tls_encrypted_key_without_a_password(tmp_path: Path, certs: Path, key: str) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            f"""
            certificate = "CERTS/site.pem"
            private_key = "CERTS/{key}"
            """,
        ),
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [("error", "the private key is encrypted, and no password is set", 7, 15)]
    assert "tls.password" in hints(result)[0]


@pytest.mark.parametrize("key", ["encrypted.key", "traditional.key"])
def test_tls_encrypted_key_with_the_wrong_password(tmp_path: Path, certs: Path, key: str) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            f"""
            certificate = "CERTS/site.pem"
            private_key = "CERTS/{key}"
            password = "wrong"
            """,
        ),
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [("error", "the private key cannot be decrypted with this password", 8, 12)]


@pytest.mark.parametrize("key", ["encrypted.key", "traditional.key"])
def test_tls_encrypted_key_with_the_right_password(tmp_path: Path, certs: Path, key: str) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            f"""
            certificate = "CERTS/site.pem"
            private_key = "CERTS/{key}"
            password = "${{TLS_KEY_PASSWORD}}"
            """,
        ),
        environ={"TLS_KEY_PASSWORD": "s3cret"},
    )
    assert [f for f in found(result) if f[0] == "error"] == []
    assert result.ok


def test_tls_client_auth_without_client_ca(tmp_path: Path, certs: Path) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            """
            certificate = "CERTS/site.pem"
            private_key = "CERTS/site.key"
            client_auth = "required"
            """,
        ),
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [("error", 'client_auth = "required" needs client_ca', 8, 15)]


def test_tls_client_ca_that_is_not_pem(tmp_path: Path, certs: Path) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            """
            certificate = "CERTS/site.pem"
            private_key = "CERTS/site.key"
            client_ca = "CERTS/garbage.pem"
            client_auth = "optional"
            """,
        ),
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [
        ("error", f"client CA file {certs / 'garbage.pem'} holds no PEM certificate", 8, 13)
    ]


def test_tls_bad_ciphers(tmp_path: Path, certs: Path) -> None:
    result = load(
        tmp_path,
        tls_config(
            certs,
            """
            certificate = "CERTS/site.pem"
            private_key = "CERTS/site.key"
            ciphers = "NO-SUCH-CIPHER"
            """,
        ),
    )
    errors = [f for f in found(result) if f[0] == "error"]
    assert errors == [("error", 'no cipher matches "NO-SUCH-CIPHER"', 8, 11)]


# ---------------------------------------------------------------- workers


def test_apps_on_one_listener_must_agree_on_workers(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "api", "/site" = "site" }

        [apps.api]
        target = "api:app"
        workers = 2

        [apps.site]
        target = "site:app"
        workers = 3
        """,
    )
    assert found(result) == [
        (
            "error",
            'apps "api" (2 workers) and "site" (3 workers) share listener public but want '
            "different worker counts",
            11,
            11,
        )
    ]
    assert "same workers" in hints(result)[0]


def test_worker_disagreement_with_a_default_points_at_the_app(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [host]
        workers = "auto"

        [listeners.a]
        bind = "127.0.0.1:0"
        app = "api"

        [listeners.b]
        bind = "127.0.0.1:0"
        routes = { "/" = "api", "/site" = "site" }

        [apps.api]
        target = "api:app"
        workers = 2

        [apps.site]
        target = "site:app"
        """,
    )
    assert found(result) == [
        (
            "error",
            'apps "api" (2 workers) and "site" (auto workers) share listeners a, b but want '
            "different worker counts",
            16,
            7,
        )
    ]


def test_apps_in_separate_groups_may_differ(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.a]
        bind = "127.0.0.1:0"
        app = "api"

        [listeners.b]
        bind = "127.0.0.1:0"
        app = "site"

        [apps.api]
        target = "api:app"
        workers = 2

        [apps.site]
        target = "site:app"
        workers = "auto"
        """,
    )
    assert found(result) == []


# ---------------------------------------------------------- apps and files


def test_unrouted_app_is_a_warning(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"
        """
        + APPS,
    )
    assert found(result) == [("warning", 'app "api" is not served by any listener', 8, 7)]
    assert result.ok
    assert result.config is not None


def test_app_dir_missing(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "file").write_text("")
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api", "/x" = "x" }

        [apps.site]
        target = "site:app"
        app_dir = "src"

        [apps.api]
        target = "api:app"
        app_dir = "nowhere"

        [apps.x]
        target = "x:app"
        app_dir = "file"
        """,
    )
    assert found(result) == [
        ("error", f"app_dir {tmp_path / 'nowhere'} does not exist", 11, 11),
        ("error", f"app_dir {tmp_path / 'file'} is not a folder", 15, 11),
    ]


def test_app_env_files_missing(tmp_path: Path) -> None:
    (tmp_path / "present.env").write_text("A=1\n")
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"

        [apps.site]
        target = "site:app"
        env_files = ["present.env", "missing.env"]
        """,
    )
    assert found(result) == [
        ("error", f"env file {tmp_path / 'missing.env'} does not exist", 7, 29),
    ]


def test_host_env_files_missing(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [host]
        env_files = ["missing.env"]

        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"
        """
        + APPS.split("[apps.api]", maxsplit=1)[0],
    )
    assert found(result) == [
        ("error", f"env file {tmp_path / 'missing.env'} does not exist", 2, 14),
    ]


def test_host_files_in_missing_folders(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [host]
        pid_file = "run/uvhost.pid"
        max_requests_jitter = 10

        [logging]
        file = "logs/uvhost.log"

        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"
        """
        + APPS.split("[apps.api]", maxsplit=1)[0],
    )
    assert found(result) == [
        ("error", f"the folder {tmp_path / 'run'} does not exist", 2, 12),
        ("warning", "max_requests_jitter has no effect while max_requests is 0", 3, 1),
        ("error", f"the folder {tmp_path / 'logs'} does not exist", 6, 8),
    ]


def test_control_socket_path_too_long(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        f"""
        [host]
        control_socket = "{"c" * 120}.sock"

        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"
        """
        + APPS.split("[apps.api]", maxsplit=1)[0],
    )
    assert found(result) == [
        ("error", f"the control socket path is longer than {UNIX_PATH_MAX} bytes", 2, 18),
    ]


# ------------------------------------------------- checks after validation


def test_a_route_to_an_app_that_failed_validation_is_not_called_missing(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api" }

        [apps.site]
        target = "site:app"
        max_body_bytes = "lots"

        [apps.api]
        target = "api:app"
        """,
    )
    assert found(result) == [("error", '"lots" is not a size', 7, 18)]


def test_routes_of_a_listener_that_failed_validation_are_still_checked(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        backlog = "many"
        routes = { "/" = "site", "api" = "nope" }
        """
        + APPS,
    )
    assert found(result) == [
        ("error", 'expected an integer, got "many"', 3, 11),
        ("error", 'route prefix "api" does not start with /', 4, 26),
        ("error", 'app "nope" is not defined', 4, 34),
        ("warning", 'app "api" is not served by any listener', 9, 7),
    ]


# ---------------------------------------------------------------- WSGI apps


WSGI_LISTENER = """
        [listeners.web]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/legacy" = "legacy" }
"""


def test_thread_keys_on_a_wsgi_or_auto_app_are_valid(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WSGI_LISTENER
        + """
        [apps.site]
        target = "site:app"
        threads = 4

        [apps.legacy]
        target = "legacy:app"
        interface = "wsgi"
        threads = 16
        max_queued = 0
        """,
    )
    assert found(result) == []
    assert result.config is not None
    legacy = result.config.apps["legacy"]
    assert (legacy.interface, legacy.threads, legacy.max_queued) == ("wsgi", 16, 0)
    assert result.config.apps["site"].max_queued is None  # 4 times threads, decided by the worker


def test_thread_keys_on_an_asgi_app_are_errors(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WSGI_LISTENER
        + """
        [apps.site]
        target = "site:app"
        interface = "asgi3"
        threads = 4
        max_queued = 8

        [apps.legacy]
        target = "legacy:app"
        interface = "wsgi"
        """,
    )
    assert found(result) == [
        (
            "error",
            'threads has no effect on app "site": it is an ASGI app (interface = "asgi3"), '
            "which runs in the event loop",
            8,
            1,
        ),
        (
            "error",
            'max_queued has no effect on app "site": it is an ASGI app (interface = "asgi3"), '
            "which runs in the event loop",
            9,
            1,
        ),
    ]
    assert hints(result)[0] == 'remove threads, or set interface = "wsgi" if the app is a WSGI app'


def test_thread_keys_on_a_folder_app_are_errors(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    result = load(
        tmp_path,
        WSGI_LISTENER
        + """
        [apps.site]
        folder = "dist"
        threads = 2

        [apps.legacy]
        target = "legacy:app"
        """,
    )
    assert found(result) == [
        (
            "error",
            'threads has no effect on app "site": it serves a folder, nothing is imported or run',
            7,
            1,
        )
    ]


def test_lifespan_on_for_a_wsgi_app_is_an_error(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WSGI_LISTENER
        + """
        [apps.site]
        target = "site:app"

        [apps.legacy]
        target = "legacy:app"
        interface = "wsgi"
        lifespan = "on"
        """,
    )
    assert found(result) == [
        ("error", 'app "legacy" is a WSGI app: it has no lifespan protocol to require', 11, 12)
    ]


@pytest.mark.parametrize("value", ["0", "-1", '"many"'])
def test_threads_must_be_a_positive_int(tmp_path: Path, value: str) -> None:
    result = load(
        tmp_path,
        WSGI_LISTENER
        + f"""
        [apps.site]
        target = "site:app"

        [apps.legacy]
        target = "legacy:app"
        threads = {value}
        """,
    )
    [(severity, _, line, _)] = found(result)
    assert (severity, line) == ("error", 10)
