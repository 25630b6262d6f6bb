"""The continue role's config logic: autocomplete choice, apiBase defaults, overrides, hand-edit detection."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from _modules import load_module

cc = load_module("plugins/filter/continue_config.py")

CHOICES = {"large": "qwen2.5-coder:7b-base", "small": "qwen2.5-coder:1.5b-base"}
THRESHOLDS = {"linux_cuda": 8192, "linux_rocm": 8192, "macos_arm64": 16384, "linux_cpu": 32768}


def _settings(**over: Any) -> dict[str, Any]:
    base = {"name": "alice", "config_name": "llmfleet", "version": "1.0.0",
            "models": [{"name": "Chat", "provider": "ollama", "model": "qwen2.5-coder:7b", "roles": ["chat"]}],
            "ollama_api_base": "http://localhost:11434", "vllm_api_base": "", "vllm_api_key": "",
            "autocomplete_model": "auto", "context_providers": ["code", {"provider": "docs", "params": {}}],
            "prompts": [], "rules": [], "docs": [], "config_extra": {},
            "host": {"type": "linux_cpu", "ram_mb": 16000, "vram_mb": 0},
            "autocomplete_choices": CHOICES, "autocomplete_large_min_mb": THRESHOLDS}
    return {**base, **over}


@pytest.mark.parametrize(("host", "model"), [
    ({"type": "linux_cpu", "ram_mb": 16000, "vram_mb": 0}, "qwen2.5-coder:1.5b-base"),
    ({"type": "linux_cpu", "ram_mb": 65536, "vram_mb": 0}, "qwen2.5-coder:7b-base"),
    # Apple Silicon: unified memory, vram_mb is 0 and RAM counts.
    ({"type": "macos_arm64", "ram_mb": 16384, "vram_mb": 0}, "qwen2.5-coder:7b-base"),
    ({"type": "macos_arm64", "ram_mb": 8192, "vram_mb": 0}, "qwen2.5-coder:1.5b-base"),
    # A GPU host is judged by its GPU memory, not its RAM.
    ({"type": "linux_cuda", "ram_mb": 131072, "vram_mb": 4096}, "qwen2.5-coder:1.5b-base"),
    ({"type": "linux_cuda", "ram_mb": 16000, "vram_mb": 12288}, "qwen2.5-coder:7b-base"),
    ({"type": "linux_rocm", "ram_mb": 16000, "vram_mb": 8192}, "qwen2.5-coder:7b-base"),
])
def test_auto_autocomplete_follows_the_hardware(host: dict[str, Any], model: str) -> None:
    assert cc.autocomplete_model("auto", host, CHOICES, THRESHOLDS) == model


def test_an_explicit_autocomplete_model_is_kept() -> None:
    assert cc.autocomplete_model("starcoder2:3b", {"type": "linux_cpu", "ram_mb": 1}, CHOICES, THRESHOLDS) == "starcoder2:3b"


def test_config_fills_api_bases_and_adds_autocomplete() -> None:
    config = cc.config(_settings(
        models=[{"name": "Chat", "provider": "ollama", "model": "qwen2.5-coder:7b", "roles": ["chat"]},
                {"name": "Team", "provider": "vllm", "model": "coder", "roles": ["chat", "rerank"]},
                {"name": "Own", "provider": "ollama", "model": "x", "apiBase": "http://elsewhere:11434"}],
        vllm_api_base="http://team:8000/v1", vllm_api_key="k"))
    assert config["name"] == "llmfleet" and config["version"] == "1.0.0" and config["schema"] == "v1"
    by_name = {m["name"]: m for m in config["models"]}
    assert by_name["Chat"]["apiBase"] == "http://localhost:11434" and "apiKey" not in by_name["Chat"]
    assert by_name["Team"]["apiBase"] == "http://team:8000/v1" and by_name["Team"]["apiKey"] == "k"
    assert by_name["Own"]["apiBase"] == "http://elsewhere:11434"
    auto = [m for m in config["models"] if m.get("roles") == ["autocomplete"]]
    assert auto == [{"name": "qwen2.5-coder:1.5b-base (autocomplete)", "provider": "ollama",
                     "model": "qwen2.5-coder:1.5b-base", "roles": ["autocomplete"], "apiBase": "http://localhost:11434"}]
    assert config["context"] == [{"provider": "code"}, {"provider": "docs", "params": {}}]
    assert "prompts" not in config and "rules" not in config


def test_a_declared_autocomplete_model_wins_and_empty_means_none() -> None:
    declared = {"name": "Mine", "provider": "ollama", "model": "starcoder2:3b", "roles": ["autocomplete"]}
    config = cc.config(_settings(models=[declared]))
    assert [m["model"] for m in config["models"]] == ["starcoder2:3b"]
    assert all("autocomplete" not in m["roles"] for m in cc.config(_settings(autocomplete_model=""))["models"])


def test_user_overrides_replace_settings_key_by_key() -> None:
    base = _settings()
    assert cc.user_settings("bob", base)["name"] == "bob"
    bob = cc.user_settings({"name": "bob", "ollama_api_base": "http://team:11434"}, base)
    assert bob["ollama_api_base"] == "http://team:11434" and bob["models"] == base["models"]


@pytest.mark.parametrize(("users", "message"), [
    ([], "non-empty list"),
    ("alice", "non-empty list"),
    (["alice", "alice"], "listed twice"),
    (["bad name"], "not an account name"),
    ([{"name": "bob", "apibase": "x"}], "unknown keys ['apibase']"),
    ([{"ollama_api_base": "x"}], "not an account name"),
])
def test_user_errors(users: Any, message: str) -> None:
    assert any(message in e for e in cc.user_errors(users)), cc.user_errors(users)


def test_user_errors_accepts_names_and_mappings() -> None:
    assert cc.user_errors(["alice", {"name": "bob", "models": []}, "svc-dev.1"]) == []


@pytest.mark.parametrize(("over", "message"), [
    ({"models": [{"name": "A", "provider": "ollama"}]}, "'A': model is required"),
    ({"models": [{"name": "A", "provider": "ollama", "model": "m", "apibase": "x"}]}, "unknown keys ['apibase']"),
    ({"models": [{"name": "A", "provider": "ollama", "model": "m", "roles": ["chat", "tab"]}]}, "roles must be"),
    ({"models": [{"name": "A", "provider": "vllm", "model": "m"}]}, "needs apiBase or continue_vllm_api_base"),
    ({"models": ["qwen"]}, "must be a mapping, got a str"),
    ({"models": [{"name": "q (autocomplete)", "provider": "ollama", "model": "q"}], "autocomplete_model": "q"},
     "used twice"),
    ({"version": 1}, "version must be a string"),
    ({"context_providers": [{"name": "x"}]}, "context provider entry"),
    ({"prompts": [{"name": "p"}]}, "prompt must be a mapping with name and prompt"),
    ({"config_extra": {"models": [], "env": {"K": "secret"}}}, "got ['env', 'models']"),
])
def test_config_errors_name_the_problem(over: dict[str, Any], message: str) -> None:
    errors = cc.config_errors(_settings(**over))
    assert any(message in e for e in errors), errors
    with pytest.raises(ValueError):
        cc.config(_settings(**over))


def test_errors_never_print_a_key() -> None:
    errors = cc.config_errors(_settings(models=[{"name": "A", "provider": "vllm", "model": "m", "apiKey": "SECRET",
                                                 "apibase": "x"}], config_extra={"env": {"T": "SECRET"}, "x": 1}))
    assert errors and not any("SECRET" in e for e in errors)


def _slurped(text: str) -> dict[str, Any]:
    return {"content": base64.b64encode(text.encode()).decode(), "encoding": "base64"}


def test_sealed_files_are_ours_until_edited() -> None:
    text = cc.seal("# header\nname: llmfleet\nversion: 1.0.0\n")
    assert text.startswith("# llmfleet-sha1: ")
    assert cc.file_state(_slurped(text)) == "ours"
    # A final newline more or less is not an edit.
    assert cc.file_state(_slurped(text + "\n")) == "ours"
    assert cc.file_state(_slurped(text.rstrip("\n"))) == "ours"
    assert cc.file_state(_slurped(text.replace("1.0.0", "1.0.1"))) == "foreign"
    assert cc.file_state(_slurped("models: []\n" + text)) == "foreign"
    assert cc.file_state(_slurped("name: Main Config\nversion: 1.0.0\n")) == "foreign"


def test_missing_and_unreadable_files() -> None:
    assert cc.file_state({"failed": True, "msg": "file not found: /home/a/.continue/config.yaml"}) == "absent"
    assert cc.file_state({"failed": True, "msg": "File is not readable: /home/a/.continue/config.yaml"}) == "foreign"
    assert cc.file_state({"content": base64.b64encode(b"\xff\xfe").decode()}) == "foreign"
    # Things in the way: a directory in config.yaml's place; slurp's catch-all (~/.continue is a file).
    assert cc.file_state({"failed": True, "msg": "Source is a directory and must be a file: /x"}) == "directory"
    assert cc.file_state({"failed": True, "msg": "Unable to slurp file: {source}"}) == "blocked"


def test_what_is_in_the_way_is_looked_at_and_a_directory_is_kept_with_keep() -> None:
    accounts = {"alice": {"home": "/home/alice"}, "bob": {"home": "/home/bob/"}, "carol": {"home": "/home/carol"}}
    states = {"alice": "blocked", "bob": "directory", "carol": "ours"}
    assert cc.in_the_way(states, accounts, "backup") == [
        {"path": "/home/alice/.continue", "type": "directory"},
        {"path": "/home/alice/.continue/config.yaml", "type": "file"},
        {"path": "/home/bob/.continue/config.yaml", "type": "file"},
    ]
    assert cc.in_the_way(states, accounts, "keep") == [
        {"path": "/home/alice/.continue", "type": "directory"},
        {"path": "/home/alice/.continue/config.yaml", "type": "file"},
    ]
    assert cc.in_the_way({"carol": "foreign"}, accounts, "backup") == []


def test_plain_turns_ansible_types_into_plain_data() -> None:
    class Text(str):
        pass

    data = cc.plain({"a": (Text("x"), 1, 2.5, True, None)})
    assert data == {"a": ["x", 1, 2.5, True, None]} and type(data["a"][0]) is str


def test_developers_who_share_a_home_are_named_together() -> None:
    accounts = {"alice": {"home": "/home/dev"}, "bob": {"home": "/home/dev/"}, "carol": {"home": "/home/carol"},
                "dave": {"home": "/home/dev"}}
    assert cc.shared_homes(accounts) == [
        "continue_users names alice and bob and dave, who share the home /home/dev: each would overwrite the other's "
        "~/.continue on every run. Keep one of them in continue_users, or give each their own home"]
    assert cc.shared_homes({"alice": {"home": "/home/alice"}, "bob": {"home": "/home/bob"}}) == []


@pytest.mark.parametrize("users", [["alice\n"], ["alice bob"], [{"name": "root\n"}]])
def test_an_account_name_with_anything_around_it_is_refused(users: list) -> None:
    assert any("not an account name" in e for e in cc.user_errors(users))


@pytest.mark.parametrize("base", ["http://team-gpu.lan:8000/v1\n", "team-gpu.lan:8000", "http://:8000/v1"])
def test_an_api_base_must_be_a_whole_url(base: str) -> None:
    errors = cc.config_errors({"name": "alice", "version": "1.0.0", "vllm_api_base": base, "models": []})
    assert any("(continue_vllm_api_base)" in e and "is not an http(s):// URL" in e for e in errors)


TEAM = {"team_address": "team-gpu.lan", "ca_bundle_path": "/usr/local/share/ca-certificates/llmfleet-team-ca.crt"}
TEAM_MODELS = [{"name": "Team chat", "provider": "ollama", "model": "qwen2.5-coder:32b", "apiBase": "https://team-gpu.lan:11443"},
               {"name": "Team vLLM", "provider": "vllm", "model": "coder"},
               {"name": "Local", "provider": "ollama", "model": "qwen2.5-coder:7b"}]


def test_each_developer_gets_their_own_key_to_the_team_servers_ollama_and_the_team_ca() -> None:
    base = _settings(models=TEAM_MODELS, vllm_api_base="https://team-gpu.lan:8443/coder/v1", vllm_api_key="v-key",
                     team_keys={"alice": "alice-key-0123456789abcdef", "bob": "bob-key-0123456789abcdef"}, **TEAM)
    alice = cc.user_settings("alice", base)
    assert "team_keys" not in alice
    models = {m["name"]: m for m in cc.config(alice)["models"]}
    assert models["Team chat"]["apiKey"] == "alice-key-0123456789abcdef"
    assert models["Team vLLM"]["apiKey"] == "v-key"
    for name in ("Team chat", "Team vLLM"):
        assert models[name]["requestOptions"] == {"caBundlePath": TEAM["ca_bundle_path"]}
    # The laptop's own Ollama needs neither.
    assert "apiKey" not in models["Local"] and "requestOptions" not in models["Local"]
    # An entry's own key wins; a developer without one in the list is told where to add it.
    assert cc.config(cc.user_settings({"name": "bob", "ollama_api_key": "bob-own-0123456789abcdef"}, base))[
        "models"][0]["apiKey"] == "bob-own-0123456789abcdef"
    [error] = cc.config_errors(cc.user_settings("carol", base))
    assert "https://team-gpu.lan:11443 is the team server's Ollama, which needs carol's key" in error
    assert "add carol to llm_host_team_keys" in error


def test_a_request_option_of_the_users_own_is_kept_beside_the_team_ca() -> None:
    model = {"name": "Team vLLM", "provider": "vllm", "model": "coder", "apiBase": "https://TEAM-GPU.lan:8443/coder/v1",
             "requestOptions": {"timeout": 30}}
    [out, _] = cc.config(_settings(models=[model], **TEAM))["models"]
    assert out["requestOptions"] == {"timeout": 30, "caBundlePath": TEAM["ca_bundle_path"]}
