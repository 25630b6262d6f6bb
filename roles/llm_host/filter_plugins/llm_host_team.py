"""Where a host finds the team server: the URLs of the services the server exposes to the fleet.

Computed from the server's inventory variables (not from facts), so a laptop-only run
(`invoke provision --group dev_laptops`) wires the same URLs as a full run. Unit-tested in
tests/test_llm_host_filters.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ansible.module_utils.parsing.convert_bool import boolean

DEFAULT_PORTS = {"ollama": 11434, "open_webui": 8080, "vllm": 8000}
_OLLAMA_REGISTRY = "registry.ollama.ai/"
_OLLAMA_LIBRARY = "library/"


def _ollama_name(name: Any) -> str:
    """A model name as Ollama lists it: default registry and namespace dropped, ":latest" when untagged."""
    text = str(name).strip()
    text = text[len(_OLLAMA_REGISTRY):] if text.startswith(_OLLAMA_REGISTRY) else text
    text = text[len(_OLLAMA_LIBRARY):] if text.startswith(_OLLAMA_LIBRARY) else text
    return text if ":" in text.rsplit("/", 1)[-1] else f"{text}:latest"


def _served_ollama_models(server_vars: Mapping[str, Any]) -> list[str]:
    """The models the server's inventory gives its Ollama: ollama_models and ollama_custom_models."""
    names = []
    for key, field in (("ollama_models", "name"), ("ollama_custom_models", "name")):
        entries = server_vars.get(key) or []
        if not isinstance(entries, list):
            continue
        for entry in entries:
            value = entry.get(field) if isinstance(entry, Mapping) else entry
            if isinstance(value, str) and value.strip():
                names.append(_ollama_name(value))
    return names


def _port(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def team_endpoints(server: str, me: str, server_vars: Mapping[str, Any] | None) -> dict[str, Any]:
    """The team server's name, whether it serves the fleet, and its service URLs.

    `server` is llm_host_team_server (empty: no team server), `me` the calling host's
    inventory_hostname, `server_vars` the server's hostvars. A server reaches its own services on
    localhost; another host only when the server sets llm_host_expose, at llm_host_advertised_name
    (else ansible_host, else its inventory name). An unexposed server yields no URLs: its services
    listen on loopback only.
    """
    result: dict[str, Any] = {"server": server or "", "exposed": False, "address": ""}
    if not server:
        return result
    server_vars = server_vars or {}
    local = server == me
    exposed = boolean(server_vars.get("llm_host_expose", False), strict=False)
    result["exposed"] = exposed
    if not (local or exposed):
        return result
    address = "localhost" if local else (
        server_vars.get("llm_host_advertised_name") or server_vars.get("ansible_host") or server)
    result["address"] = address
    ollama_port = _port(server_vars.get("ollama_port"), DEFAULT_PORTS["ollama"])
    webui_port = _port(server_vars.get("open_webui_port"), DEFAULT_PORTS["open_webui"])
    result["ollama_url"] = f"http://{address}:{ollama_port}"
    result["ollama_models"] = _served_ollama_models(server_vars)
    result["open_webui_url"] = f"http://{address}:{webui_port}"
    vllm_urls = {}
    for entry in server_vars.get("vllm_models") or []:
        if isinstance(entry, Mapping) and entry.get("name"):
            vllm_urls[str(entry["name"])] = f"http://{address}:{_port(entry.get('port'), DEFAULT_PORTS['vllm'])}/v1"
    result["vllm_urls"] = vllm_urls
    if vllm_urls:
        result["vllm_url"] = next(iter(vllm_urls.values()))
    return result


def _endpoint(url: str) -> tuple[str, int | None, str]:
    """(host, port, path without trailing slash) of a URL; ("", None, "") when it is not one."""
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return "", None, ""
    return (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def team_model_errors(uses: Any, team: Mapping[str, Any], server_names: Iterable[str] = ()) -> list[str]:
    """Models a host's clients ask the team server for that the server does not serve, as messages.

    `uses` are [{provider, model, api_base, by}] (the continue role's _continue_model_uses), `team`
    is llm_host_team. A use counts when its api_base names the team server (its address, or one of
    `server_names`): at the Ollama port the model must be in the server's ollama_models (or
    ollama_custom_models); at a vLLM server's URL it must be that server's name; another port of the
    server is a mistake too. Decided from the inventory, so it holds before the server is set up.
    """
    server = str(team.get("server") or "")
    if not server or team.get("address") == "localhost":
        return []
    hosts = {str(team.get("address") or server).lower(), server.lower(), *(str(n).lower() for n in server_names if n)}
    if not team.get("exposed"):
        return [f"{use.get('by', 'a client')}: {use.get('api_base')} is the team server {server}, which does not "
                "expose its services (llm_host_expose is false there, so they listen on its loopback only): set "
                f"llm_host_expose: true for {server}, or serve the model from this host's own Ollama"
                for use in (uses if isinstance(uses, list) else [])
                if isinstance(use, Mapping) and _endpoint(use.get("api_base", ""))[0] in hosts]
    ollama = _endpoint(team.get("ollama_url", ""))
    served = set(team.get("ollama_models") or [])
    vllm = {_endpoint(url)[:2]: name for name, url in (team.get("vllm_urls") or {}).items()}
    other_ports = {_endpoint(team.get("open_webui_url", ""))[1]}
    errors = []
    for use in uses if isinstance(uses, list) else []:
        if not isinstance(use, Mapping):
            continue
        host, port, _ = _endpoint(use.get("api_base", ""))
        if host not in hosts:
            continue
        model, by = str(use.get("model", "")), str(use.get("by", "a client"))
        if (host, port) in vllm:
            name = vllm[(host, port)]
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


class FilterModule:
    """llm_host filters."""

    def filters(self) -> dict[str, Any]:
        return {"llm_host_team_endpoints": team_endpoints, "llm_host_team_model_errors": team_model_errors}
