"""The ollama role pulls the models its clients on the same host name, without a second list.

A real ansible-playbook run computes, for hosts of each kind, what the kind playbooks compute:
tests/playbooks/ollama_client_models.yml loads the roles (defaults, vars, filters) and writes each
host's _ollama_models. The filters themselves are unit-tested below it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from _modules import load_module

ROOT = Path(__file__).resolve().parents[1]
om = load_module("plugins/filter/ollama_models.py")
cc = load_module("plugins/filter/continue_config.py")
ow = load_module("plugins/filter/open_webui_env.py")

# A CPU machine with 16 GB: Continue's "auto" autocomplete picks the small base model there.
FACTS = {"type": "linux_cpu", "ram_mb": 16384, "vram_mb": 0, "gpus": [], "arch": "x86_64"}
BASE = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "continue_users": ["root"],
        "llm_host_facts": FACTS, "llm_host_team_server": ""}
SEED = ["qwen2.5-coder:7b", "nomic-embed-text:latest", "qwen2.5-coder:1.5b-base"]
TEAM = {"name": "Team chat", "provider": "ollama", "model": "qwen3:32b", "apiBase": "http://team-gpu.lan:11434"}
HOSTS: dict[str, tuple[str, dict[str, Any]]] = {
    "workstation": ("workstations", {}),
    "laptop": ("dev_laptops", {"ollama_models": ["llama3.2:3b"]}),
    "big-laptop": ("dev_laptops", {"llm_host_facts": {**FACTS, "ram_mb": 65536}}),
    "server": ("gpu_servers", {"open_webui_environment": {"TASK_MODEL": "qwen2.5:3b"}}),
    "switched-off": ("workstations", {"ollama_models_from_clients": False, "ollama_models": ["phi4"]}),
    "remote-models": ("dev_laptops", {"continue_models": [TEAM], "continue_autocomplete_model": ""}),
    "declared-with-memory": ("dev_laptops", {"ollama_models": [{"name": "qwen2.5-coder:7b", "memory_gb": 6}]}),
    "other-port": ("workstations", {"ollama_port": 11500}),
}


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("clients")
    groups: dict[str, Any] = {}
    for name, (group, hostvars) in HOSTS.items():
        groups.setdefault(group, {"hosts": {}})["hosts"][name] = {**BASE, **hostvars}
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STRATEGY": "linear",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([str(bindir / "ansible-playbook"), "-i", str(tmp / "hosts.yml"),
                          str(ROOT / "tests/playbooks/ollama_client_models.yml"), "-e", f"out_dir={tmp}"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {name: json.loads((tmp / f"{name}.json").read_text()) for name in HOSTS}


def test_a_workstation_pulls_the_seed_models_from_defaults_alone(computed: dict[str, Any]) -> None:
    # Continue's chat, embed and (small, 16 GB CPU host) autocomplete models; Open WebUI's embedding
    # model is the same nomic-embed-text, pulled once.
    assert computed["workstation"]["models"] == SEED
    by = computed["workstation"]["clients"]["by"]
    assert any("Open WebUI's embedding model" in who for who in by["nomic-embed-text:latest"])
    assert any("Continue config of root" in who for who in by["nomic-embed-text:latest"])


def test_ollama_models_adds_to_the_clients_models(computed: dict[str, Any]) -> None:
    # A laptop runs no Open WebUI; its own list comes first.
    assert computed["laptop"]["models"] == ["llama3.2:3b", *SEED]


def test_the_autocomplete_model_follows_the_hardware(computed: dict[str, Any]) -> None:
    assert "qwen2.5-coder:7b-base" in computed["big-laptop"]["models"]
    assert "qwen2.5-coder:1.5b-base" not in computed["big-laptop"]["models"]


def test_a_server_pulls_only_what_its_open_webui_names(computed: dict[str, Any]) -> None:
    # No Continue on a team server, so none of Continue's defaults.
    assert computed["server"]["models"] == ["nomic-embed-text:latest", "qwen2.5:3b"]


def test_the_switch_turns_the_derivation_off(computed: dict[str, Any]) -> None:
    assert computed["switched-off"]["models"] == ["phi4"]
    assert computed["switched-off"]["clients"]["models"] == []


def test_models_served_elsewhere_are_not_pulled_here(computed: dict[str, Any]) -> None:
    assert computed["remote-models"]["models"] == []


def test_a_declared_entry_wins_over_the_derived_name(computed: dict[str, Any]) -> None:
    models = computed["declared-with-memory"]["models"]
    assert models[0] == {"name": "qwen2.5-coder:7b", "memory_gb": 6}
    assert "qwen2.5-coder:7b" not in models[1:]


def test_clients_of_another_port_are_not_this_ollama(computed: dict[str, Any]) -> None:
    # Continue and Open WebUI still point at 11434 by default: nothing of theirs is served on 11500.
    assert computed["other-port"]["models"] == []


def test_client_models_match_this_host_by_name_and_port() -> None:
    uses = [
        {"provider": "ollama", "model": "a", "api_base": "http://localhost:11434", "by": "x"},
        {"provider": "ollama", "model": "b:1b", "api_base": "http://127.0.0.1:11434/", "by": "y"},
        {"provider": "ollama", "model": "c", "api_base": "http://[::1]:11434", "by": "z"},
        {"provider": "ollama", "model": "d", "api_base": "http://My-Box.lan:11434", "by": "z"},
        {"provider": "ollama", "model": "e", "api_base": "http://team-gpu.lan:11434", "by": "z"},
        {"provider": "ollama", "model": "f", "api_base": "http://localhost:8000", "by": "z"},
        {"provider": "vllm", "model": "g", "api_base": "http://localhost:11434", "by": "z"},
        {"provider": "ollama", "model": "a:latest", "api_base": "http://localhost:11434", "by": "again"},
    ]
    result = om.client_models(uses, ["localhost", "127.0.0.1", "::1", "my-box.lan"], 11434)
    assert result["models"] == ["a:latest", "b:1b", "c:latest", "d:latest"]
    assert result["by"]["a:latest"] == ["x", "again"]
    assert result["errors"] == []


def test_a_client_model_that_is_no_ollama_name_is_an_error_naming_the_client() -> None:
    uses = [{"provider": "ollama", "model": "qwen 2.5", "api_base": "http://localhost:11434",
             "by": "Continue config of alice (model 'Chat')"}]
    result = om.client_models(uses, ["localhost"], 11434)
    assert result["models"] == []
    assert result["errors"] and result["errors"][0].startswith("Continue config of alice (model 'Chat'): ")


@pytest.mark.parametrize("garbage", [None, "qwen3", {"model": "x"}, [None, "x", 3]])
def test_client_models_ignore_what_is_not_a_list_of_uses(garbage: Any) -> None:
    assert om.client_models(garbage, ["localhost"], 11434)["models"] == []


def test_with_models_keeps_declared_entries_first_and_unique() -> None:
    assert om.with_models(["phi4", {"name": "x:1b", "memory_gb": 2}], ["x:1b", "phi4:latest", "y:latest"]) == [
        "phi4", {"name": "x:1b", "memory_gb": 2}, "y:latest"]
    assert om.with_models("qwen3", ["a:latest"]) == "qwen3"  # left for the preflight to refuse


def test_continue_model_uses_resolve_api_bases_and_autocomplete() -> None:
    settings = {"name": "alice", "version": "1.0.0", "ollama_api_base": "http://localhost:11434",
                "vllm_api_base": "http://team-gpu.lan:8000/v1", "autocomplete_model": "auto",
                "host": FACTS, "autocomplete_choices": {"large": "big-base", "small": "small-base"},
                "autocomplete_large_min_mb": {"linux_cpu": 32768},
                "models": [{"name": "Chat", "provider": "ollama", "model": "qwen2.5-coder:7b"},
                           {"name": "Team", "provider": "vllm", "model": "coder"}]}
    uses = cc.model_uses([settings])
    assert [(u["provider"], u["model"], u["api_base"]) for u in uses] == [
        ("ollama", "qwen2.5-coder:7b", "http://localhost:11434"),
        ("vllm", "coder", "http://team-gpu.lan:8000/v1"),
        ("ollama", "small-base", "http://localhost:11434"),
    ]
    assert uses[0]["by"] == "Continue config of alice (model 'Chat')"
    assert cc.model_uses("alice") == [] and cc.model_uses([None, {"models": "x"}]) == []


def test_open_webui_model_uses_follow_its_effective_environment() -> None:
    env = {"OLLAMA_BASE_URLS": "http://127.0.0.1:11434;http://other:11434", "RAG_EMBEDDING_ENGINE": "ollama",
           "RAG_EMBEDDING_MODEL": "nomic-embed-text", "RAG_OLLAMA_BASE_URL": "http://other:11434",
           "TASK_MODEL": "qwen2.5:3b"}
    assert [(u["model"], u["api_base"]) for u in ow.model_uses(env)] == [
        ("nomic-embed-text", "http://other:11434"), ("qwen2.5:3b", "http://127.0.0.1:11434")]
    # Local sentence-transformers embeddings need nothing from Ollama.
    assert ow.model_uses({**env, "RAG_EMBEDDING_ENGINE": "", "TASK_MODEL": None}) == []


@pytest.mark.parametrize(("facts", "models"), [
    # The seed's MacBook: 16 GB shared with the GPU.
    ({"type": "macos_arm64", "ram_mb": 16384, "vram_mb": 0},
     ["qwen2.5-coder:7b", "nomic-embed-text:latest", "qwen2.5-coder:7b-base"]),
    ({"type": "macos_arm64", "ram_mb": 8192, "vram_mb": 0},
     ["qwen2.5-coder:3b", "nomic-embed-text:latest", "qwen2.5-coder:1.5b-base"]),
    ({"type": "linux_cpu", "ram_mb": 65536, "vram_mb": 0},
     ["qwen2.5-coder:14b", "nomic-embed-text:latest", "qwen2.5-coder:7b-base"]),
    # A GPU host is sized by its GPU memory.
    ({"type": "linux_cuda", "ram_mb": 131072, "vram_mb": 8192},
     ["qwen2.5-coder:3b", "nomic-embed-text:latest", "qwen2.5-coder:7b-base"]),
])
def test_the_default_inventory_gives_the_seeds_models_sized_to_the_machine(
        tmp_path: Path, facts: dict[str, Any], models: list[str]) -> None:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STRATEGY": "linear",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([str(bindir / "ansible-playbook"), "-i", str(ROOT / "inventory/local"),
                          str(ROOT / "tests/playbooks/ollama_client_models.yml"),
                          "-e", json.dumps({"out_dir": str(tmp_path), "llm_host_facts": facts})],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((tmp_path / "localhost.json").read_text())["models"] == models
