"""The Ollama test double (tests/doubles/ollama), run as real processes.

The double stands in for Ollama, which cannot be downloaded on this machine. These
tests start `ollama_double.py serve` on a free port with its own OLLAMA_MODELS and talk
to it over HTTP and through its CLI, and they build and unpack release archives with
build_release.py.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _modules import load_module

DOUBLE_DIR = Path(__file__).resolve().parent / "doubles" / "ollama"
DOUBLE = DOUBLE_DIR / "ollama_double.py"
BUILD = DOUBLE_DIR / "build_release.py"
LLAMA_SIZE = 2019393189  # llama3.2:latest in the built-in catalog
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
MEMBERS = ["bin", "bin/ollama", "lib", "lib/ollama", "lib/ollama/DOUBLE.txt"]
CONNECT_ERROR = "Error: could not connect to ollama server, run 'ollama serve' to start it\n"


build_release = load_module(BUILD)
ollama_double = load_module(DOUBLE)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(home: Path) -> dict[str, str]:
    """The test's environment without any OLLAMA_* leaking in, with its own HOME."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OLLAMA")}
    env["HOME"] = str(home)
    env["OLLAMA_DOUBLE_PULL_DELAY"] = "0.02"
    return env


@dataclass
class Response:
    """An HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def lines(self) -> list[dict[str, Any]]:
        """The body as NDJSON."""
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


@dataclass
class Double:
    """A running `ollama_double.py serve`."""

    root: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def models(self) -> Path:
        """OLLAMA_MODELS."""
        return Path(self.env["OLLAMA_MODELS"])

    def start(self, binary: Path = DOUBLE) -> Double:
        """Start `serve` and wait until `GET /` answers."""
        out = open(self.root / f"serve-{len(self.logs)}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.logs.append(out.name)
        self.proc = subprocess.Popen(
            [sys.executable, str(binary), "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        self._out = out
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {Path(out.name).read_text()}")
            try:
                if self.request("GET", "/").status == 200:
                    return self
            except OSError:
                time.sleep(0.03)
        raise AssertionError("serve did not come up")

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        self._out.close()
        self.proc = None
        return code

    def log(self) -> str:
        """Everything the server printed so far (all runs)."""
        return "".join(Path(name).read_text() for name in self.logs)

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Response:
        """One HTTP request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            conn.request(method, path, body=payload)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the double's CLI against this server."""
        return subprocess.run(
            [sys.executable, str(DOUBLE), *args], env=env or self.env, capture_output=True, text=True, timeout=30
        )

    def pull(self, model: str) -> None:
        """Pull and insist on success."""
        resp = self.request("POST", "/api/pull", {"model": model, "stream": False})
        assert (resp.status, resp.json()) == (200, {"status": "success"}), resp.body


def make_double(tmp_path: Path, **extra: str) -> Double:
    """A configured but not yet started double rooted in tmp_path."""
    port = free_port()
    env = base_env(tmp_path / "home")
    env.update(OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(tmp_path / "models"), **extra)
    return Double(root=tmp_path, port=port, env=env)


@pytest.fixture
def double(tmp_path: Path) -> Iterator[Double]:
    """A started double that must exit cleanly on SIGTERM."""
    server = make_double(tmp_path).start()
    yield server
    assert server.stop() == 0, server.log()


# ---------------------------------------------------------------------------
# Server basics


