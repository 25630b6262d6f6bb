"""The continue role's config.yaml as rendered by ansible itself, read back by PyYAML and, where node and
npm exist, by Continue's own parser (npm @continuedev/config-yaml, the one molecule/continue uses)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from _modules import load_module
from rendering import render

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / "molecule/continue/files/validate-config.mjs"
CONFIG_YAML_PACKAGE = "@continuedev/config-yaml@1.42.0"

cc = load_module("plugins/filter/continue_config.py")
_llm_host_team = load_module("plugins/filter/llm_host_team.py")

TEAM_USER = {
    "name": "bob",
    "ollama_api_base": "http://team-gpu.lan:11434",
    "vllm_api_base": "http://team-gpu.lan:8000/v1",
    "vllm_api_key": "k3y: with #yaml 'specials\"",
    "models": [
        {"name": "Team coder", "provider": "vllm", "model": "Qwen/Qwen2.5-Coder-32B-Instruct",
         "roles": ["chat", "edit", "apply"], "defaultCompletionOptions": {"contextLength": 32768, "maxTokens": 2048}},
        {"name": "Team reranker", "provider": "vllm", "model": "BAAI/bge-reranker-v2-m3", "roles": ["rerank"]},
        {"name": "Embeddings", "provider": "ollama", "model": "nomic-embed-text", "roles": ["embed"]},
    ],
    "rules": ["Answer in English.", {"name": "py", "rule": "Type-annotate Python.", "globs": "**/*.py"}],
    "docs": [{"name": "Ansible", "startUrl": "https://docs.ansible.com/"}],
    "config_extra": {"requestOptions": {"timeout": 60}},
}


def _render(tmp_path: Path, **extra: Any) -> Path:
    return render("render_continue.yml", tmp_path, **extra)


@pytest.fixture(scope="session")
def config_yaml_prefix() -> Path:
    """Continue's config parser, installed once into .cache/ (skips when node or npm is missing)."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed to run Continue's own parser")
    prefix = ROOT / ".cache/continue-config-yaml"
    if not (prefix / "node_modules/@continuedev/config-yaml/package.json").exists():
        subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", CONFIG_YAML_PACKAGE],
                       check=True, capture_output=True, text=True)
    return prefix


