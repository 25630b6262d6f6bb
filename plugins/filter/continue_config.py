"""Filters that turn the inventory into a developer's Continue config.yaml, and read one back.

Kept in Python so the rules (hardware-aware autocomplete, apiBase defaults, per-user overrides, what
counts as a hand edit) are unit-tested in tests/test_continue_filters.py. The schema itself is
Continue's: the tests validate the rendered files with its own parser (npm @continuedev/config-yaml).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.addresses import is_url
from ansible_collections.llmfleet.llmfleet.plugins.module_utils.secrets import is_placeholder

# Model roles config.yaml accepts (config-yaml 1.42.0, modelRolesSchema).
ROLES = ("chat", "autocomplete", "embed", "rerank", "edit", "apply", "summarize", "subagent")
# Top-level model keys config-yaml 1.42.0 knows. Its parser drops unknown keys without a word, so a
# typo ("apibase") would silently fall back to a default: refuse it here instead.
MODEL_KEYS = frozenset({
    "name", "provider", "model", "apiKey", "apiBase", "maxStopWords", "roles", "capabilities",
    "defaultCompletionOptions", "cacheBehavior", "requestOptions", "embedOptions", "chatOptions",
    "promptTemplates", "useLegacyCompletionsEndpoint", "env", "autocompleteOptions",
})
# Providers that talk to an OpenAI-compatible endpoint (vLLM's /v1): they get the team server's base
# and key when a model does not name its own.
OPENAI_PROVIDERS = frozenset({"vllm", "openai"})
# Top-level keys of config.yaml that continue_config_extra may add (the ones we render are excluded).
EXTRA_KEYS = frozenset({"metadata", "env", "requestOptions", "data", "mcpServers"})
# What a per-user entry in continue_users may override.
USER_KEYS = frozenset({
    "name", "models", "ollama_api_base", "ollama_api_key", "vllm_api_base", "vllm_api_key", "autocomplete_model",
    "context_providers", "prompts", "rules", "docs", "config_extra",
})
# First line of the files we write: the sha1 of everything after it. A file whose first line matches
# the rest is ours and untouched; anything else is the developer's and is backed up before we replace it.
SEAL = "# llmfleet-sha1: "
_SEAL_LINE = re.compile(r"# llmfleet-sha1: ([0-9a-f]{40})\n")
# Matched whole (fullmatch: `$` would also match before a final line break).
_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?", re.IGNORECASE)
# http(s)://host[:port][/path]: a host name, an IPv4 or an [IPv6] address.


def plain(value: Any) -> Any:
    """A deep copy made of dict, list, str, int, float, bool and None only.

    Ansible hands filters its own string and container types (vaulted strings among them); YAML
    dumpers must see plain data, and a vaulted API key must be written in clear, not as ciphertext.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def autocomplete_model(setting: Any, host: Mapping[str, Any], choices: Mapping[str, str],
                       large_min_mb: Mapping[str, int]) -> Any:
    """The autocomplete model for this host: `setting` itself unless it is "auto".

    "auto" follows the seed's advice: the large choice (qwen2.5-coder:7b-base) where the memory
    models run in reaches the host type's threshold, else the small one (1.5b-base). That memory
    is VRAM on CUDA/ROCm hosts and RAM elsewhere (Apple Silicon shares it with the GPU).
    """
    if setting != "auto":
        return setting
    kind = host.get("type", "linux_cpu")
    memory = int(host.get("vram_mb", 0) if kind in ("linux_cuda", "linux_rocm") else host.get("ram_mb", 0))
    threshold = int(large_min_mb.get(kind, large_min_mb.get("linux_cpu", 0)))
    return choices["large"] if memory >= threshold else choices["small"]


