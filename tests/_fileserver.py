"""A directory served over HTTP on 127.0.0.1 that counts the GET requests per path: what a download
fetched, and that a second run fetched nothing (tests/test_bundle.py, tests/test_ollama_mirror.py)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def counting_file_server(root: Path) -> Iterator[tuple[str, Counter[str]]]:
    """Serve `root`; yields its base URL and the counter of requests by path."""
    hits: Counter[str] = Counter()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits[self.path] += 1
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