def _continue_parses(prefix: Path, *files: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["node", str(VALIDATOR), str(prefix), *map(str, files)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_default_config_for_a_small_laptop(tmp_path: Path) -> None:
    out = _render(tmp_path, continue_users=["alice"], llm_host_facts={"type": "linux_cpu", "ram_mb": 16000, "vram_mb": 0})
    text = (out / "alice.yaml").read_text()
    assert cc.file_state({"content": base64.b64encode(text.encode()).decode()}) == "ours"
    config = yaml.safe_load(text)
    assert config["version"] == "1.0.0" and config["schema"] == "v1"
    assert [(m["model"], m["roles"], m["apiBase"]) for m in config["models"]] == [
        ("qwen2.5-coder:7b", ["chat", "edit", "apply", "summarize"], "http://localhost:11434"),
        ("nomic-embed-text", ["embed"], "http://localhost:11434"),
        ("qwen2.5-coder:1.5b-base", ["autocomplete"], "http://localhost:11434"),
    ]
    assert [c["provider"] for c in config["context"]] == ["code", "docs", "diff", "terminal", "problems", "folder", "codebase"]
    assert [p["name"] for p in config["prompts"]] == ["cmd", "commit"]


def test_a_gpu_workstation_gets_the_7b_autocomplete_model(tmp_path: Path) -> None:
    out = _render(tmp_path, continue_users=["carol"], llm_host_facts={"type": "linux_cuda", "ram_mb": 32000, "vram_mb": 12288})
    models = yaml.safe_load((out / "carol.yaml").read_text())["models"]
    assert [m["model"] for m in models if m["roles"] == ["autocomplete"]] == ["qwen2.5-coder:7b-base"]


def test_continue_accepts_what_we_render(tmp_path: Path, config_yaml_prefix: Path) -> None:
    out = _render(tmp_path, continue_users=["alice", TEAM_USER],
                  llm_host_facts={"type": "macos_arm64", "ram_mb": 32768, "vram_mb": 0})
    results = _continue_parses(config_yaml_prefix, out / "alice.yaml", out / "bob.yaml")
    for result in results:
        assert result["parseError"] is None, result
        assert result["errors"] == [], result
        assert result["dropped"] == [], "keys Continue ignores: " + ", ".join(result["dropped"])
    bob = results[1]["config"]
    assert {m["name"]: (m["provider"], m["apiBase"], m.get("apiKey")) for m in bob["models"]} == {
        "Team coder": ("vllm", "http://team-gpu.lan:8000/v1", TEAM_USER["vllm_api_key"]),
        "Team reranker": ("vllm", "http://team-gpu.lan:8000/v1", TEAM_USER["vllm_api_key"]),
        "Embeddings": ("ollama", "http://team-gpu.lan:11434", None),
        "qwen2.5-coder:7b-base (autocomplete)": ("ollama", "http://team-gpu.lan:11434", None),
    }
    assert bob["requestOptions"] == {"timeout": 60} and bob["docs"][0]["startUrl"] == "https://docs.ansible.com/"


def test_the_validator_reports_what_continue_drops_or_refuses(tmp_path: Path, config_yaml_prefix: Path) -> None:
    (tmp_path / "typo.yaml").write_text("name: x\nversion: 1.0.0\nmodels:\n- {name: a, provider: ollama, model: m, apibase: h}\n")
    (tmp_path / "bad.yaml").write_text("name: x\nversion: 1\n")
    typo, bad = _continue_parses(config_yaml_prefix, tmp_path / "typo.yaml", tmp_path / "bad.yaml")
    assert typo["dropped"] == ["models.0.apibase"]
    assert "version" in bad["parseError"]


def test_the_example_inventory_renders_a_config_continue_accepts(tmp_path: Path, config_yaml_prefix: Path) -> None:
    laptops = yaml.safe_load((ROOT / "inventory/example/group_vars/dev_laptops/continue.yml").read_text())
    # The team server's URLs as llm_host publishes them on a laptop: from the server's inventory.
    server = {"ansible_host": "team-gpu.lan"}
    for name in ("fleet.yml", "vllm.yml"):
        server.update(yaml.safe_load((ROOT / "inventory/example/group_vars/gpu_servers" / name).read_text()))
    team = {**_llm_host_team.team_endpoints("team-gpu", "alice-mbp", server),
            # What llm_host's team.yml adds on a Debian laptop: where the team CA is in its trust store.
            "ca_file": "/usr/local/share/ca-certificates/llmfleet-team-ca.crt"}
    out = _render(tmp_path, **laptops, continue_users=["alice"], vault_vllm_api_key="from-the-vault",
                  llm_host_team=team, llm_host_facts={"type": "macos_arm64", "ram_mb": 16384, "vram_mb": 0})
    [result] = _continue_parses(config_yaml_prefix, out / "alice.yaml")
    assert result["parseError"] is None and result["errors"] == [] and result["dropped"] == [], result
    models = {m["name"]: m for m in result["config"]["models"]}
    assert models["BGE reranker (team)"]["roles"] == ["rerank"]
    assert models["BGE reranker (team)"]["apiKey"] == "from-the-vault"
    # Through the team server's TLS proxy, each vLLM server under its name, with the team CA for Continue's requests.
    assert models["BGE reranker (team)"]["apiBase"] == "https://team-gpu.lan:8443/bge-reranker/v1"
    assert models["Qwen2.5-Coder 32B (team)"]["apiBase"] == "https://team-gpu.lan:8443/qwen2.5-coder-32b/v1"
    assert models["Qwen2.5-Coder 32B (team)"]["requestOptions"] == {
        "caBundlePath": "/usr/local/share/ca-certificates/llmfleet-team-ca.crt"}
    assert "requestOptions" not in models["Qwen2.5-Coder 7B (laptop)"]
    assert models["qwen2.5-coder:7b-base (autocomplete)"]["apiBase"] == "http://localhost:11434"