def test_liveness_version_startup_logs_and_keypair(double: Double) -> None:
    root = double.request("GET", "/")
    assert (root.status, root.body) == (200, b"Ollama is running")
    assert root.headers["content-type"] == "text/plain; charset=utf-8"
    head = double.request("HEAD", "/")
    assert (head.status, head.body) == (200, b"")
    version = double.request("GET", "/api/version")
    assert (version.status, version.json()) == (200, {"version": "0.0.0"})
    assert version.headers["content-type"].startswith("application/json")
    assert double.request("HEAD", "/api/version").status == 200
    assert (double.request("GET", "/nope").status, double.request("GET", "/nope").body) == (404, b"404 page not found")
    assert double.request("GET", "/api/pull").status == 405

    key = Path(double.env["HOME"]) / ".ollama" / "id_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert key.with_name("id_ed25519.pub").read_text().startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")
    log = double.log()
    assert f"Couldn't find '{key}'. Generating new private key." in log
    assert re.search(
        r"^time=\S+ level=INFO source=routes\.go:1 msg=\"Listening on 127\.0\.0\.1:%d \(version 0\.0\.0\)\"$"
        % double.port,
        log,
        re.MULTILINE,
    )
    assert re.search(
        r'msg="inference compute" id=cpu library=cpu compute="" name=cpu description=cpu '
        r'libdirs=ollama driver="" pci_id="" type="" total="[\d.]+ GiB" available="[\d.]+ GiB"',
        log,
    )
    assert re.search(
        r'^\[GIN\] \d{4}/\d\d/\d\d - \d\d:\d\d:\d\d \| 200 \| +\S+ \| +127\.0\.0\.1 \| GET +"/api/version"$',
        log,
        re.MULTILINE,
    )


def test_ed25519_matches_rfc8032_vector() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    expected = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert ollama_double.ed25519_public_key(seed).hex() == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ("http", "127.0.0.1", 11434)),
        ("0.0.0.0", ("http", "0.0.0.0", 11434)),
        ("example.org", ("http", "example.org", 11434)),
        ("10.0.0.5:8080", ("http", "10.0.0.5", 8080)),
        (":9999", ("http", "", 9999)),
        ("http://10.0.0.5:8080", ("http", "10.0.0.5", 8080)),
        ('"http://box"', ("http", "box", 80)),
        ("https://box", ("https", "box", 443)),
        ("[::1]:7000", ("http", "::1", 7000)),
    ],
)
def test_ollama_host_forms(value: str, expected: tuple[str, str, int]) -> None:
    parsed = ollama_double.parse_host(value)
    assert (parsed.scheme, parsed.host, parsed.port) == expected


