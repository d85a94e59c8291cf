"""uvhost: a configuration-file-driven host for ASGI applications."""

__version__ = "0.1.0"