def user_settings(entry: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    """One continue_users entry (a name or a mapping of overrides) combined over the base settings."""
    overrides = {"name": entry} if isinstance(entry, str) else dict(entry)
    settings = {**base, **overrides}
    # The developer's own key to the team server's Ollama (llm_host_team_keys), unless set for them;
    # the other developers' keys are not carried along.
    keys = settings.pop("team_keys", None) or {}
    if not overrides.get("ollama_api_key") and isinstance(keys, Mapping) and keys.get(settings.get("name")):
        settings["ollama_api_key"] = keys[settings["name"]]
    return settings


def user_errors(users: Any) -> list[str]:
    """Problems in continue_users, as messages (empty when all is well)."""
    if not isinstance(users, Sequence) or isinstance(users, str) or not users:
        return ["continue_users must be a non-empty list of account names or mappings"]
    errors: list[str] = []
    seen: set[str] = set()
    for entry in users:
        if isinstance(entry, Mapping):
            unknown = sorted(set(entry) - USER_KEYS)
            if unknown:
                errors.append(f"user {entry.get('name')!r}: unknown keys {unknown}; allowed: {sorted(USER_KEYS)}")
            name = entry.get("name")
        else:
            name = entry
        if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
            errors.append(f"user {name!r}: not an account name")
            continue
        if name in seen:
            errors.append(f"user {name} is listed twice")
        seen.add(name)
    return errors


def shared_homes(accounts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Messages for developers whose accounts share one home (continue_accounts' `accounts`).

    Each developer's config is ~/.continue/config.yaml: two developers with one home would overwrite
    each other's on every run, and the second owner would take the directory from the first.
    """
    by_home: dict[str, list[str]] = {}
    for name, account in (accounts or {}).items():
        home = str(account.get("home") or "").rstrip("/") or "/"
        by_home.setdefault(home, []).append(str(name))
    return [f"continue_users names {' and '.join(names)}, who share the home {home}: each would overwrite the "
            "other's ~/.continue on every run. Keep one of them in continue_users, or give each their own home"
            for home, names in by_home.items() if len(names) > 1]


def _model(entry: Any, settings: Mapping[str, Any], errors: list[str]) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        errors.append(f"model entry must be a mapping, got a {type(entry).__name__}")
        return None
    label = entry.get("name", entry.get("model"))
    for key in ("name", "provider", "model"):
        if not isinstance(entry.get(key), str) or not entry.get(key):
            errors.append(f"model {label!r}: {key} is required and must be a string")
    unknown = sorted(set(entry) - MODEL_KEYS)
    if unknown:
        errors.append(f"model {label!r}: unknown keys {unknown} (config.yaml would ignore them)")
    roles = entry.get("roles", ["chat", "edit", "apply", "summarize"])
    if not isinstance(roles, list):
        errors.append(f"model {label!r}: roles must be a list of {', '.join(ROLES)}, e.g. [chat]; got {roles!r}")
    elif not set(map(str, roles)) <= set(ROLES):
        unknown = [role for role in roles if str(role) not in ROLES]
        errors.append(f"model {label!r}: roles must be a list of {', '.join(ROLES)}; "
                      f"{', '.join(repr(role) for role in unknown)} {'is not one' if len(unknown) == 1 else 'are not'}")
    model = dict(entry)
    provider = model.get("provider")
    if provider == "ollama":
        model.setdefault("apiBase", settings.get("ollama_api_base") or "http://localhost:11434")
        if "apiKey" not in model and _at_team(model["apiBase"], settings):
            # The team server's TLS proxy lets no one into its Ollama without a developer's key.
            if settings.get("ollama_api_key"):
                model["apiKey"] = settings["ollama_api_key"]
            else:
                errors.append(f"model {label!r}: {model['apiBase']} is the team server's Ollama, which needs "
                              f"{settings.get('name')}'s key: add {settings.get('name')} to llm_host_team_keys "
                              "(or ollama_api_key to their continue_users entry)")
    elif provider in OPENAI_PROVIDERS:
        if "apiBase" not in model:
            if not settings.get("vllm_api_base"):
                errors.append(f"model {label!r}: provider {provider} needs apiBase or continue_vllm_api_base")
            else:
                model["apiBase"] = settings["vllm_api_base"]
        if "apiKey" not in model and settings.get("vllm_api_key"):
            model["apiKey"] = settings["vllm_api_key"]
    if settings.get("ca_bundle_path") and _at_team(str(model.get("apiBase") or ""), settings):
        # Continue's requests carry their own list of CAs (Node's, not the system's): the team CA
        # the system trusts is added to it for the team server.
        options = dict(model.get("requestOptions") or {})
        options.setdefault("caBundlePath", settings["ca_bundle_path"])
        model["requestOptions"] = options
    return model


def _at_team(url: str, settings: Mapping[str, Any]) -> bool:
    """Whether `url` is the team server behind its TLS proxy (https at llm_host_team's address)."""
    address = str(settings.get("team_address") or "").lower()
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return False
    return bool(address) and parts.scheme == "https" and (parts.hostname or "").lower() == address


def _autocomplete(setting: Any) -> dict[str, Any] | None:
    if not setting:
        return None
    if isinstance(setting, Mapping):
        model = dict(setting)
        model["roles"] = ["autocomplete"]
        return model
    return {"name": f"{setting} (autocomplete)", "provider": "ollama", "model": str(setting),
            "roles": ["autocomplete"]}


def _named(entries: Any, what: str, key: str, errors: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in entries or []:
        if isinstance(entry, str) and entry:
            out.append({key: entry})
        elif isinstance(entry, Mapping) and isinstance(entry.get(key), str):
            out.append(dict(entry))
        else:
            errors.append(f"{what} entry must be a name or a mapping with {key}, got {entry!r}")
    return out


def _setting_errors(settings: Mapping[str, Any]) -> list[str]:
    """The API bases must be URLs and the key no placeholder (named by setting, never by value)."""
    errors = []
    for key in ("ollama_api_base", "vllm_api_base"):
        value = settings.get(key)
        if value and (not isinstance(value, str) or not is_url(value)):
            errors.append(f"{key} (continue_{key}) {value!r} is not an http(s):// URL, e.g. http://team-gpu.lan:8000/v1")
    for key in ("vllm_api_key", "ollama_api_key"):
        if is_placeholder(settings.get(key) or ""):
            errors.append(f"{key} (continue_{key}) holds a placeholder, not a key: put the real key in the "
                          "vault and point the variable at it, or leave it empty")
    return errors


def _build(settings: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    errors: list[str] = _setting_errors(settings)
    models = [m for m in (_model(e, settings, errors) for e in settings.get("models") or []) if m]
    choice = settings.get("autocomplete_model")
    if choice == "auto":
        choice = autocomplete_model(choice, settings.get("host") or {}, settings.get("autocomplete_choices") or {},
                                    settings.get("autocomplete_large_min_mb") or {})
    auto = _autocomplete(choice)
    if auto and not any("autocomplete" in (m.get("roles") or []) for m in models):
        models.append(_model(auto, settings, errors) or auto)
    names = [m.get("name") for m in models]
    for name in sorted({n for n in names if names.count(n) > 1}, key=str):
        errors.append(f"model name {name!r} is used twice (Continue picks models by name)")
    if not isinstance(settings.get("version"), str):
        errors.append(f"version must be a string, got {settings.get('version')!r}")
    config: dict[str, Any] = {
        "name": settings.get("config_name") or "llmfleet",
        "version": settings.get("version"),
        "schema": "v1",
        "models": models,
        "context": _named(settings.get("context_providers"), "context provider", "provider", errors),
    }
    for key in ("prompts", "rules", "docs"):
        if settings.get(key):
            config[key] = list(settings[key])
    for prompt in config.get("prompts", []):
        if not isinstance(prompt, Mapping) or not all(isinstance(prompt.get(k), str) for k in ("name", "prompt")):
            errors.append(f"prompt must be a mapping with name and prompt, got {prompt!r}")
    extra = settings.get("config_extra") or {}
    if not isinstance(extra, Mapping) or set(extra) - EXTRA_KEYS:
        got = sorted(extra) if isinstance(extra, Mapping) else type(extra).__name__
        errors.append(f"config_extra may only set {sorted(EXTRA_KEYS)}, got {got}")
    else:
        config.update(extra)
    return plain(config), errors


def config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The config.yaml content for one developer, as data (raises on invalid settings)."""
    data, errors = _build(settings)
    if errors:
        raise ValueError("; ".join(errors))
    return data


def config_errors(settings: Mapping[str, Any]) -> list[str]:
    """Every problem in one developer's settings, as messages (empty when all is well)."""
    return _build(settings)[1]


def model_uses(all_settings: Any) -> list[dict[str, str]]:
    """Every model the developers' configs use and where: [{provider, model, api_base, by}].

    `all_settings` is the list of per-developer settings (continue_user_settings). The ollama role
    pulls the ones served by its own Ollama from this (so a model is never listed twice), and
    llm_host checks that the ones the team server is asked for are served there. Settings with
    problems give what can be read of them: the preflight reports the problems themselves.
    """
    if not isinstance(all_settings, Sequence) or isinstance(all_settings, str):
        return []
    uses: list[dict[str, str]] = []
    for settings in all_settings:
        if not isinstance(settings, Mapping):
            continue
        try:
            data, _ = _build(settings)
        except (TypeError, ValueError, AttributeError, KeyError):
            continue
        for model in data.get("models") or []:
            if not isinstance(model, Mapping) or not isinstance(model.get("model"), str) or not model.get("model"):
                continue
            uses.append({
                "provider": str(model.get("provider") or ""),
                "model": model["model"],
                "api_base": str(model.get("apiBase") or ""),
                "by": f"Continue config of {settings.get('name')} (model {model.get('name')!r})",
            })
    return uses


_OLLAMA_REGISTRY = "registry.ollama.ai/"
_OLLAMA_LIBRARY = "library/"


def _ollama_name(name: Any) -> str:
    """A model name as Ollama lists it: default registry and namespace dropped, ":latest" when untagged."""
    text = str(name).strip()
    text = text[len(_OLLAMA_REGISTRY):] if text.startswith(_OLLAMA_REGISTRY) else text
    text = text[len(_OLLAMA_LIBRARY):] if text.startswith(_OLLAMA_LIBRARY) else text
    return text if ":" in text.rsplit("/", 1)[-1] else f"{text}:latest"


def _endpoint(url: str) -> tuple[str, int | None]:
    """(host, port) of a URL; ("", None) when it is not one."""
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return "", None
    return (parts.hostname or "").lower(), port


def _server(url: str) -> tuple[int | None, str]:
    """(port, path) of a vLLM URL on the team server: behind its TLS proxy the servers share a port,
    each under its name (/<name>/v1); directly each has its own port (path "")."""
    port = _endpoint(url)[1]
    try:
        path = urlsplit(str(url).strip()).path.rstrip("/")
    except ValueError:
        path = ""
    return port, (path[: -len("/v1")] if path.endswith("/v1") else path)


def team_model_errors(uses: Any, team: Mapping[str, Any], server_names: Iterable[str] = ()) -> list[str]:
    """Models a host's clients ask the team server for that the server does not serve, as messages.

    `uses` are [{provider, model, api_base, by}] (model_uses), `team` is llm_host_team (published by
    the llm_host role, with the server's ollama_models as its inventory writes them). A use counts when its api_base names the team server (its address, or one of
    `server_names`): at the Ollama port the model must be in the server's ollama_models (or
    ollama_custom_models); at a vLLM server's URL it must be that server's name; another port of the
    server is a mistake too. Decided from the inventory, so it holds before the server is set up.
    """
    server = str(team.get("server") or "")
    if not server or team.get("address") == "localhost":
        return []
    if team.get("errors"):
        return [str(error) for error in team["errors"]]
    hosts = {str(team.get("address") or server).lower(), server.lower(), *(str(n).lower() for n in server_names if n)}
    if not team.get("exposed"):
        return [f"{use.get('by', 'a client')}: {use.get('api_base')} is the team server {server}, which does not "
                "expose its services (llm_host_expose is false there, so they listen on its loopback only): set "
                f"llm_host_expose: true for {server}, or serve the model from this host's own Ollama"
                for use in (uses if isinstance(uses, list) else [])
                if isinstance(use, Mapping) and _endpoint(use.get("api_base", ""))[0] in hosts]
    ollama = _endpoint(team.get("ollama_url", ""))
    served = {_ollama_name(name) for name in team.get("ollama_models") or []}
    vllm = {_server(url): name for name, url in (team.get("vllm_urls") or {}).items()}
    other_ports = {_endpoint(team.get("open_webui_url", ""))[1]}
    errors = []
    for use in uses if isinstance(uses, list) else []:
        if not isinstance(use, Mapping):
            continue
        host, port = _endpoint(use.get("api_base", ""))
        if host not in hosts:
            continue
        model, by = str(use.get("model", "")), str(use.get("by", "a client"))
        if _server(use.get("api_base", "")) in vllm:
            name = vllm[_server(use.get("api_base", ""))]
            if model != name:
                errors.append(f"{by}: the team server {server}'s vLLM server at {use.get('api_base')} serves {name!r}, "
                              f"not {model!r}: set model: {name}, or add a vLLM server for {model!r} to vllm_models of "
                              f"{server} (its host_vars or group_vars/gpu_servers/)")
        elif port == ollama[1] and use.get("provider") != "ollama":
            errors.append(f"{by}: {use.get('api_base')} is the team server {server}'s Ollama, but the model's "
                          f"provider is {use.get('provider')!r}: use provider ollama there")
        elif port == ollama[1]:
            if _ollama_name(model) not in served:
                errors.append(f"{by}: the team server {server} does not serve {model!r} from its Ollama: add it to "
                              f"ollama_models of {server} (its host_vars or group_vars/gpu_servers/), or serve the "
                              "model from this host's own Ollama (apiBase http://localhost:11434)")
        elif port not in other_ports:
            known = [team.get("ollama_url"), *(team.get("vllm_urls") or {}).values()]
            errors.append(f"{by}: {use.get('api_base')} is on the team server {server}, but nothing of llmfleet's "
                          f"listens there; its model servers are {', '.join(str(k) for k in known if k)}")
    return errors


def _digest(body: str) -> str:
    # Blank lines at either end do not count: the template engine may add or drop a final newline.
    return hashlib.sha1(body.strip("\n").encode()).hexdigest()  # noqa: S324 - change detection, not security


def seal(body: str) -> str:
    """`body` behind the header line that proves it is what we wrote."""
    return f"{SEAL}{_digest(str(body))}\n{body}"


def file_state(slurped: Mapping[str, Any]) -> str:
    """What a config.yaml is, from its slurp result: "absent", "ours" (our seal matches), "foreign",
    "directory" (a directory in its place) or "blocked" (slurp's catch-all error: in practice
    ~/.continue is a file, so nothing below it can be read; llm_host_paths looks closer).

    A file root may not read counts as foreign: it is backed up.
    """
    if "content" not in slurped:
        msg = str(slurped.get("msg", "")).lower()
        if "not found" in msg:
            return "absent"
        if "is a directory" in msg:
            return "directory"
        if "unable to slurp" in msg:
            return "blocked"
        return "foreign"
    try:
        text = base64.b64decode(str(slurped["content"])).decode()
    except (ValueError, UnicodeDecodeError):
        return "foreign"
    match = _SEAL_LINE.match(text)
    if match and _digest(text[match.end():]) == match.group(1):
        return "ours"
    return "foreign"


def in_the_way(states: Mapping[str, str], accounts: Mapping[str, Mapping[str, Any]], hand_edits: str) -> list[dict[str, str]]:
    """The paths llm_host_paths looks at, moving aside what is in the way, before the developers'
    files are written: ~/.continue where config.yaml could not be read ("blocked": a file in its
    place), and config.yaml where a directory is in its place, only with continue_hand_edits backup
    (with keep it is kept, like a hand-written file). The module moves only what is in the way.
    """
    wanted = []
    for user, state in states.items():
        home = str(accounts[user]["home"]).rstrip("/")
        if state == "blocked":
            wanted.append({"path": f"{home}/.continue", "type": "directory"})
        if state == "directory" and hand_edits == "backup" or state == "blocked":
            wanted.append({"path": f"{home}/.continue/config.yaml", "type": "file"})
    return wanted


class FilterModule:
    """Continue config filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "continue_autocomplete_model": autocomplete_model,
            "continue_user_settings": user_settings,
            "continue_user_errors": user_errors,
            "continue_shared_homes": shared_homes,
            "continue_config": config,
            "continue_config_errors": config_errors,
            "continue_model_uses": model_uses,
            "continue_team_model_errors": team_model_errors,
            "continue_seal": seal,
            "continue_file_state": file_state,
            "continue_in_the_way": in_the_way,
        }
