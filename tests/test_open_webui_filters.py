"""The open_webui role's connection checks (its environment files: tests/test_env_file.py)."""

from __future__ import annotations

import pytest

from _modules import load_module

ow = load_module("plugins/filter/open_webui_env.py")


def test_good_connections() -> None:
    assert ow.connection_errors(["http://127.0.0.1:11434", "https://gpu.lan:11434"],
                                [{"url": "http://127.0.0.1:8000/v1", "key": "none"}, {"url": "http://x:8001/v1"}]) == []


@pytest.mark.parametrize(("ollama", "openai", "fragment"), [
    (["127.0.0.1:11434"], [], "Ollama URL '127.0.0.1:11434'"),
    (["http://a;http://b"], [], "without ';'"),
    ([], ["http://x/v1"], "#1 must be a mapping"),
    ([], [{"url": "http://x/v1", "token": "t"}], "#1 must be a mapping"),
    ([], [{"key": "k"}], "#1: url None"),
    ([], [{"url": "http://x/v1", "key": "a;b"}], "#1: key must be a string without ';'"),
])
def test_bad_connections_are_named(ollama: list, openai: list, fragment: str) -> None:
    errors = ow.connection_errors(ollama, openai)
    assert any(fragment in error for error in errors), errors


def test_a_key_is_never_in_an_error() -> None:
    assert not any("s3cr3t" in e for e in ow.connection_errors([], [{"url": "bad", "key": "s3cr3t;x"}]))


MODELS = [{"name": "coder", "port": 8001, "api_key": "k-coder"}, {"name": "rerank", "port": 8002}]


@pytest.mark.parametrize(("enabled", "host_type", "served"), [
    ("auto", "linux_cuda", True), ("auto", "macos_arm64", True), ("auto", "linux_cpu", False),
    (True, "linux_cpu", True), ("true", "linux_cpu", True), (False, "linux_cuda", False),
])
def test_vllm_connections_follow_the_vllm_roles_rule(enabled: object, host_type: str, served: bool) -> None:
    connections = ow.vllm_connections(MODELS, enabled, host_type, "k-all")
    assert bool(connections) is served


def test_vllm_connections_carry_each_servers_key() -> None:
    assert ow.vllm_connections(MODELS, True, "linux_cpu", "k-all") == [
        {"url": "http://127.0.0.1:8001/v1", "key": "k-coder"},
        {"url": "http://127.0.0.1:8002/v1", "key": "k-all"},
    ]
    assert ow.vllm_connections([], True, "linux_cuda", "") == []
    assert ow.connection_errors([], ow.vllm_connections(MODELS, True, "linux_cpu", "")) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434\n", "http://:11434", "http://ollama host:11434",
                                 "127.0.0.1:11434", "http://a:11434;http://b:11434"])
def test_an_ollama_url_must_be_a_whole_url(url: str) -> None:
    assert ow.connection_errors([url], []) != []
    assert ow.connection_errors([], [{"url": url, "key": "none"}]) != []
    assert ow.connection_errors(["http://127.0.0.1:11434", "https://[fd00::1]:11434/"], []) == []
