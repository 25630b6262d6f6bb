#!/usr/bin/env python3
"""Test helper: which TCP ports of which addresses accept a connection from here.

reach.py HOST[,HOST...] PORT[,PORT...] prints {"open": ["HOST PORT", ...], "closed": [...]} as JSON.
All tries run at once with a short timeout, so ports a firewall drops cost one timeout, not one each.
"""

from __future__ import annotations

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 1.0


def reaches(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT):
            return True
    except OSError:
        return False


def main() -> None:
    hosts, ports = sys.argv[1].split(","), [int(p) for p in sys.argv[2].split(",")]
    pairs = [(h, p) for h in hosts for p in ports]
    with ThreadPoolExecutor(len(pairs)) as pool:
        results = list(pool.map(lambda pair: reaches(*pair), pairs))
    report: dict[str, list[str]] = {"open": [], "closed": []}
    for (host, port), ok in zip(pairs, results):
        report["open" if ok else "closed"].append(f"{host} {port}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
