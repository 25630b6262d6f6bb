"""A package index that never answers: the fault for molecule/vllm's failed-download test.

Accepts connections on 127.0.0.1:PORT, appends each request's path to LOG (one line per attempt,
so the test can count uv's retries) and then holds the connection open without a reply, as a
stuck mirror does, until the client gives up.

Usage: stalling_index.py PORT LOG
"""

import socketserver
import sys


class Stall(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request = self.rfile.readline().decode("latin-1").split()
        with open(sys.argv[2], "a", encoding="utf-8") as log:
            log.write((request[1] if len(request) > 1 else "?") + "\n")
        # Hold the connection until the client closes it (recv returns b"") or an hour passes.
        self.request.settimeout(3600)
        try:
            while self.request.recv(1024):
                pass
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Stall) as server:
        server.serve_forever()
