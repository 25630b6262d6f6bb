"""plugins/modules/ollama_pull.py against a small scripted HTTP server.

The server answers each model's pulls from a script (status, body, delay per attempt), so the tests
check what the module sends, which failures it retries, that pulls run in parallel, and its message.
The Ollama test double's own pull is exercised by the molecule ollama scenario through the role.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _modules import load_module

pullmod = load_module("plugins/modules/ollama_pull.py")


class Script:
    """Per model, the answers to its successive pulls: (status, body, seconds to wait first)."""

    def __init__(self, answers: dict[str, list[tuple[int, Any, float]]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next(self, model: str) -> tuple[int, Any, float]:
        with self.lock:
            queue = self.answers.get(model, [])
            return queue.pop(0) if len(queue) > 1 else (queue[0] if queue else (500, {"error": "unscripted"}, 0))


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script({})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.requests.append({"path": self.path, "body": body, "at": time.monotonic()})
            status, answer, wait = script.next(body["model"])
            time.sleep(wait)
            payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def no_sleep(_seconds: float) -> None:
    pass


def test_pulls_every_model_not_streamed(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = {"a:1b": [(200, {"status": "success"}, 0)], "b:latest": [(200, {"status": "success"}, 0)]}
    results = pullmod.pull_all(url + "/", ["a:1b", "b:latest", "a:1b"], 5, 2, 0, no_sleep)
    assert [(r["model"], r["status"], r["attempts"]) for r in results] == [("a:1b", 200, 1), ("b:latest", 200, 1)]
    assert sorted(r["body"]["model"] for r in script.requests) == ["a:1b", "b:latest"]
    assert {r["path"] for r in script.requests} == {"/api/pull"}
    assert all(r["body"]["stream"] is False for r in script.requests)


def test_pulls_run_in_parallel(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = {name: [(200, {"status": "success"}, 0.5)] for name in ("a", "b", "c")}
    started = time.monotonic()
    results = pullmod.pull_all(url, ["a", "b", "c"], 5, 0, 0, no_sleep)
    assert all(r["status"] == 200 for r in results)
    # Three half-second pulls one after the other would take 1.5 s.
    assert time.monotonic() - started < 1.2
    arrivals = [r["at"] for r in script.requests]
    assert max(arrivals) - min(arrivals) < 0.4


def test_failure_that_may_pass_is_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = {
        "flaky": [(500, {"error": "registry hiccup"}, 0), (429, "slow down", 0), (200, {"status": "success"}, 0)]
    }
    slept: list[float] = []
    outcome = pullmod.pull_one(url, "flaky", 5, 2, 7, slept.append)
    assert outcome == {"model": "flaky", "status": 200, "error": "", "attempts": 3}
    assert slept == [7, 7]


def test_retries_run_out_with_the_last_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = {"gone": [(500, {"error": "pull model manifest: file does not exist"}, 0)]}
    outcome = pullmod.pull_one(url, "gone", 5, 1, 0, no_sleep)
    assert outcome == {"model": "gone", "status": 500, "error": "pull model manifest: file does not exist", "attempts": 2}


def test_client_error_is_final(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = {"Bad Name": [(400, {"error": "invalid model name"}, 0)]}
    outcome = pullmod.pull_one(url, "Bad Name", 5, 5, 0, no_sleep)
    assert (outcome["status"], outcome["attempts"], outcome["error"]) == (400, 1, "invalid model name")


def test_error_in_a_200_answer_is_a_failure(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = {"m": [(200, {"error": "max retries exceeded"}, 0)]}
    outcome = pullmod.pull_one(url, "m", 5, 0, 0, no_sleep)
    assert (outcome["status"], outcome["error"]) == (500, "max retries exceeded")


def test_no_answer_is_retried_then_reported() -> None:
    slept: list[float] = []
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    outcome = pullmod.pull_one("http://127.0.0.1:9", "m", 2, 2, 3, slept.append)
    assert (outcome["status"], outcome["attempts"], slept) == (0, 3, [3, 3])
    assert "refused" in outcome["error"].lower()


def test_timeout_is_an_attempt_that_may_pass(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = {"slow": [(200, {"status": "success"}, 2.5), (200, {"status": "success"}, 0)]}
    outcome = pullmod.pull_one(url, "slow", 1, 1, 0, no_sleep)
    assert (outcome["status"], outcome["attempts"]) == (200, 2)


def test_message_names_each_failed_model() -> None:
    results = [
        {"model": "ok", "status": 200, "error": "", "attempts": 1},
        {"model": "no-such-model:latest", "status": 500, "error": "pull model manifest: file does not exist", "attempts": 1},
        {"model": "x", "status": 0, "error": "", "attempts": 3},
    ]
    assert pullmod.failure_message(results) == (
        "could not pull no-such-model:latest (pull model manifest: file does not exist), x (no answer)"
    )


def test_nothing_to_pull_sends_nothing(server: tuple[str, Script]) -> None:
    url, script = server
    assert pullmod.pull_all(url, [], 1, 0, 0, no_sleep) == []
    assert script.requests == []
