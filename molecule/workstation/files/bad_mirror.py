"""A broken package mirror for molecule/workstation: a PEP 503 simple index that serves one faulty wheel.

Usage: bad_mirror.py PORT VERSION LOG

Each fault has its own index, http://127.0.0.1:PORT/<fault>/simple/, listing
open_webui-VERSION-py3-none-any.whl (a tiny, valid wheel) with its `#sha256=` fragment:

  missing    the wheel answers 404
  hang       the wheel's response never comes (the client's read timeout must end it)
  truncated  the wheel's body stops halfway through the Content-Length it announced
  badhash    the whole wheel is served, but the index's sha256 is that of other bytes

Every request is appended to LOG as "METHOD PATH", so the test can count retries.
Exists only for the tests; the role never knows about it.
"""

import hashlib
import http.server
import io
import sys
import threading
import time
import zipfile

FAULTS = ("missing", "hang", "truncated", "badhash")


def build_wheel(version: str) -> bytes:
    dist_info = f"open_webui-{version}.dist-info"
    files = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: open-webui\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: bad_mirror\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{dist_info}/RECORD", "".join(f"{name},,\n" for name in files) + f"{dist_info}/RECORD,,\n")
    return buffer.getvalue()


def main(port: str, version: str, log: str) -> None:
    wheel = build_wheel(version)
    filename = f"open_webui-{version}-py3-none-any.whl"
    log_lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
            pass

        def send_body(self, status: int, body: bytes, content_type: str, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            # A HEAD answer has no body: bytes written after it would be read as the start of the
            # next answer on the same kept-alive connection, a fault the test did not ask for.
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            with log_lock, open(log, "a", encoding="utf-8") as out:
                out.write(f"{self.command} {self.path}\n")
            fault, _, rest = self.path.lstrip("/").partition("/")
            if fault not in FAULTS:
                self.send_body(404, b"no such fault\n", "text/plain")
            elif rest in ("simple/open-webui/", "simple/open-webui"):
                digest = hashlib.sha256(wheel if fault != "badhash" else wheel + b"tampered").hexdigest()
                link = f'<a href="../../files/{filename}#sha256={digest}">{filename}</a>'
                page = f"<!DOCTYPE html><html><body>{link}</body></html>\n"
                self.send_body(200, page.encode(), "text/html")
            elif rest.startswith("simple/"):
                # Every other project is the real indexes' business.
                self.send_body(404, b"not here\n", "text/plain")
            elif rest != f"files/{filename}" or fault == "missing":
                self.send_body(404, b"not found\n", "text/plain")
            elif fault == "hang":
                time.sleep(3600)
            elif fault == "truncated":
                self.send_body(200, wheel[: len(wheel) // 2], "application/octet-stream", length=len(wheel))
                self.close_connection = True
            else:
                self.send_body(200, wheel, "application/octet-stream")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:4])