def test_port_only_host_serves_all_interfaces_and_busy_port_fails(tmp_path: Path) -> None:
    server = make_double(tmp_path)
    server.env["OLLAMA_HOST"] = f":{server.port}"
    server.start()
    try:
        client_env = dict(server.env, OLLAMA_HOST=f"http://127.0.0.1:{server.port}")
        assert server.cli("--version", env=client_env).stdout == "ollama version is 0.0.0\n"
        clash = subprocess.run(
            [sys.executable, str(DOUBLE), "serve"],
            env=dict(server.env, OLLAMA_HOST=f"127.0.0.1:{server.port}"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert clash.returncode == 1
        assert f"Error: listen tcp 127.0.0.1:{server.port}: bind: address already in use" in clash.stderr
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------------------
# Pull


def test_pull_streams_progress_and_stores_manifest_and_blobs(double: Double) -> None:
    resp = double.request("POST", "/api/pull", {"model": "llama3.2"})
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/x-ndjson"
    assert resp.headers.get("transfer-encoding") == "chunked"
    lines = resp.lines()
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [line for line in lines if "digest" in line]
    assert progress and all(line["status"] == f"pulling {line['digest'][7:19]}" for line in progress)
    assert all(line.get("completed", 0) <= line["total"] for line in progress)
    weights = [line for line in progress if line["total"] > 10**9]
    assert len(weights) >= 3 and weights[-1]["completed"] == weights[-1]["total"]

    manifest_path = double.models / "manifests" / "registry.ollama.ai" / "library" / "llama3.2" / "latest"
    manifest = json.loads(manifest_path.read_bytes())
    digests = [layer["digest"] for layer in manifest["layers"]] + [manifest["config"]["digest"]]
    assert {line["digest"] for line in progress} == set(digests)
    for digest in digests:
        blob = double.models / "blobs" / digest.replace(":", "-")
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == digest
        assert blob.stat().st_size < 4096
    assert not list((double.models / "blobs").glob("*-partial"))

    again = double.request("POST", "/api/pull", {"model": "llama3.2:latest"}).lines()
    assert all(line["completed"] == line["total"] for line in again if "digest" in line)
    assert again[-1] == {"status": "success"}


def test_pull_without_streaming_and_request_errors(double: Double) -> None:
    resp = double.request("POST", "/api/pull", {"name": "qwen2.5-coder:1.5b", "stream": False})
    assert (resp.status, resp.json()) == (200, {"status": "success"})
    assert resp.headers["content-type"] == "application/json"

    chunked = http.client.HTTPConnection("127.0.0.1", double.port, timeout=30)
    chunked.request(
        "POST", "/api/pull", body=iter([b'{"model":"qwen3:0.6b",', b'"stream":false}']), encode_chunked=True
    )
    assert json.loads(chunked.getresponse().read()) == {"status": "success"}
    chunked.close()

    missing = double.request("POST", "/api/pull", raw=b"")
    assert (missing.status, missing.json()) == (400, {"error": "missing request body"})
    invalid = double.request("POST", "/api/pull", {"model": "bad name!", "stream": False})
    assert (invalid.status, invalid.json()) == (400, {"error": "invalid model name"})


def test_pull_unknown_model_errors_in_band_or_with_status(double: Double) -> None:
    streamed = double.request("POST", "/api/pull", {"model": "no-such-model"})
    assert streamed.status == 200
    assert streamed.lines() == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]
    plain = double.request("POST", "/api/pull", {"model": "no-such-model", "stream": False})
    assert (plain.status, plain.json()) == (500, {"error": "pull model manifest: file does not exist"})
    assert double.request("GET", "/api/tags").json() == {"models": []}


def test_concurrent_pulls_overlap(tmp_path: Path) -> None:
    server = make_double(tmp_path, OLLAMA_DOUBLE_PULL_DELAY="0.6").start()
    names = ["llama3.2:1b", "qwen2.5-coder:7b", "nomic-embed-text"]
    spans: dict[str, tuple[float, float, list[dict[str, Any]]]] = {}

    def pull(name: str) -> None:
        started = time.monotonic()
        lines = server.request("POST", "/api/pull", {"model": name}).lines()
        spans[name] = (started, time.monotonic(), lines)

    try:
        began = time.monotonic()
        threads = [threading.Thread(target=pull, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        elapsed = time.monotonic() - began
        assert all(spans[name][2][-1] == {"status": "success"} for name in names)
        assert elapsed < 1.4, f"pulls ran one after another ({elapsed:.2f}s for 3 x 0.6s)"
        assert max(start for start, _, _ in spans.values()) < min(end for _, end, _ in spans.values())
        tags = {model["name"] for model in server.request("GET", "/api/tags").json()["models"]}
        assert tags == {"llama3.2:1b", "qwen2.5-coder:7b", "nomic-embed-text:latest"}
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------------------
# Tags, show, create, delete


def test_tags_report_explicit_tags_catalog_sizes_and_manifest_digests(double: Double) -> None:
    double.pull("llama3.2")
    double.pull("LLAMA3.2:latest")  # names match case-insensitively: no second model
    double.pull("qwen2.5-coder:1.5b")
    models = double.request("GET", "/api/tags").json()["models"]
    assert [model["name"] for model in models] == ["qwen2.5-coder:1.5b", "llama3.2:latest"]
    llama = models[1]
    assert llama["model"] == "llama3.2:latest"
    assert llama["size"] == LLAMA_SIZE
    assert RFC3339.match(llama["modified_at"])
    manifest = double.models / "manifests" / "registry.ollama.ai" / "library" / "llama3.2" / "latest"
    assert llama["digest"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert llama["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    }
    assert double.request("HEAD", "/api/tags").status == 200
    assert [m["id"] for m in double.request("GET", "/v1/models").json()["data"]] == [m["name"] for m in models]


def test_registry_override_and_namespaced_names(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "include_defaults": False,
                "models": {"acme/tool:v1": {"size": 123456789, "parameter_size": "1B", "family": "llama"}},
            }
        )
    )
    server = make_double(tmp_path, OLLAMA_DOUBLE_REGISTRY=str(catalog)).start()
    try:
        server.pull("acme/tool:v1")
        first = server.request("GET", "/api/tags").json()["models"]
        assert [(m["name"], m["size"]) for m in first] == [("acme/tool:v1", 123456789)]
        assert (server.models / "manifests" / "registry.ollama.ai" / "acme" / "tool" / "v1").is_file()
        assert server.request("POST", "/api/pull", {"model": "llama3.2", "stream": False}).status == 500

        # Move the tag upstream: the next pull fetches the new weights and prunes the old blob.
        old_blobs = set((server.models / "blobs").iterdir())
        catalog.write_text(json.dumps({"models": {"acme/tool:v1": {"size": 999999999, "parameter_size": "2B"}}}))
        statuses = [line["status"] for line in server.request("POST", "/api/pull", {"model": "acme/tool:v1"}).lines()]
        assert statuses[-2:] == ["removing unused layers", "success"]
        assert server.request("GET", "/api/tags").json()["models"][0]["size"] == 999999999
        assert old_blobs - set((server.models / "blobs").iterdir())
    finally:
        assert server.stop() == 0


def test_show_missing_and_present(double: Double) -> None:
    missing = double.request("POST", "/api/show", {"model": "llama3.2"})
    assert (missing.status, missing.json()) == (404, {"error": "model 'llama3.2:latest' not found"})
    assert double.request("POST", "/api/show", {}).json() == {"error": "model is required"}

    double.pull("llama3.2")
    shown = double.request("POST", "/api/show", {"model": "llama3.2"})
    assert shown.status == 200
    body = shown.json()
    assert "system" not in body
    assert body["capabilities"] == ["completion", "tools"]
    assert body["details"]["parameter_size"] == "3.2B"
    assert body["model_info"]["general.architecture"] == "llama"
    assert body["model_info"]["llama.context_length"] == 131072
    assert 'stop                           "<|eot_id|>"' in body["parameters"].splitlines()
    assert body["modelfile"].startswith('# Modelfile generated by "ollama show"\n')
    assert "{{ .Prompt }}" in body["template"]

    double.pull("nomic-embed-text")
    assert double.request("POST", "/api/show", {"name": "nomic-embed-text"}).json()["capabilities"] == ["embedding"]


def test_create_from_pulled_model_reads_back_definition(double: Double) -> None:
    double.pull("llama3.2")
    request = {
        "model": "mario",
        "from": "llama3.2",
        "system": "You are Mario from Super Mario Bros.",
        "parameters": {"temperature": 0.2, "num_ctx": 8192},
    }
    streamed = double.request("POST", "/api/create", request)
    statuses = [line["status"] for line in streamed.lines()]
    assert streamed.status == 200 and streamed.headers["content-type"] == "application/x-ndjson"
    assert any(re.fullmatch(r"using existing layer sha256:[0-9a-f]{64}", status) for status in statuses)
    assert statuses[-2:] == ["writing manifest", "success"]

    shown = double.request("POST", "/api/show", {"model": "mario"}).json()
    assert shown["system"] == "You are Mario from Super Mario Bros."
    params = shown["parameters"].splitlines()
    assert "temperature                    0.2" in params
    assert "num_ctx                        8192" in params
    assert 'stop                           "<|start_header_id|>"' in params  # merged from the base
    assert shown["details"]["parent_model"] == "llama3.2:latest"
    tags = {model["name"]: model for model in double.request("GET", "/api/tags").json()["models"]}
    assert set(tags) == {"mario:latest", "llama3.2:latest"}
    assert tags["mario:latest"]["details"]["parent_model"] == "llama3.2:latest"

    changed = double.request("POST", "/api/create", {**request, "system": "You are Luigi.", "stream": False})
    assert (changed.status, changed.json()) == (200, {"status": "success"})
    assert double.request("POST", "/api/show", {"model": "mario:latest"}).json()["system"] == "You are Luigi."


def test_create_base_handling(double: Double) -> None:
    unknown = double.request("POST", "/api/create", {"model": "x", "from": "no-such-base", "stream": False})
    assert (unknown.status, unknown.json()) == (500, {"error": "pull model manifest: file does not exist"})
    streamed = double.request("POST", "/api/create", {"model": "x", "from": "no-such-base"})
    assert streamed.status == 200
    assert streamed.lines()[-1] == {"error": "pull model manifest: file does not exist"}
    neither = double.request("POST", "/api/create", {"model": "x"})
    assert (neither.status, neither.json()) == (400, {"error": "neither 'from' or 'files' was specified"})
    assert double.request("GET", "/api/tags").json() == {"models": []}

    # Like Ollama, a base that the registry has but that is not local is pulled first.
    pulled = double.request("POST", "/api/create", {"model": "coder", "from": "qwen2.5-coder:1.5b"}).lines()
    assert pulled[0] == {"status": "pulling manifest"} and pulled[-1] == {"status": "success"}
    names = {model["name"] for model in double.request("GET", "/api/tags").json()["models"]}
    assert names == {"coder:latest", "qwen2.5-coder:1.5b"}


def test_delete_removes_only_unshared_blobs(double: Double) -> None:
    double.pull("llama3.2")
    double.request("POST", "/api/create", {"model": "mario", "from": "llama3.2", "system": "hi", "stream": False})
    mario = json.loads((double.models / "manifests/registry.ollama.ai/library/mario/latest").read_bytes())

    deleted = double.request("DELETE", "/api/delete", {"model": "llama3.2"})
    assert (deleted.status, deleted.body) == (200, b"")
    again = double.request("DELETE", "/api/delete", {"model": "llama3.2"})
    assert (again.status, again.json()) == (404, {"error": "model 'llama3.2' not found"})
    for layer in mario["layers"]:
        assert (double.models / "blobs" / layer["digest"].replace(":", "-")).is_file()
    assert double.request("POST", "/api/show", {"model": "mario"}).status == 200

    assert double.request("DELETE", "/api/delete", {"model": "mario"}).status == 200
    assert list((double.models / "blobs").iterdir()) == []
    assert not (double.models / "manifests" / "registry.ollama.ai").exists()


def test_generate_preload_ps_and_unload(double: Double) -> None:
    assert double.request("GET", "/api/ps").json() == {"models": []}
    missing = double.request("POST", "/api/generate", {"model": "llama3.2"})
    assert (missing.status, missing.json()) == (404, {"error": "model 'llama3.2' not found"})
    double.pull("llama3.2")
    loaded = double.request("POST", "/api/generate", {"model": "llama3.2"}).json()
    assert loaded["model"] == "llama3.2" and loaded["done"] is True
    assert (loaded["response"], loaded["done_reason"]) == ("", "load")
    assert RFC3339.match(loaded["created_at"])

    running = double.request("GET", "/api/ps").json()["models"]
    assert len(running) == 1
    entry = running[0]
    assert (entry["name"], entry["model"], entry["size"], entry["size_vram"]) == (
        "llama3.2:latest",
        "llama3.2:latest",
        LLAMA_SIZE,
        0,
    )
    assert set(entry) >= {"digest", "details", "expires_at"}
    assert RFC3339.match(entry["expires_at"])
    ps_out = double.cli("ps").stdout.splitlines()
    assert ps_out[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert "100% CPU" in ps_out[1] and "minutes from now" in ps_out[1]

    forever = double.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": -1})
    assert forever.json()["done_reason"] == "load"
    assert int(double.request("GET", "/api/ps").json()["models"][0]["expires_at"][:4]) > 2200

    unloaded = double.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"
    assert double.request("GET", "/api/ps").json() == {"models": []}

    reply = double.request("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False}).json()
    assert reply["done"] is True and "test double" in reply["response"]
    double.pull("nomic-embed-text")
    refused = double.request("POST", "/api/generate", {"model": "nomic-embed-text"})
    assert (refused.status, refused.json()) == (400, {"error": '"nomic-embed-text:latest" does not support generate'})
    vectors = double.request("POST", "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b"]}).json()
    assert [len(vector) for vector in vectors["embeddings"]] == [768, 768]


def test_openai_chat_completions_answer_whole_or_streamed(double: Double) -> None:
    # Continue's ollama provider (and the Continue CLI) call this route.
    body = {"model": "qwen2.5-coder:1.5b", "messages": [{"role": "user", "content": "hi"}]}
    missing = double.request("POST", "/v1/chat/completions", body)
    assert missing.status == 404
    double.pull("qwen2.5-coder:1.5b")
    whole = double.request("POST", "/v1/chat/completions", body).json()
    assert whole["object"] == "chat.completion" and whole["model"] == "qwen2.5-coder:1.5b"
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": ollama_double.CANNED_REPLY}
    assert whole["choices"][0]["finish_reason"] == "stop"
    streamed = double.request("POST", "/v1/chat/completions", {**body, "stream": True})
    events = [line[len("data: "):] for line in streamed.body.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert "".join(chunk["choices"][0]["delta"]["content"] for chunk in chunks) == ollama_double.CANNED_REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_restart_keeps_models_and_prunes_strays(tmp_path: Path) -> None:
    server = make_double(tmp_path).start()
    server.pull("llama3.2")
    server.request("POST", "/api/create", {"model": "mario", "from": "llama3.2", "system": "Mario!", "stream": False})
    assert server.stop() == 0

    stray = server.models / "blobs" / ("sha256-" + "0" * 64)
    stray.write_bytes(b"left over")
    server.start()
    try:
        names = {model["name"] for model in server.request("GET", "/api/tags").json()["models"]}
        assert names == {"llama3.2:latest", "mario:latest"}
        assert server.request("POST", "/api/show", {"model": "mario"}).json()["system"] == "Mario!"
        assert not stray.exists()
        assert 'msg="total unused blobs removed: 1"' in server.log()
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------------------
# CLI


def test_cli_version_with_and_without_server(tmp_path: Path) -> None:
    server = make_double(tmp_path)
    offline = server.cli("--version")
    assert offline.returncode == 0
    assert (
        offline.stdout == "Warning: could not connect to a running Ollama instance\nWarning: client version is 0.0.0\n"
    )
    server.start()
    try:
        for flag in ("--version", "-v"):
            online = server.cli(flag)
            assert (online.returncode, online.stdout) == (0, "ollama version is 0.0.0\n")
    finally:
        assert server.stop() == 0
    offline_list = server.cli("list")
    assert (offline_list.returncode, offline_list.stderr) == (1, CONNECT_ERROR)


def test_cli_pull_list_show_rm(double: Double) -> None:
    pulled = double.cli("pull", "llama3.2:1b")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stderr.splitlines()[0] == "pulling manifest"
    assert pulled.stderr.splitlines()[-1] == "success"

    listed = double.cli("list").stdout.splitlines()
    assert listed[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    digest = double.request("GET", "/api/tags").json()["models"][0]["digest"]
    assert listed[1].split()[:4] == ["llama3.2:1b", digest[:12], "1.3", "GB"]
    assert len(listed) == 2

    shown = double.cli("show", "llama3.2:1b", "--parameters")
    assert shown.returncode == 0 and 'stop                           "<|eot_id|>"' in shown.stdout
    assert "architecture        llama" in double.cli("show", "llama3.2:1b").stdout

    missing = double.cli("pull", "no-such-model")
    assert (missing.returncode, missing.stderr.splitlines()[-1]) == (
        1,
        "Error: pull model manifest: file does not exist",
    )

    removed = double.cli("rm", "llama3.2:1b")
    assert (removed.returncode, removed.stdout) == (0, "deleted 'llama3.2:1b'\n")
    gone = double.cli("rm", "llama3.2:1b")
    assert (gone.returncode, gone.stderr) == (1, "Error: model 'llama3.2:1b' not found\n")
    assert double.cli("list").stdout.splitlines()[1:] == []


def test_cli_create_from_modelfile(double: Double, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text('FROM qwen3:0.6b\nPARAMETER temperature 0.3\nSYSTEM """Be\nbrief."""\n')
    created = double.cli("create", "brief", "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    shown = double.request("POST", "/api/show", {"model": "brief"}).json()
    assert shown["system"] == "Be\nbrief."
    assert "temperature                    0.3" in shown["parameters"].splitlines()


# ---------------------------------------------------------------------------
# build_release


def _zst_members(path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    raw = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {
            info.name: (info, tar.extractfile(info).read() if info.isfile() else b"")  # type: ignore[union-attr]
            for info in tar.getmembers()
        }


def test_build_release_archive_layout_and_checksums(tmp_path: Path) -> None:
    out = tmp_path / "mirror"
    result = subprocess.run(
        [sys.executable, str(BUILD), "--version", "0.32.15", "--out", str(out), "--arch", "amd64", "--arch", "arm64"],
        capture_output=True,
        text=True,
        check=True,
    )
    release = out / "v0.32.15"
    assert sorted(path.name for path in release.iterdir()) == [
        "ollama-linux-amd64.tar.zst",
        "ollama-linux-arm64.tar.zst",
        "sha256sum.txt",
    ]
    sums = dict(reversed(line.split("  ")) for line in (release / "sha256sum.txt").read_text().splitlines())
    for name, digest in sums.items():
        assert hashlib.sha256((release / name).read_bytes()).hexdigest() == digest
    assert sorted(result.stdout.splitlines()) == sorted(f"{d}  {n}" for n, d in sums.items())

    members = _zst_members(release / "ollama-linux-amd64.tar.zst")
    assert list(members) == MEMBERS  # tarfile drops the trailing "/" that directory entries carry
    modes = {name: stat.S_IMODE(info.mode) for name, (info, _) in members.items()}
    assert modes == {
        "bin": 0o755,
        "bin/ollama": 0o755,
        "lib": 0o755,
        "lib/ollama": 0o755,
        "lib/ollama/DOUBLE.txt": 0o644,
    }
    assert [info.isdir() for info, _ in members.values()] == [True, False, True, True, False]
    assert all((info.uid, info.gid) == (0, 0) for info, _ in members.values())
    binary = members["bin/ollama"][1].decode()
    assert binary.startswith("#!/usr/bin/env python3\n")
    assert 'VERSION = "0.32.15"' in binary and 'VERSION = "0.0.0"' not in binary
    assert "TEST DOUBLE standing in for Ollama" in binary
    assert b"NOT Ollama 0.32.15 (amd64)" in members["lib/ollama/DOUBLE.txt"][1]


def test_build_release_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    first = build_release.build("0.32.15", tmp_path / "a", arches=("amd64",))
    second = build_release.build("v0.32.15", tmp_path / "b", arches=["amd64"])
    assert first == second
    asset = tmp_path / "a" / "v0.32.15" / "ollama-linux-amd64.tar.zst"
    before = asset.stat().st_mtime_ns
    time.sleep(0.01)
    assert build_release.build("0.32.15", tmp_path / "a") == first
    assert asset.stat().st_mtime_ns == before
    assert build_release.build("0.32.16", tmp_path / "a") != first
    with pytest.raises(ValueError):
        build_release.build("latest", tmp_path / "a")


def test_build_release_tgz_format(tmp_path: Path) -> None:
    zst = build_release.build("0.13.5", tmp_path, fmt="zst")
    tgz = build_release.build("0.13.5", tmp_path, fmt="tgz")
    assert list(tgz) == ["ollama-linux-amd64.tgz"]
    release = tmp_path / "v0.13.5"
    listed = (release / "sha256sum.txt").read_text().splitlines()
    assert listed == [f"{digest}  {name}" for name, digest in sorted({**zst, **tgz}.items())]
    with tarfile.open(release / "ollama-linux-amd64.tgz", "r:gz") as tar:
        assert tar.getnames() == MEMBERS
        assert tar.getmember("bin/ollama").mode == 0o755


def test_unpacked_release_serves_its_baked_version(tmp_path: Path) -> None:
    build_release.build("0.32.15", tmp_path / "mirror")
    install = tmp_path / "opt" / "ollama-0.32.15"
    install.mkdir(parents=True)
    archive = tmp_path / "mirror" / "v0.32.15" / "ollama-linux-amd64.tar.zst"
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(install)], check=True)
    binary = install / "bin" / "ollama"
    assert os.access(binary, os.X_OK)

    server = make_double(tmp_path)
    offline = subprocess.run([str(binary), "--version"], env=server.env, capture_output=True, text=True, timeout=30)
    assert offline.stdout.splitlines()[-1] == "Warning: client version is 0.32.15"
    server.start(binary)
    try:
        assert server.request("GET", "/api/version").json() == {"version": "0.32.15"}
        online = subprocess.run([str(binary), "-v"], env=server.env, capture_output=True, text=True, timeout=30)
        assert online.stdout == "ollama version is 0.32.15\n"
    finally:
        assert server.stop() == 0


def test_every_double_file_says_it_is_a_test_double() -> None:
    for path in sorted(DOUBLE_DIR.iterdir()):
        if path.is_file():
            head = path.read_text()[:400].lower()
            assert (
                "test double" in head and "ollama" in head and "cannot be downloaded" in head.replace("\n", " ")
            ), path
