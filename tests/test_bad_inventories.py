"""Bad inventories are rejected by playbooks/preflight.yml before any host is changed.

Each case is one mistake on a host of the group whose roles check it (cases that one task reports
together share a host: `Case.host`); all cases go through a single real run of the preflight (one
ansible-runner run, every host failing on its own), then each host's failure message is checked for
the variable each case names and the fix it gives. docs/bad-inventories.md
is the same table for people.

The test machine has no systemd as PID 1, so the run goes through
tests/fixtures/bad_inventories/preflight_on_systemd.yml: it sets the service manager fact to
systemd, then imports the real playbooks/preflight.yml.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from _modules import load_module

from llmfleet.report import ExitCode, RunResult
from llmfleet.runner import RunRequest, run_playbook

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = Path(__file__).resolve().parent / "fixtures/bad_inventories/preflight_on_systemd.yml"
TABLE = ROOT / "docs/bad-inventories.md"

# Every host is this machine, reached without SSH and without sudo (the tests run as root). No team
# server unless a case names one, so hosts do not see each other's settings.
BASE = {
    "ansible_connection": "local",
    "ansible_become": False,
    "ansible_python_interpreter": sys.executable,
    "llm_host_team_server": "",
    "continue_users": ["root"],
}
# What a run would create first on a converged host: none may appear.
WATCHED = [Path(p) for p in ("/opt/llmfleet", "/etc/ollama", "/etc/vllm", "/etc/open-webui",
                             "/usr/local/bin/uv", "/usr/local/bin/ollama", "/etc/ansible/facts.d/llm_host.fact",
                             "/etc/llmfleet/pull.json", "/etc/systemd/system/llmfleet-pull.timer",
                             "/etc/nginx/conf.d/llmfleet-mirror.conf", "/var/lib/llmfleet/mirror")]

CODER = {"name": "coder", "model": "Qwen/Qwen2.5-Coder-1.5B-Instruct", "port": 8000}
# A valid, exposed team server for the cases about what laptops ask of it (it passes the preflight).
TEAM_SERVER = {"llm_host_expose": True, "llm_host_advertised_name": "team-gpu.lan", "vllm_models": [CODER],
               "vllm_api_key": "k-9c1f0d2e", "llm_host_ca_passphrase": "a-ca-passphrase-4f1e",
               "ollama_models": ["qwen2.5-coder:7b"]}
# A laptop in pull mode with a valid repository and inventory (the cases add what they get wrong).
PULL_LAPTOP = {"llm_host_pull": True, "llm_host_pull_repo_url": "https://git.team.lan/llmfleet.git",
               "llm_host_pull_inventory": "inventory/team"}


@dataclass(frozen=True)
class Case:
    """One bad inventory: a host of `group` with `hostvars`, whose failure must contain `expect`.

    `extra` holds other hosts the case needs ({name: (group, vars)}, e.g. its team server); they
    must pass the preflight themselves. Cases with the same `host` share one host (their variables
    merged, none set twice): only for mistakes that one task reports together, each in its own
    sentence, as the inventory check of names and types does. A host costs the run about a second.
    """

    name: str
    group: str
    hostvars: dict[str, Any]
    expect: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)
    host: str = ""

    @property
    def hostname(self) -> str:
        return self.host or self.name


# issue 19: host facts. Model directories of the vLLM path cases, and a place whose free space the
# disk cases size their models by: each of two models takes 60 % of it, so either fits and both do not.
MODELS = PLAYBOOK.parent / "models"
ROOM = Path(tempfile.gettempdir()) / "llmfleet-bad-inventories"
ROOM_B = shutil.disk_usage(ROOM.parent).free * 0.6 / 2e9  # billions of bf16 parameters
# issue 20: nvidia-smi doubles for the driver generations (llm_host_probe runs them as llm_host_nvidia_smi).
R590 = ROOT / "tests/doubles/nvidia-smi-double-r590"
R550 = ROOT / "molecule/llm_host/files/nvidia-smi-double"
R470 = ROOT / "tests/doubles/nvidia-smi-double-r470"
# issue 23: a team mirror of Ollama models (a models directory served as files) holding qwen2.5-coder:1.5b.
OLLAMA_MIRROR = (ROOT / "tests/fixtures/ollama-mirror").as_uri()
# ... and of Hugging Face models (an `invoke bundle`'s hf-models/) holding Qwen/Qwen2.5-Coder-1.5B-Instruct.
HF_MIRROR = (ROOT / "tests/fixtures/hf-mirror").as_uri()
# issue 20: doubles of other distributions' system Python (llm_host_probe asks them their version).
PY313 = ROOT / "tests/doubles/python3-double-3.13"
PY310 = ROOT / "tests/doubles/python3-double-3.10"

# issue 23: a team mirror's bundle (llm_mirror): a directory with the manifest and checksums `invoke
# bundle` writes, made by the good-inventory test; MODELS is a directory without them.

CASES = [
    Case("unknown-host-type", "workstations", {"llm_host_type": "linux_tpu"},
         ("llm_host_type is 'linux_tpu'; it must be one of: auto, macos_arm64, linux_cuda, linux_rocm, linux_cpu",), host="names-types-workstation"),
    Case("host-type-of-another-platform", "dev_laptops", {"llm_host_type": "macos_arm64"},
         ("llm_host_type is macos_arm64 (inventory) on a Linux", "Set llm_host_type to one of those"),
         host="host-settings-laptop"),
    Case("team-server-not-in-inventory", "dev_laptops", {"llm_host_team_server": "team-gpu"},
         ("llm_host_team_server is team-gpu", "Name the team server's inventory host")),
    Case("malformed-model-name", "dev_laptops", {"ollama_models": ["qwen2.5 coder:7b"]},
         ("ollama_models: model name 'qwen2.5 coder:7b' is not [host/][namespace/]model[:tag]",
          "as `ollama list` shows it"), host="ollama-settings-laptop"),
    Case("negative-memory", "dev_laptops", {"ollama_models": [{"name": "qwen3:8b", "memory_gb": -8}]},
         ("ollama_models: model 'qwen3:8b': memory_gb must be a positive number (GiB), got -8",)),
    Case("non-numeric-memory", "dev_laptops", {"ollama_models": [{"name": "qwen3:8b", "memory_gb": "8GB"}]},
         ("ollama_models: model 'qwen3:8b': memory_gb must be a positive number (GiB), got '8GB'",)),
    Case("negative-memory-budget", "dev_laptops", {"ollama_memory_budget_mb": -1024},
         ('ollama_memory_budget_mb is "-1024"', "whole number of MiB"), host="ollama-settings-laptop"),
    Case("prune-with-empty-list", "dev_laptops",
         {"ollama_models": [], "ollama_models_prune": True, "ollama_models_from_clients": False},
         ("ollama_models_prune is true but ollama_models and ollama_custom_models are empty",
          "set ollama_models_prune: false")),
    Case("mirror-url-without-scheme", "dev_laptops", {"ollama_download_base_url": "mirror.internal/ollama"},
         ('ollama_download_base_url "mirror.internal/ollama" is not an http(s) URL', "Set it to the base"), host="ollama-settings-laptop"),
    Case("two-vllm-models-one-port", "gpu_servers",
         {"vllm_models": [CODER, {**CODER, "name": "chat", "model": "Qwen/Qwen3-8B"}]},
         ("vllm_models[1].port (chat) and vllm_models[0].port (coder) are both 8000",
          "set vllm_models[1].port (chat) to a free port")),
    Case("vllm-port-is-ollamas", "gpu_servers", {"vllm_models": [{**CODER, "port": 11434}]},
         ("vllm_models[0].port (coder) and ollama_port are both 11434", "set vllm_models[0].port (coder) to a free port")),
    Case("open-webui-port-is-ollamas", "workstations", {"open_webui_port": 11434},
         ("open_webui_port and ollama_port are both 11434", "set open_webui_port to a free port")),
    Case("allowed-network-with-host-bits", "gpu_servers",
         {"llm_host_expose": True, "llm_host_allowed_networks": ["192.168.10.7/24"]},
         ("llm_host_allowed_networks[0]: '192.168.10.7/24' has host bits set", "write 192.168.10.0/24")),
    # The dtype is a choice of vllm's argument spec, which the names-and-types check reads.
    Case("unknown-vllm-dtype", "workstations", {"vllm_models": [{**CODER, "dtype": "fp8"}]},
         ("vllm_models[0].dtype is 'fp8'; it must be one of: auto, half, float16, bfloat16, float, float32.",),
         host="names-types-workstation"),
    Case("gated-model-without-token", "gpu_servers",
         {"vllm_enabled": True, "vllm_models": [{**CODER, "model": "meta-llama/Llama-3.1-8B-Instruct"}]},
         ("meta-llama/Llama-3.1-8B-Instruct is a gated Hugging Face model and vllm_hf_token is empty",
          "set vllm_hf_token (from vault)")),
    Case("placeholder-vllm-api-key", "gpu_servers", {"vllm_api_key": "changeme"},
         ("vllm_api_key holds a placeholder", "Put the real value in the vault"), host="vllm-settings-server"),
    Case("placeholder-admin-password", "gpu_servers",
         {"open_webui_admin_email": "admin@team.example", "open_webui_admin_password": "CHANGEME"},
         ("open_webui_admin_password holds a placeholder", "Put the real value in the vault"), host="open-webui-settings-server"),
    Case("admin-email-without-password", "gpu_servers", {"open_webui_admin_email": "admin@team.example"},
         ("open_webui_admin_email and open_webui_admin_password go together", "set the password")),
    Case("placeholder-continue-key", "dev_laptops", {"continue_vllm_api_key": "<your key>"},
         ("continue_vllm_api_key", "holds a placeholder", "put the real key in the vault"), host="continue-settings-laptop"),
    Case("open-webui-exposed-without-auth", "gpu_servers",
         {"llm_host_expose": True, "open_webui_environment": {"WEBUI_AUTH": False}},
         ("open_webui_environment sets WEBUI_AUTH false while Open WebUI serves the network through its TLS proxy",
          "set llm_host_expose: false"), host="open-webui-settings-server"),
    # The TLS proxy of an exposed host (llm_proxy): one task reports these together.
    Case("exposed-vllm-without-key", "gpu_servers", {"llm_host_expose": True, "vllm_models": [CODER]},
         ("the vLLM server coder would be exposed without an API key", "set vllm_api_key"), host="proxy-settings-server"),
    Case("team-key-too-short", "gpu_servers", {"llm_host_team_keys": {"alice": "short"}},
         ("llm_host_team_keys.alice must be at least 16 characters",), host="proxy-settings-server"),
    Case("exposed-without-ca-passphrase", "gpu_servers", {"llm_proxy_renew_days": 30},
         ("llm_host_ca_passphrase must hold the passphrase", "llm_proxy_certificate"), host="proxy-settings-server"),
    Case("service-beyond-loopback-behind-proxy", "gpu_servers",
         {"llm_host_expose": True, "llm_host_ca_passphrase": "a-ca-passphrase-4f1e", "ollama_host": "0.0.0.0"},
         ("ollama_host makes its service listen beyond loopback, next to the proxy",)),
    Case("open-webui-exposed-admin-signup", "workstations",
         {"open_webui_host": "0.0.0.0", "open_webui_enable_signup": True, "open_webui_default_user_role": "admin"},
         ("open_webui_enable_signup with open_webui_default_user_role admin", "pending")),
    Case("connection-url-without-scheme", "gpu_servers", {"open_webui_ollama_base_urls": ["127.0.0.1:11434"]},
         ("open_webui_ollama_base_urls: Ollama URL '127.0.0.1:11434' must be http(s)://host[:port]",), host="open-webui-settings-server"),
    Case("unsupported-open-webui-python", "workstations", {"open_webui_python": "3.10"},
         ("open_webui_python is 3.10", "Open WebUI supports Python 3.11 or 3.12")),
    Case("unknown-continue-model-role", "dev_laptops",
         {"continue_models": [{"name": "Chat", "provider": "ollama", "model": "qwen3:8b", "roles": ["chat", "tab"]}]},
         ("continue_models", "model 'Chat': roles must be a list of chat, autocomplete", "'tab' is not one"),
         host="continue-settings-laptop"),
    # issue 21: roles that are not a list is a rule of its own (continue_models' entries are Continue's schema).
    Case("continue-model-roles-not-a-list", "dev_laptops",
         {"continue_models": [{"name": "Edit", "provider": "ollama", "model": "qwen3:8b", "roles": "edit"}]},
         ("model 'Edit': roles must be a list of chat, autocomplete", "e.g. [chat]; got 'edit'")),
    Case("continue-user-without-account", "dev_laptops", {"continue_users": ["no-such-dev"]},
         ("continue_users names no-such-dev", "Create the account first")),
    # Debian's `nobody` has /nonexistent as its home.
    Case("continue-user-without-home", "dev_laptops", {"continue_users": ["nobody"]},
         ("missing home directory for nobody", "nothing was written")),
    Case("continue-api-base-not-a-url", "dev_laptops", {"continue_ollama_api_base": "localhost:11434"},
         ("continue_ollama_api_base", "is not an http(s):// URL"), host="continue-settings-laptop"),
    Case("continue-setting-of-wrong-type", "dev_laptops", {"continue_vscode_extension": "maybe"},
         ("continue_vscode_extension must be true or false, and it is the string 'maybe'",), host="names-types-laptop"),
    Case("continue-vllm-model-without-server", "dev_laptops",
         {"continue_models": [{"name": "Team", "provider": "vllm", "model": "coder"}]},
         ("model 'Team': provider vllm needs apiBase or continue_vllm_api_base",)),
    # A laptop asks the team server's Ollama for a model the server's inventory does not give it.
    Case("continue-model-not-served-by-team-server", "dev_laptops",
         {"llm_host_team_server": "served-team-gpu",
          "continue_models": [{"name": "Team chat", "provider": "ollama", "model": "qwen3:32b",
                               "apiBase": "https://team-gpu.lan:11443"}]},
         ("Continue config of root (model 'Team chat'): the team server served-team-gpu does not serve 'qwen3:32b'",
          "add it to ollama_models of served-team-gpu"),
         extra={"served-team-gpu": ("gpu_servers", TEAM_SERVER)}),
    # ... or its vLLM server for a model it does not serve (vLLM answers 404 to any other name).
    Case("continue-model-not-a-team-vllm-model", "dev_laptops",
         {"llm_host_team_server": "served-team-gpu",
          "continue_models": [{"name": "Team coder", "provider": "vllm", "model": "Qwen/Qwen2.5-Coder-1.5B-Instruct"}]},
         ("the team server served-team-gpu's vLLM server at https://team-gpu.lan:8443/coder/v1 serves 'coder', not "
          "'Qwen/Qwen2.5-Coder-1.5B-Instruct'", "set model: coder"),
         extra={"served-team-gpu": ("gpu_servers", TEAM_SERVER)}),
    # issue 19: names and types (plugins/filter/llm_host_inventory.py)
    Case("misspelled-name-with-prefix", "dev_laptops", {"continue_user": ["root"]},
         ("continue_user is not a setting of any llmfleet role; did you mean continue_users?",
          "llm_host_own_variables"), host="names-types-laptop"),
    Case("misspelled-name-unknown-key-of-role", "gpu_servers", {"vllm_model": [CODER]},
         ("vllm_model is not a setting of any llmfleet role; did you mean vllm_models?",), host="names-types-server"),
    Case("misspelled-prefix", "dev_laptops", {"olama_models": ["qwen3"]},
         ("olama_models looks like a misspelling of ollama_models, which it does not set",), host="names-types-laptop"),
    Case("misspelled-prefix-open-webui", "workstations", {"openwebui_port": 8081},
         ("openwebui_port looks like a misspelling of open_webui_port",), host="names-types-workstation"),
    Case("misspelled-key-of-a-model", "gpu_servers", {"vllm_models": [{**CODER, "max_len": 4096}]},
         ("vllm_models[0].max_len is not a key of vllm_models[0]: did you mean max_model_len?",), host="names-types-server"),
    Case("string-for-a-list-of-models", "dev_laptops", {"ollama_models": "qwen3"},
         ("ollama_models must be a list, and it is the string 'qwen3': a role would read it character by character",
          "ollama_models: [qwen3]"), host="names-types-laptop"),
    Case("string-for-a-list-of-users", "dev_laptops", {"continue_users": "root"},
         ("continue_users must be a list, and it is the string 'root'",), host="names-types-laptop"),
    Case("null-for-a-list", "gpu_servers", {"llm_host_allowed_networks": None},
         ("llm_host_allowed_networks must be a list, and it is empty (null)", "llm_host_allowed_networks: []"), host="names-types-server"),
    Case("quoted-number-in-a-model", "gpu_servers", {"vllm_models": [{**CODER, "port": "8000"}]},
         ("vllm_models[0].port is the string '8000', not a number", "Write port: 8000 without quotes"), host="names-types-server-2"),
    Case("quoted-number", "dev_laptops", {"ollama_port": "11435"},
         ("ollama_port is the string '11435', not a number", """-e '{"ollama_port": 11435}'"""), host="names-types-laptop"),
    Case("quoted-boolean", "gpu_servers", {"llm_host_expose": "false"},
         ("llm_host_expose is the string 'false', not a boolean", "any non-empty string counts as true"), host="names-types-server"),
    Case("secret-of-the-wrong-type", "gpu_servers", {"vllm_hf_token": ["hf_abc123secret"]},
         ("vllm_hf_token must be a string, and it is a list",), host="names-types-server"),
    # issue 21: the keys of a custom model and of an OpenAI connection are the argument specs'.
    Case("misspelled-key-of-a-custom-model", "dev_laptops",
         {"ollama_custom_models": [{"name": "reviewer", "form": "qwen2.5-coder:7b"}]},
         ("ollama_custom_models[0].form is not a key of ollama_custom_models[0]: did you mean from?",
          "ollama_custom_models[0] lacks from, which is required."), host="names-types-laptop"),
    Case("misspelled-key-of-a-connection", "gpu_servers",
         {"open_webui_openai_connections": [{"url": "http://127.0.0.1:8000/v1", "api_key": "Kx9-secret-value-7"}]},
         ("open_webui_openai_connections[0].api_key is not a key of open_webui_openai_connections[0]: did you mean key?",),
         host="names-types-server"),

    # issue 19: host facts
    Case("vllm-model-path-missing", "gpu_servers",
         {"vllm_enabled": True, "vllm_models": [{**CODER, "model": "/srv/models/Qwen2.5-Coder-1.5B-Instruct"}]},
         ("vllm_models[0].model is /srv/models/Qwen2.5-Coder-1.5B-Instruct, which does not exist on "
          "vllm-model-path-missing", "Copy the model there", "give the model's Hugging Face id")),
    Case("vllm-model-path-misspelled", "workstations",
         {"vllm_enabled": True, "vllm_models": [{**CODER, "model": str(MODELS / "tiny")},
                                                 {**CODER, "name": "chat", "port": 8001, "model": str(MODELS / "tinny")}]},
         (f"vllm_models[1].model is {MODELS / 'tinny'}, which does not exist", "correct the path")),
    Case("vllm-model-path-not-a-model-directory", "gpu_servers",
         {"vllm_enabled": True, "vllm_models": [{**CODER, "model": str(MODELS)}]},
         (f"vllm_models[0].model is {MODELS}, a directory on vllm-model-path-not-a-model-directory without "
          "config.json and without weights (*.safetensors or *.bin), so not a model directory",)),
    Case("vllm-model-path-without-weights", "gpu_servers",
         {"vllm_enabled": True, "vllm_models": [{**CODER, "model": str(MODELS / "config-only")}]},
         ("without weights (*.safetensors or *.bin), so not a model directory", "Copy the model there")),
    Case("vllm-model-path-is-a-file", "workstations",
         {"vllm_enabled": True, "vllm_models": [{**CODER, "model": str(MODELS / "tiny" / "config.json")}]},
         ("config.json, a file that is not a GGUF model",)),
    Case("ollama-model-larger-than-the-disk", "dev_laptops",
         {"ollama_memory_budget_mb": 8 * 1024 * 1024, "ollama_models": ["qwen2.5-coder:1.5b", "qwen3:9000b"]},
         ("Would not fit: Ollama model qwen3:9000b (about 5401.0 GiB)", "Free space on",
          "move the models to a larger file system (ollama_models_dir)", "remove those models")),
    # linux_cuda without a GPU: the memory the models need is the GPUs' (unknown here), not this machine's
    # RAM, which a CPU host's KV-cache plan would find too small before the disk is looked at.
    Case("vllm-model-larger-than-the-disk", "gpu_servers",
         {"llm_host_type": "linux_cuda", "vllm_enabled": True, "vllm_models": [{**CODER, "model": "Qwen/Qwen3-9000B"}]},
         ("Would not fit: vllm_models[0].model Qwen/Qwen3-9000B (about 16763.8 GiB)", "(vllm_home)")),
    # Each fits alone; Ollama's store and vLLM's cache share a file system, and together they do not.
    Case("ollama-and-vllm-models-together-larger-than-the-disk", "workstations",
         {"llm_host_type": "linux_cuda", "vllm_enabled": True, "vllm_home": str(ROOM / "vllm"),
          "ollama_models_dir": str(ROOM / "ollama"),
          "vllm_models": [{**CODER, "model": f"Qwen/Qwen3-{ROOM_B:.1f}B"}],
          "ollama_memory_budget_mb": 8 * 1024 * 1024,
          "ollama_models": [{"name": "qwen3:32b", "memory_gb": round(ROOM_B * 2e9 / 2**30, 1)}]},
         ("Would not fit: Ollama model qwen3:32b (about", "(ollama_models_dir, vllm_home)")),
    # issue 19: role rules. One message per rule, naming the variable as written, its value and the fix.
    Case("ollama-keep-no-version", "dev_laptops", {"ollama_keep_versions": 0},
         ("ollama: ollama_keep_versions is 0; keep at least 1 (the running version).",), host="ollama-settings-laptop"),
    Case("vllm-download-timeout-zero", "gpu_servers", {"vllm_download_timeout": 0},
         ("vllm: vllm_download_timeout is 0; set it to 1 or more seconds.",), host="vllm-settings-server"),
    # Anchored patterns: nothing before or after, no final line break.
    Case("ollama-version-with-a-line-break", "dev_laptops", {"ollama_version": "0.32.15\n"},
         ('ollama_version "0.32.15\\n" is not a release number X.Y.Z', 'e.g. "0.32.15"'), host="ollama-settings-laptop"),
    Case("vllm-version-with-extra-words", "gpu_servers", {"vllm_version": "0.11.0 latest"},
         ('vllm_version "0.11.0 latest" is not a release number X.Y.Z',), host="vllm-settings-server"),
    Case("model-name-with-a-line-break", "dev_laptops", {"ollama_models": ["qwen3:8b\n"]},
         ("ollama_models: model name 'qwen3:8b\\n' has spaces or a line break around it",)),
    Case("continue-user-with-a-line-break", "dev_laptops", {"continue_users": ["root\n"]},
         ("continue_users: user 'root\\n': not an account name",)),
    Case("advertised-name-with-a-scheme", "gpu_servers",
         {"llm_host_expose": True, "llm_host_advertised_name": "http://team-gpu.lan",
          "llm_host_ca_passphrase": "a-ca-passphrase-4f1e"},
         ('llm_host_advertised_name "http://team-gpu.lan" is not a host name', "e.g. team-gpu.lan")),
    Case("open-webui-url-without-a-scheme", "gpu_servers", {"open_webui_url": "team-gpu.lan:8080"},
         ('open_webui_url "team-gpu.lan:8080" is not an http(s) URL', "e.g. http://team-gpu.lan:8080"), host="open-webui-settings-server"),
    Case("admin-email-without-at", "gpu_servers",
         {"open_webui_admin_email": "admin.team.example", "open_webui_admin_password": "Tr0ub4dor-3-staple"},
         ('open_webui_admin_email "admin.team.example" is not an e-mail address', "name@domain.tld")),
    # Collisions: one home, one port, a setting a role owns.
    Case("continue-users-share-a-home", "dev_laptops", {"continue_users": ["bin", "sync"]},
         ("continue_users names bin and sync, who share the home /bin", "Keep one of them in continue_users")),
    Case("vllm-port-is-open-webuis", "workstations", {"vllm_models": [{**CODER, "port": 8080}]},
         ("vllm_models[0].port (coder) and open_webui_port are both 8080", "set vllm_models[0].port (coder) to a free port")),
    Case("ollama-environment-sets-the-address", "dev_laptops", {"ollama_environment": {"OLLAMA_HOST": "0.0.0.0"}},
         ("OLLAMA_HOST is set by ollama_host and ollama_port; remove it from ollama_environment",), host="ollama-settings-laptop"),
    Case("open-webui-secret-environment-sets-the-key", "gpu_servers",
         {"open_webui_secret_environment": {"WEBUI_SECRET_KEY": "Kx9-secret-value-7"}},
         ("WEBUI_SECRET_KEY is set by open_webui_secret_key; remove it from open_webui_secret_environment",), host="open-webui-settings-server"),
    Case("vllm-model-environment-sets-the-key", "workstations",
         {"vllm_models": [{**CODER, "environment": {"VLLM_API_KEY": "Kx9-secret-value-7"}}]},
         ("vllm_models[0] (coder): VLLM_API_KEY is set by vllm_api_key (or the entry's api_key); remove it from its "
          "environment",)),
    # Safety: the whole internet, a short admin password.
    Case("exposed-to-the-whole-ipv4-internet", "gpu_servers",
         {"llm_host_expose": True, "llm_host_allowed_networks": ["0.0.0.0/0"]},
         ("llm_host_allowed_networks lets the whole IPv4 internet in (0.0.0.0/0)", "llm_host_expose_to_internet: true")),
    Case("exposed-to-the-internet-in-halves", "gpu_servers",
         {"llm_host_expose": True, "llm_firewall_allowed_networks": ["0.0.0.0/1", "128.0.0.0/1"]},
         ("llm_firewall_allowed_networks lets the whole IPv4 internet in (0.0.0.0/1, 128.0.0.0/1)",)),
    Case("short-admin-password", "gpu_servers",
         {"open_webui_admin_email": "admin@team.example", "open_webui_admin_password": "Sh0rt-pw"},
         ("open_webui_admin_password is shorter than 12 characters", "Put a longer one in the vault")),
    # Quoted numbers: the inventory check names them once; the roles' own rules read them as numbers.
    Case("quoted-port-of-a-second-model", "gpu_servers",
         {"vllm_models": [CODER, {**CODER, "name": "chat", "port": "8000"}]},
         ("vllm_models[1].port is the string '8000'",)),
    Case("uv-version-with-extra-words", "dev_laptops", {"llm_host_uv_version": "0.9.5 latest"},
         ('llm_host_uv_version "0.9.5 latest" is not a release number X.Y.Z',), host="host-settings-laptop"),
    Case("quoted-ollama-port-on-open-webuis", "workstations", {"ollama_port": "8080"},
         ("ollama_port is the string '8080'",), host="names-types-workstation"),
    # issue 20: vLLM matched to the driver. The GPUs come from nvidia-smi doubles (llm_host_nvidia_smi):
    # R550 runs CUDA 12 only, R470 not even that; R590 (two GPUs) runs every build.
    Case("vllm-driver-too-old-for-the-pinned-release", "gpu_servers",
         {"llm_host_nvidia_smi": str(R550), "vllm_models": [CODER]},
         ("vllm: the NVIDIA driver 550.54.15 is too old for every CUDA build of vLLM 0.33.0 (CUDA 13.0 needs 580.65.06 "
          "or newer); upgrade the driver to 580.65.06 or newer", 'or pin vllm_version: "0.25.1"')),
    Case("vllm-driver-too-old-for-any-release", "workstations",
         {"llm_host_nvidia_smi": str(R470), "vllm_version": "0.25.1", "vllm_models": [CODER]},
         ("vllm: the NVIDIA driver 470.256.02 is too old for every CUDA build of vLLM 0.25.1",
          "upgrade the driver to 525.60.13 or newer")),
    Case("vllm-on-rocm-without-a-rocm-build", "gpu_servers",
         {"llm_host_type": "linux_rocm", "vllm_enabled": True, "vllm_models": [CODER]},
         ("vllm: this host is linux_rocm (AMD GPUs), and vLLM's PyPI wheel is built for NVIDIA CUDA",
          "set vllm_packages to one")),
    Case("vllm-on-a-rocm-workstation", "workstations",
         {"llm_host_type": "linux_rocm", "vllm_enabled": "yes", "vllm_models": [CODER]},
         ("this host is linux_rocm (AMD GPUs)", "or set vllm_enabled: false")),
    # issue 20: GPU memory shared correctly.
    Case("vllm-gpu-shares-above-one", "gpu_servers",
         {"llm_host_nvidia_smi": str(R590),
          "vllm_models": [{**CODER, "gpu_memory_utilization": 0.6},
                          {**CODER, "name": "chat", "port": 8001, "gpu_memory_utilization": 0.5}]},
         ("vllm: GPU 0 is promised 1.1 of its memory: the gpu_memory_utilization of coder (0.6) and chat (0.5) add up "
          "to more than the whole GPU", "move a server to another GPU with its gpus key")),
    Case("vllm-gpu-share-leaves-nothing", "workstations",
         {"llm_host_nvidia_smi": str(R590), "vllm_enabled": True,
          "vllm_models": [{**CODER, "gpu_memory_utilization": 0.95}, {**CODER, "name": "chat", "port": 8001}]},
         ("vllm: on GPU 0, coder (0.95) take 0.95 of its memory, which leaves nothing of vllm_gpu_memory_utilization "
          "(0.92) for chat", "give those their own gpu_memory_utilization")),
    Case("vllm-pinned-to-a-missing-gpu", "gpu_servers",
         {"llm_host_nvidia_smi": str(R590), "vllm_models": [{**CODER, "gpus": [2]}]},
         ("vllm_models[0] (coder): gpus names GPU 2, and this host has GPU 0, 1 (nvidia-smi's numbers)",)),
    # issue 21: one message per rule of gpus (GPU numbers, at least one, each once).
    Case("vllm-gpus-empty-repeated-or-negative", "gpu_servers",
         {"vllm_models": [{**CODER, "gpus": []}, {**CODER, "name": "chat", "port": 8001, "gpus": [0, 0]},
                          {**CODER, "name": "embed", "port": 8002, "gpus": [-1]}]},
         ("vllm_models[0] (coder): gpus must be a list of GPU numbers as nvidia-smi shows them, and it is empty: list "
          "at least one", "vllm_models[1] (chat): gpus must be a list of GPU numbers as nvidia-smi shows them, each "
          "once, and it lists GPU 0 more than once", "vllm_models[2] (embed): gpus must be a list of GPU numbers as "
          "nvidia-smi shows them (0, 1, ...), and -1 is not one"), host="vllm-settings-server"),
    Case("vllm-tensor-parallel-beyond-its-gpus", "gpu_servers",
         {"llm_host_nvidia_smi": str(R590), "vllm_models": [{**CODER, "gpus": [1], "tensor_parallel_size": 2}]},
         ("vllm_models[0] (coder): tensor_parallel_size 2 needs 2 GPUs, and gpus lists 1",)),
    # vllm_cuda names a build the release does not have (reported with the pin's problem, one host each).
    Case("vllm-cuda-not-a-build-of-the-release", "gpu_servers", {"vllm_cuda": "12.9"},
         ("vllm: vllm_cuda is '12.9', and vLLM 0.33.0 is built for CUDA 13.0; set vllm_cuda to one of those or auto",),
         host="vllm-pinned-to-a-missing-gpu"),
    Case("vllm-cuda-given-as-a-torch-backend", "gpu_servers", {"vllm_cuda": "cu130"},
         ("vllm: vllm_cuda is 'cu130', and vLLM 0.33.0 is built for CUDA 13.0",),
         host="vllm-tensor-parallel-beyond-its-gpus"),
    Case("vllm-cpu-kv-caches-do-not-fit", "workstations",
         {"vllm_enabled": True, "vllm_models": [{**CODER, "model": "Qwen/Qwen2.5-72B-Instruct"}]},
         ("vllm: the KV caches of coder do not fit this host's memory", "GiB (weights and runtime of coder)",
          "give each a kv_cache_gb, or lower vllm_cpu_reserved_gb")),
    Case("vllm-cpu-kv-cache-declared-too-big", "gpu_servers",
         {"vllm_enabled": True, "vllm_models": [{**CODER, "kv_cache_gb": 4096}]},
         ("vllm: the kv_cache_gb of coder do not fit this host's memory", "4096.0 GiB (the kv_cache_gb of coder)")),
    Case("vllm-gpu-budget-above-one", "gpu_servers", {"vllm_gpu_memory_utilization": 1.5},
         ('vllm: vllm_gpu_memory_utilization is "1.5"', "at most 1, e.g. 0.92"), host="vllm-settings-server"),
    Case("vllm-cpu-reserve-not-a-number", "gpu_servers", {"vllm_cpu_reserved_gb": "lots"},
         ('vllm: vllm_cpu_reserved_gb is "lots"; set it to auto or to the GiB',), host="vllm-settings-server"),
    Case("vllm-cuda-wheel-url-without-scheme", "gpu_servers",
         {"vllm_cuda_wheel_url": "github.com/vllm-project/vllm/releases/download"},
         ('vllm_cuda_wheel_url "github.com/vllm-project/vllm/releases/download" is not an http(s):// or file:// URL',),
         host="vllm-settings-server"),
    Case("vllm-kernels-index-without-scheme", "gpu_servers", {"vllm_kernels_index_url": "flashinfer.ai/whl"},
         ('vllm_kernels_index_url "flashinfer.ai/whl" is not an http(s):// or file:// URL', 'or to "" to skip'),
         host="vllm-settings-server"),
    # issue 20: a Python that fits. The system's Python is a double (llm_host_system_python) where a case
    # needs another version than this machine's 3.11: Debian 13's 3.13, Ubuntu 22.04's 3.10.
    Case("managed-python-outside-the-range", "workstations",
         {"llm_host_system_python": str(PY313), "llm_host_python_version": "3.13.5"},
         ("open_webui: the system's " + str(PY313) + " is Python 3.13, which open-webui 0.12.4 does not support",
          "llm_host_python_version is 3.13.5, which open-webui 0.12.4 does not support either",
          "set llm_host_python_version to such a release", "nothing was changed")),
    Case("managed-python-uv-cannot-download", "workstations",
         {"llm_host_system_python": str(PY313), "llm_host_python_version": "3.12.99"},
         ("uv 0.13.9 (llm_host_uv_version) cannot download CPython 3.12.99",
          "set llm_host_python_version to one it can, e.g. 3.12.16")),
    Case("managed-python-for-vllm-outside-the-range", "gpu_servers",
         {"llm_host_system_python": str(PY310), "llm_host_python_version": "3.10.18", "vllm_enabled": True},
         ("vllm: the system's " + str(PY310) + " is Python 3.10, which vllm 0.33.0 does not support",
          "llm_host_python_version is 3.10.18, which vllm 0.33.0 does not support either")),
    Case("vllm-python-unsupported-version", "gpu_servers", {"vllm_python": "3.10", "vllm_enabled": True},
         ("vllm: vllm_python is 3.10; vLLM 0.33.0 supports Python 3.11 or 3.12 or 3.13 or 3.14",
          "or leave it empty to let llmfleet choose")),
    Case("open-webui-python-path-unsupported", "workstations", {"open_webui_python": str(PY313)},
         ("open_webui: open-webui-python-path-unsupported needs " + str(PY313)
          + " (open_webui_python) to be Python 3.11 or 3.12 (found: 3.13)", "Set open_webui_python to the path")),
    # issue 23: an offline fleet. Its models must be on the host or on the mirror, or the host is refused.
    Case("offline-model-not-on-mirror", "dev_laptops",
         {"llm_host_offline": True, "ollama_models_mirror": OLLAMA_MIRROR, "ollama_models_from_clients": False,
          "ollama_models": ["qwen2.5-coder:1.5b", "llama3.2:1b"]},
         ("ollama: llama3.2:1b is neither on offline-model-not-on-mirror nor on the mirror " + OLLAMA_MIRROR,
          "add it to the mirror", "nothing was changed")),
    Case("offline-without-a-mirror", "dev_laptops",
         {"llm_host_offline": True, "ollama_models_from_clients": False, "ollama_models": ["qwen3:0.6b"]},
         ("ollama: qwen3:0.6b is neither on offline-without-a-mirror nor on a mirror (ollama_models_mirror is not set)",)),
    Case("models-mirror-without-scheme", "dev_laptops", {"ollama_models_mirror": "mirror.internal/ollama-models"},
         ('ollama_models_mirror "mirror.internal/ollama-models" is not an http(s) or file:/// URL',),
         host="ollama-settings-laptop"),
    Case("offline-hugging-face-model-without-a-mirror", "gpu_servers",
         {"llm_host_offline": True, "vllm_enabled": True, "vllm_models": [CODER]},
         ("vllm: vllm_models[0].model Qwen/Qwen2.5-Coder-1.5B-Instruct: not in the Hugging Face cache of "
          "offline-hugging-face-model-without-a-mirror", "with no vllm_models_mirror or vllm_hf_endpoint",
          "nothing was changed")),
    Case("offline-hugging-face-model-not-on-mirror", "gpu_servers",
         {"llm_host_offline": True, "vllm_enabled": True, "vllm_models_mirror": HF_MIRROR,
          "vllm_models": [CODER, {**CODER, "name": "chat", "model": "Qwen/Qwen3-0.6B", "port": 8001}]},
         ("vllm: Qwen/Qwen3-0.6B: neither in the Hugging Face cache of offline-hugging-face-model-not-on-mirror nor on "
          "the mirror " + HF_MIRROR, "nothing was changed")),
    Case("hf-models-mirror-without-scheme", "gpu_servers", {"vllm_models_mirror": "mirror.internal/hf-models"},
         ('vllm: vllm_models_mirror "mirror.internal/hf-models" is not an http(s):// or file:// URL',),
         host="vllm-settings-server"),
    Case("hf-endpoint-without-scheme", "gpu_servers", {"vllm_hf_endpoint": "hf-mirror.internal"},
         ('vllm: vllm_hf_endpoint "hf-mirror.internal" is not an http(s) URL',), host="vllm-settings-server"),
    Case("python-index-without-scheme", "dev_laptops", {"llm_host_python_index_url": "mirror.internal/python/simple"},
         ('llm_host_python_index_url "mirror.internal/python/simple" is not an http(s):// or file:// URL',),
         host="mirror-settings-laptop"),
    Case("apt-repository-as-a-url", "dev_laptops", {"llm_host_apt_repository": "http://mirror.internal/debian"},
         ('llm_host_apt_repository "http://mirror.internal/debian" is not one apt sources.list line',),
         host="mirror-settings-laptop"),
    Case("apt-repository-on-two-lines", "dev_laptops",
         {"llm_host_apt_repository": "deb http://mirror.internal/debian bookworm main\ndeb http://elsewhere.example/x y z"},
         ("is not one apt sources.list line",)),
    Case("continue-vsix-not-found", "dev_laptops",
         {"continue_vscode_extension_vsix": "/nonexistent/continue.vsix", "continue_vscode_extension_sha256": "abc"},
         ('continue_vscode_extension_vsix "/nonexistent/continue.vsix" is neither an http(s) URL nor a file',
          'continue_vscode_extension_sha256 "abc" is not a sha256')),
    # issue 19: collisions across the inventory; each host of a pair names the other.
    Case("one-machine-two-inventory-names", "dev_laptops", {"ansible_host": "dev-box.lan"},
         ("one-machine-two-inventory-names and one-machine-under-another-name are one machine (dev-box.lan)",
          "give each its own ansible_host")),
    Case("one-machine-under-another-name", "workstations", {"ansible_host": "DEV-BOX.lan."},
         ("one-machine-under-another-name and one-machine-two-inventory-names are one machine (dev-box.lan)",
          "Keep one of them in the inventory")),
    Case("two-servers-advertise-one-name", "gpu_servers", {**TEAM_SERVER, "llm_host_advertised_name": "llm.team.lan"},
         ("two-servers-advertise-one-name and a-second-server-advertises-it-too are exposed at one address, llm.team.lan",
          "Give each its own llm_host_advertised_name")),
    Case("a-second-server-advertises-it-too", "gpu_servers",
         {**TEAM_SERVER, "llm_host_advertised_name": "LLM.team.lan"},
         ("a-second-server-advertises-it-too and two-servers-advertise-one-name are exposed at one address",
          "Give each its own llm_host_advertised_name")),
    # issue 24: pull mode. Its settings are checked on an enrolled host only (one task, a host each).
    Case("pull-without-repo-url", "dev_laptops", {"llm_host_pull": True, "llm_host_pull_inventory": "inventory/team"},
         ("llm_host_pull is on but llm_host_pull_repo_url '' is not a git URL", "or user@host:path")),
    Case("pull-repo-url-with-password", "dev_laptops",
         {"llm_host_pull": True, "llm_host_pull_repo_url": "https://bob:hunter2-pw@git.team.lan/llmfleet.git",
          "llm_host_pull_inventory": "inventory/team"},
         ("llm_host_pull_repo_url carries a password (user:password@)", "read-only deploy key")),
    Case("pull-without-inventory", "dev_laptops",
         {"llm_host_pull": True, "llm_host_pull_repo_url": "ssh://git@git.team.lan/team/llmfleet.git"},
         ("llm_host_pull_inventory '' is not a path inside the repository", "e.g. inventory/team")),
    Case("pull-inventory-outside-the-repository", "dev_laptops",
         {"llm_host_pull": True, "llm_host_pull_repo_url": "git@git.team.lan:team/llmfleet.git",
          "llm_host_pull_inventory": "../secrets/inventory"},
         ("llm_host_pull_inventory '../secrets/inventory' is not a path inside the repository",)),
    Case("pull-interval-too-short", "dev_laptops",
         {**PULL_LAPTOP,
          "llm_host_pull_interval": 10, "llm_host_pull_version": "main branch"},
         ("llm_host_pull_interval is 10; set it to 60 seconds or more",
          "llm_host_pull_version 'main branch' is not a branch or tag name")),
    Case("pull-report-over-plain-http", "dev_laptops",
         {**PULL_LAPTOP,
          "llm_host_pull_report_url": "http://team-gpu.lan/llmfleet/pull-reports",
          "llm_host_pull_report_key": "rk-5d0c8e0b1f2a3c4d"},
         ("llm_host_pull_report_url 'http://team-gpu.lan/llmfleet/pull-reports' is not an https:// URL",
          "the report carries the host's key")),
    # The team server's report endpoint (llm_proxy) takes each enrolled laptop's key from the inventory:
    # two laptops with one key could write each other's reports. Every exposed server names it.
    Case("pull-report-key-shared", "gpu_servers", {**TEAM_SERVER, "llm_host_advertised_name": "reports.team.lan"},
         ("pull reports: llm_host_pull_report_key of pull-report-laptop-b is the same key as pull-report-laptop-a's",
          "each host needs its own"),
         extra={name: ("dev_laptops", {**PULL_LAPTOP,
                                       "llm_host_pull_report_url": "https://reports.team.lan/llmfleet/pull-reports",
                                       "llm_host_pull_report_key": "shared-report-key-7e3a9c0d"})
                for name in ("pull-report-laptop-a", "pull-report-laptop-b")}),
    # A report URL that names no exposed team server (a typo, a name not in its certificate): the server
    # would never take the laptop's key, so every report would be refused.
    Case("pull-report-url-names-no-server", "dev_laptops",
         {**PULL_LAPTOP,
          "llm_host_pull_report_url": "https://team-gpu.lna/llmfleet/pull-reports",
          "llm_host_pull_report_key": "rk-0a9b8c7d6e5f4a3b"},
         ("llm_host_pull_report_url names team-gpu.lna, which is none of the names of the inventory's exposed team servers",
          "team-gpu.lan")),
    # A pull run (the pull tool sets llmfleet_pull_run) of a laptop whose repository lacks the team CA.
    Case("pull-run-without-the-team-ca", "dev_laptops",
         {"llm_host_team_server": "served-team-gpu", "llmfleet_pull_run": True},
         ("/llmfleet-ca/ca.crt is not in the repository this pull run checked out",
          "a pull run never makes a team CA"),
         extra={"served-team-gpu": ("gpu_servers", TEAM_SERVER)}),
    # Names and types, with the other cases of that task.
    Case("pull-repo-url-as-a-list", "dev_laptops", {"llm_host_pull_repo_url": ["https://git.team.lan/llmfleet.git"]},
         ("llm_host_pull_repo_url must be a string, and it is a list",), host="names-types-laptop"),
    Case("pull-misspelled-setting", "dev_laptops", {"llm_host_pull_intervall": 600},
         ("llm_host_pull_intervall is not a setting of any llmfleet role; did you mean llm_host_pull_interval?",),
         host="names-types-laptop"),
    Case("pull-playbook-not-a-choice", "dev_laptops", {"llm_host_pull_playbook": "site.yml"},
         ("llm_host_pull_playbook is 'site.yml'; it must be one of: laptop.yml, workstation.yml, continue.yml",),
         host="names-types-laptop"),
    Case("pull-switch-as-a-string", "dev_laptops", {"llm_host_pull": "yes"},
         ("llm_host_pull is the string 'yes', not a boolean",), host="names-types-laptop"),
    # issue 23: the team's mirror (llm_mirror, the llm_mirrors group), checked by its own preflight
    # (playbooks/mirror.yml) before the fleet's. One task reports the settings together.
    Case("mirror-root-relative", "llm_mirrors", {"llm_mirror_root": "srv/llmfleet-mirror"},
         ('llm_mirror_root "srv/llmfleet-mirror" is not an absolute path', "set it to the directory that holds the bundle"),
         host="mirror-settings"),
    Case("mirror-port-out-of-range", "llm_mirrors", {"llm_mirror_port": 87650},
         ("llm_mirror_port 87650 is not a TCP port (1-65535)",), host="mirror-settings"),
    Case("mirror-listen-not-an-address", "llm_mirrors", {"llm_mirror_listen": "mirror.lan"},
         ('llm_mirror_listen "mirror.lan" is not an IPv4 or IPv6 address', 'or to "" for every address'),
         host="mirror-settings"),
    Case("mirror-root-without-bundle", "llm_mirrors", {"llm_mirror_root": str(MODELS)},
         (f"llm_mirror_root {MODELS} lacks bundle.json and SHA256SUMS", "the role never copies it")),
    Case("mirror-port-not-whole", "llm_mirrors", {"llm_mirror_port": 8765.0},
         ("llm_mirror_port 8765.0 is not a TCP port (1-65535)",)),
    Case("mirror-port-quoted", "llm_mirrors", {"llm_mirror_port": "8765"},
         ("llm_mirror_port is the string '8765', not a number", "Write llm_mirror_port: 8765 without quotes"),
         host="mirror-names-types"),
]


def _inventory(directory: Path, hosts: dict[str, tuple[str, dict[str, Any]]]) -> Path:
    """hosts.yml with each host (name -> (group, vars)) in its group, every host on this machine."""
    groups: dict[str, dict[str, Any]] = {}
    for name, (group, hostvars) in hosts.items():
        groups.setdefault(group, {"hosts": {}})["hosts"][name] = {**BASE, **hostvars}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    return directory


def _preflight(inventory: Path, runs_dir: Path, tags: tuple[str, ...] = (), playbook: Path = PLAYBOOK) -> RunResult:
    request = RunRequest(playbook=playbook, inventory=inventory, tags=tags)
    return run_playbook(request, project_dir=ROOT, runs_dir=runs_dir)


def _existing() -> list[Path]:
    return [p for p in WATCHED if p.exists()]


@pytest.fixture(scope="module", autouse=True)
def _linear_strategy() -> Iterator[None]:
    """Ansible's linear strategy for every run of this file. Their hosts are all this machine over
    local connections, where Mitogen (ansible.cfg's strategy) starts a Python per host and feeds each
    from its one multiplexer process: the case run took 127 s against 80 s, the three small runs 35 s
    against 20 s (2 cores, 2026-12-05). The checks and their messages are the same under both; the
    molecule scenarios run Mitogen's strategy against real hosts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANSIBLE_STRATEGY", "linear")
        yield


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, list[Path], list[Path]]:
    """One preflight run over every case (a host each); the watched paths before and after it."""
    tmp = tmp_path_factory.mktemp("bad")
    hosts = {name: host for case in CASES for name, host in case.extra.items()}
    for case in CASES:
        group, hostvars = hosts.setdefault(case.hostname, (case.group, {}))
        assert group == case.group and not set(hostvars) & set(case.hostvars), f"{case.name} cannot share its host"
        hostvars.update(case.hostvars)
    inventory = _inventory(tmp / "inventory", hosts)
    before = _existing()
    result = _preflight(inventory, tmp / "runs")
    return result, before, _existing()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_inventory_fails_before_anything_changes(case: Case, bad_run: tuple[RunResult, list, list]) -> None:
    result, before, after = bad_run
    failures = [f for f in result.failures if f.host == case.hostname]
    assert len(failures) == 1, (failures, (result.artifact_dir / "stdout").read_text()[-3000:])
    message = failures[0].message
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert result.hosts[case.hostname].changed == 0
    assert not [c for c in result.changes if c.host == case.hostname]
    assert after == before, "the preflight created files"


