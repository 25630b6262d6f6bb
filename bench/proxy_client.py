"""Run on the team server by `bench/run proxy` (python3 - < this file, settings as JSON on the first
line of stdin): short chat completions against each backend directly (http://127.0.0.1) and through
the TLS proxy (https://<server name>, the team CA verified), alternated request by request, each
request on a fresh connection (a TCP and, through the proxy, a TLS handshake: the case of a client
that opens one per request) and again on one kept-alive connection per target (an editor's client).
Prints one JSON object: per target and mode, every request's seconds. Standard library only.
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import tempfile
import time
from urllib.parse import urlsplit


def _connection(url: str, context: ssl.SSLContext) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port or 443, context=context, timeout=120)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=120)


def _request(conn: http.client.HTTPConnection, url: str, body: bytes, key: str) -> float:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    conn.request("POST", urlsplit(url).path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"{url}: HTTP {response.status}: {data[:200]!r}")
    return elapsed


def main() -> None:
    settings = json.loads(sys.stdin.readline())
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(settings["ca"])
    context = ssl.create_default_context(cafile=handle.name)
    results: dict[str, dict[str, list[float]]] = {}
    for pair in settings["pairs"]:
        body = json.dumps(pair["body"]).encode()
        targets = {"direct": pair["direct"], "proxy": pair["proxy"]}
        fresh: dict[str, list[float]] = {name: [] for name in targets}
        kept: dict[str, list[float]] = {name: [] for name in targets}
        for name, url in targets.items():  # warm-up: the model's first request, the session cache
            conn = _connection(url, context)
            _request(conn, url, body, pair["key"])
            conn.close()
        for _ in range(settings["repeat"]):
            for name, url in targets.items():
                conn = _connection(url, context)
                fresh[name].append(_request(conn, url, body, pair["key"]))
                conn.close()
        connections = {name: _connection(url, context) for name, url in targets.items()}
        for _ in range(settings["repeat"]):
            for name, url in targets.items():
                kept[name].append(_request(connections[name], url, body, pair["key"]))
        for conn in connections.values():
            conn.close()
        results[pair["name"]] = {f"{name}_fresh": fresh[name] for name in targets} | {
            f"{name}_kept": kept[name] for name in targets}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
