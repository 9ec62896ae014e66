"""Fixtures for the data tests: an isolated cache and a loopback HTTP mirror."""
from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$INVFLOW_CACHE`` under tmp_path, with no mirror override set yet."""
    root = tmp_path / "cache"
    monkeypatch.setenv("INVFLOW_CACHE", str(root))
    monkeypatch.delenv("INVFLOW_DATA_MIRROR", raising=False)
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Keep test output clean."""


@pytest.fixture
def serve_mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], str]]:
    """``serve_mirror(folder)`` serves ``folder`` on 127.0.0.1 and points INVFLOW_DATA_MIRROR at it."""
    for name in _PROXY_VARIABLES:  # loopback requests must not go through a proxy
        monkeypatch.delenv(name, raising=False)
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("INVFLOW_DATA_MIRROR", url)
        return url

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