def test_the_bad_run_fails_every_host(bad_run: tuple[RunResult, list, list]) -> None:
    result, _, _ = bad_run
    assert result.exit_code == ExitCode.FAILED and result.rc != 0
    assert sorted(f.host for f in result.failures) == sorted({case.hostname for case in CASES})
    assert len(CASES) >= 15


@pytest.mark.parametrize(("host", "variable", "secret"), [
    ("names-types-server", "vllm_hf_token", "hf_abc123secret"),  # a secret of the wrong type
    ("pull-repo-url-with-password", "llm_host_pull_repo_url", "hunter2-pw"),  # a password in the pull URL
], ids=["wrong-type", "pull-url-password"])  # ids without the secret: the run records PYTEST_CURRENT_TEST
def test_a_secret_in_a_bad_setting_is_named_never_shown(bad_run: tuple[RunResult, list, list], host: str,
                                                         variable: str, secret: str) -> None:
    result, _, _ = bad_run
    [failure] = [f for f in result.failures if f.host == host]
    assert variable in failure.message and secret not in failure.message
    logs = [p for p in result.artifact_dir.rglob("*") if p.is_file() and p.name != "inventory"]
    assert not [p for p in logs if secret in p.read_text(errors="replace")]


def test_the_docs_table_lists_every_case() -> None:
    table = TABLE.read_text()
    missing = [case.name for case in CASES if f"| `{case.name}` |" not in table]
    assert not missing, f"docs/bad-inventories.md lacks {missing}"


