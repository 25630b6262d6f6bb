"""llm_host's team-server wiring: which URLs a host's clients get for the team server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _modules import ROOT, load_module

team = load_module("plugins/filter/llm_host_team.py")
# The continue role checks its developers' models against what llm_host publishes of the server.
cc = load_module("plugins/filter/continue_config.py")

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
        # Through the server's TLS proxy (llm_proxy's ports): each vLLM server under its name.
        "tls": "team",
        "ollama_url": "https://team-gpu.lan:11443",
        "ollama_models": [],
        "open_webui_url": "https://team-gpu.lan",
        "vllm_urls": {"coder": "https://team-gpu.lan:8443/coder/v1", "rerank": "https://team-gpu.lan:8443/rerank/v1"},
        "vllm_url": "https://team-gpu.lan:8443/coder/v1",
    }


def test_the_proxy_ports_and_the_teams_own_certificate_come_from_the_servers_inventory() -> None:
    result = team.team_endpoints("team-gpu", "alice-mbp", {**SERVER, "llm_proxy_ollama_port": 4443,
                                                           "llm_proxy_open_webui_port": 9443,
                                                           "llm_proxy_certificate": "-----BEGIN CERTIFICATE-----"})
    assert result["ollama_url"] == "https://team-gpu.lan:4443" and result["open_webui_url"] == "https://team-gpu.lan:9443"
    assert result["tls"] == "own"


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


def _use(model: str, api_base: str, provider: str = "ollama") -> dict[str, str]:
    return {"provider": provider, "model": model, "api_base": api_base, "by": f"Continue config of alice (model {model!r})"}


SERVED = {**SERVER, "ollama_models": ["qwen2.5-coder:32b", {"name": "library/nomic-embed-text", "memory_gb": 1}],
          "ollama_custom_models": [{"name": "team-reviewer", "from": "qwen2.5-coder:32b"}]}


def test_the_team_servers_ollama_list_is_published_as_written() -> None:
    result = team.team_endpoints("team-gpu", "alice-mbp", SERVED)
    assert result["ollama_models"] == ["qwen2.5-coder:32b", "library/nomic-embed-text", "team-reviewer"]
    # A list of the wrong type is the server's own preflight's to refuse; it serves nothing here.
    assert team.team_endpoints("team-gpu", "alice-mbp", {**SERVER, "ollama_models": "qwen3"})["ollama_models"] == []


def test_models_the_team_server_serves_pass() -> None:
    endpoints = team.team_endpoints("team-gpu", "alice-mbp", SERVED)
    uses = [_use("qwen2.5-coder:32b", "https://team-gpu.lan:11443"),
            _use("nomic-embed-text:latest", "https://TEAM-GPU.lan:11443/"),
            _use("team-reviewer", "https://10.0.0.5:11443"),  # the server's ansible_host
            _use("coder", "https://team-gpu.lan:8443/coder/v1", "vllm"),
            _use("rerank", "https://team-gpu.lan:8443/rerank/v1/", "openai"),
            # Served elsewhere: not the team server's business.
            _use("qwen3:8b", "http://localhost:11434"), _use("gpt-x", "https://api.example.com/v1", "openai")]
    assert cc.team_model_errors(uses, endpoints, ["10.0.0.5"]) == []


def test_a_model_the_team_servers_ollama_lacks_is_named_with_the_fix() -> None:
    endpoints = team.team_endpoints("team-gpu", "alice-mbp", SERVED)
    errors = cc.team_model_errors([_use("qwen3:32b", "https://team-gpu.lan:11443")], endpoints)
    assert errors == ["Continue config of alice (model 'qwen3:32b'): the team server team-gpu does not serve "
                      "'qwen3:32b' from its Ollama: add it to ollama_models of team-gpu (its host_vars or "
                      "group_vars/gpu_servers/), or serve the model from this host's own Ollama (apiBase "
                      "http://localhost:11434)"]


def test_a_vllm_model_must_be_the_name_that_server_serves() -> None:
    endpoints = team.team_endpoints("team-gpu", "alice-mbp", SERVED)
    errors = cc.team_model_errors([_use("Qwen/Qwen2.5-Coder-32B", "https://team-gpu.lan:8443/coder/v1", "vllm")], endpoints)
    assert len(errors) == 1 and "serves 'coder', not 'Qwen/Qwen2.5-Coder-32B': set model: coder" in errors[0]


def test_a_port_of_the_team_server_where_nothing_listens_is_an_error() -> None:
    endpoints = team.team_endpoints("team-gpu", "alice-mbp", SERVED)
    errors = cc.team_model_errors([_use("coder", "https://team-gpu.lan:9000/v1", "openai"),
                                     _use("coder", "https://team-gpu.lan:11443", "openai"),
                                     # The vLLM port, but no server of that name; the services' own ports.
                                     _use("coder", "https://team-gpu.lan:8443/other/v1", "openai"),
                                     _use("coder", "http://team-gpu.lan:8001/v1", "openai")], endpoints)
    assert "nothing of llmfleet's listens there" in errors[0]
    assert "use provider ollama there" in errors[1]
    assert len(errors) == 4 and all("nothing of llmfleet's listens there" in e for e in errors[2:])


def test_no_check_without_a_team_server_or_on_the_server_itself() -> None:
    uses = [_use("qwen3:32b", "http://team-gpu.lan:11434")]
    assert cc.team_model_errors(uses, team.team_endpoints("", "alice-mbp", None)) == []
    assert cc.team_model_errors(uses, team.team_endpoints("team-gpu", "team-gpu", SERVED)) == []


def test_a_model_on_an_unexposed_team_server_is_an_error() -> None:
    unexposed = team.team_endpoints("team-gpu", "alice-mbp", {**SERVED, "llm_host_expose": False})
    errors = cc.team_model_errors([_use("qwen2.5-coder:32b", "http://10.0.0.5:11434"),
                                     _use("qwen3:8b", "http://localhost:11434")], unexposed, ["10.0.0.5"])
    assert len(errors) == 1 and "does not expose its services (llm_host_expose is false there" in errors[0]


@pytest.mark.parametrize("address", ["http://team-gpu.lan", "team-gpu.lan:8000", "team gpu"])
def test_a_server_address_that_is_not_a_host_name_is_named_to_its_clients(address: str) -> None:
    server = team.team_endpoints("team-gpu", "alice-laptop", {"llm_host_expose": True, "llm_host_advertised_name": address})
    assert server["errors"] and f"{address!r} (its llm_host_advertised_name" in server["errors"][0]
    assert cc.team_model_errors([], server) == server["errors"]
    assert "errors" not in team.team_endpoints("team-gpu", "alice-laptop", {"llm_host_expose": True,
                                                                         "llm_host_advertised_name": "fd00::5"})


def _roles_with(tmp_path: Path, **ports: int) -> str:
    """A copy of the roles' defaults files with some defaults changed."""
    for role in ("ollama", "open_webui", "llm_proxy"):
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
        defaults.update({k: v for k, v in ports.items() if k.startswith(role + "_") and k.endswith("port")})
        (tmp_path / role / "defaults").mkdir(parents=True)
        (tmp_path / role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    return str(tmp_path)


def test_unset_ports_are_the_roles_own_defaults() -> None:
    # Read from roles/ollama and roles/open_webui, not copied: the server's inventory sets neither here.
    result = team.team_endpoints("team-gpu", "alice-mbp", {"llm_host_expose": True, "llm_host_advertised_name": "gpu"})
    assert result["ollama_url"] == "https://gpu:11443" and result["open_webui_url"] == "https://gpu"
    local = team.team_endpoints("team-gpu", "team-gpu", {"llm_host_expose": True})
    assert local["ollama_url"] == "http://localhost:11434" and local["open_webui_url"] == "http://localhost:8080"
    assert team.default_ports() == {"ollama": 11434, "open_webui": 8080,
                                    "proxy_ollama": 11443, "proxy_open_webui": 443, "proxy_vllm": 8443}
    # The vllm preflight's port clash check reads them through this filter.
    default_port = team.FilterModule().filters()["llm_host_default_port"]
    assert (default_port("ollama"), default_port("open_webui")) == (11434, 8080)


def test_a_changed_role_default_is_what_clients_get(tmp_path: Path) -> None:
    roles = _roles_with(tmp_path, ollama_port=11500, open_webui_port=3000, llm_proxy_ollama_port=11600)
    result = team.team_endpoints("team-gpu", "alice-mbp", {"llm_host_expose": True, "llm_host_advertised_name": "gpu"},
                                 roles_dir=roles)
    assert result["ollama_url"] == "https://gpu:11600" and result["open_webui_url"] == "https://gpu"
    local = team.team_endpoints("team-gpu", "team-gpu", {}, roles_dir=roles)
    assert local["ollama_url"] == "http://localhost:11500" and local["open_webui_url"] == "http://localhost:3000"
    # The inventory's own setting still wins over the default.
    assert team.team_endpoints("team-gpu", "bob", {**SERVER, "llm_proxy_ollama_port": 12000},
                               roles_dir=roles)["ollama_url"] == "https://team-gpu.lan:12000"
