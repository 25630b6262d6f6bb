"""llm_host's team-server wiring: which URLs a host's clients get for the team server."""

from __future__ import annotations

from _modules import load_module

team = load_module("roles/llm_host/filter_plugins/llm_host_team.py")

SERVER = {
    "llm_host_expose": True,
    "llm_host_advertised_name": "team-gpu.lan",
    "ansible_host": "10.0.0.5",
    "vllm_models": [{"name": "coder", "port": 8001}, {"name": "rerank", "port": "8002"}],
    "open_webui_port": 3000,
}


def test_laptop_gets_the_exposed_servers_urls_by_name() -> None:
    result = team.team_endpoints("team-gpu", "alice-mbp", SERVER)
    assert result == {
        "server": "team-gpu", "exposed": True, "address": "team-gpu.lan",
        "ollama_url": "http://team-gpu.lan:11434",
        "open_webui_url": "http://team-gpu.lan:3000",
        "vllm_urls": {"coder": "http://team-gpu.lan:8001/v1", "rerank": "http://team-gpu.lan:8002/v1"},
        "vllm_url": "http://team-gpu.lan:8001/v1",
    }


def test_the_server_reaches_itself_on_localhost() -> None:
    result = team.team_endpoints("team-gpu", "team-gpu", {**SERVER, "llm_host_expose": False})
    assert result["address"] == "localhost"
    assert result["vllm_url"] == "http://localhost:8001/v1"


def test_an_unexposed_server_gives_others_no_urls() -> None:
    result = team.team_endpoints("team-gpu", "alice-mbp", {**SERVER, "llm_host_expose": "no"})
    assert result == {"server": "team-gpu", "exposed": False, "address": ""}


def test_address_falls_back_to_ansible_host_then_the_inventory_name() -> None:
    without_name = {k: v for k, v in SERVER.items() if k != "llm_host_advertised_name"}
    assert team.team_endpoints("team-gpu", "bob", without_name)["address"] == "10.0.0.5"
    bare = {"llm_host_expose": "true"}
    result = team.team_endpoints("team-gpu", "bob", bare)
    assert result["address"] == "team-gpu"
    assert "vllm_url" not in result and result["vllm_urls"] == {}


def test_no_team_server() -> None:
    assert team.team_endpoints("", "alice-mbp", None) == {"server": "", "exposed": False, "address": ""}
