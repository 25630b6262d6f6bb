"""The ollama role's download fault rules: what is retried and what the failure message says."""

from __future__ import annotations


import pytest

from _modules import load_module

od = load_module("plugins/filter/ollama_download.py")

URL = "http://mirror/v0.1.2/ollama-linux-amd64.tar.zst"


@pytest.mark.parametrize("result", [
    # uri: connection refused, timeout, server errors, rate limit
    {"failed": True, "status": -1, "msg": "Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] Connection refused>"},
    {"failed": True, "status": -1, "msg": "Status code was -1 and not [200]: Connection failure: timed out"},
    {"failed": True, "status": 503, "msg": "Status code was 503 and not [200]: HTTP Error 503: busy"},
    {"failed": True, "status": 429, "msg": "Status code was 429 and not [200]: HTTP Error 429"},
    # get_url: no status_code when no HTTP answer came
    {"failed": True, "msg": "Connection failure: timed out", "url": URL},
    {"failed": True, "msg": "Incomplete read, (rsp.length=0, cl=100, st.st_size=50) failed to read remaining 50 bytes"},
    {"failed": True, "msg": "failed to create temporary content file: The read operation timed out"},
    {"failed": True, "msg": "Request failed", "status_code": 502, "response": "HTTP Error 502: Bad Gateway"},
])
def test_transient_faults_are_retried(result: dict) -> None:
    assert od.retryable(result)


@pytest.mark.parametrize("result", [
    {"failed": False, "status": 200},
    {"failed": True, "status": 404, "msg": "Status code was 404 and not [200]: HTTP Error 404: Not Found"},
    {"failed": True, "msg": "Request failed", "status_code": 404, "response": "HTTP Error 404: Not Found"},
    {"failed": True, "msg": "Request failed", "status_code": 403, "response": "HTTP Error 403: Forbidden"},
    {"failed": True, "msg": "The checksum for /tmp/x did not match abc; it was def.", "url": URL},
    {"failed": True, "msg": "Destination /opt/x does not exist"},
])
def test_permanent_faults_are_not_retried(result: dict) -> None:
    assert not od.retryable(result)


def test_failure_names_each_failed_item_and_its_cause() -> None:
    summary = od.failure_summary({"failed": True, "results": [
        {"failed": False, "item": "ollama-linux-amd64.tar.zst"},
        {"failed": True, "item": "ollama-linux-amd64-rocm.tar.zst", "url": URL, "attempts": 4,
         "msg": "Connection failure: timed out"},
    ]})
    assert summary == f"{URL}: timed out, no data within ollama_download_timeout (Connection failure: timed out), after 4 attempts"


@pytest.mark.parametrize(("result", "says"), [
    ({"failed": True, "status": 404, "url": URL, "msg": "HTTP Error 404"}, "HTTP 404 not found"),
    ({"failed": True, "item": "a.tar.zst", "msg": "The checksum for /tmp/x did not match abc; it was def."}, "a.tar.zst: sha256 mismatch: expected abc, got def,"),
    ({"failed": True, "msg": "Incomplete read, failed to read remaining 5 bytes", "attempts": 2}, "transfer cut short"),
    ({"failed": True, "status": 503, "msg": "busy", "attempts": 3}, "HTTP 503 (busy), after 3 attempts"),
    ({"failed": True, "item": "a.tar.zst", "rc": 2, "msg": "non-zero return code", "stderr": "tar: Unexpected EOF"}, "a.tar.zst: tar: Unexpected EOF"),
    ({"failed": True, "item": "a.tar.zst", "msg": "no sha256 for a.tar.zst"}, "a.tar.zst: no sha256 for a.tar.zst"),
])
def test_failure_says_what_went_wrong(result: dict, says: str) -> None:
    assert says in od.failure_summary(result)


def test_exhausted_retries_count_every_attempt() -> None:
    # ansible-core reports attempts == retries once they run out; the role passes retries + 1.
    result = {"failed": True, "status": 503, "msg": "busy", "attempts": 2}
    assert od.failure_summary(result, 3).endswith("after 3 attempts")