def test_a_run_limited_by_tags_is_checked_all_the_same(tmp_path: Path) -> None:
    # `invoke provision -t ollama` on a laptop whose Continue settings are wrong.
    inventory = _inventory(tmp_path / "inventory", {"laptop": ("dev_laptops", {"continue_users": ["no-such-dev"]})})
    result = _preflight(inventory, tmp_path / "runs", tags=("ollama",))
    assert result.exit_code == ExitCode.FAILED
    assert [f.host for f in result.failures] == ["laptop"]
    assert "continue_users names no-such-dev" in result.failures[0].message


def test_the_models_playbook_checks_the_inventory_first(tmp_path: Path) -> None:
    # `invoke provision --playbook models` with a misspelled model list: refused before the host lock
    # is taken or a model is pulled (the run would otherwise pull nothing and say ok).
    inventory = _inventory(tmp_path / "inventory", {"laptop": ("dev_laptops", {"olama_models": ["qwen3:8b"]})})
    before = _existing()
    result = _preflight(inventory, tmp_path / "runs", playbook=PLAYBOOK.parent / "models_on_systemd.yml")
    assert result.exit_code == ExitCode.FAILED
    [failure] = result.failures
    assert failure.host == "laptop" and "olama_models looks like a misspelling of ollama_models" in failure.message
    assert result.hosts["laptop"].changed == 0 and result.changes == []
    assert _existing() == before


