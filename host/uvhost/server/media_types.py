"""Content-Type by file extension, for folder apps.

Why a table of our own rather than `mimetypes`: that module reads the
system's mime.types files, so the same folder would be served with other
types on another machine (Windows registries are worse). This table is the
web's common types, fixed; `static.media_types` adds to it or overrides it.

Text types get `charset=utf-8` (RFC 9110 8.3.1: a text type without a
charset is read by each client's own guess); JSON takes none (RFC 8259 11
defines no charset parameter; it is UTF-8 by definition).
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT = "application/octet-stream"

TYPES: dict[str, str] = {
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".cjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".br": "application/octet-stream",
    ".zst": "application/zstd",
    ".tar": "application/x-tar",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".ogv": "video/ogg",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".vtt": "text/vtt",
    ".ics": "text/calendar",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
}

_CHARSET_TYPES = ("application/xml", "image/svg+xml", "application/rss+xml")


def with_charset(media_type: str) -> str:
    """`media_type` with `; charset=utf-8` when it is text and says no parameter itself."""
    if ";" in media_type:
        return media_type
    if media_type.startswith("text/") or media_type in _CHARSET_TYPES:
        return media_type + "; charset=utf-8"
    return media_type


def media_type_table(extra: Mapping[str, str]) -> dict[str, bytes]:
    """Extension (lower case, with its dot) → Content-Type bytes, `extra` winning."""
    merged = {**TYPES, **{extension.lower(): value for extension, value in extra.items()}}
    return {extension: with_charset(value).encode("latin-1") for extension, value in merged.items()}


def media_type_of(name: str, table: Mapping[str, bytes]) -> bytes:
    """The Content-Type of a file name by its last extension; octet-stream when unknown."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return DEFAULT.encode("ascii")
    return table.get(name[dot:].lower(), DEFAULT.encode("ascii"))
