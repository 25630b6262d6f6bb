"""A release mirror that misbehaves, one fault per version, for molecule/ollama's download faults.

Serves <base>/v<version>/sha256sum.txt and <base>/v<version>/<archive> built from a good release
(--release: a directory holding one archive and its sha256sum.txt), and logs every request line to
--log so the test can count attempts:

  0.32.91  sha256sum.txt answers 404 (a version the mirror does not have)
  0.32.92  sha256sum.txt answers 503 every time (a server error that does not clear)
  0.32.93  archive answers 404 (published checksum, missing file)
  0.32.94  archive hangs: no answer within the client's timeout
  0.32.95  archive cut short: Content-Length of the whole file, half of it sent, connection closed
  0.32.96  archive differs from the published checksum
  0.32.97  archive truncated, published checksum of the truncated file: downloads fine, cannot unpack
"""

from __future__ import annotations

import argparse
import hashlib
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Mirror(BaseHTTPRequestHandler):
    archive_name: str
    archive: bytes
    log: Path

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Requests are logged on arrival (do_GET), before a hang, so every attempt is counted."""

    def _send(self, status: int, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _sums(self, data: bytes) -> bytes:
        return f"{hashlib.sha256(data).hexdigest()}  {self.archive_name}\n".encode()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        with self.log.open("a") as log:
            log.write(f"GET {self.path}\n")
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("v"):
            self._send(404, b"not found\n")
            return
        version, name = parts[0][1:], parts[1]
        half = self.archive[: len(self.archive) // 2]
        if name == "sha256sum.txt":
            if version == "0.32.91":
                self._send(404, b"not found\n")
            elif version == "0.32.92":
                self._send(503, b"busy\n")
            elif version == "0.32.97":
                self._send(200, self._sums(half))
            else:
                self._send(200, self._sums(self.archive))
        elif name != self.archive_name or version == "0.32.93":
            self._send(404, b"not found\n")
        elif version == "0.32.94":
            time.sleep(120)
            self._send(200, self.archive)
        elif version == "0.32.95":
            self._send(200, half, length=len(self.archive))
            self.close_connection = True
        elif version == "0.32.96":
            self._send(200, self.archive[::-1])
        elif version == "0.32.97":
            self._send(200, half)
        else:
            self._send(404, b"not found\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True, help="directory of a good release")
    parser.add_argument("--log", type=Path, required=True, help="file that gets one line per request")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    archive = next(p for p in args.release.iterdir() if p.name != "sha256sum.txt")
    Mirror.archive_name, Mirror.archive, Mirror.log = archive.name, archive.read_bytes(), args.log
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Mirror)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