def test_a_good_inventory_passes_with_nothing_changed(tmp_path: Path) -> None:
    server = {"llm_host_expose": True, "llm_host_advertised_name": "team-gpu.lan",
              "vllm_models": [CODER, {**CODER, "name": "rerank", "model": "BAAI/bge-reranker-v2-m3", "port": 8001}],
              "vllm_api_key": "k-9c1f0d2e", "open_webui_admin_email": "admin@team.example",
              "llm_host_ca_passphrase": "a-ca-passphrase-4f1e",
              "llm_host_team_keys": {"alice": "alice-key-0123456789abcdef"},
              "open_webui_admin_password": "Tr0ub4dor-3-staple", "ollama_models": ["qwen2.5-coder:7b", "nomic-embed-text"],
              # A team's own variable that shares a role's prefix, declared as such.
              "ollama_site_colour": "blue", "llm_host_own_variables": ["ollama_site_*"]}
    laptop = {"llm_host_team_server": "team-gpu", "continue_vllm_api_key": "k-9c1f0d2e",
              "ollama_models": ["qwen2.5-coder:1.5b-base"], "ollama_models_prune": True,
              "continue_models": [{"name": "Team coder", "provider": "vllm", "model": "coder"},
                                  {"name": "Local", "provider": "ollama", "model": "qwen2.5-coder:1.5b"}]}
    # issue 23: an offline laptop whose models are on the team's mirror.
    offline = {"llm_host_offline": True, "ollama_models_mirror": OLLAMA_MIRROR, "ollama_models_from_clients": False,
               "ollama_models": ["qwen2.5-coder:1.5b"],
               # ... which takes its packages from the mirror too (a flat apt repository, a package index).
               "llm_host_apt_repository": "deb [trusted=yes] http://mirror.internal:8765/apt ./",
               "llm_host_python_index_url": "http://mirror.internal:8765/python/simple"}
    server["llm_host_apt_repository"] = "deb http://mirror.internal/debian bookworm main"
    # ... and an offline server whose vLLM model is not in its cache but on the mirror (its manifest).
    offline_server = {"llm_host_offline": True, "vllm_enabled": True, "vllm_models": [CODER],
                      "vllm_models_mirror": HF_MIRROR, "ollama_models_mirror": OLLAMA_MIRROR,
                      "ollama_models_from_clients": False, "ollama_models": ["qwen2.5-coder:1.5b"]}
    # ... and the team's mirror, serving a bundle carried in (the two files the preflight looks for), its
    # nginx from the bundle's own apt repository.
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}\n")
    (bundle / "SHA256SUMS").write_text("")
    mirror = {"llm_mirror_root": str(bundle), "llm_mirror_port": 8766, "llm_mirror_listen": "fd00::5",
              "llm_host_apt_repository": f"deb [trusted=yes] file:{bundle}/apt bookworm main"}
    inventory = _inventory(tmp_path / "inventory", {"team-gpu": ("gpu_servers", server),
                                                    "mirror": ("llm_mirrors", mirror),
                                                    "offline-server": ("gpu_servers", offline_server),
                                                    "alice-laptop": ("dev_laptops", laptop),
                                                    "offline-laptop": ("dev_laptops", offline),
                                                    "workstation": ("workstations", {})})
    before = _existing()
    result = _preflight(inventory, tmp_path / "runs")
    assert result.exit_code == ExitCode.OK, result.failures
    assert set(result.hosts) == {"team-gpu", "mirror", "offline-server", "alice-laptop", "offline-laptop", "workstation"}
    assert all(stats.changed == 0 for stats in result.hosts.values()) and result.changes == []
    assert _existing() == before


