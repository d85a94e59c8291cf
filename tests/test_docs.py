"""Execute the docs: every TOML block in README.md and docs/ passes `uvhost check`.

A TOML block directly followed by a `text` block that shows an `error:` is a
documented mistake instead: checking it must fail and print that text.
Blocks run in a scratch folder holding `examples/` (linked), TLS files made
with trustme under the names the docs use, a `.env` and a front-end build
(`frontend/dist/index.html`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from uvhost.commands.check import check

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
DOCUMENTED_VARIABLES = ("PORT", "HOST", "WORKERS", "GREETING", "HELLO_PORT", "ADMIN_PORT")


@dataclass(frozen=True)
class Example:
    source: str
    index: int
    toml: str
    expected_output: str | None

    @property
    def id(self) -> str:
        return f"{self.source}#{self.index}"


def collect() -> list[Example]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    examples = []
    for page in pages:
        blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(page.read_text("utf-8"))]
        for index, (language, body) in enumerate(blocks):
            if language != "toml":
                continue
            following = blocks[index + 1] if index + 1 < len(blocks) else ("", "")
            shows_error = following[0] == "text" and ": error: " in following[1]
            examples.append(
                Example(
                    str(page.relative_to(ROOT)),
                    index,
                    body,
                    following[1] if shows_error else None,
                )
            )
    return examples


EXAMPLES = collect()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    (folder / "examples").symlink_to(ROOT / "examples")
    (folder / "schemas").symlink_to(ROOT / "schemas")
    certs = folder / "certs"
    certs.mkdir()
    authority = trustme.CA()
    server = authority.issue_cert("localhost")
    server.private_key_and_cert_chain_pem.write_to_path(certs / "site.pem")
    server.private_key_pem.write_to_path(certs / "site.key")
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(certs / "other.key")
    for name, hosts in {
        "example.com": ("example.com", "www.example.com"),
        "example.org": ("example.org", "*.example.org"),
    }.items():
        pair = authority.issue_cert(*hosts).private_key_and_cert_chain_pem
        pair.write_to_path(certs / f"{name}.pem")
    trustme.CA().cert_pem.write_to_path(certs / "clients-ca.pem")
    (folder / ".env").write_text("TLS_KEY_PASSWORD=unused\nDATABASE_URL=sqlite://\n")
    dist = folder / "frontend" / "dist"  # the front-end build docs/how-to/static-files.md serves
    dist.mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>app</title>\n")
    return folder


def test_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 15
    assert sum(1 for e in EXAMPLES if e.expected_output) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_documented_config(
    example: Example, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in DOCUMENTED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(scratch)
    (scratch / "uvhost.toml").write_text(example.toml, encoding="utf-8")
    out = io.StringIO()
    status = check(Path("uvhost.toml"), import_apps=False, as_json=False, out=out)
    output = out.getvalue()
    if example.expected_output is None:
        assert status == 0, f"{example.id} should be valid:\n{output}"
        assert "warning:" not in output, output
    else:
        assert status == 1, output
        assert example.expected_output.strip() in output, output


def test_example_config_is_valid_and_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DOCUMENTED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    status = check(Path("uvhost.toml.example"), import_apps=True, as_json=False, out=out)
    assert status == 0, out.getvalue()
    assert "warning" not in out.getvalue()


def test_example_config_has_every_section() -> None:
    text = (ROOT / "uvhost.toml.example").read_text("utf-8")
    assert text.startswith("#:schema ./schemas/uvhost.schema.json")
    sections = ("[host]", "[logging]", "[listeners.", "[apps.", "[apps.chat.websocket]")
    for header in (*sections, "[apps.assets.static]"):  # a folder app, with its options
        assert header in text
    assert "tls]" in text  # present, commented: no private key is shipped