def _filters(role: str, module: str) -> Any:
    return load_module(f"plugins/filter/{module}.py")


@pytest.mark.parametrize("name", ["qwen2.5-coder:7b", "hf.co/org/repo:Q4_K_M", "registry.local:5000/team/coder:v2",
                                  "someone/model_x:q4_0", "_tag-less"])
def test_model_names_ollama_accepts_still_pass(name: str) -> None:
    om = _filters("ollama", "ollama_models")
    if name == "_tag-less":  # a model name starts with a letter or digit
        with pytest.raises(ValueError):
            om.model_name(name)
    else:
        assert om.model_errors([name]) == []


def test_placeholders_are_named_never_shown() -> None:
    vm = _filters("vllm", "vllm_models")
    ow = _filters("open_webui", "open_webui_env")
    secrets = {"a": "changeme", "b": " ", "c": "<token>", "d": "k-9c1f0d2e", "e": "", "f": "none"}
    assert vm.placeholders(secrets) == ["a", "b", "c"]
    assert ow.placeholders(secrets) == ["a", "b", "c"]
    errors = vm.model_errors([{**CODER, "api_key": "Change-Me"}])
    assert errors and not any("Change-Me" in e for e in errors)


def test_gated_models_need_a_token_only_where_vllm_downloads_them() -> None:
    vm = _filters("vllm", "vllm_models")
    gated = [{**CODER, "model": "google/gemma-3-4b-it"}]
    assert any("gated" in e for e in vm.model_errors(gated, hf_token=False))
    assert vm.model_errors(gated, hf_token=True) == []
    assert vm.model_errors(gated, hf_token=None) == []  # vLLM not enabled on the host
    assert vm.model_errors(gated, hf_token=False, environment={"HF_HUB_OFFLINE": "1"}) == []
    assert vm.model_errors([{**CODER, "model": "/models/meta-llama/Llama-3.1-8B"}], hf_token=False) == []


def test_loopback_open_webui_may_run_without_auth() -> None:
    ow = _filters("open_webui", "open_webui_env")
    assert ow.exposure_errors("127.0.0.1", {"WEBUI_AUTH": False}, True, "admin") == []
    assert ow.exposure_errors("0.0.0.0", {"WEBUI_AUTH": True}, True, "pending") == []
    assert len(ow.exposure_errors("::", {"WEBUI_AUTH": "false"}, "yes", "admin")) == 2
